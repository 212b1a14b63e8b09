/*
 * bm-harness -- drives the library from the Python tests.
 *
 *   bm-harness dump model.byoc      the header as JSON (compared with what
 *                                   the Python reader decodes)
 *   bm-harness corpus cases.bin     every record of a fuzz corpus through
 *                                   bm_open, every accessor, and the executor
 *
 * A corpus is a sequence of records: a u32 little-endian length, then that
 * many bytes. Each record is copied into a buffer of exactly its size, and
 * every tensor the executor touches is malloc'd to exactly its size, so a
 * build with -fsanitize=address,undefined turns any read past a bound into a
 * crash the test sees. One line per record: "<index> <open rc> <run rc>",
 * then a summary line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byoc_micro.h"
#include "bm_tool.h"

/* ------------------------------------------------------------------------
 * dump: msgpack -> JSON
 * --------------------------------------------------------------------- */

static void json_str(const char *s, size_t n)
{
    size_t k;
    putchar('"');
    for (k = 0; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        if (c == '"' || c == '\\') {
            printf("\\%c", c);
        } else if (c < 0x20) {
            printf("\\u%04x", c);
        } else {
            putchar(c);
        }
    }
    putchar('"');
}

static int dump(bm_val v)
{
    uint32_t n, k;
    bm_val cur;
    int64_t i;
    double d;
    bm_str s;
    int b;
    switch (bm_mp_type(v)) {
    case BM_MP_NIL:
        printf("null");
        return 0;
    case BM_MP_BOOL:
        bm_mp_bool(v, &b);
        printf(b ? "true" : "false");
        return 0;
    case BM_MP_INT:
        if (bm_mp_int(v, &i) != BM_OK) {
            return 1;
        }
        printf("%lld", (long long)i);
        return 0;
    case BM_MP_FLOAT:
        bm_mp_float(v, &d);
        printf("%.17g", d);
        return 0;
    case BM_MP_STR:
        bm_mp_str(v, &s);
        json_str(s.ptr, s.len);
        return 0;
    case BM_MP_ARRAY:
        bm_mp_array(v, &n, &cur);
        putchar('[');
        for (k = 0; k < n; k++) {
            if (k) {
                putchar(',');
            }
            if (dump(cur) || bm_mp_next(cur, &cur) != BM_OK) {
                return 1;
            }
        }
        putchar(']');
        return 0;
    case BM_MP_MAP:
        bm_mp_map(v, &n, &cur);
        putchar('{');
        for (k = 0; k < n; k++) {
            if (k) {
                putchar(',');
            }
            if (dump(cur) || bm_mp_next(cur, &cur) != BM_OK) {
                return 1;
            }
            putchar(':');
            if (dump(cur) || bm_mp_next(cur, &cur) != BM_OK) {
                return 1;
            }
        }
        putchar('}');
        return 0;
    default:
        return 1;
    }
}

/* ------------------------------------------------------------------------
 * corpus: every accessor, then the executor
 * --------------------------------------------------------------------- */

static volatile unsigned sink; /* keeps the touched bytes from being elided */

static void touch(const uint8_t *p, uint64_t n)
{
    if (n > 0) {
        sink += p[0] + p[n - 1];
    }
}

static void walk_attrs(const bm_node *node)
{
    uint32_t n, k;
    bm_val cur;
    if (node->n_attrs == 0 || bm_mp_map(node->attrs, &n, &cur) != BM_OK) {
        return;
    }
    for (k = 0; k < n; k++) {
        bm_str key;
        bm_val value;
        bm_attr a;
        char name[64];
        int64_t ints[8], dims[8], i;
        double floats[8], d;
        uint8_t bytes[256];
        uint32_t cnt, rank;
        size_t nb;
        bm_str s, dt;
        bm_graph g;
        int b;
        if (bm_mp_str(cur, &key) != BM_OK || bm_mp_next(cur, &value) != BM_OK) {
            return;
        }
        if (key.len < sizeof name) {
            memcpy(name, key.ptr, key.len);
            name[key.len] = '\0';
            if (bm_node_attr(node, name, &a) == BM_OK) {
                /* every accessor on every attribute: wrong tags must fail
                 * cleanly, right ones must stay in bounds */
                bm_attr_int(&a, &i);
                bm_attr_bool(&a, &b);
                bm_attr_float(&a, &d);
                if (bm_attr_str(&a, &s) == BM_OK) {
                    touch((const uint8_t *)s.ptr, s.len);
                }
                bm_attr_ints(&a, ints, 8, &cnt);
                bm_attr_floats(&a, floats, 8, &cnt);
                if (bm_attr_bytes(&a, bytes, sizeof bytes, &nb) == BM_OK) {
                    touch(bytes, nb);
                }
                bm_attr_tensor(&a, &dt, dims, 8, &rank, bytes, sizeof bytes,
                               &nb);
                bm_attr_graph(&a, &g);
                bm_expr_eval(a.payload, NULL, 0, &i);
            }
        }
        if (bm_mp_next(value, &cur) != BM_OK) {
            return;
        }
    }
}

