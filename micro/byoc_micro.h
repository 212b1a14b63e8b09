/*
 * byoc_micro.h -- read and run byoc artifacts from C, with no heap and no
 * dependencies beyond libc.
 *
 * This is the micro-runtime end of the flow (import -> partition -> serialize
 * -> load -> init -> run): the artifact file specified in docs/FORMAT.md is
 * read in place from a caller-provided buffer (a memory-mapped file, or flash),
 * and subgraphs assigned to the `micro` backend run on fp32 kernels using a
 * caller-provided arena whose size and layout the Python side planned at
 * compile time (the subgraph's `meta`, docs/FORMAT.md Appendix A).
 *
 * Three layers, each usable alone:
 *   bm_mp_*     a bounds-checked msgpack cursor over the header,
 *   bm_open ... the artifact reader: subgraphs, nodes, attributes, constants
 *               as pointers into the buffer,
 *   bm_exec_*   the executor.
 *
 * Every function returns a bm_code (BM_OK == 0). Functions that take a
 * bm_status fill it with a message on failure; passing NULL is allowed. No
 * function allocates, keeps global state, or reads outside the buffer it was
 * given: a malformed file is an error code, never a crash. An opened bm_model
 * is read-only, so many threads may run it at once, each with its own arena.
 */
#ifndef BYOC_MICRO_H
#define BYOC_MICRO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BM_FORMAT_MAJOR 1  /* artifact major version this reader implements */
#define BM_GRAPH_VERSION 1 /* graph dict version this reader implements */
#define BM_PLAN_FORMAT 1   /* version of the micro memory plan in `meta` */
#define BM_MAX_RANK 6      /* tensor rank the executor handles */
#define BM_MAX_CONST_RANK 32 /* rank the constant table may declare */
#define BM_MAX_HEADER (1u << 30)

typedef enum {
    BM_OK = 0,
    BM_E_ARG = 1,         /* the caller passed bad arguments (NULL, sizes) */
    BM_E_FORMAT = 2,      /* the artifact is malformed or truncated */
    BM_E_VERSION = 3,     /* a newer format, graph or plan version */
    BM_E_NOT_FOUND = 4,   /* no such key, symbol, attribute or constant */
    BM_E_UNSUPPORTED = 5, /* valid, but not something the executor runs */
    BM_E_ARENA = 6,       /* arena smaller than the plan needs, or misaligned */
    BM_E_LIMIT = 7        /* exceeds a fixed limit (rank, slot table, depth) */
} bm_code;

/* Why a call failed: the code, the node it concerns (-1: none), a message. */
typedef struct {
    int32_t code;
    int32_t node;
    char msg[256];
} bm_status;

/* Short name of a code, e.g. "BM_E_FORMAT". */
const char *bm_code_name(int code);

/* ------------------------------------------------------------------------
 * msgpack cursor
 * --------------------------------------------------------------------- */

/* One msgpack object: it starts at p; end bounds everything it may span. */
typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} bm_val;

/* A string inside the buffer: not NUL-terminated. */
typedef struct {
    const char *ptr;
    size_t len;
} bm_str;

typedef enum {
    BM_MP_INVALID = 0,
    BM_MP_NIL,
    BM_MP_BOOL,
    BM_MP_INT,
    BM_MP_FLOAT,
    BM_MP_STR,
    BM_MP_BIN,
    BM_MP_ARRAY,
    BM_MP_MAP,
    BM_MP_EXT
} bm_mp_kind;

/* Type of v (BM_MP_INVALID when v is truncated or uses the reserved byte). */
int bm_mp_type(bm_val v);
/* The object after v. */
int bm_mp_next(bm_val v, bm_val *next);
/* Any msgpack int width; values above INT64_MAX are BM_E_FORMAT. */
int bm_mp_int(bm_val v, int64_t *out);
int bm_mp_bool(bm_val v, int *out);
/* float32 or float64 (ints are not floats here; see bm_attr_float). */
int bm_mp_float(bm_val v, double *out);
int bm_mp_str(bm_val v, bm_str *out);
/* Item count and the first item (valid only when n > 0). */
int bm_mp_array(bm_val v, uint32_t *n, bm_val *first);
/* Pair count and the first key (valid only when n > 0). */
int bm_mp_map(bm_val v, uint32_t *n, bm_val *first_key);
/* Value of string key `key` (the last one, as the reference reader keeps). */
int bm_mp_get(bm_val map, const char *key, bm_val *out);
int bm_mp_at(bm_val array, uint32_t i, bm_val *out);
/* Whether the string equals the NUL-terminated z. */
int bm_str_eq(bm_str s, const char *z);
int bm_str_same(bm_str a, bm_str b);

