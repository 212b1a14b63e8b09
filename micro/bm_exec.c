/*
 * bm_exec.c -- run a subgraph of an opened artifact on the fp32 kernels,
 * with the memory plan the Python side computed at compile time.
 *
 * The plan (docs/FORMAT.md, "Appendix A") lives in the
 * subgraph's `meta`: the arena size and, per node, where its output goes --
 * a caller input, a constant, an arena offset, a caller output buffer, or an
 * alias of its input (a reshape). The executor follows it exactly and never
 * decides placement itself, so the arena size `byoc inspect` reports is the
 * one used: a byte less is BM_E_ARENA.
 *
 * One pass over the nodes, in order (they are topologically sorted), fills
 * the caller's slot table (one bm_slot per node: every node the executor
 * runs has one output) and, unless it is a dry run, runs each kernel. Every
 * shape, attribute and offset is checked before the kernel that uses it
 * runs, so a hostile plan or graph is an error code, never a stray access.
 */
#include <string.h>

#include "bm_internal.h"

typedef struct {
    uint64_t arena_size;
    bm_val entries;
    uint32_t n_entries;
} plan_t;

static int plan_read(const bm_subgraph *s, plan_t *p, bm_status *st)
{
    bm_val v, first;
    int64_t i;
    int rc = bm_mp_get(s->meta, "format", &v);
    if (rc == BM_E_NOT_FOUND) {
        return bm_fail(st, BM_E_UNSUPPORTED, -1,
                       "subgraph '%.*s' has no micro memory plan in its meta "
                       "(compile it with the byoc-micro backend)",
                       (int)s->symbol.len, s->symbol.ptr);
    }
    if (rc != BM_OK || bm_mp_int(v, &i) != BM_OK) {
        return bm_fail(st, BM_E_FORMAT, -1, "plan format must be an int");
    }
    if (i != BM_PLAN_FORMAT) {
        return bm_fail(st, BM_E_VERSION, -1,
                       "subgraph '%.*s' has a plan of format %lld; this "
                       "executor reads format %d",
                       (int)s->symbol.len, s->symbol.ptr, (long long)i,
                       BM_PLAN_FORMAT);
    }
    if (bm_mp_get(s->meta, "arena_size", &v) != BM_OK ||
        bm_mp_int(v, &i) != BM_OK || i < 0 ||
        bm_mp_get(s->meta, "entries", &p->entries) != BM_OK ||
        bm_mp_array(p->entries, &p->n_entries, &first) != BM_OK) {
        return bm_fail(st, BM_E_FORMAT, -1,
                       "plan needs arena_size (a non-negative int) and a list "
                       "of entries");
    }
    p->arena_size = (uint64_t)i;
    return BM_OK;
}

/* A plan entry: [location, int]. */
static int entry_read(bm_val v, bm_str *kind, int64_t *value)
{
    uint32_t n;
    bm_val k, x;
    if (bm_mp_array(v, &n, &k) != BM_OK || n != 2 || bm_mp_str(k, kind) != BM_OK ||
        bm_mp_next(k, &x) != BM_OK || bm_mp_int(x, value) != BM_OK) {
        return BM_E_FORMAT;
    }
    return BM_OK;
}

static int misaligned(const void *p)
{
    return ((uintptr_t)p & (sizeof(float) - 1)) != 0;
}

