/*
 * bm_reader.c -- the artifact reader: validate a byoc artifact in place and
 * expose its subgraphs, nodes, attributes and constants as pointers into the
 * caller's buffer.
 *
 * bm_open enforces what docs/FORMAT.md says a reader must reject (and what
 * the Python reader, core/byoc/artifact.py, rejects), so code that only reads
 * a successfully opened model can rely on its structure. The accessors still
 * check every type and bound themselves: they cost little, and they keep a
 * caller that passes a bm_val from elsewhere just as safe.
 */
#include <math.h>
#include <string.h>

#include "bm_internal.h"

static const uint8_t MAGIC[8] = {0x89, 'B', 'Y', 'O', 'C', '\r', '\n', 0x1a};
#define ALIGN 64u

static uint64_t le_read(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    while (n-- > 0) {
        v = (v << 8) | p[n];
    }
    return v;
}

/* ------------------------------------------------------------------------
 * dtypes
 * --------------------------------------------------------------------- */

static const struct {
    const char *name;
    uint32_t size;
} DTYPES[] = {
    {"bool", 1},    {"float16", 2}, {"float32", 4}, {"float64", 8},
    {"int16", 2},   {"int32", 4},   {"int64", 8},   {"int8", 1},
    {"uint16", 2},  {"uint32", 4},  {"uint64", 8},  {"uint8", 1},
};

uint32_t bm_dtype_size(bm_str dtype)
{
    size_t k;
    for (k = 0; k < sizeof DTYPES / sizeof DTYPES[0]; k++) {
        if (bm_str_eq(dtype, DTYPES[k].name)) {
            return DTYPES[k].size;
        }
    }
    return 0;
}

int bm_dtype_code(bm_str dtype)
{
    if (bm_str_eq(dtype, "float32")) {
        return BM_DT_F32;
    }
    if (bm_str_eq(dtype, "int64")) {
        return BM_DT_I64;
    }
    return BM_DT_OTHER;
}

/* ------------------------------------------------------------------------
 * small typed lookups
 * --------------------------------------------------------------------- */

static int get_str(bm_val map, const char *key, bm_str *out)
{
    bm_val v;
    int rc = bm_mp_get(map, key, &v);
    if (rc != BM_OK) {
        return rc;
    }
    return bm_mp_str(v, out);
}

/* A non-negative int (bool is not an int here, as in the Python reader). */
static int get_uint(bm_val map, const char *key, uint64_t *out)
{
    bm_val v;
    int64_t i;
    int rc = bm_mp_get(map, key, &v);
    if (rc != BM_OK) {
        return rc;
    }
    if (bm_mp_int(v, &i) != BM_OK || i < 0) {
        return BM_E_FORMAT;
    }
    *out = (uint64_t)i;
    return BM_OK;
}

/* An optional array: absent reads as empty. */
static int get_array_opt(bm_val map, const char *key, bm_val *arr,
                         uint32_t *n)
{
    bm_val first;
    int rc = bm_mp_get(map, key, arr);
    if (rc == BM_E_NOT_FOUND) {
        arr->p = NULL;
        arr->end = NULL;
        *n = 0;
        return BM_OK;
    }
    if (rc != BM_OK) {
        return rc;
    }
    return bm_mp_array(*arr, n, &first);
}

/* ------------------------------------------------------------------------
 * base64
 * --------------------------------------------------------------------- */

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

int bm_base64_decode(const char *src, size_t len, uint8_t *out, size_t cap,
                     size_t *n)
{
    /* Python's b64decode(validate=True): alphabet only, padded to 4, '='
     * only at the end (at most two). out may be NULL to only measure. */
    size_t i, o = 0, pad = 0;
    if (len % 4 != 0) {
        return BM_E_FORMAT;
    }
    if (len > 0 && src[len - 1] == '=') {
        pad = (len > 1 && src[len - 2] == '=') ? 2 : 1;
    }
    for (i = 0; i < len; i += 4) {
        int v[4], k;
        uint32_t bits;
        size_t emit = 3;
        for (k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)src[i + (size_t)k];
            if (c == '=' && i + 4 == len && (size_t)k >= 4 - pad) {
                v[k] = 0;
            } else if ((v[k] = b64_value(c)) < 0) {
                return BM_E_FORMAT;
            }
        }
        if (i + 4 == len) {
            emit = 3 - pad;
        }
        bits = ((uint32_t)v[0] << 18) | ((uint32_t)v[1] << 12) |
               ((uint32_t)v[2] << 6) | (uint32_t)v[3];
        if (out != NULL) {
            if (cap - o < emit || o > cap) {
                return BM_E_LIMIT;
            }
            for (k = 0; k < (int)emit; k++) {
                out[o + (size_t)k] = (uint8_t)(bits >> (16 - 8 * k));
            }
        }
        o += emit;
    }
    *n = o;
    return BM_OK;
}

/* ------------------------------------------------------------------------
 * structural checks (what the Python reader enforces on load)
 * --------------------------------------------------------------------- */

static int expr_check(bm_val v, int depth)
{
    uint32_t n;
    bm_val first, b;
    bm_str op;
    int64_t i;
    if (depth > BM_MAX_ATTR_DEPTH) {
        return BM_E_FORMAT;
    }
    if (bm_mp_int(v, &i) == BM_OK) {
        return BM_OK;
    }
    if (bm_mp_array(v, &n, &first) != BM_OK || bm_mp_str(first, &op) != BM_OK) {
        return BM_E_FORMAT;
    }
    if (n == 2 && bm_str_eq(op, "dim")) {
        bm_str name;
        if (bm_mp_next(first, &b) != BM_OK || bm_mp_str(b, &name) != BM_OK) {
            return BM_E_FORMAT;
        }
        return BM_OK;
    }
    if (n == 3 && (bm_str_eq(op, "add") || bm_str_eq(op, "sub") ||
                   bm_str_eq(op, "mul") || bm_str_eq(op, "div") ||
                   bm_str_eq(op, "max") || bm_str_eq(op, "min"))) {
        bm_val a;
        if (bm_mp_next(first, &a) != BM_OK || expr_check(a, depth + 1) != BM_OK ||
            bm_mp_next(a, &b) != BM_OK || expr_check(b, depth + 1) != BM_OK) {
            return BM_E_FORMAT;
        }
        return BM_OK;
    }
    return BM_E_FORMAT;
}

static int float_payload_ok(bm_val v)
{
    double d;
    int64_t i;
    bm_str s;
    if (bm_mp_float(v, &d) == BM_OK || bm_mp_int(v, &i) == BM_OK) {
        return 1;
    }
    return bm_mp_str(v, &s) == BM_OK &&
           (bm_str_eq(s, "nan") || bm_str_eq(s, "inf") || bm_str_eq(s, "-inf"));
}

