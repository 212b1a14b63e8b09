/*
 * byoc-micro-run -- run a byoc artifact compiled for the micro target, from C.
 *
 *   byoc-micro-run [--arena-size N] model.byoc input.bin output.bin
 *   byoc-micro-run --info model.byoc
 *
 * input.bin holds every model input, in the host graph's input order, as raw
 * little-endian float32 (C order, concatenated); output.bin receives every
 * model output the same way. The artifact's host graph is walked here: each
 * `byoc.call` must name a subgraph of the `micro` backend, which runs through
 * the library. --arena-size gives every subgraph that many arena bytes
 * instead of its planned size (tests use it to show a byte less fails).
 *
 * Unlike the library, this host tool uses malloc: it stands in for the
 * firmware that would place these buffers statically.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byoc_micro.h"
#include "bm_tool.h"

typedef struct {
    const float *data;
    uint64_t count;
} value_t;

static int die(const char *what, const bm_status *st, int code)
{
    if (st != NULL && st->msg[0] != '\0') {
        fprintf(stderr, "byoc-micro-run: error: %s: %s: %s\n", what,
                bm_code_name(code), st->msg);
    } else {
        fprintf(stderr, "byoc-micro-run: error: %s: %s\n", what,
                bm_code_name(code));
    }
    return 2;
}

/* Element count of a host node's output, which must be static float32. */
static int static_count(const bm_node *node, uint32_t out, uint64_t *count)
{
    int64_t dims[BM_MAX_CONST_RANK];
    uint32_t rank, k;
    int is_static, known;
    bm_str dtype;
    if (bm_node_shape(node, out, dims, BM_MAX_CONST_RANK, &rank, &is_static,
                      &known) != BM_OK ||
        !is_static || !known || bm_node_dtype(node, out, &dtype) != BM_OK ||
        !bm_str_eq(dtype, "float32")) {
        return BM_E_UNSUPPORTED;
    }
    *count = 1;
    for (k = 0; k < rank; k++) {
        if (dims[k] > 0 && *count > UINT64_MAX / 4 / (uint64_t)dims[k]) {
            return BM_E_LIMIT;
        }
        *count *= (uint64_t)dims[k];
    }
    return BM_OK;
}

static int run_call(const bm_model *m, const bm_node *node, uint32_t nid,
                    value_t *values, const uint32_t *row_ptr, float **owned,
                    long arena_override, bm_status *st)
{
    bm_attr attr;
    bm_str symbol;
    bm_subgraph sg;
    uint32_t index, k;
    bm_exec_info info;
    bm_run_args args;
    const float **ins = NULL;
    uint64_t *in_counts = NULL, *out_counts = NULL;
    float **outs = NULL;
    void *arena = NULL;
    bm_slot *slots = NULL;
    int rc;
    if (bm_node_attr(node, "symbol", &attr) != BM_OK ||
        bm_attr_str(&attr, &symbol) != BM_OK ||
        bm_subgraph_find(m, symbol, &sg, &index) != BM_OK) {
        fprintf(stderr, "byoc-micro-run: error: host node #%u calls an "
                        "unknown subgraph\n",
                (unsigned)nid);
        return 2;
    }
    if (!bm_str_eq(sg.backend, "micro")) {
        fprintf(stderr,
                "byoc-micro-run: error: subgraph %.*s runs on backend '%.*s'; "
                "byoc-micro-run only runs micro subgraphs (compile with "
                "-b micro)\n",
                (int)symbol.len, symbol.ptr, (int)sg.backend.len,
                sg.backend.ptr);
        return 2;
    }
    rc = bm_exec_info_get(m, index, &info, st);
    if (rc != BM_OK) {
        return die("subgraph plan", st, rc);
    }
    if (info.n_inputs != node->n_inputs || info.n_outputs != node->n_outputs) {
        fprintf(stderr, "byoc-micro-run: error: host call of %.*s does not "
                        "match its subgraph\n",
                (int)symbol.len, symbol.ptr);
        return 2;
    }
    ins = calloc(info.n_inputs + 1, sizeof *ins);
    in_counts = calloc(info.n_inputs + 1, sizeof *in_counts);
    outs = calloc(info.n_outputs + 1, sizeof *outs);
    out_counts = calloc(info.n_outputs + 1, sizeof *out_counts);
    slots = calloc(info.n_slots + 1, sizeof *slots);
    {
        uint64_t size = arena_override >= 0 ? (uint64_t)arena_override
                                            : info.arena_size;
        arena = malloc(size > 0 ? (size_t)size : 1);
        args.arena_size = size;
    }
    if (!ins || !in_counts || !outs || !out_counts || !slots || !arena) {
        fprintf(stderr, "byoc-micro-run: error: out of memory\n");
        rc = 2;
        goto done;
    }
    for (k = 0; k < node->n_inputs; k++) {
        int64_t pid, idx;
        const value_t *v;
        if (bm_node_input(node, k, &pid, &idx) != BM_OK || pid < 0) {
            fprintf(stderr, "byoc-micro-run: error: bad host input\n");
            rc = 2;
            goto done;
        }
        v = &values[row_ptr[pid] + (uint32_t)idx];
        ins[k] = v->data;
        in_counts[k] = v->count;
    }
    for (k = 0; k < node->n_outputs; k++) {
        uint64_t count;
        if (static_count(node, k, &count) != BM_OK) {
            fprintf(stderr, "byoc-micro-run: error: output %u of %.*s is not "
                            "static float32\n",
                    (unsigned)k, (int)symbol.len, symbol.ptr);
            rc = 2;
            goto done;
        }
        outs[k] = malloc(count > 0 ? (size_t)count * sizeof(float) : 1);
        owned[row_ptr[nid] + k] = outs[k];
        if (outs[k] == NULL) {
            rc = 2;
            goto done;
        }
        out_counts[k] = count;
        values[row_ptr[nid] + k].data = outs[k];
        values[row_ptr[nid] + k].count = count;
    }
    args.inputs = ins;
    args.input_counts = in_counts;
    args.n_inputs = info.n_inputs;
    args.outputs = outs;
    args.output_counts = out_counts;
    args.n_outputs = info.n_outputs;
    args.arena = arena;
    args.slots = slots;
    args.n_slots = info.n_slots;
    rc = bm_exec_run(m, index, &args, st);
    if (rc != BM_OK) {
        rc = die("run", st, rc);
    }
done:
    free(ins);
    free(in_counts);
    free(outs);
    free(out_counts);
    free(arena);
    free(slots);
    return rc;
}