/* The node's declared output: static, rank <= BM_MAX_RANK, no empty dims. */
static int slot_from_node(const bm_node *node, uint32_t nid, bm_slot *slot,
                          bm_status *st)
{
    int is_static, known, rc;
    uint32_t k;
    uint64_t count = 1;
    bm_str dtype;
    memset(slot, 0, sizeof *slot);
    rc = bm_node_shape(node, 0, slot->dims, BM_MAX_RANK, &slot->rank,
                       &is_static, &known);
    if (rc == BM_E_LIMIT) {
        return bm_fail(st, BM_E_UNSUPPORTED, (long)nid,
                       "micro: node #%u has rank > %d", (unsigned)nid,
                       BM_MAX_RANK);
    }
    if (rc != BM_OK || bm_node_dtype(node, 0, &dtype) != BM_OK) {
        return bm_fail(st, BM_E_FORMAT, (long)nid, "node #%u: bad shape",
                       (unsigned)nid);
    }
    if (!is_static || !known) {
        return bm_fail(st, BM_E_UNSUPPORTED, (long)nid,
                       "micro: node #%u has a dynamic shape; micro needs "
                       "static shapes",
                       (unsigned)nid);
    }
    for (k = 0; k < slot->rank; k++) {
        if (slot->dims[k] <= 0 || slot->dims[k] >= BM_MAX_DIM) {
            return bm_fail(st, BM_E_UNSUPPORTED, (long)nid,
                           "micro: node #%u has an empty or oversized dim",
                           (unsigned)nid);
        }
        if (bm_mul_checked(count, (uint64_t)slot->dims[k], BM_MAX_COUNT,
                           &count) != BM_OK) {
            return bm_fail(st, BM_E_LIMIT, (long)nid, "node #%u is too large",
                           (unsigned)nid);
        }
    }
    slot->count = count;
    slot->dtype = bm_dtype_code(dtype);
    return BM_OK;
}

static int same_shape(const bm_slot *a, const bm_slot *b)
{
    uint32_t k;
    if (a->rank != b->rank) {
        return 0;
    }
    for (k = 0; k < a->rank; k++) {
        if (a->dims[k] != b->dims[k]) {
            return 0;
        }
    }
    return 1;
}

static int do_input(const bm_run_args *a, int execute, const bm_node *node,
                    uint32_t nid, bm_str loc, int64_t value, uint32_t *n_in,
                    bm_slot *slot, bm_status *st)
{
    uint32_t p = *n_in;
    if (!bm_str_eq(loc, "input") || value != (int64_t)p) {
        return bm_fail(st, BM_E_FORMAT, (long)nid,
                       "plan: input node #%u must be [\"input\", %u]",
                       (unsigned)nid, (unsigned)p);
    }
    if (slot->dtype != BM_DT_F32) {
        return bm_fail(st, BM_E_UNSUPPORTED, (long)nid,
                       "micro: input '%.*s' is not float32",
                       (int)node->name.len, node->name.ptr);
    }
    if (p >= a->n_inputs) {
        return bm_fail(st, BM_E_ARG, (long)nid,
                       "%u inputs given; the graph has more",
                       (unsigned)a->n_inputs);
    }
    if (a->input_counts != NULL && a->input_counts[p] != slot->count) {
        return bm_fail(st, BM_E_ARG, (long)nid,
                       "input %u ('%.*s') has %llu elements; the graph needs "
                       "%llu",
                       (unsigned)p, (int)node->name.len, node->name.ptr,
                       (unsigned long long)a->input_counts[p],
                       (unsigned long long)slot->count);
    }
    if (execute) {
        if (a->inputs == NULL || a->input_counts == NULL || a->inputs[p] == NULL ||
            misaligned(a->inputs[p])) {
            return bm_fail(st, BM_E_ARG, (long)nid,
                           "input %u is missing or not 4-byte aligned",
                           (unsigned)p);
        }
        slot->data = a->inputs[p];
    }
    *n_in = p + 1;
    return BM_OK;
}

static int do_const(const bm_model *m, const bm_node *node, uint32_t nid,
                    bm_str loc, bm_slot *slot, bm_status *st)
{
    bm_const c;
    bm_str dtype;
    uint32_t k;
    if (!bm_str_eq(loc, "const")) {
        return bm_fail(st, BM_E_FORMAT, (long)nid,
                       "plan: const node #%u must be [\"const\", 0]",
                       (unsigned)nid);
    }
    if (bm_const_find(m, node->name, &c) != BM_OK) {
        return bm_fail(st, BM_E_FORMAT, (long)nid,
                       "node #%u reads missing constant '%.*s'", (unsigned)nid,
                       (int)node->name.len, node->name.ptr);
    }
    if (bm_node_dtype(node, 0, &dtype) != BM_OK ||
        !bm_str_same(dtype, c.dtype) || c.rank != slot->rank) {
        return bm_fail(st, BM_E_FORMAT, (long)nid,
                       "constant '%.*s' does not match its node's dtype and "
                       "shape",
                       (int)node->name.len, node->name.ptr);
    }
    for (k = 0; k < c.rank; k++) {
        if (c.dims[k] != slot->dims[k]) {
            return bm_fail(st, BM_E_FORMAT, (long)nid,
                           "constant '%.*s' does not match its node's shape",
                           (int)node->name.len, node->name.ptr);
        }
    }
    if (slot->dtype == BM_DT_F32 && misaligned(c.data)) {
        return bm_fail(st, BM_E_ARG, (long)nid,
                       "constant '%.*s' is not 4-byte aligned: load the "
                       "artifact at a 64-byte aligned address",
                       (int)node->name.len, node->name.ptr);
    }
    slot->data = c.data;
    return BM_OK;
}