/* Every item of an array satisfies ok(). */
static int all_items(bm_val arr, int (*ok)(bm_val))
{
    uint32_t n, k;
    bm_val cur;
    if (bm_mp_array(arr, &n, &cur) != BM_OK) {
        return 0;
    }
    for (k = 0; k < n; k++) {
        if (!ok(cur) || bm_mp_next(cur, &cur) != BM_OK) {
            return 0;
        }
    }
    return 1;
}

static int is_int(bm_val v)
{
    int64_t i;
    return bm_mp_int(v, &i) == BM_OK;
}

static int is_str(bm_val v)
{
    bm_str s;
    return bm_mp_str(v, &s) == BM_OK;
}

/* A node's dtype: a canonical name, or "unknown" (the importer could not
 * infer it). */
static int is_node_dtype(bm_val v)
{
    bm_str s;
    return bm_mp_str(v, &s) == BM_OK &&
           (bm_dtype_size(s) > 0 || bm_str_eq(s, "unknown"));
}

static int attr_check(bm_val v, int depth, bm_status *st);

static int tensor_check(bm_val payload)
{
    uint32_t n, rank, k;
    bm_val dt, shape, data, dim;
    bm_str dts, b64;
    uint64_t count = 1, want;
    size_t got;
    uint32_t itemsize;
    if (bm_mp_array(payload, &n, &dt) != BM_OK || n != 3 ||
        bm_mp_str(dt, &dts) != BM_OK || bm_mp_next(dt, &shape) != BM_OK ||
        bm_mp_next(shape, &data) != BM_OK || bm_mp_str(data, &b64) != BM_OK ||
        bm_mp_array(shape, &rank, &dim) != BM_OK) {
        return BM_E_FORMAT;
    }
    itemsize = bm_dtype_size(dts);
    if (itemsize == 0 ||
        bm_base64_decode(b64.ptr, b64.len, NULL, 0, &got) != BM_OK) {
        return BM_E_FORMAT;
    }
    for (k = 0; k < rank; k++) {
        int64_t d;
        if (bm_mp_int(dim, &d) != BM_OK || d < 0 || d >= ((int64_t)1 << 31) ||
            bm_mul_checked(count, (uint64_t)d, (uint64_t)got + 1, &count) !=
                BM_OK) {
            return BM_E_FORMAT;
        }
        if (k + 1 < rank && bm_mp_next(dim, &dim) != BM_OK) {
            return BM_E_FORMAT;
        }
    }
    if (bm_mul_checked(count, itemsize, (uint64_t)got + 1, &want) != BM_OK ||
        want != got) {
        return BM_E_FORMAT;
    }
    return BM_OK;
}

static int attr_check(bm_val v, int depth, bm_status *st)
{
    uint32_t n;
    bm_val tagv, payload;
    bm_str tag, s;
    if (depth > BM_MAX_ATTR_DEPTH) {
        return bm_fail(st, BM_E_FORMAT, -1, "attribute nested too deeply");
    }
    if (bm_mp_array(v, &n, &tagv) != BM_OK || n != 2 ||
        bm_mp_str(tagv, &tag) != BM_OK || bm_mp_next(tagv, &payload) != BM_OK) {
        return bm_fail(st, BM_E_FORMAT, -1, "attribute must be [tag, payload]");
    }
    if (bm_str_eq(tag, "bool")) {
        int b;
        if (bm_mp_bool(payload, &b) == BM_OK) {
            return BM_OK;
        }
    } else if (bm_str_eq(tag, "int")) {
        if (is_int(payload)) {
            return BM_OK;
        }
    } else if (bm_str_eq(tag, "float")) {
        if (float_payload_ok(payload)) {
            return BM_OK;
        }
    } else if (bm_str_eq(tag, "str")) {
        if (is_str(payload)) {
            return BM_OK;
        }
    } else if (bm_str_eq(tag, "bytes")) {
        size_t got;
        if (bm_mp_str(payload, &s) == BM_OK &&
            bm_base64_decode(s.ptr, s.len, NULL, 0, &got) == BM_OK) {
            return BM_OK;
        }
    } else if (bm_str_eq(tag, "ints")) {
        if (all_items(payload, is_int)) {
            return BM_OK;
        }
    } else if (bm_str_eq(tag, "floats")) {
        if (all_items(payload, float_payload_ok)) {
            return BM_OK;
        }
    } else if (bm_str_eq(tag, "strs")) {
        if (all_items(payload, is_str)) {
            return BM_OK;
        }
    } else if (bm_str_eq(tag, "list")) {
        uint32_t k;
        bm_val cur;
        if (bm_mp_array(payload, &n, &cur) == BM_OK) {
            for (k = 0; k < n; k++) {
                int rc = attr_check(cur, depth + 1, st);
                if (rc != BM_OK) {
                    return rc;
                }
                if (bm_mp_next(cur, &cur) != BM_OK) {
                    break;
                }
            }
            if (k == n) {
                return BM_OK;
            }
        }
    } else if (bm_str_eq(tag, "dtype")) {
        if (bm_mp_str(payload, &s) == BM_OK && bm_dtype_size(s) > 0) {
            return BM_OK;
        }
    } else if (bm_str_eq(tag, "tensor")) {
        if (tensor_check(payload) == BM_OK) {
            return BM_OK;
        }
    } else if (bm_str_eq(tag, "expr")) {
        if (expr_check(payload, 0) == BM_OK) {
            return BM_OK;
        }
    } else if (bm_str_eq(tag, "graph")) {
        return bm_graph_check(payload, depth + 1, st);
    } else if (memchr(tag.ptr, '.', tag.len) != NULL) {
        /* A plugin codec's tag: its payload is plain data this reader cannot
         * interpret; it is skipped unless something asks for it. */
        return BM_OK;
    } else {
        return bm_fail(st, BM_E_FORMAT, -1, "unknown attribute type '%.*s'",
                       (int)(tag.len > 40 ? 40 : tag.len), tag.ptr);
    }
    return bm_fail(st, BM_E_FORMAT, -1, "bad '%.*s' attribute payload",
                   (int)tag.len, tag.ptr);
}

/* An entry [node_id, index, version]: three ints; a negative node id is only
 * valid as the omitted-input entry [-1, 0, 0]. */