/* ------------------------------------------------------------------------
 * artifact reader
 * --------------------------------------------------------------------- */

typedef struct {
    const uint8_t *buf;
    size_t size;
    uint32_t major, minor, flags;
    bm_val header;       /* the top-level map */
    const uint8_t *data; /* buf + data_offset */
    uint64_t data_size;
    bm_val host;         /* graph map */
    bm_val subgraphs;    /* array of maps */
    bm_val constants;    /* array of maps (may be empty) */
    bm_val engines;      /* array of maps (may be empty) */
    uint32_t n_subgraphs, n_constants, n_engines;
} bm_model;

/*
 * Validate the prefix, the whole header and every graph in it, and the
 * constant and engine tables; on BM_OK `m` points into buf, which must stay
 * alive and unchanged. Float constants are read in place, so buf should be
 * 64-byte aligned (the executor refuses misaligned tensors).
 */
int bm_open(bm_model *m, const void *buf, size_t size, bm_status *st);

typedef struct {
    bm_str symbol, backend, backend_version;
    bm_val graph; /* graph map */
    bm_val meta;  /* map: what the backend's plan hook stored (may be empty) */
} bm_subgraph;

int bm_subgraph_at(const bm_model *m, uint32_t i, bm_subgraph *out);
int bm_subgraph_find(const bm_model *m, bm_str symbol, bm_subgraph *out,
                     uint32_t *index);

typedef struct {
    bm_val map;
    bm_val nodes; /* array */
    bm_val heads; /* array of [nid, idx, version] */
    uint32_t n_nodes, n_heads;
    bm_val head_names; /* array of str; n_head_names may be 0 */
    uint32_t n_head_names;
} bm_graph;

int bm_graph_open(bm_val v, bm_graph *g);

typedef enum { BM_NODE_INPUT, BM_NODE_CONST, BM_NODE_KERNEL } bm_node_kind;

typedef struct {
    bm_node_kind kind;
    bm_str name;  /* input name, constant key, or operator */
    bm_str label; /* empty when absent */
    bm_val inputs; /* array of entries; n_inputs may be 0 */
    uint32_t n_inputs;
    bm_val attrs;  /* map; n_attrs may be 0 */
    uint32_t n_attrs;
    bm_val shapes; /* array: one shape (nil or array) per output */
    bm_val dtypes; /* array of str */
    uint32_t n_outputs;
} bm_node;

/* Decode the node map at v; `next` (may be NULL) gets the following node. */
int bm_node_read(bm_val v, bm_node *out, bm_val *next);
/* Entry i: producer node id (< 0: an omitted optional input) and index. */
int bm_node_input(const bm_node *n, uint32_t i, int64_t *nid, int64_t *idx);
/*
 * Shape of output i: rank and dims (a symbolic dim reads as -1 and clears
 * *is_static). A rank above cap is BM_E_LIMIT; an unknown rank (nil) gives
 * rank 0 with *is_static = 0 and *known = 0.
 */
int bm_node_shape(const bm_node *n, uint32_t i, int64_t *dims, uint32_t cap,
                  uint32_t *rank, int *is_static, int *known);
int bm_node_dtype(const bm_node *n, uint32_t i, bm_str *out);
int bm_graph_head(const bm_graph *g, uint32_t i, int64_t *nid, int64_t *idx);

/* ------------------------------------------------------------------------
 * attributes: [tag, payload] pairs (docs/FORMAT.md, "Attributes")
 * --------------------------------------------------------------------- */

typedef struct {
    bm_str tag;
    bm_val payload;
} bm_attr;

/* BM_E_NOT_FOUND when the node has no such attribute. */
int bm_node_attr(const bm_node *n, const char *key, bm_attr *out);
int bm_attr_int(const bm_attr *a, int64_t *out);
int bm_attr_bool(const bm_attr *a, int *out);
/* tag "float": a number, or "nan" / "inf" / "-inf". */
int bm_attr_float(const bm_attr *a, double *out);
int bm_attr_str(const bm_attr *a, bm_str *out);
/* tag "ints" (or an all-int "list", which is how an empty tuple encodes). */
int bm_attr_ints(const bm_attr *a, int64_t *out, uint32_t cap, uint32_t *n);
int bm_attr_floats(const bm_attr *a, double *out, uint32_t cap, uint32_t *n);
/* tag "bytes": base64 decoded into out (cap bytes). */
int bm_attr_bytes(const bm_attr *a, uint8_t *out, size_t cap, size_t *n);
/* tag "tensor": dtype, shape, and the base64 data decoded into out. */
int bm_attr_tensor(const bm_attr *a, bm_str *dtype, int64_t *dims,
                   uint32_t dims_cap, uint32_t *rank, uint8_t *out,
                   size_t cap, size_t *n);