static int do_kernel(const bm_graph *g, const plan_t *plan,
                     const bm_run_args *a, int execute, const bm_node *node,
                     uint32_t nid, bm_str loc, int64_t value, bm_status *st)
{
    bm_slot *slot = &a->slots[nid];
    const bm_op *op = bm_op_find(node->name);
    bm_op_ctx ctx;
    float *y = NULL;
    uint32_t i;
    int rc;
    if (op == NULL) {
        return bm_fail(st, BM_E_UNSUPPORTED, (long)nid,
                       "micro: no kernel for %.*s", (int)node->name.len,
                       node->name.ptr);
    }
    if (node->n_inputs < op->min_in || node->n_inputs > op->max_in) {
        return bm_fail(st, BM_E_FORMAT, (long)nid,
                       "%s takes %u to %u inputs, node #%u has %u", op->name,
                       (unsigned)op->min_in, (unsigned)op->max_in, (unsigned)nid,
                       (unsigned)node->n_inputs);
    }
    if (slot->dtype != BM_DT_F32) {
        return bm_fail(st, BM_E_UNSUPPORTED, (long)nid,
                       "micro: %s node #%u does not produce float32", op->name,
                       (unsigned)nid);
    }
    memset(&ctx, 0, sizeof ctx);
    ctx.node = node;
    ctx.nid = (long)nid;
    ctx.st = st;
    ctx.declared = slot;
    ctx.n_in = node->n_inputs;
    for (i = 0; i < node->n_inputs; i++) {
        int64_t pid, idx;
        if (bm_node_input(node, i, &pid, &idx) != BM_OK) {
            return bm_fail(st, BM_E_FORMAT, (long)nid, "node #%u: bad input",
                           (unsigned)nid);
        }
        if (pid < 0) {
            if (i < op->min_in) {
                return bm_fail(st, BM_E_FORMAT, (long)nid,
                               "node #%u omits required input %u",
                               (unsigned)nid, (unsigned)i);
            }
            continue;
        }
        if (pid >= (int64_t)nid || idx != 0) {
            return bm_fail(st, BM_E_FORMAT, (long)nid,
                           "node #%u: input (%lld, %lld) is not an earlier "
                           "node's output",
                           (unsigned)nid, (long long)pid, (long long)idx);
        }
        ctx.in[i] = &a->slots[pid];
        if (!((op->unread >> i) & 1u) && ctx.in[i]->dtype != BM_DT_F32) {
            return bm_fail(st, BM_E_UNSUPPORTED, (long)nid,
                           "micro: %s node #%u reads a tensor that is not "
                           "float32",
                           op->name, (unsigned)nid);
        }
    }
    rc = op->prepare(&ctx);
    if (rc != BM_OK) {
        return rc;
    }
    if (!same_shape(&ctx.out, slot)) {
        return bm_fail(st, BM_E_FORMAT, (long)nid,
                       "node #%u (%s): the declared shape is not what the "
                       "inputs and attributes give",
                       (unsigned)nid, op->name);
    }
    if (bm_str_eq(loc, "arena")) {
        uint64_t bytes = slot->count * sizeof(float);
        if (value < 0 || value % (int64_t)sizeof(float) != 0 ||
            (uint64_t)value > plan->arena_size ||
            bytes > plan->arena_size - (uint64_t)value) {
            return bm_fail(st, BM_E_FORMAT, (long)nid,
                           "plan puts node #%u at arena offset %lld: outside "
                           "the %llu-byte arena or misaligned",
                           (unsigned)nid, (long long)value,
                           (unsigned long long)plan->arena_size);
        }
        if (execute) {
            y = (float *)(void *)((uint8_t *)a->arena + value);
        }
    } else if (bm_str_eq(loc, "output")) {
        int64_t hid, hidx;
        if (value < 0 || value >= (int64_t)g->n_heads ||
            bm_graph_head(g, (uint32_t)value, &hid, &hidx) != BM_OK ||
            hid != (int64_t)nid || hidx != 0) {
            return bm_fail(st, BM_E_FORMAT, (long)nid,
                           "plan puts node #%u in output %lld, which is not "
                           "its output",
                           (unsigned)nid, (long long)value);
        }
        if (a->output_counts != NULL && a->output_counts[value] != slot->count) {
            return bm_fail(st, BM_E_ARG, (long)nid,
                           "output %lld holds %llu elements; it needs %llu",
                           (long long)value,
                           (unsigned long long)a->output_counts[value],
                           (unsigned long long)slot->count);
        }
        if (execute) {
            y = a->outputs[value];
            if (y == NULL || misaligned(y)) {
                return bm_fail(st, BM_E_ARG, (long)nid,
                               "output %lld is missing or not 4-byte aligned",
                               (long long)value);
            }
        }
    } else if (bm_str_eq(loc, "alias")) {
        if (!(op->flags & BM_OP_VIEW)) {
            return bm_fail(st, BM_E_FORMAT, (long)nid,
                           "plan: only reshapes may alias their input (node "
                           "#%u is %s)",
                           (unsigned)nid, op->name);
        }
        slot->data = ctx.in[0]->data;
        return BM_OK;
    } else {
        return bm_fail(st, BM_E_FORMAT, (long)nid,
                       "plan: unknown location for node #%u", (unsigned)nid);
    }
    slot->data = y;
    if (execute) {
        ctx.y = y;
        op->run(&ctx);
    }
    return BM_OK;
}