static int entry_read(bm_val v, int64_t *nid, int64_t *idx)
{
    uint32_t n;
    bm_val a, b, c;
    int64_t ver;
    if (bm_mp_array(v, &n, &a) != BM_OK || n != 3 || bm_mp_int(a, nid) != BM_OK ||
        bm_mp_next(a, &b) != BM_OK || bm_mp_int(b, idx) != BM_OK ||
        bm_mp_next(b, &c) != BM_OK || bm_mp_int(c, &ver) != BM_OK) {
        return BM_E_FORMAT;
    }
    if (*nid < 0 && (*nid != -1 || *idx != 0 || ver != 0)) {
        return BM_E_FORMAT;
    }
    return BM_OK;
}

/* Number of outputs of node nid (walks the node array: only needed for
 * entries with index > 0, since every node has at least one output). */
static int outputs_of(bm_val nodes, int64_t nid, uint32_t *count)
{
    bm_val v, shapes, first;
    int rc = bm_mp_at(nodes, (uint32_t)nid, &v);
    if (rc != BM_OK || bm_mp_get(v, "shape", &shapes) != BM_OK) {
        return BM_E_FORMAT;
    }
    return bm_mp_array(shapes, count, &first);
}

static int entry_valid(bm_val nodes, uint32_t limit, int64_t nid, int64_t idx)
{
    uint32_t outs;
    if (nid < 0 || nid >= (int64_t)limit || idx < 0) {
        return 0;
    }
    if (idx == 0) {
        return 1;
    }
    return outputs_of(nodes, nid, &outs) == BM_OK && idx < (int64_t)outs;
}

static int shape_ok(bm_val v)
{
    uint32_t n, k;
    bm_val cur;
    if (bm_mp_type(v) == BM_MP_NIL) {
        return 1;
    }
    if (bm_mp_array(v, &n, &cur) != BM_OK) {
        return 0;
    }
    for (k = 0; k < n; k++) {
        int64_t d;
        bm_str s;
        if (!((bm_mp_int(cur, &d) == BM_OK && d >= 0) ||
              bm_mp_str(cur, &s) == BM_OK)) {
            return 0;
        }
        if (bm_mp_next(cur, &cur) != BM_OK) {
            return 0;
        }
    }
    return 1;
}

static int node_check(bm_val nodes, bm_val v, uint32_t nid, int depth,
                      bm_status *st)
{
    bm_node node;
    uint32_t k;
    bm_val cur;
    int rc = bm_node_read(v, &node, NULL);
    if (rc != BM_OK) {
        return bm_fail(st, BM_E_FORMAT, (long)nid,
                       "malformed graph: node #%u lacks op, name, shape or "
                       "dtype, or has a field of the wrong type",
                       (unsigned)nid);
    }
    {
        uint32_t nd;
        bm_val first;
        if (bm_mp_array(node.dtypes, &nd, &first) != BM_OK ||
            nd != node.n_outputs || nd == 0 ||
            !all_items(node.dtypes, is_node_dtype) ||
            !all_items(node.shapes, shape_ok)) {
            return bm_fail(st, BM_E_FORMAT, (long)nid,
                           "node #%u needs one shape and one known dtype per "
                           "output",
                           (unsigned)nid);
        }
    }
    if (node.kind != BM_NODE_KERNEL &&
        (node.n_inputs != 0 || node.n_outputs != 1)) {
        return bm_fail(st, BM_E_FORMAT, (long)nid,
                       "node #%u: input and const nodes have no inputs and one "
                       "output",
                       (unsigned)nid);
    }
    if (node.n_inputs > 0) {
        cur = node.inputs;
        if (bm_mp_array(node.inputs, &k, &cur) != BM_OK) {
            return BM_E_FORMAT;
        }
        for (k = 0; k < node.n_inputs; k++) {
            int64_t pid, idx;
            if (entry_read(cur, &pid, &idx) != BM_OK) {
                return bm_fail(st, BM_E_FORMAT, (long)nid,
                               "node #%u: inputs must be [node_id, index, "
                               "version]",
                               (unsigned)nid);
            }
            if (pid >= 0 && !entry_valid(nodes, nid, pid, idx)) {
                return bm_fail(st, BM_E_FORMAT, (long)nid,
                               "node #%u: input (%lld, %lld) must be an output "
                               "of an earlier node",
                               (unsigned)nid, (long long)pid, (long long)idx);
            }
            if (bm_mp_next(cur, &cur) != BM_OK) {
                return BM_E_FORMAT;
            }
        }
    }
    if (node.n_attrs > 0) {
        if (bm_mp_map(node.attrs, &k, &cur) != BM_OK) {
            return BM_E_FORMAT;
        }
        for (k = 0; k < node.n_attrs; k++) {
            bm_val value;
            bm_str key;
            if (bm_mp_str(cur, &key) != BM_OK || bm_mp_next(cur, &value) != BM_OK) {
                return bm_fail(st, BM_E_FORMAT, (long)nid,
                               "node #%u: attribute names must be strings",
                               (unsigned)nid);
            }
            rc = attr_check(value, depth + 1, st);
            if (rc != BM_OK) {
                if (st != NULL) {
                    st->node = (int32_t)nid;
                }
                return rc;
            }
            if (bm_mp_next(value, &cur) != BM_OK) {
                return BM_E_FORMAT;
            }
        }
    }
    if (node.kind == BM_NODE_INPUT) {
        /* input names are unique: compare with every earlier input node */
        bm_val other;
        uint32_t j;
        if (bm_mp_array(nodes, &j, &other) != BM_OK) {
            return BM_E_FORMAT;
        }
        for (j = 0; j < nid; j++) {
            bm_node prev;
            if (bm_node_read(other, &prev, &other) != BM_OK) {
                return BM_E_FORMAT;
            }
            if (prev.kind == BM_NODE_INPUT && bm_str_same(prev.name, node.name)) {
                return bm_fail(st, BM_E_FORMAT, (long)nid,
                               "node #%u: duplicate input name '%.*s'",
                               (unsigned)nid, (int)node.name.len, node.name.ptr);
            }
        }
    }
    return BM_OK;
}

/* Compare an optional derived-index array (arg_nodes, node_row_ptr) with
 * what the nodes imply; `want` walks the nodes. */
