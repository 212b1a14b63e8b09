/*
 * bm_internal.h -- declarations shared by the reader, executor and kernels;
 * not part of the public API.
 */
#ifndef BM_INTERNAL_H
#define BM_INTERNAL_H

#include "byoc_micro.h"

/* Deepest msgpack nesting bm_open accepts (graphs nest ~5 levels per graph). */
#define BM_MP_MAX_DEPTH 200
/* Deepest attribute / nested-graph / expression nesting, as the Python reader. */
#define BM_MAX_ATTR_DEPTH 32

/* Record a failure in st (when given) and return code. printf-style. */
int bm_fail(bm_status *st, int code, long node, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Check that [p, end) holds exactly one well-formed msgpack object whose map
 * keys are strings (or bin) and whose strings are valid UTF-8. */
int bm_mp_validate(const uint8_t *p, const uint8_t *end, const uint8_t **after);

/* Full structural check of a graph map (what the Python reader enforces). */
int bm_graph_check(bm_val v, int depth, bm_status *st);

/* Canonical element-type codes (the executor only computes on F32). */
enum { BM_DT_OTHER = 0, BM_DT_F32 = 1, BM_DT_I64 = 2 };
int bm_dtype_code(bm_str dtype);

/* a * b without overflow past limit; BM_E_LIMIT otherwise. */
int bm_mul_checked(uint64_t a, uint64_t b, uint64_t limit, uint64_t *out);

/* ------------------------------------------------------------------------
 * kernels (bm_ops.c): one prepare + run pair per operator
 * --------------------------------------------------------------------- */

#define BM_MAX_OP_INPUTS 5
/* Largest dim the executor accepts: keeps every index product in int64. */
#define BM_MAX_DIM ((int64_t)1 << 31)
/* Most elements in one tensor: 4 * count must not wrap a uint64 (a wrapped
 * byte count would slip past the arena bound check). */
#define BM_MAX_COUNT ((uint64_t)1 << 60)

/* Sliding-window geometry of Conv and the pools, always 2-D: a 1-D op is
 * run as 2-D with a height of one. */
typedef struct {
    int64_t n, c, h, w;    /* input */
    int64_t m, oh, ow;     /* output channels and size */
    int64_t kh, kw, sh, sw, dh, dw, ph, pw; /* kernel, strides, dilations, pads */
    int64_t ph_end, pw_end;
    int64_t group;
    int has_bias, count_include_pad;
} bm_window;

typedef struct {
    int64_t m, n, k;
    int trans_a, trans_b, has_c;
    double alpha, beta;
    int64_t c_rs, c_cs; /* C's element (i, j) is at i * c_rs + j * c_cs */
} bm_gemm;

typedef struct {
    uint32_t batch_rank;
    int64_t batch[BM_MAX_RANK];
    int64_t a_bs[BM_MAX_RANK], b_bs[BM_MAX_RANK]; /* batch strides, 0 = broadcast */
    int64_t m, n, k;
} bm_matmul;

typedef struct {
    uint32_t rank;
    int64_t dims[BM_MAX_RANK];
    int64_t as[BM_MAX_RANK], bs[BM_MAX_RANK]; /* strides, 0 = broadcast */
} bm_bcast;

typedef struct {
    const bm_slot *in[BM_MAX_OP_INPUTS]; /* NULL: an omitted optional input */
    uint32_t n_in;
    const bm_slot *declared; /* the node's own shape (what prepare must produce) */
    bm_slot out;   /* shape computed by prepare */
    float *y;      /* where run writes (never NULL when run is called) */
    const bm_node *node;
    long nid;
    bm_status *st;
    union {
        bm_window win;
        bm_gemm gemm;
        bm_matmul mm;
        bm_bcast bc;
        struct { int64_t outer, len, inner; } sm;
        struct { double lo, hi; } clip;
        struct { int64_t n, c, inner; double eps; } bn;
        struct { int64_t planes, size; } gap;
    } p;
} bm_op_ctx;

enum {
    BM_OP_VIEW = 1 /* output may alias input 0 (a reshape: same bytes) */
};

typedef struct {
    const char *name;
    uint32_t min_in, max_in;
    uint32_t unread; /* bit i: input i is never read (its dtype is free) */
    unsigned flags;
    int (*prepare)(bm_op_ctx *c);
    void (*run)(const bm_op_ctx *c);
} bm_op;

const bm_op *bm_op_find(bm_str name);

#endif /* BM_INTERNAL_H */