static int walk(const bm_model *m, uint32_t sg, const bm_run_args *a,
                int execute, bm_status *st)
{
    bm_subgraph s;
    bm_graph g;
    plan_t plan;
    bm_val node_v, entry_v;
    uint32_t nid, n_in = 0, j;
    int rc;
    if (st != NULL) {
        memset(st, 0, sizeof *st);
        st->node = -1;
    }
    if (m == NULL || a == NULL) {
        return bm_fail(st, BM_E_ARG, -1, "needs a model and run arguments");
    }
    if (sg >= m->n_subgraphs) {
        return bm_fail(st, BM_E_ARG, -1, "no subgraph #%u (the file has %u)",
                       (unsigned)sg, (unsigned)m->n_subgraphs);
    }
    if (bm_subgraph_at(m, sg, &s) != BM_OK || bm_graph_open(s.graph, &g) != BM_OK) {
        return bm_fail(st, BM_E_FORMAT, -1, "subgraph #%u is malformed",
                       (unsigned)sg);
    }
    rc = plan_read(&s, &plan, st);
    if (rc != BM_OK) {
        return rc;
    }
    if (plan.n_entries != g.n_nodes) {
        return bm_fail(st, BM_E_FORMAT, -1,
                       "plan has %u entries for %u nodes",
                       (unsigned)plan.n_entries, (unsigned)g.n_nodes);
    }
    if (a->n_slots < g.n_nodes || (a->slots == NULL && g.n_nodes > 0)) {
        return bm_fail(st, BM_E_LIMIT, -1,
                       "the slot table holds %llu entries; '%.*s' needs %u",
                       (unsigned long long)a->n_slots, (int)s.symbol.len,
                       s.symbol.ptr, (unsigned)g.n_nodes);
    }
    if (a->arena_size < plan.arena_size) {
        return bm_fail(st, BM_E_ARENA, -1,
                       "the arena is %llu bytes; the plan of '%.*s' needs %llu",
                       (unsigned long long)a->arena_size, (int)s.symbol.len,
                       s.symbol.ptr, (unsigned long long)plan.arena_size);
    }
    if ((execute && plan.arena_size > 0 && a->arena == NULL) ||
        (a->arena != NULL && misaligned(a->arena))) {
        return bm_fail(st, BM_E_ARENA, -1,
                       "the arena is missing or not 4-byte aligned");
    }
    if (a->n_outputs != g.n_heads ||
        (execute && g.n_heads > 0 &&
         (a->outputs == NULL || a->output_counts == NULL))) {
        return bm_fail(st, BM_E_ARG, -1, "'%.*s' has %u outputs; %u given",
                       (int)s.symbol.len, s.symbol.ptr, (unsigned)g.n_heads,
                       (unsigned)a->n_outputs);
    }
    if (g.n_nodes > 0 && (bm_mp_array(g.nodes, &nid, &node_v) != BM_OK ||
                          bm_mp_array(plan.entries, &nid, &entry_v) != BM_OK)) {
        return BM_E_FORMAT;
    }
    for (nid = 0; nid < g.n_nodes; nid++) {
        bm_node node;
        bm_slot *slot = &a->slots[nid];
        bm_str loc;
        int64_t value;
        if (bm_node_read(node_v, &node, &node_v) != BM_OK) {
            return bm_fail(st, BM_E_FORMAT, (long)nid, "node #%u is malformed",
                           (unsigned)nid);
        }
        if (node.n_outputs != 1) {
            return bm_fail(st, BM_E_UNSUPPORTED, (long)nid,
                           "micro: node #%u has %u outputs; micro runs "
                           "single-output nodes",
                           (unsigned)nid, (unsigned)node.n_outputs);
        }
        rc = slot_from_node(&node, nid, slot, st);
        if (rc != BM_OK) {
            return rc;
        }
        if (entry_read(entry_v, &loc, &value) != BM_OK) {
            return bm_fail(st, BM_E_FORMAT, (long)nid,
                           "plan entry %u must be [location, int]",
                           (unsigned)nid);
        }
        if (nid + 1 < g.n_nodes && bm_mp_next(entry_v, &entry_v) != BM_OK) {
            return BM_E_FORMAT;
        }
        if (node.kind == BM_NODE_INPUT) {
            rc = do_input(a, execute, &node, nid, loc, value, &n_in, slot, st);
        } else if (node.kind == BM_NODE_CONST) {
            rc = do_const(m, &node, nid, loc, slot, st);
        } else {
            rc = do_kernel(&g, &plan, a, execute, &node, nid, loc, value, st);
        }
        if (rc != BM_OK) {
            return rc;
        }
    }
    if (n_in != a->n_inputs) {
        return bm_fail(st, BM_E_ARG, -1, "'%.*s' takes %u inputs; %u given",
                       (int)s.symbol.len, s.symbol.ptr, (unsigned)n_in,
                       (unsigned)a->n_inputs);
    }
    for (j = 0; j < g.n_heads; j++) {
        int64_t hid, hidx;
        const bm_slot *slot;
        if (bm_graph_head(&g, j, &hid, &hidx) != BM_OK || hid < 0 ||
            hid >= (int64_t)g.n_nodes || hidx != 0) {
            return bm_fail(st, BM_E_FORMAT, -1, "head %u is malformed",
                           (unsigned)j);
        }
        slot = &a->slots[hid];
        if (slot->dtype != BM_DT_F32) {
            return bm_fail(st, BM_E_UNSUPPORTED, -1,
                           "micro: output %u is not float32", (unsigned)j);
        }
        if (a->output_counts != NULL && a->output_counts[j] != slot->count) {
            return bm_fail(st, BM_E_ARG, -1,
                           "output %u holds %llu elements; it needs %llu",
                           (unsigned)j,
                           (unsigned long long)a->output_counts[j],
                           (unsigned long long)slot->count);
        }
        /* a head the plan did not place in its buffer (an alias, a second
         * head of the same node, an input) is copied there */
        if (execute) {
            if (a->outputs[j] == NULL) {
                return bm_fail(st, BM_E_ARG, -1, "output %u is missing",
                               (unsigned)j);
            }
            if (slot->data != (const void *)a->outputs[j]) {
                memmove(a->outputs[j], slot->data,
                        (size_t)slot->count * sizeof(float));
            }
        }
    }
    return BM_OK;
}