static int derived_check(bm_val graph, bm_val nodes, uint32_t n_nodes,
                         int row_ptr)
{
    bm_val arr, cur, node;
    uint32_t n, k, have = 0;
    int64_t total = 0;
    int rc = bm_mp_get(graph, row_ptr ? "node_row_ptr" : "arg_nodes", &arr);
    if (rc == BM_E_NOT_FOUND) {
        return BM_OK;
    }
    if (rc != BM_OK || bm_mp_array(arr, &n, &cur) != BM_OK ||
        bm_mp_array(nodes, &k, &node) != BM_OK) {
        return BM_E_FORMAT;
    }
    for (k = 0; k < n_nodes; k++) {
        bm_node nd;
        if (bm_node_read(node, &nd, &node) != BM_OK) {
            return BM_E_FORMAT;
        }
        if (row_ptr || nd.kind != BM_NODE_KERNEL) {
            int64_t want = row_ptr ? total : (int64_t)k, got;
            if (have >= n || bm_mp_int(cur, &got) != BM_OK || got != want) {
                return BM_E_FORMAT;
            }
            have++;
            if (have < n && bm_mp_next(cur, &cur) != BM_OK) {
                return BM_E_FORMAT;
            }
        }
        total += nd.n_outputs;
    }
    if (row_ptr) { /* the final prefix sum */
        int64_t got;
        if (have >= n || bm_mp_int(cur, &got) != BM_OK || got != total) {
            return BM_E_FORMAT;
        }
        have++;
    }
    return have == n ? BM_OK : BM_E_FORMAT;
}

int bm_graph_check(bm_val v, int depth, bm_status *st)
{
    bm_graph g;
    bm_val ver, cur;
    int64_t version;
    uint32_t k;
    int rc;
    if (depth > BM_MAX_ATTR_DEPTH) {
        return bm_fail(st, BM_E_FORMAT, -1, "graph nested too deeply");
    }
    if (bm_mp_get(v, "version", &ver) != BM_OK || bm_mp_int(ver, &version) != BM_OK) {
        return bm_fail(st, BM_E_FORMAT, -1, "malformed graph: version missing");
    }
    if (version > BM_GRAPH_VERSION) {
        return bm_fail(st, BM_E_VERSION, -1,
                       "graph format version %lld is newer than this reader "
                       "implements (%d)",
                       (long long)version, BM_GRAPH_VERSION);
    }
    if (bm_graph_open(v, &g) != BM_OK) {
        return bm_fail(st, BM_E_FORMAT, -1,
                       "malformed graph: nodes and heads must be lists, "
                       "head_names a list of strings");
    }
    cur = g.nodes;
    if (g.n_nodes > 0 && bm_mp_array(g.nodes, &k, &cur) != BM_OK) {
        return BM_E_FORMAT;
    }
    for (k = 0; k < g.n_nodes; k++) {
        bm_val next;
        rc = node_check(g.nodes, cur, k, depth, st);
        if (rc != BM_OK) {
            return rc;
        }
        if (bm_mp_next(cur, &next) != BM_OK) {
            return BM_E_FORMAT;
        }
        cur = next;
    }
    for (k = 0; k < g.n_heads; k++) {
        int64_t nid, idx;
        if (bm_graph_head(&g, k, &nid, &idx) != BM_OK ||
            !entry_valid(g.nodes, g.n_nodes, nid, idx)) {
            return bm_fail(st, BM_E_FORMAT, -1,
                           "malformed graph: head %u has no such output",
                           (unsigned)k);
        }
    }
    if (g.n_head_names != 0 && g.n_head_names != g.n_heads) {
        return bm_fail(st, BM_E_FORMAT, -1,
                       "malformed graph: head_names must name every head");
    }
    if (derived_check(v, g.nodes, g.n_nodes, 0) != BM_OK ||
        derived_check(v, g.nodes, g.n_nodes, 1) != BM_OK) {
        return bm_fail(st, BM_E_FORMAT, -1,
                       "malformed graph: arg_nodes or node_row_ptr does not "
                       "match the nodes");
    }
    return BM_OK;
}

/* Plain data (None, bool, int, float, str, list, str-keyed map), nested at
 * most 32 deep: what a subgraph's meta may hold. */