static int info_cmd(const bm_model *m)
{
    uint32_t k;
    for (k = 0; k < m->n_subgraphs; k++) {
        bm_subgraph sg;
        bm_exec_info info;
        bm_status st;
        if (bm_subgraph_at(m, k, &sg) != BM_OK) {
            return 2;
        }
        printf("%.*s (%.*s): ", (int)sg.symbol.len, sg.symbol.ptr,
               (int)sg.backend.len, sg.backend.ptr);
        if (bm_exec_info_get(m, k, &info, &st) == BM_OK) {
            printf("arena %llu bytes, %u slots, %u inputs, %u outputs\n",
                   (unsigned long long)info.arena_size, (unsigned)info.n_slots,
                   (unsigned)info.n_inputs, (unsigned)info.n_outputs);
        } else {
            printf("not runnable: %s\n", st.msg);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *paths[3] = {NULL, NULL, NULL};
    long arena_override = -1;
    int info = 0, n_paths = 0, i, rc = 0;
    size_t size, in_size = 0;
    uint8_t *buf, *in_buf = NULL;
    bm_model m;
    bm_status st;
    bm_graph host;
    bm_val node_v;
    uint32_t nid, total = 0, *row_ptr = NULL;
    value_t *values = NULL;
    float **owned = NULL;
    uint64_t in_used = 0;
    FILE *out;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--info") == 0) {
            info = 1;
        } else if (strcmp(argv[i], "--arena-size") == 0 && i + 1 < argc) {
            char *end;
            arena_override = strtol(argv[++i], &end, 10);
            if (*end != '\0' || arena_override < 0) {
                fprintf(stderr, "byoc-micro-run: --arena-size needs a byte "
                                "count\n");
                return 1;
            }
        } else if (n_paths < 3) {
            paths[n_paths++] = argv[i];
        } else {
            n_paths = 4;
        }
    }
    if (n_paths != (info ? 1 : 3)) {
        fprintf(stderr,
                "usage: byoc-micro-run [--arena-size N] model.byoc input.bin "
                "output.bin\n       byoc-micro-run --info model.byoc\n");
        return 1;
    }
    buf = bm_read_file(paths[0], &size);
    if (buf == NULL) {
        fprintf(stderr, "byoc-micro-run: error: cannot read %s\n", paths[0]);
        return 2;
    }
    rc = bm_open(&m, buf, size, &st);
    if (rc != BM_OK) {
        free(buf);
        return die(paths[0], &st, rc);
    }
    if (info) {
        rc = info_cmd(&m);
        free(buf);
        return rc;
    }
    in_buf = bm_read_file(paths[1], &in_size);
    if (in_buf == NULL || bm_graph_open(m.host, &host) != BM_OK) {
        fprintf(stderr, "byoc-micro-run: error: cannot read %s\n", paths[1]);
        free(buf);
        free(in_buf);
        return 2;
    }
    /* entry ids: node_row_ptr, computed here rather than trusted */
    row_ptr = calloc(host.n_nodes + 1, sizeof *row_ptr);
    if (row_ptr == NULL) {
        rc = 2;
        goto done;
    }
    if (host.n_nodes > 0 && bm_mp_array(host.nodes, &nid, &node_v) != BM_OK) {
        rc = 2;
        goto done;
    }
    for (nid = 0; nid < host.n_nodes; nid++) {
        bm_node node;
        if (bm_node_read(node_v, &node, &node_v) != BM_OK) {
            rc = 2;
            goto done;
        }
        row_ptr[nid] = total;
        total += node.n_outputs;
    }
    row_ptr[host.n_nodes] = total;
    values = calloc(total + 1, sizeof *values);
    owned = calloc(total + 1, sizeof *owned);
    if (values == NULL || owned == NULL) {
        rc = 2;
        goto done;
    }
    if (host.n_nodes > 0 && bm_mp_array(host.nodes, &nid, &node_v) != BM_OK) {
        rc = 2;
        goto done;
    }
    for (nid = 0; nid < host.n_nodes && rc == 0; nid++) {
        bm_node node;
        if (bm_node_read(node_v, &node, &node_v) != BM_OK) {
            rc = 2;
            break;
        }
        if (node.kind == BM_NODE_INPUT) {
            uint64_t count;
            if (static_count(&node, 0, &count) != BM_OK) {
                fprintf(stderr, "byoc-micro-run: error: input '%.*s' is not "
                                "static float32\n",
                        (int)node.name.len, node.name.ptr);
                rc = 2;
                break;
            }
            if (count * sizeof(float) > in_size - in_used) {
                fprintf(stderr, "byoc-micro-run: error: %s is too short for "
                                "the model's inputs\n",
                        paths[1]);
                rc = 2;
                break;
            }
            values[row_ptr[nid]].data = (const float *)(void *)(in_buf + in_used);
            values[row_ptr[nid]].count = count;
            in_used += count * sizeof(float);
        } else if (node.kind == BM_NODE_CONST) {
            bm_const c;
            uint64_t count;
            if (static_count(&node, 0, &count) != BM_OK ||
                bm_const_find(&m, node.name, &c) != BM_OK ||
                c.nbytes != count * sizeof(float)) {
                fprintf(stderr, "byoc-micro-run: error: host constant "
                                "'%.*s' is missing or not float32\n",
                        (int)node.name.len, node.name.ptr);
                rc = 2;
                break;
            }
            values[row_ptr[nid]].data = (const float *)(const void *)c.data;
            values[row_ptr[nid]].count = count;
        } else if (bm_str_eq(node.name, "byoc.call")) {
            rc = run_call(&m, &node, nid, values, row_ptr, owned,
                          arena_override, &st);
        } else {
            fprintf(stderr,
                    "byoc-micro-run: error: host node #%u (%.*s) needs the "
                    "Python driver (symbolic shapes are not supported here)\n",
                    (unsigned)nid, (int)node.name.len, node.name.ptr);
            rc = 2;
        }
    }
    if (rc == 0 && in_used != in_size) {
        fprintf(stderr, "byoc-micro-run: error: %s holds %lu bytes; the "
                        "inputs take %llu\n",
                paths[1], (unsigned long)in_size, (unsigned long long)in_used);
        rc = 2;
    }
    if (rc == 0) {
        out = fopen(paths[2], "wb");
        if (out == NULL) {
            fprintf(stderr, "byoc-micro-run: error: cannot write %s\n",
                    paths[2]);
            rc = 2;
            goto done;
        }
        for (nid = 0; nid < host.n_heads; nid++) {
            int64_t hid, idx;
            const value_t *v;
            if (bm_graph_head(&host, nid, &hid, &idx) != BM_OK) {
                rc = 2;
                break;
            }
            v = &values[row_ptr[hid] + (uint32_t)idx];
            if (v->data == NULL ||
                fwrite(v->data, sizeof(float), (size_t)v->count, out) !=
                    (size_t)v->count) {
                rc = 2;
                break;
            }
        }
        if (fclose(out) != 0) {
            rc = 2;
        }
    }
done:
    if (owned != NULL) {
        for (nid = 0; nid < row_ptr[host.n_nodes]; nid++) {
            free(owned[nid]);
        }
    }
    free(owned);
    free(values);
    free(row_ptr);
    free(in_buf);
    free(buf);
    return rc;
}