int bm_exec_run(const bm_model *m, uint32_t sg, const bm_run_args *a,
                bm_status *st)
{
    return walk(m, sg, a, 1, st);
}

int bm_exec_check(const bm_model *m, uint32_t sg, const bm_run_args *a,
                  bm_status *st)
{
    return walk(m, sg, a, 0, st);
}

int bm_exec_info_get(const bm_model *m, uint32_t sg, bm_exec_info *info,
                     bm_status *st)
{
    bm_subgraph s;
    bm_graph g;
    plan_t plan;
    bm_val node_v;
    uint32_t k;
    int rc;
    if (m == NULL || info == NULL || sg >= m->n_subgraphs) {
        return bm_fail(st, BM_E_ARG, -1, "no such subgraph");
    }
    memset(info, 0, sizeof *info);
    if (bm_subgraph_at(m, sg, &s) != BM_OK || bm_graph_open(s.graph, &g) != BM_OK) {
        return bm_fail(st, BM_E_FORMAT, -1, "subgraph #%u is malformed",
                       (unsigned)sg);
    }
    rc = plan_read(&s, &plan, st);
    if (rc != BM_OK) {
        return rc;
    }
    if (g.n_nodes > 0 && bm_mp_array(g.nodes, &k, &node_v) != BM_OK) {
        return BM_E_FORMAT;
    }
    for (k = 0; k < g.n_nodes; k++) {
        bm_node node;
        if (bm_node_read(node_v, &node, &node_v) != BM_OK) {
            return BM_E_FORMAT;
        }
        info->n_inputs += node.kind == BM_NODE_INPUT;
    }
    info->n_outputs = g.n_heads;
    info->arena_size = plan.arena_size;
    info->n_slots = g.n_nodes;
    return BM_OK;
}