/* tag "graph": the nested graph (e.g. a composite's body). */
int bm_attr_graph(const bm_attr *a, bm_graph *out);

/* A named dimension's value, to evaluate symbolic expressions. */
typedef struct {
    const char *name;
    int64_t value;
} bm_dim;

/* Evaluate an "expr" payload (or an "int"): dims bind the named dims. */
int bm_expr_eval(bm_val payload, const bm_dim *dims, size_t n_dims,
                 int64_t *out);
/* Standard base64 with padding, as the writer emits; BM_E_FORMAT otherwise. */
int bm_base64_decode(const char *src, size_t len, uint8_t *out, size_t cap,
                     size_t *n);

/* ------------------------------------------------------------------------
 * constants
 * --------------------------------------------------------------------- */

typedef struct {
    bm_str name, dtype;
    uint32_t rank;
    int64_t dims[BM_MAX_CONST_RANK];
    uint32_t itemsize;
    const uint8_t *data; /* little-endian elements, inside the buffer */
    uint64_t nbytes;
} bm_const;

int bm_const_at(const bm_model *m, uint32_t i, bm_const *out);
/* The last entry with that name (as the reference reader keeps). */
int bm_const_find(const bm_model *m, bm_str name, bm_const *out);

typedef struct {
    bm_str symbol, backend, backend_version;
    const uint8_t *data;
    uint64_t nbytes;
} bm_engine;

int bm_engine_at(const bm_model *m, uint32_t i, bm_engine *out);

/* Bytes per element of a canonical dtype name; 0 for an unknown name. */
uint32_t bm_dtype_size(bm_str dtype);

/* ------------------------------------------------------------------------
 * executor
 * --------------------------------------------------------------------- */

/* One entry of the caller-provided tensor table (contents are private). */
typedef struct {
    const void *data;
    uint64_t count;
    int64_t dims[BM_MAX_RANK];
    uint32_t rank;
    int32_t dtype;
} bm_slot;

typedef struct {
    uint32_t n_inputs, n_outputs;
    uint64_t arena_size; /* bytes the plan needs: bm_exec_run refuses fewer */
    uint32_t n_slots;    /* bm_slot entries bm_exec_run needs (one per node) */
} bm_exec_info;

/* What a subgraph needs to run: its I/O counts, arena and slot table. */
int bm_exec_info_get(const bm_model *m, uint32_t sg, bm_exec_info *info,
                     bm_status *st);
/* Name, rank and dims of input (is_output = 0) or output i. */
int bm_exec_io(const bm_model *m, uint32_t sg, int is_output, uint32_t i,
               bm_str *name, uint32_t *rank, int64_t dims[BM_MAX_RANK],
               bm_status *st);

typedef struct {
    const float *const *inputs; /* one per graph input, in node order */
    const uint64_t *input_counts; /* elements in each input buffer */
    uint32_t n_inputs;
    float *const *outputs; /* one per graph head, in head order */
    const uint64_t *output_counts;
    uint32_t n_outputs;
    void *arena; /* >= arena_size bytes, 4-byte aligned (16 recommended) */
    uint64_t arena_size;
    bm_slot *slots; /* >= n_slots entries */
    uint64_t n_slots;
} bm_run_args;

/* Run subgraph sg. Everything is checked before any kernel reads it. */
int bm_exec_run(const bm_model *m, uint32_t sg, const bm_run_args *a,
                bm_status *st);
/*
 * Everything bm_exec_run checks, without running kernels: inputs and outputs
 * may be NULL (only their counts are checked when given), and the arena
 * pointer may be NULL (its size is still checked).
 */
int bm_exec_check(const bm_model *m, uint32_t sg, const bm_run_args *a,
                  bm_status *st);

/* sizeof(bm_model) and sizeof(bm_slot), for bindings (ctypes). */
size_t bm_model_size(void);
size_t bm_slot_size(void);

#ifdef __cplusplus
}
#endif
#endif /* BYOC_MICRO_H */