static void walk_graph(bm_val gv)
{
    bm_graph g;
    bm_val cur;
    uint32_t k, j, n;
    if (bm_graph_open(gv, &g) != BM_OK) {
        return;
    }
    if (g.n_nodes == 0 || bm_mp_array(g.nodes, &n, &cur) != BM_OK) {
        return;
    }
    for (k = 0; k < g.n_nodes; k++) {
        bm_node node;
        int64_t dims[8], a, b;
        uint32_t rank;
        int is_static, known;
        bm_str dt;
        if (bm_node_read(cur, &node, &cur) != BM_OK) {
            return;
        }
        touch((const uint8_t *)node.name.ptr, node.name.len);
        for (j = 0; j < node.n_inputs; j++) {
            bm_node_input(&node, j, &a, &b);
        }
        for (j = 0; j < node.n_outputs; j++) {
            bm_node_shape(&node, j, dims, 8, &rank, &is_static, &known);
            if (bm_node_dtype(&node, j, &dt) == BM_OK) {
                touch((const uint8_t *)dt.ptr, dt.len);
            }
        }
        walk_attrs(&node);
    }
    for (k = 0; k < g.n_heads; k++) {
        int64_t a, b;
        bm_graph_head(&g, k, &a, &b);
    }
}

static uint64_t io_count(const bm_model *m, uint32_t sg, int out, uint32_t i,
                         int *ok)
{
    bm_str name;
    uint32_t rank, k;
    int64_t dims[BM_MAX_RANK];
    uint64_t count = 1;
    if (bm_exec_io(m, sg, out, i, &name, &rank, dims, NULL) != BM_OK) {
        *ok = 0;
        return 0;
    }
    for (k = 0; k < rank; k++) {
        if (dims[k] <= 0 || count > ((uint64_t)1 << 26) / (uint64_t)dims[k]) {
            *ok = 0;
            return 0;
        }
        count *= (uint64_t)dims[k];
    }
    return count;
}

/* Run subgraph sg with exact-size buffers; returns the executor's code. */
static int exercise(const bm_model *m, uint32_t sg)
{
    bm_exec_info info;
    bm_run_args args;
    bm_status st;
    const float **ins = NULL;
    float **outs = NULL;
    uint64_t *in_counts = NULL, *out_counts = NULL;
    void *arena = NULL;
    bm_slot *slots = NULL;
    uint32_t k;
    int rc, ok = 1;
    rc = bm_exec_info_get(m, sg, &info, &st);
    if (rc != BM_OK) {
        return rc;
    }
    /* bounded work per case: the corpus is thousands of files */
    if (info.arena_size > ((uint64_t)1 << 26) || info.n_slots > 100000 ||
        info.n_inputs > 64 || info.n_outputs > 64) {
        return BM_E_LIMIT;
    }
    memset(&args, 0, sizeof args);
    ins = calloc(info.n_inputs + 1, sizeof *ins);
    outs = calloc(info.n_outputs + 1, sizeof *outs);
    in_counts = calloc(info.n_inputs + 1, sizeof *in_counts);
    out_counts = calloc(info.n_outputs + 1, sizeof *out_counts);
    slots = calloc(info.n_slots + 1, sizeof *slots);
    arena = info.arena_size > 0 ? malloc((size_t)info.arena_size) : NULL;
    if (!ins || !outs || !in_counts || !out_counts || !slots ||
        (info.arena_size > 0 && !arena)) {
        rc = BM_E_LIMIT;
        goto done;
    }
    for (k = 0; k < info.n_inputs && ok; k++) {
        uint64_t j, n = io_count(m, sg, 0, k, &ok);
        float *buf = ok ? malloc((size_t)n * sizeof(float)) : NULL;
        if (buf == NULL) {
            ok = 0;
            break;
        }
        for (j = 0; j < n; j++) {
            buf[j] = (float)((int)(j % 7) - 3) * 0.25f;
        }
        ins[k] = buf;
        in_counts[k] = n;
    }
    for (k = 0; k < info.n_outputs && ok; k++) {
        uint64_t n = io_count(m, sg, 1, k, &ok);
        outs[k] = ok ? malloc((size_t)n * sizeof(float)) : NULL;
        ok = ok && outs[k] != NULL;
        out_counts[k] = n;
    }
    if (!ok) {
        rc = BM_E_UNSUPPORTED;
        goto done;
    }
    args.inputs = ins;
    args.input_counts = in_counts;
    args.n_inputs = info.n_inputs;
    args.outputs = outs;
    args.output_counts = out_counts;
    args.n_outputs = info.n_outputs;
    args.arena = arena;
    args.arena_size = info.arena_size;
    args.slots = slots;
    args.n_slots = info.n_slots;
    rc = bm_exec_check(m, sg, &args, &st);
    if (rc == BM_OK) {
        rc = bm_exec_run(m, sg, &args, &st);
    }
    if (rc == BM_OK) {
        for (k = 0; k < info.n_outputs; k++) {
            touch((const uint8_t *)outs[k], out_counts[k] * sizeof(float));
        }
    }
done:
    if (ins != NULL) {
        for (k = 0; k < info.n_inputs; k++) {
            free((void *)ins[k]);
        }
    }
    if (outs != NULL) {
        for (k = 0; k < info.n_outputs; k++) {
            free(outs[k]);
        }
    }
    free(ins);
    free(outs);
    free(in_counts);
    free(out_counts);
    free(arena);
    free(slots);
    return rc;
}