int bm_exec_io(const bm_model *m, uint32_t sg, int is_output, uint32_t i,
               bm_str *name, uint32_t *rank, int64_t dims[BM_MAX_RANK],
               bm_status *st)
{
    bm_subgraph s;
    bm_graph g;
    bm_val node_v;
    bm_node node;
    int64_t want = -1, idx = 0;
    uint32_t k, seen = 0;
    int is_static, known, rc;
    if (m == NULL || name == NULL || rank == NULL || sg >= m->n_subgraphs) {
        return bm_fail(st, BM_E_ARG, -1, "no such subgraph");
    }
    if (bm_subgraph_at(m, sg, &s) != BM_OK || bm_graph_open(s.graph, &g) != BM_OK) {
        return bm_fail(st, BM_E_FORMAT, -1, "subgraph #%u is malformed",
                       (unsigned)sg);
    }
    if (is_output) {
        if (i >= g.n_heads || bm_graph_head(&g, i, &want, &idx) != BM_OK) {
            return bm_fail(st, BM_E_ARG, -1, "no output %u", (unsigned)i);
        }
    }
    if (g.n_nodes > 0 && bm_mp_array(g.nodes, &k, &node_v) != BM_OK) {
        return BM_E_FORMAT;
    }
    for (k = 0; k < g.n_nodes; k++) {
        if (bm_node_read(node_v, &node, &node_v) != BM_OK) {
            return BM_E_FORMAT;
        }
        if (is_output ? (int64_t)k == want
                      : (node.kind == BM_NODE_INPUT && seen++ == i)) {
            break;
        }
    }
    if (k == g.n_nodes) {
        return bm_fail(st, BM_E_ARG, -1, "no %s %u",
                       is_output ? "output" : "input", (unsigned)i);
    }
    rc = bm_node_shape(&node, (uint32_t)idx, dims, BM_MAX_RANK, rank,
                       &is_static, &known);
    if (rc != BM_OK || !is_static || !known) {
        return bm_fail(st, rc == BM_OK ? BM_E_UNSUPPORTED : rc, (long)k,
                       "micro: tensor with a dynamic shape or rank > %d",
                       BM_MAX_RANK);
    }
    *name = node.name;
    if (is_output && g.n_head_names > i) {
        bm_val hn;
        if (bm_mp_at(g.head_names, i, &hn) != BM_OK || bm_mp_str(hn, name) != BM_OK) {
            return BM_E_FORMAT;
        }
    }
    return BM_OK;
}