static int plain_check(bm_val v, int depth)
{
    uint32_t n, k;
    bm_val cur;
    int t = bm_mp_type(v);
    if (depth > BM_MAX_ATTR_DEPTH) {
        return 0;
    }
    if (t == BM_MP_NIL || t == BM_MP_BOOL || t == BM_MP_FLOAT || t == BM_MP_STR) {
        return 1;
    }
    if (t == BM_MP_INT) {
        return is_int(v);
    }
    if (t == BM_MP_ARRAY) {
        if (bm_mp_array(v, &n, &cur) != BM_OK) {
            return 0;
        }
        for (k = 0; k < n; k++) {
            if (!plain_check(cur, depth + 1) || bm_mp_next(cur, &cur) != BM_OK) {
                return 0;
            }
        }
        return 1;
    }
    if (t == BM_MP_MAP) {
        if (bm_mp_map(v, &n, &cur) != BM_OK) {
            return 0;
        }
        for (k = 0; k < n; k++) {
            bm_val value;
            if (!is_str(cur) || bm_mp_next(cur, &value) != BM_OK ||
                !plain_check(value, depth + 1) || bm_mp_next(value, &cur) != BM_OK) {
                return 0;
            }
        }
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * bm_open
 * --------------------------------------------------------------------- */

static int check_constants(bm_model *m, bm_status *st)
{
    uint32_t k;
    for (k = 0; k < m->n_constants; k++) {
        bm_const c;
        int rc = bm_const_at(m, k, &c);
        if (rc != BM_OK) {
            return bm_fail(st, rc, -1,
                           "constant #%u: needs a name, a known dtype, a shape "
                           "of at most 32 dims, and an aligned offset and size "
                           "inside the data section that match",
                           (unsigned)k);
        }
    }
    return BM_OK;
}

static int check_subgraphs(bm_model *m, bm_status *st)
{
    uint32_t k, j;
    for (k = 0; k < m->n_subgraphs; k++) {
        bm_subgraph s;
        int rc = bm_subgraph_at(m, k, &s);
        if (rc != BM_OK) {
            return bm_fail(st, BM_E_FORMAT, -1,
                           "subgraph #%u needs symbol, backend, "
                           "backend_version, a graph and map meta",
                           (unsigned)k);
        }
        if (!plain_check(s.meta, 0)) {
            return bm_fail(st, BM_E_FORMAT, -1,
                           "subgraph '%.*s' meta must be plain data",
                           (int)s.symbol.len, s.symbol.ptr);
        }
        rc = bm_graph_check(s.graph, 0, st);
        if (rc != BM_OK) {
            return rc;
        }
        for (j = 0; j < k; j++) {
            bm_subgraph other;
            if (bm_subgraph_at(m, j, &other) != BM_OK ||
                bm_str_same(other.symbol, s.symbol)) {
                return bm_fail(st, BM_E_FORMAT, -1, "duplicate subgraph symbols");
            }
        }
    }
    return BM_OK;
}

int bm_open(bm_model *m, const void *buf, size_t size, bm_status *st)
{
    const uint8_t *b = (const uint8_t *)buf;
    const uint8_t *after;
    uint64_t header_len, data_offset;
    bm_val v;
    uint32_t k;
    int rc;
    if (m == NULL || (buf == NULL && size > 0)) {
        return bm_fail(st, BM_E_ARG, -1, "bm_open needs a model and a buffer");
    }
    memset(m, 0, sizeof *m);
    if (st != NULL) {
        memset(st, 0, sizeof *st);
        st->node = -1;
    }
    if (size < 32) {
        return bm_fail(st, BM_E_FORMAT, -1,
                       "not a byoc artifact: only %lu bytes", (unsigned long)size);
    }
    if (memcmp(b, MAGIC, sizeof MAGIC) != 0) {
        return bm_fail(st, BM_E_FORMAT, -1, "not a byoc artifact (bad magic)");
    }
    m->major = (uint32_t)le_read(b + 8, 2);
    m->minor = (uint32_t)le_read(b + 10, 2);
    m->flags = (uint32_t)le_read(b + 12, 4);
    header_len = le_read(b + 16, 8);
    data_offset = le_read(b + 24, 8);
    if (m->major > BM_FORMAT_MAJOR) {
        return bm_fail(st, BM_E_VERSION, -1,
                       "artifact format %u.%u is newer than this reader (%d.x)",
                       (unsigned)m->major, (unsigned)m->minor, BM_FORMAT_MAJOR);
    }
    if (m->major < 1) {
        return bm_fail(st, BM_E_FORMAT, -1, "format major version %u",
                       (unsigned)m->major);
    }
    if (header_len > BM_MAX_HEADER || header_len > size - 32) {
        return bm_fail(st, BM_E_FORMAT, -1,
                       "header length %llu exceeds the file (%lu bytes)",
                       (unsigned long long)header_len, (unsigned long)size);
    }
    if (data_offset % ALIGN != 0 || data_offset < 32 + header_len ||
        data_offset > size) {
        return bm_fail(st, BM_E_FORMAT, -1, "data offset %llu is out of range",
                       (unsigned long long)data_offset);
    }
    m->buf = b;
    m->size = size;
    m->header.p = b + 32;
    m->header.end = b + 32 + header_len;
    rc = bm_mp_validate(m->header.p, m->header.end, &after);
    if (rc != BM_OK || after != m->header.end) {
        return bm_fail(st, BM_E_FORMAT, -1,
                       "header does not decode as one msgpack object with "
                       "string keys and UTF-8 strings");
    }
    if (bm_mp_type(m->header) != BM_MP_MAP) {
        return bm_fail(st, BM_E_FORMAT, -1, "header is not a map");
    }
    if (get_uint(m->header, "data_size", &m->data_size) != BM_OK) {
        return bm_fail(st, BM_E_FORMAT, -1,
                       "data_size must be a non-negative integer");
    }
    if (m->data_size > size - data_offset) {
        return bm_fail(st, BM_E_FORMAT, -1,
                       "data section (%llu bytes at %llu) runs past the end of "
                       "the file (%lu bytes): truncated?",
                       (unsigned long long)m->data_size,
                       (unsigned long long)data_offset, (unsigned long)size);
    }
    m->data = b + data_offset;
    rc = bm_mp_get(m->header, "codecs", &v);
    if (rc == BM_OK) {
        uint32_t n;
        bm_val cur;
        if (bm_mp_map(v, &n, &cur) != BM_OK) {
            return bm_fail(st, BM_E_FORMAT, -1,
                           "codecs must map tags to plugin names");
        }
        for (k = 0; k < n; k++) {
            bm_val value;
            if (bm_mp_next(cur, &value) != BM_OK || !is_str(value) ||
                bm_mp_next(value, &cur) != BM_OK) {
                return bm_fail(st, BM_E_FORMAT, -1,
                               "codecs must map tags to plugin names");
            }
        }
    } else if (rc != BM_E_NOT_FOUND) {
        return bm_fail(st, BM_E_FORMAT, -1, "codecs unreadable");
    }
    if (bm_mp_get(m->header, "host", &m->host) != BM_OK ||
        bm_mp_type(m->host) != BM_MP_MAP) {
        return bm_fail(st, BM_E_FORMAT, -1, "malformed graph: host missing");
    }
    rc = bm_graph_check(m->host, 0, st);
    if (rc != BM_OK) {
        return rc;
    }
    if (bm_mp_get(m->header, "subgraphs", &m->subgraphs) != BM_OK ||
        bm_mp_array(m->subgraphs, &m->n_subgraphs, &v) != BM_OK) {
        return bm_fail(st, BM_E_FORMAT, -1, "subgraphs must be a list");
    }
    rc = check_subgraphs(m, st);
    if (rc != BM_OK) {
        return rc;
    }
    if (get_array_opt(m->header, "constants", &m->constants, &m->n_constants) !=
        BM_OK) {
        return bm_fail(st, BM_E_FORMAT, -1, "constants must be a list");
    }
    rc = check_constants(m, st);
    if (rc != BM_OK) {
        return rc;
    }
    if (get_array_opt(m->header, "engines", &m->engines, &m->n_engines) != BM_OK) {
        return bm_fail(st, BM_E_FORMAT, -1, "engines must be a list");
    }
    for (k = 0; k < m->n_engines; k++) {
        bm_engine e;
        if (bm_engine_at(m, k, &e) != BM_OK) {
            return bm_fail(st, BM_E_FORMAT, -1,
                           "engine #%u needs symbol, backend, backend_version "
                           "and an aligned range inside the data section",
                           (unsigned)k);
        }
    }
    return BM_OK;
}

/* ------------------------------------------------------------------------
 * subgraphs, graphs, nodes
 * --------------------------------------------------------------------- */

int bm_subgraph_at(const bm_model *m, uint32_t i, bm_subgraph *out)
{
    bm_val s;
    int rc;
    if (m == NULL || out == NULL || i >= m->n_subgraphs) {
        return BM_E_ARG;
    }
    rc = bm_mp_at(m->subgraphs, i, &s);
    if (rc != BM_OK || bm_mp_type(s) != BM_MP_MAP) {
        return BM_E_FORMAT;
    }
    if (get_str(s, "symbol", &out->symbol) != BM_OK ||
        get_str(s, "backend", &out->backend) != BM_OK ||
        get_str(s, "backend_version", &out->backend_version) != BM_OK ||
        bm_mp_get(s, "graph", &out->graph) != BM_OK ||
        bm_mp_type(out->graph) != BM_MP_MAP) {
        return BM_E_FORMAT;
    }
    rc = bm_mp_get(s, "meta", &out->meta);
    if (rc == BM_E_NOT_FOUND) {
        /* an absent meta is an empty map: point at a static empty fixmap */
        static const uint8_t empty_map[1] = {0x80};
        out->meta.p = empty_map;
        out->meta.end = empty_map + 1;
    } else if (rc != BM_OK || bm_mp_type(out->meta) != BM_MP_MAP) {
        return BM_E_FORMAT;
    }
    return BM_OK;
}

int bm_subgraph_find(const bm_model *m, bm_str symbol, bm_subgraph *out,
                     uint32_t *index)
{
    uint32_t k;
    if (m == NULL || out == NULL) {
        return BM_E_ARG;
    }
    for (k = 0; k < m->n_subgraphs; k++) {
        int rc = bm_subgraph_at(m, k, out);
        if (rc != BM_OK) {
            return rc;
        }
        if (bm_str_same(out->symbol, symbol)) {
            if (index != NULL) {
                *index = k;
            }
            return BM_OK;
        }
    }
    return BM_E_NOT_FOUND;
}

int bm_graph_open(bm_val v, bm_graph *g)
{
    bm_val first;
    int rc;
    memset(g, 0, sizeof *g);
    g->map = v;
    if (bm_mp_get(v, "nodes", &g->nodes) != BM_OK ||
        bm_mp_array(g->nodes, &g->n_nodes, &first) != BM_OK ||
        bm_mp_get(v, "heads", &g->heads) != BM_OK ||
        bm_mp_array(g->heads, &g->n_heads, &first) != BM_OK) {
        return BM_E_FORMAT;
    }
    rc = bm_mp_get(v, "head_names", &g->head_names);
    if (rc == BM_E_NOT_FOUND) {
        return BM_OK;
    }
    if (rc != BM_OK || !all_items(g->head_names, is_str)) {
        return BM_E_FORMAT;
    }
    return bm_mp_array(g->head_names, &g->n_head_names, &first);
}

int bm_graph_head(const bm_graph *g, uint32_t i, int64_t *nid, int64_t *idx)
{
    bm_val e;
    int rc = bm_mp_at(g->heads, i, &e);
    if (rc != BM_OK) {
        return rc;
    }
    return entry_read(e, nid, idx);
}

int bm_node_read(bm_val v, bm_node *out, bm_val *next)
{
    bm_val op, first;
    bm_str kind;
    int rc;
    memset(out, 0, sizeof *out);
    if (bm_mp_get(v, "op", &op) != BM_OK || bm_mp_str(op, &kind) != BM_OK) {
        return BM_E_FORMAT;
    }
    if (bm_str_eq(kind, "input")) {
        out->kind = BM_NODE_INPUT;
    } else if (bm_str_eq(kind, "const")) {
        out->kind = BM_NODE_CONST;
    } else if (bm_str_eq(kind, "kernel")) {
        out->kind = BM_NODE_KERNEL;
    } else {
        return BM_E_FORMAT;
    }
    if (get_str(v, "name", &out->name) != BM_OK) {
        return BM_E_FORMAT;
    }
    rc = get_str(v, "label", &out->label);
    if (rc == BM_E_NOT_FOUND) {
        out->label.ptr = "";
        out->label.len = 0;
    } else if (rc != BM_OK) {
        return BM_E_FORMAT;
    }
    rc = bm_mp_get(v, "inputs", &out->inputs);
    if (rc == BM_OK) {
        if (bm_mp_array(out->inputs, &out->n_inputs, &first) != BM_OK) {
            return BM_E_FORMAT;
        }
    } else if (rc != BM_E_NOT_FOUND) {
        return BM_E_FORMAT;
    }
    rc = bm_mp_get(v, "attrs", &out->attrs);
    if (rc == BM_OK) {
        if (bm_mp_map(out->attrs, &out->n_attrs, &first) != BM_OK) {
            return BM_E_FORMAT;
        }
    } else if (rc != BM_E_NOT_FOUND) {
        return BM_E_FORMAT;
    }
    if (bm_mp_get(v, "shape", &out->shapes) != BM_OK ||
        bm_mp_array(out->shapes, &out->n_outputs, &first) != BM_OK ||
        bm_mp_get(v, "dtype", &out->dtypes) != BM_OK ||
        bm_mp_type(out->dtypes) != BM_MP_ARRAY) {
        return BM_E_FORMAT;
    }
    if (next != NULL) {
        return bm_mp_next(v, next);
    }
    return BM_OK;
}

int bm_node_input(const bm_node *n, uint32_t i, int64_t *nid, int64_t *idx)
{
    bm_val e;
    int rc;
    if (i >= n->n_inputs) {
        return BM_E_NOT_FOUND;
    }
    rc = bm_mp_at(n->inputs, i, &e);
    if (rc != BM_OK) {
        return rc;
    }
    return entry_read(e, nid, idx);
}

int bm_node_shape(const bm_node *n, uint32_t i, int64_t *dims, uint32_t cap,
                  uint32_t *rank, int *is_static, int *known)
{
    bm_val s, cur;
    uint32_t r, k;
    int rc = bm_mp_at(n->shapes, i, &s);
    if (rc != BM_OK) {
        return rc == BM_E_NOT_FOUND ? BM_E_NOT_FOUND : BM_E_FORMAT;
    }
    *is_static = 1;
    *known = 1;
    *rank = 0;
    if (bm_mp_type(s) == BM_MP_NIL) {
        *is_static = 0;
        *known = 0;
        return BM_OK;
    }
    if (bm_mp_array(s, &r, &cur) != BM_OK) {
        return BM_E_FORMAT;
    }
    if (r > cap) {
        return BM_E_LIMIT;
    }
    for (k = 0; k < r; k++) {
        int64_t d;
        bm_str name;
        if (bm_mp_int(cur, &d) == BM_OK && d >= 0) {
            dims[k] = d;
        } else if (bm_mp_str(cur, &name) == BM_OK) {
            dims[k] = -1;
            *is_static = 0;
        } else {
            return BM_E_FORMAT;
        }
        if (bm_mp_next(cur, &cur) != BM_OK) {
            return BM_E_FORMAT;
        }
    }
    *rank = r;
    return BM_OK;
}

int bm_node_dtype(const bm_node *n, uint32_t i, bm_str *out)
{
    bm_val v;
    int rc = bm_mp_at(n->dtypes, i, &v);
    if (rc != BM_OK) {
        return rc;
    }
    return bm_mp_str(v, out);
}

/* ------------------------------------------------------------------------
 * attributes
 * --------------------------------------------------------------------- */

int bm_node_attr(const bm_node *n, const char *key, bm_attr *out)
{
    bm_val v, tag;
    uint32_t len;
    int rc;
    if (n->n_attrs == 0) {
        return BM_E_NOT_FOUND;
    }
    rc = bm_mp_get(n->attrs, key, &v);
    if (rc != BM_OK) {
        return rc;
    }
    if (bm_mp_array(v, &len, &tag) != BM_OK || len != 2 ||
        bm_mp_str(tag, &out->tag) != BM_OK ||
        bm_mp_next(tag, &out->payload) != BM_OK) {
        return BM_E_FORMAT;
    }
    return BM_OK;
}

int bm_attr_int(const bm_attr *a, int64_t *out)
{
    if (!bm_str_eq(a->tag, "int")) {
        return BM_E_FORMAT;
    }
    return bm_mp_int(a->payload, out);
}

int bm_attr_bool(const bm_attr *a, int *out)
{
    if (!bm_str_eq(a->tag, "bool")) {
        return BM_E_FORMAT;
    }
    return bm_mp_bool(a->payload, out);
}

static int float_payload(bm_val v, double *out)
{
    int64_t i;
    bm_str s;
    if (bm_mp_float(v, out) == BM_OK) {
        return BM_OK;
    }
    if (bm_mp_int(v, &i) == BM_OK) {
        *out = (double)i;
        return BM_OK;
    }
    if (bm_mp_str(v, &s) == BM_OK) {
        /* JSON has no NaN/Infinity, so the writer spells them as strings */
        if (bm_str_eq(s, "inf")) {
            *out = INFINITY;
            return BM_OK;
        }
        if (bm_str_eq(s, "-inf")) {
            *out = -INFINITY;
            return BM_OK;
        }
        if (bm_str_eq(s, "nan")) {
            *out = NAN;
            return BM_OK;
        }
    }
    return BM_E_FORMAT;
}

int bm_attr_float(const bm_attr *a, double *out)
{
    if (!bm_str_eq(a->tag, "float")) {
        return BM_E_FORMAT;
    }
    return float_payload(a->payload, out);
}

int bm_attr_str(const bm_attr *a, bm_str *out)
{
    if (!bm_str_eq(a->tag, "str")) {
        return BM_E_FORMAT;
    }
    return bm_mp_str(a->payload, out);
}

int bm_attr_ints(const bm_attr *a, int64_t *out, uint32_t cap, uint32_t *n)
{
    uint32_t len, k;
    bm_val cur;
    int is_list = bm_str_eq(a->tag, "list");
    if (!is_list && !bm_str_eq(a->tag, "ints")) {
        return BM_E_FORMAT;
    }
    if (bm_mp_array(a->payload, &len, &cur) != BM_OK) {
        return BM_E_FORMAT;
    }
    if (len > cap) {
        return BM_E_LIMIT;
    }
    for (k = 0; k < len; k++) {
        if (is_list) { /* items are ["int", n] attributes */
            bm_attr item;
            uint32_t two;
            bm_val tag;
            if (bm_mp_array(cur, &two, &tag) != BM_OK || two != 2 ||
                bm_mp_str(tag, &item.tag) != BM_OK ||
                bm_mp_next(tag, &item.payload) != BM_OK ||
                bm_attr_int(&item, &out[k]) != BM_OK) {
                return BM_E_FORMAT;
            }
        } else if (bm_mp_int(cur, &out[k]) != BM_OK) {
            return BM_E_FORMAT;
        }
        if (bm_mp_next(cur, &cur) != BM_OK) {
            return BM_E_FORMAT;
        }
    }
    *n = len;
    return BM_OK;
}

int bm_attr_floats(const bm_attr *a, double *out, uint32_t cap, uint32_t *n)
{
    uint32_t len, k;
    bm_val cur;
    if (!bm_str_eq(a->tag, "floats")) {
        return BM_E_FORMAT;
    }
    if (bm_mp_array(a->payload, &len, &cur) != BM_OK) {
        return BM_E_FORMAT;
    }
    if (len > cap) {
        return BM_E_LIMIT;
    }
    for (k = 0; k < len; k++) {
        if (float_payload(cur, &out[k]) != BM_OK ||
            bm_mp_next(cur, &cur) != BM_OK) {
            return BM_E_FORMAT;
        }
    }
    *n = len;
    return BM_OK;
}

int bm_attr_bytes(const bm_attr *a, uint8_t *out, size_t cap, size_t *n)
{
    bm_str s;
    if (!bm_str_eq(a->tag, "bytes") || bm_mp_str(a->payload, &s) != BM_OK) {
        return BM_E_FORMAT;
    }
    return bm_base64_decode(s.ptr, s.len, out, cap, n);
}

int bm_attr_tensor(const bm_attr *a, bm_str *dtype, int64_t *dims,
                   uint32_t dims_cap, uint32_t *rank, uint8_t *out,
                   size_t cap, size_t *n)
{
    uint32_t len, r, k;
    bm_val dt, shape, data, cur;
    bm_str b64;
    if (!bm_str_eq(a->tag, "tensor") || tensor_check(a->payload) != BM_OK) {
        return BM_E_FORMAT;
    }
    if (bm_mp_array(a->payload, &len, &dt) != BM_OK ||
        bm_mp_str(dt, dtype) != BM_OK || bm_mp_next(dt, &shape) != BM_OK ||
        bm_mp_next(shape, &data) != BM_OK || bm_mp_str(data, &b64) != BM_OK ||
        bm_mp_array(shape, &r, &cur) != BM_OK) {
        return BM_E_FORMAT;
    }
    if (r > dims_cap) {
        return BM_E_LIMIT;
    }
    for (k = 0; k < r; k++) {
        if (bm_mp_int(cur, &dims[k]) != BM_OK || bm_mp_next(cur, &cur) != BM_OK) {
            return BM_E_FORMAT;
        }
    }
    *rank = r;
    return bm_base64_decode(b64.ptr, b64.len, out, cap, n);
}

int bm_attr_graph(const bm_attr *a, bm_graph *out)
{
    if (!bm_str_eq(a->tag, "graph")) {
        return BM_E_FORMAT;
    }
    return bm_graph_open(a->payload, out);
}

static int expr_eval(bm_val v, const bm_dim *dims, size_t n_dims, int depth,
                     int64_t *out)
{
    uint32_t n;
    bm_val first, a, b;
    bm_str op;
    int64_t x, y;
    int rc;
    if (depth > BM_MAX_ATTR_DEPTH) {
        return BM_E_FORMAT;
    }
    if (bm_mp_int(v, out) == BM_OK) {
        return BM_OK;
    }
    if (bm_mp_array(v, &n, &first) != BM_OK || bm_mp_str(first, &op) != BM_OK ||
        bm_mp_next(first, &a) != BM_OK) {
        return BM_E_FORMAT;
    }
    if (n == 2 && bm_str_eq(op, "dim")) {
        bm_str name;
        size_t k;
        if (bm_mp_str(a, &name) != BM_OK) {
            return BM_E_FORMAT;
        }
        for (k = 0; k < n_dims; k++) {
            if (bm_str_eq(name, dims[k].name)) {
                *out = dims[k].value;
                return BM_OK;
            }
        }
        return BM_E_NOT_FOUND;
    }
    if (n != 3 || bm_mp_next(a, &b) != BM_OK) {
        return BM_E_FORMAT;
    }
    rc = expr_eval(a, dims, n_dims, depth + 1, &x);
    if (rc == BM_OK) {
        rc = expr_eval(b, dims, n_dims, depth + 1, &y);
    }
    if (rc != BM_OK) {
        return rc;
    }
    /* shape arithmetic stays far from int64 limits; refuse what would wrap
     * rather than invoke undefined behaviour */
    if (bm_str_eq(op, "add")) {
        if ((y > 0 && x > INT64_MAX - y) || (y < 0 && x < INT64_MIN - y)) {
            return BM_E_LIMIT;
        }
        *out = x + y;
    } else if (bm_str_eq(op, "sub")) {
        if ((y < 0 && x > INT64_MAX + y) || (y > 0 && x < INT64_MIN + y)) {
            return BM_E_LIMIT;
        }
        *out = x - y;
    } else if (bm_str_eq(op, "mul")) {
        if (x != 0 && y != 0) {
            uint64_t ax = x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
            uint64_t ay = y < 0 ? (uint64_t)0 - (uint64_t)y : (uint64_t)y;
            if (ax > (uint64_t)INT64_MAX / ay) {
                return BM_E_LIMIT;
            }
        }
        *out = x * y;
    } else if (bm_str_eq(op, "div")) {
        /* truncates toward zero, as ONNX integer Div (and C) do */
        if (y == 0) {
            return BM_E_ARG;
        }
        if (x == INT64_MIN && y == -1) {
            return BM_E_LIMIT;
        }
        *out = x / y;
    } else if (bm_str_eq(op, "max")) {
        *out = x > y ? x : y;
    } else if (bm_str_eq(op, "min")) {
        *out = x < y ? x : y;
    } else {
        return BM_E_FORMAT;
    }
    return BM_OK;
}

int bm_expr_eval(bm_val payload, const bm_dim *dims, size_t n_dims,
                 int64_t *out)
{
    return expr_eval(payload, dims, n_dims, 0, out);
}

/* ------------------------------------------------------------------------
 * constants and engines
 * --------------------------------------------------------------------- */

int bm_const_at(const bm_model *m, uint32_t i, bm_const *out)
{
    bm_val e, shape, cur;
    uint64_t offset, nbytes, count = 1, want;
    uint32_t k;
    if (m == NULL || out == NULL || i >= m->n_constants) {
        return BM_E_ARG;
    }
    memset(out, 0, sizeof *out);
    if (bm_mp_at(m->constants, i, &e) != BM_OK ||
        get_str(e, "name", &out->name) != BM_OK ||
        get_str(e, "dtype", &out->dtype) != BM_OK ||
        bm_mp_get(e, "shape", &shape) != BM_OK ||
        bm_mp_array(shape, &out->rank, &cur) != BM_OK ||
        get_uint(e, "offset", &offset) != BM_OK ||
        get_uint(e, "nbytes", &nbytes) != BM_OK) {
        return BM_E_FORMAT;
    }
    out->itemsize = bm_dtype_size(out->dtype);
    if (out->itemsize == 0 || out->rank > BM_MAX_CONST_RANK) {
        return BM_E_FORMAT;
    }
    for (k = 0; k < out->rank; k++) {
        int64_t d;
        if (bm_mp_int(cur, &d) != BM_OK || d < 0 || d >= ((int64_t)1 << 40)) {
            return BM_E_FORMAT;
        }
        out->dims[k] = d;
        /* a product past the data size cannot match nbytes anyway */
        if (bm_mul_checked(count, (uint64_t)d, m->data_size + 1, &count) != BM_OK) {
            return BM_E_FORMAT;
        }
        if (k + 1 < out->rank && bm_mp_next(cur, &cur) != BM_OK) {
            return BM_E_FORMAT;
        }
    }
    if (offset % ALIGN != 0 || offset > m->data_size ||
        nbytes > m->data_size - offset) {
        return BM_E_FORMAT;
    }
    if (bm_mul_checked(count, out->itemsize, m->data_size + 1, &want) != BM_OK ||
        want != nbytes) {
        return BM_E_FORMAT;
    }
    out->data = m->data + offset;
    out->nbytes = nbytes;
    return BM_OK;
}

int bm_const_find(const bm_model *m, bm_str name, bm_const *out)
{
    uint32_t k;
    int found = 0;
    bm_const c;
    if (m == NULL || out == NULL) {
        return BM_E_ARG;
    }
    for (k = 0; k < m->n_constants; k++) {
        int rc = bm_const_at(m, k, &c);
        if (rc != BM_OK) {
            return rc;
        }
        if (bm_str_same(c.name, name)) {
            *out = c; /* keep scanning: the last duplicate wins */
            found = 1;
        }
    }
    return found ? BM_OK : BM_E_NOT_FOUND;
}

int bm_engine_at(const bm_model *m, uint32_t i, bm_engine *out)
{
    bm_val e;
    uint64_t offset, nbytes;
    if (m == NULL || out == NULL || i >= m->n_engines) {
        return BM_E_ARG;
    }
    if (bm_mp_at(m->engines, i, &e) != BM_OK ||
        get_str(e, "symbol", &out->symbol) != BM_OK ||
        get_str(e, "backend", &out->backend) != BM_OK ||
        get_str(e, "backend_version", &out->backend_version) != BM_OK ||
        get_uint(e, "offset", &offset) != BM_OK ||
        get_uint(e, "nbytes", &nbytes) != BM_OK) {
        return BM_E_FORMAT;
    }
    if (offset % ALIGN != 0 || offset > m->data_size ||
        nbytes > m->data_size - offset) {
        return BM_E_FORMAT;
    }
    out->data = m->data + offset;
    out->nbytes = nbytes;
    return BM_OK;
}

size_t bm_model_size(void)
{
    return sizeof(bm_model);
}

size_t bm_slot_size(void)
{
    return sizeof(bm_slot);
}