static void one_case(const uint8_t *data, size_t size, unsigned index,
                     unsigned *opened, unsigned *ran)
{
    bm_model m;
    bm_status st;
    uint32_t k;
    /* exactly `size` bytes, so any over-read is past the allocation */
    uint8_t *buf = malloc(size > 0 ? size : 1);
    int rc, run_rc = -1;
    if (buf == NULL) {
        return;
    }
    memcpy(buf, data, size);
    rc = bm_open(&m, buf, size, &st);
    if (rc == BM_OK) {
        (*opened)++;
        walk_graph(m.host);
        for (k = 0; k < m.n_constants; k++) {
            bm_const c;
            if (bm_const_at(&m, k, &c) == BM_OK) {
                touch(c.data, c.nbytes);
            }
        }
        for (k = 0; k < m.n_engines; k++) {
            bm_engine e;
            if (bm_engine_at(&m, k, &e) == BM_OK) {
                touch(e.data, e.nbytes);
            }
        }
        for (k = 0; k < m.n_subgraphs; k++) {
            bm_subgraph sg;
            if (bm_subgraph_at(&m, k, &sg) != BM_OK) {
                continue;
            }
            walk_graph(sg.graph);
            run_rc = exercise(&m, k);
            *ran += run_rc == BM_OK;
        }
    }
    printf("%u %d %d\n", index, rc, run_rc);
    free(buf);
}

int main(int argc, char **argv)
{
    size_t size, pos = 0;
    uint8_t *buf;
    unsigned index = 0, opened = 0, ran = 0;
    if (argc != 3 || (strcmp(argv[1], "dump") != 0 &&
                      strcmp(argv[1], "corpus") != 0)) {
        fprintf(stderr, "usage: bm-harness dump FILE | corpus FILE\n");
        return 1;
    }
    buf = bm_read_file(argv[2], &size);
    if (buf == NULL) {
        fprintf(stderr, "bm-harness: cannot read %s\n", argv[2]);
        return 1;
    }
    if (strcmp(argv[1], "dump") == 0) {
        bm_model m;
        bm_status st;
        int rc = bm_open(&m, buf, size, &st);
        if (rc != BM_OK) {
            fprintf(stderr, "bm-harness: %s: %s\n", bm_code_name(rc), st.msg);
            free(buf);
            return 2;
        }
        rc = dump(m.header);
        putchar('\n');
        free(buf);
        return rc;
    }
    while (size - pos >= 4) {
        size_t n = (size_t)buf[pos] | (size_t)buf[pos + 1] << 8 |
                   (size_t)buf[pos + 2] << 16 | (size_t)buf[pos + 3] << 24;
        pos += 4;
        if (n > size - pos) {
            fprintf(stderr, "bm-harness: truncated corpus\n");
            free(buf);
            return 1;
        }
        one_case(buf + pos, n, index++, &opened, &ran);
        pos += n;
    }
    printf("cases %u opened %u ran %u\n", index, opened, ran);
    free(buf);
    return 0;
}
