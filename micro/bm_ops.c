/*
 * bm_ops.c -- the fp32 kernels of the micro executor: one prepare/run pair
 * per operator, registered in one table keyed by the ONNX op name.
 *
 * prepare() checks attributes and input shapes exactly as the Python side's
 * `supports` does (plugins/byoc-micro/byoc_micro/ops) and computes the output
 * shape, which the executor compares with the node's declared shape before
 * any kernel runs. run() then cannot fail and never indexes past the shapes
 * prepare() accepted. Sums and transcendental functions are evaluated in
 * double and rounded once, like the numpy reference backend, so results agree
 * with it to well within 1e-4.
 *
 * Kernels never use `restrict`: the memory plan runs element-wise ops in
 * place (output over a dying input of the same shape), which only these
 * index-for-index loops allow.
 */
#include <math.h>
#include <string.h>

#include "bm_internal.h"

/* ------------------------------------------------------------------------
 * helpers
 * --------------------------------------------------------------------- */

#define IN(c, i) ((const float *)(c)->in[i]->data)

static int unsupported(bm_op_ctx *c, const char *what)
{
    return bm_fail(c->st, BM_E_UNSUPPORTED, c->nid, "micro: %.*s %s",
                   (int)c->node->name.len, c->node->name.ptr, what);
}

static int malformed(bm_op_ctx *c, const char *what)
{
    return bm_fail(c->st, BM_E_FORMAT, c->nid, "micro: %.*s %s",
                   (int)c->node->name.len, c->node->name.ptr, what);
}

static int set_out(bm_op_ctx *c, uint32_t rank, const int64_t *dims)
{
    uint32_t k;
    uint64_t count = 1;
    c->out.rank = rank;
    for (k = 0; k < rank; k++) {
        if (dims[k] <= 0 || dims[k] >= BM_MAX_DIM) {
            return unsupported(c, "would produce an empty or oversized tensor");
        }
        c->out.dims[k] = dims[k];
        if (bm_mul_checked(count, (uint64_t)dims[k], BM_MAX_COUNT,
                           &count) != BM_OK) {
            return bm_fail(c->st, BM_E_LIMIT, c->nid, "tensor too large");
        }
    }
    c->out.count = count;
    c->out.dtype = BM_DT_F32;
    return BM_OK;
}

static int copy_in_shape(bm_op_ctx *c, uint32_t i)
{
    return set_out(c, c->in[i]->rank, c->in[i]->dims);
}

/* Optional int attribute; BM_E_FORMAT when present with another type. */
static int attr_int(bm_op_ctx *c, const char *key, int64_t dflt, int64_t *out)
{
    bm_attr a;
    int rc = bm_node_attr(c->node, key, &a);
    if (rc == BM_E_NOT_FOUND) {
        *out = dflt;
        return BM_OK;
    }
    if (rc != BM_OK || bm_attr_int(&a, out) != BM_OK) {
        return bm_fail(c->st, BM_E_FORMAT, c->nid, "attribute %s must be an int",
                       key);
    }
    return BM_OK;
}

static int attr_float(bm_op_ctx *c, const char *key, double dflt, double *out)
{
    bm_attr a;
    int rc = bm_node_attr(c->node, key, &a);
    if (rc == BM_E_NOT_FOUND) {
        *out = dflt;
        return BM_OK;
    }
    if (rc != BM_OK || bm_attr_float(&a, out) != BM_OK) {
        return bm_fail(c->st, BM_E_FORMAT, c->nid,
                       "attribute %s must be a float", key);
    }
    return BM_OK;
}

/* Optional ints attribute of exactly n values each in [lo, hi]; absent gives
 * dflt for every value. */
static int attr_ints(bm_op_ctx *c, const char *key, uint32_t n, int64_t lo,
                     int64_t hi, int64_t dflt, int64_t *out)
{
    bm_attr a;
    uint32_t got, k;
    int rc = bm_node_attr(c->node, key, &a);
    if (rc == BM_E_NOT_FOUND) {
        for (k = 0; k < n; k++) {
            out[k] = dflt;
        }
        return BM_OK;
    }
    if (rc != BM_OK || bm_attr_ints(&a, out, n, &got) != BM_OK || got != n) {
        return bm_fail(c->st, BM_E_UNSUPPORTED, c->nid,
                       "micro: attribute %s must hold %u ints", key, (unsigned)n);
    }
    for (k = 0; k < n; k++) {
        if (out[k] < lo || out[k] > hi) {
            return bm_fail(c->st, BM_E_UNSUPPORTED, c->nid,
                           "micro: attribute %s value %lld outside [%lld, %lld]",
                           key, (long long)out[k], (long long)lo, (long long)hi);
        }
    }
    return BM_OK;
}

enum { PAD_EXPLICIT, PAD_VALID, PAD_SAME_UPPER, PAD_SAME_LOWER };

/* auto_pad: absent/NOTSET (explicit pads), VALID, SAME_UPPER or SAME_LOWER. */
static int auto_pad(bm_op_ctx *c, int *mode)
{
    bm_attr a;
    bm_str s;
    int rc = bm_node_attr(c->node, "auto_pad", &a);
    *mode = PAD_EXPLICIT;
    if (rc == BM_E_NOT_FOUND) {
        return BM_OK;
    }
    if (rc != BM_OK || bm_attr_str(&a, &s) != BM_OK) {
        return malformed(c, "auto_pad must be a string");
    }
    if (bm_str_eq(s, "NOTSET") || s.len == 0) {
        return BM_OK;
    }
    if (bm_str_eq(s, "VALID")) {
        *mode = PAD_VALID;
    } else if (bm_str_eq(s, "SAME_UPPER")) {
        *mode = PAD_SAME_UPPER;
    } else if (bm_str_eq(s, "SAME_LOWER")) {
        *mode = PAD_SAME_LOWER;
    } else {
        return unsupported(c, "has an unknown auto_pad");
    }
    return BM_OK;
}

static int need_rank(bm_op_ctx *c, uint32_t i, uint32_t lo, uint32_t hi)
{
    if (c->in[i] == NULL || c->in[i]->rank < lo || c->in[i]->rank > hi) {
        return unsupported(c, "has an input of unsupported rank");
    }
    return BM_OK;
}

/* ------------------------------------------------------------------------
 * element-wise
 * --------------------------------------------------------------------- */

static int prep_unary(bm_op_ctx *c)
{
    return copy_in_shape(c, 0);
}

static void run_relu(const bm_op_ctx *c)
{
    const float *x = IN(c, 0);
    uint64_t i;
    for (i = 0; i < c->out.count; i++) {
        /* NaN < 0 is false, so NaN passes through as numpy.maximum keeps it */
        c->y[i] = x[i] < 0.0f ? 0.0f : x[i];
    }
}

static void run_sigmoid(const bm_op_ctx *c)
{
    const float *x = IN(c, 0);
    uint64_t i;
    for (i = 0; i < c->out.count; i++) {
        c->y[i] = (float)(1.0 / (1.0 + exp(-(double)x[i])));
    }
}

static int scalar_bound(bm_op_ctx *c, uint32_t i, double dflt, double *out)
{
    if (i >= c->n_in || c->in[i] == NULL) {
        *out = dflt;
        return BM_OK;
    }
    if (c->in[i]->count != 1) {
        return unsupported(c, "min/max must be scalars");
    }
    if (c->in[i]->data != NULL) {
        *out = IN(c, i)[0];
    }
    return BM_OK;
}

static int prep_clip(bm_op_ctx *c)
{
    bm_attr a;
    int rc;
    if (bm_node_attr(c->node, "min", &a) == BM_OK ||
        bm_node_attr(c->node, "max", &a) == BM_OK) {
        return unsupported(c, "with min/max attributes (opset < 11)");
    }
    /* the bounds are read at prepare time: they are tiny tensors, and in a
     * dry run (no data) the defaults stand in */
    rc = scalar_bound(c, 1, -INFINITY, &c->p.clip.lo);
    if (rc == BM_OK) {
        rc = scalar_bound(c, 2, INFINITY, &c->p.clip.hi);
    }
    return rc != BM_OK ? rc : copy_in_shape(c, 0);
}

static void run_clip(const bm_op_ctx *c)
{
    const float *x = IN(c, 0);
    const float lo = (float)c->p.clip.lo, hi = (float)c->p.clip.hi;
    uint64_t i;
    for (i = 0; i < c->out.count; i++) {
        float v = x[i];
        /* max then min: when min > max everything becomes max (ONNX) */
        if (v < lo) {
            v = lo;
        }
        if (v > hi) {
            v = hi;
        }
        c->y[i] = v;
    }
}

/* Multidirectional (numpy) broadcasting of inputs 0 and 1. */
static int prep_binary(bm_op_ctx *c)
{
    const bm_slot *a = c->in[0], *b = c->in[1];
    uint32_t r = a->rank > b->rank ? a->rank : b->rank, k;
    int64_t as = 1, bs = 1;
    bm_bcast *bc = &c->p.bc;
    bc->rank = r;
    for (k = r; k-- > 0;) {
        int64_t da = k + a->rank >= r ? a->dims[k + a->rank - r] : 1;
        int64_t db = k + b->rank >= r ? b->dims[k + b->rank - r] : 1;
        if (da != db && da != 1 && db != 1) {
            return malformed(c, "inputs do not broadcast");
        }
        bc->dims[k] = da > db ? da : db;
        bc->as[k] = da == 1 ? 0 : as;
        bc->bs[k] = db == 1 ? 0 : bs;
        as *= da;
        bs *= db;
    }
    return set_out(c, r, bc->dims);
}

static void run_binary(const bm_op_ctx *c, int mul)
{
    const bm_bcast *bc = &c->p.bc;
    const float *a = IN(c, 0), *b = IN(c, 1);
    int64_t idx[BM_MAX_RANK] = {0};
    uint32_t r = bc->rank;
    int64_t inner = r ? bc->dims[r - 1] : 1;
    int64_t ia = r ? bc->as[r - 1] : 0, ib = r ? bc->bs[r - 1] : 0;
    uint64_t o = 0;
    int64_t offa = 0, offb = 0;
    /* an odometer over the outer dims; the innermost dim is a plain loop */
    while (o < c->out.count) {
        int64_t j;
        int k;
        if (mul) {
            for (j = 0; j < inner; j++) {
                c->y[o + (uint64_t)j] = a[offa + j * ia] * b[offb + j * ib];
            }
        } else {
            for (j = 0; j < inner; j++) {
                c->y[o + (uint64_t)j] = a[offa + j * ia] + b[offb + j * ib];
            }
        }
        o += (uint64_t)inner;
        for (k = (int)r - 2; k >= 0; k--) {
            idx[k]++;
            offa += bc->as[k];
            offb += bc->bs[k];
            if (idx[k] < bc->dims[k]) {
                break;
            }
            offa -= bc->as[k] * idx[k];
            offb -= bc->bs[k] * idx[k];
            idx[k] = 0;
        }
    }
}

static void run_add(const bm_op_ctx *c)
{
    run_binary(c, 0);
}

static void run_mul(const bm_op_ctx *c)
{
    run_binary(c, 1);
}

/* ------------------------------------------------------------------------
 * matrix products
 * --------------------------------------------------------------------- */

/* y[i, j] = sum_k a(i, k) * b(k, j) in double, 16 columns at a time so the
 * accumulators stay in registers and b is read row by row. */
#define TILE 16

static void matmul2d(const float *a, int64_t a_rs, int64_t a_cs,
                     const float *b, int64_t b_rs, int64_t b_cs, float *y,
                     int64_t m, int64_t n, int64_t k, double alpha,
                     const float *cm, int64_t c_rs, int64_t c_cs, double beta)
{
    int64_t i, j0, kk;
    for (i = 0; i < m; i++) {
        for (j0 = 0; j0 < n; j0 += TILE) {
            double acc[TILE];
            int64_t w = n - j0 < TILE ? n - j0 : TILE, jj;
            for (jj = 0; jj < w; jj++) {
                acc[jj] = 0.0;
            }
            for (kk = 0; kk < k; kk++) {
                const double av = a[i * a_rs + kk * a_cs];
                const float *brow = b + kk * b_rs + j0 * b_cs;
                for (jj = 0; jj < w; jj++) {
                    acc[jj] += av * brow[jj * b_cs];
                }
            }
            for (jj = 0; jj < w; jj++) {
                double v = alpha * acc[jj];
                if (cm != NULL) {
                    v += beta * cm[i * c_rs + (j0 + jj) * c_cs];
                }
                y[i * n + j0 + jj] = (float)v;
            }
        }
    }
}

static int prep_gemm(bm_op_ctx *c)
{
    bm_gemm *g = &c->p.gemm;
    const bm_slot *a = c->in[0], *b = c->in[1];
    int64_t ta, tb, k2, dims[2];
    int rc;
    if (need_rank(c, 0, 2, 2) || need_rank(c, 1, 2, 2)) {
        return BM_E_UNSUPPORTED;
    }
    if ((rc = attr_int(c, "transA", 0, &ta)) != BM_OK ||
        (rc = attr_int(c, "transB", 0, &tb)) != BM_OK ||
        (rc = attr_float(c, "alpha", 1.0, &g->alpha)) != BM_OK ||
        (rc = attr_float(c, "beta", 1.0, &g->beta)) != BM_OK) {
        return rc;
    }
    g->trans_a = ta != 0;
    g->trans_b = tb != 0;
    g->m = g->trans_a ? a->dims[1] : a->dims[0];
    g->k = g->trans_a ? a->dims[0] : a->dims[1];
    k2 = g->trans_b ? b->dims[1] : b->dims[0];
    g->n = g->trans_b ? b->dims[0] : b->dims[1];
    if (k2 != g->k) {
        return malformed(c, "inner dimensions differ");
    }
    g->has_c = c->n_in > 2 && c->in[2] != NULL;
    g->c_rs = g->c_cs = 0;
    if (g->has_c) {
        const bm_slot *cm = c->in[2];
        int64_t rows = cm->rank == 2 ? cm->dims[0] : 1;
        int64_t cols = cm->rank >= 1 ? cm->dims[cm->rank - 1] : 1;
        if (cm->rank > 2 || (rows != 1 && rows != g->m) ||
            (cols != 1 && cols != g->n)) {
            return malformed(c, "C does not broadcast to (M, N)");
        }
        g->c_rs = rows == 1 ? 0 : cols;
        g->c_cs = cols == 1 ? 0 : 1;
    }
    dims[0] = g->m;
    dims[1] = g->n;
    return set_out(c, 2, dims);
}

static void run_gemm(const bm_op_ctx *c)
{
    const bm_gemm *g = &c->p.gemm;
    const float *a = IN(c, 0), *b = IN(c, 1);
    /* A is (M, K) or, transposed, (K, M); B likewise: strides do the rest */
    int64_t a_rs = g->trans_a ? 1 : g->k, a_cs = g->trans_a ? g->m : 1;
    int64_t b_rs = g->trans_b ? 1 : g->n, b_cs = g->trans_b ? g->k : 1;
    matmul2d(a, a_rs, a_cs, b, b_rs, b_cs, c->y, g->m, g->n, g->k, g->alpha,
             g->has_c ? IN(c, 2) : NULL, g->c_rs, g->c_cs, g->beta);
}

/* numpy.matmul: 1-D operands are promoted (and the added dim dropped), the
 * batch dims broadcast. */
static int prep_matmul(bm_op_ctx *c)
{
    bm_matmul *mm = &c->p.mm;
    const bm_slot *a = c->in[0], *b = c->in[1];
    uint32_t ra = a->rank, rb = b->rank, abr, bbr, r, k, rank = 0;
    int64_t ka, kb, as = 1, bs = 1, dims[BM_MAX_RANK];
    if (ra < 1 || rb < 1) {
        return unsupported(c, "on scalars");
    }
    mm->m = ra >= 2 ? a->dims[ra - 2] : 1;
    ka = a->dims[ra - 1];
    kb = rb >= 2 ? b->dims[rb - 2] : b->dims[0];
    mm->n = rb >= 2 ? b->dims[rb - 1] : 1;
    if (ka != kb) {
        return malformed(c, "inner dimensions differ");
    }
    mm->k = ka;
    abr = ra >= 2 ? ra - 2 : 0;
    bbr = rb >= 2 ? rb - 2 : 0;
    r = abr > bbr ? abr : bbr;
    if (r + 2 > BM_MAX_RANK) {
        return unsupported(c, "with too many batch dims");
    }
    mm->batch_rank = r;
    as = mm->m * mm->k;
    bs = mm->k * mm->n;
    for (k = r; k-- > 0;) {
        int64_t da = k + abr >= r ? a->dims[k + abr - r] : 1;
        int64_t db = k + bbr >= r ? b->dims[k + bbr - r] : 1;
        if (da != db && da != 1 && db != 1) {
            return malformed(c, "batch dimensions do not broadcast");
        }
        mm->batch[k] = da > db ? da : db;
        mm->a_bs[k] = da == 1 ? 0 : as;
        mm->b_bs[k] = db == 1 ? 0 : bs;
        as *= da;
        bs *= db;
    }
    for (k = 0; k < r; k++) {
        dims[rank++] = mm->batch[k];
    }
    if (ra >= 2) {
        dims[rank++] = mm->m;
    }
    if (rb >= 2) {
        dims[rank++] = mm->n;
    }
    return set_out(c, rank, dims);
}

static void run_matmul(const bm_op_ctx *c)
{
    const bm_matmul *mm = &c->p.mm;
    const float *a = IN(c, 0), *b = IN(c, 1);
    int64_t idx[BM_MAX_RANK] = {0}, offa = 0, offb = 0;
    uint64_t o = 0, plane = (uint64_t)(mm->m * mm->n);
    while (o < c->out.count) {
        int k;
        matmul2d(a + offa, mm->k, 1, b + offb, mm->n, 1, c->y + o, mm->m,
                 mm->n, mm->k, 1.0, NULL, 0, 0, 0.0);
        o += plane;
        for (k = (int)mm->batch_rank - 1; k >= 0; k--) {
            idx[k]++;
            offa += mm->a_bs[k];
            offb += mm->b_bs[k];
            if (idx[k] < mm->batch[k]) {
                break;
            }
            offa -= mm->a_bs[k] * idx[k];
            offb -= mm->b_bs[k] * idx[k];
            idx[k] = 0;
        }
    }
}

/* ------------------------------------------------------------------------
 * convolution and pools
 * --------------------------------------------------------------------- */

/* Fill the spatial part of w from x's shape, the kernel size and the
 * strides/dilations/pads attributes (ONNX's rules, as the reference's
 * _common.window). */
static int window(bm_op_ctx *c, bm_window *w, const int64_t *kernel,
                  int ceil_mode)
{
    const bm_slot *x = c->in[0];
    uint32_t nd = x->rank - 2, k;
    int64_t strides[2], dil[2], pads[4], in[2], ks[2], out[2];
    int mode, rc;
    if ((rc = auto_pad(c, &mode)) != BM_OK ||
        (rc = attr_ints(c, "strides", nd, 1, 1 << 20, 1, strides)) != BM_OK ||
        (rc = attr_ints(c, "dilations", nd, 1, 1 << 20, 1, dil)) != BM_OK ||
        (rc = attr_ints(c, "pads", 2 * nd, 0, 1 << 20, 0, pads)) != BM_OK) {
        return rc;
    }
    for (k = 0; k < nd; k++) {
        int64_t span = (kernel[k] - 1) * dil[k] + 1, room, b, e;
        in[k] = x->dims[2 + k];
        ks[k] = kernel[k];
        b = mode == PAD_EXPLICIT ? pads[k] : 0;
        e = mode == PAD_EXPLICIT ? pads[nd + k] : 0;
        if (mode == PAD_SAME_UPPER || mode == PAD_SAME_LOWER) {
            /* out = ceil(in / stride); the odd pad goes to the end (UPPER)
             * or the start (LOWER), as onnxruntime and the reference do */
            int64_t o = (in[k] + strides[k] - 1) / strides[k];
            int64_t total = (o - 1) * strides[k] + span - in[k];
            total = total > 0 ? total : 0;
            b = mode == PAD_SAME_UPPER ? total / 2 : total - total / 2;
            e = total - b;
            out[k] = o;
            pads[k] = b;
            pads[nd + k] = e;
            continue;
        }
        room = in[k] + b + e - span;
        if (room < 0) {
            return unsupported(c, "window larger than the padded input");
        }
        if (ceil_mode) {
            out[k] = (room + strides[k] - 1) / strides[k] + 1;
            /* a last window starting in the end padding is dropped */
            if ((out[k] - 1) * strides[k] >= in[k] + b) {
                out[k]--;
            }
        } else {
            out[k] = room / strides[k] + 1;
        }
        pads[k] = b;
        pads[nd + k] = e;
    }
    w->n = x->dims[0];
    w->c = x->dims[1];
    /* a 1-D window is a 2-D one of height 1 */
    w->h = nd == 2 ? in[0] : 1;
    w->w = in[nd - 1];
    w->oh = nd == 2 ? out[0] : 1;
    w->ow = out[nd - 1];
    w->kh = nd == 2 ? ks[0] : 1;
    w->kw = ks[nd - 1];
    w->sh = nd == 2 ? strides[0] : 1;
    w->sw = strides[nd - 1];
    w->dh = nd == 2 ? dil[0] : 1;
    w->dw = dil[nd - 1];
    w->ph = nd == 2 ? pads[0] : 0;
    w->pw = pads[nd - 1];
    w->ph_end = nd == 2 ? pads[2] : 0;
    w->pw_end = pads[2 * nd - 1];
    return BM_OK;
}

static int window_out(bm_op_ctx *c, const bm_window *w, int64_t channels)
{
    int64_t dims[4];
    dims[0] = w->n;
    dims[1] = channels;
    if (c->in[0]->rank == 4) {
        dims[2] = w->oh;
        dims[3] = w->ow;
        return set_out(c, 4, dims);
    }
    dims[2] = w->ow;
    return set_out(c, 3, dims);
}

static int prep_conv(bm_op_ctx *c)
{
    bm_window *w = &c->p.win;
    const bm_slot *x = c->in[0], *wt = c->in[1];
    int64_t kernel[2], ks[2], m;
    uint32_t nd, k;
    bm_attr a;
    int rc;
    if (need_rank(c, 0, 3, 4)) {
        return BM_E_UNSUPPORTED;
    }
    nd = x->rank - 2;
    if (wt->rank != x->rank) {
        return malformed(c, "weight rank differs from the input rank");
    }
    for (k = 0; k < nd; k++) {
        kernel[k] = wt->dims[2 + k];
    }
    if (bm_node_attr(c->node, "kernel_shape", &a) == BM_OK) {
        if ((rc = attr_ints(c, "kernel_shape", nd, 1, BM_MAX_DIM, 1, ks)) != BM_OK) {
            return rc;
        }
        for (k = 0; k < nd; k++) {
            if (ks[k] != kernel[k]) {
                return malformed(c, "kernel_shape differs from the weight");
            }
        }
    }
    if ((rc = attr_int(c, "group", 1, &w->group)) != BM_OK) {
        return rc;
    }
    m = wt->dims[0];
    if (w->group < 1 || x->dims[1] % w->group != 0 || m % w->group != 0 ||
        wt->dims[1] * w->group != x->dims[1]) {
        return malformed(c, "group does not divide the channels");
    }
    w->has_bias = c->n_in > 2 && c->in[2] != NULL;
    if (w->has_bias && (c->in[2]->rank != 1 || c->in[2]->dims[0] != m)) {
        return malformed(c, "bias must have one value per output channel");
    }
    if ((rc = window(c, w, kernel, 0)) != BM_OK) {
        return rc;
    }
    w->m = m;
    return window_out(c, w, m);
}

static void run_conv(const bm_op_ctx *c)
{
    const bm_window *w = &c->p.win;
    const float *x = IN(c, 0), *wt = IN(c, 1);
    const float *bias = w->has_bias ? IN(c, 2) : NULL;
    const int64_t cg = w->c / w->group, mg = w->m / w->group;
    int64_t n, m, oh, ow, ci, kh, kw;
    for (n = 0; n < w->n; n++) {
        for (m = 0; m < w->m; m++) {
            const int64_t g = m / mg;
            const float *wm = wt + m * cg * w->kh * w->kw;
            float *ym = c->y + (n * w->m + m) * w->oh * w->ow;
            for (oh = 0; oh < w->oh; oh++) {
                for (ow = 0; ow < w->ow; ow++) {
                    double acc = bias != NULL ? bias[m] : 0.0;
                    const int64_t h0 = oh * w->sh - w->ph, w0 = ow * w->sw - w->pw;
                    for (ci = 0; ci < cg; ci++) {
                        const float *xc =
                            x + (n * w->c + g * cg + ci) * w->h * w->w;
                        const float *wc = wm + ci * w->kh * w->kw;
                        for (kh = 0; kh < w->kh; kh++) {
                            const int64_t ih = h0 + kh * w->dh;
                            if (ih < 0 || ih >= w->h) {
                                continue;
                            }
                            for (kw = 0; kw < w->kw; kw++) {
                                const int64_t iw = w0 + kw * w->dw;
                                if (iw < 0 || iw >= w->w) {
                                    continue;
                                }
                                acc += (double)xc[ih * w->w + iw] *
                                       wc[kh * w->kw + kw];
                            }
                        }
                    }
                    ym[oh * w->ow + ow] = (float)acc;
                }
            }
        }
    }
}

static int prep_pool(bm_op_ctx *c, int is_avg)
{
    bm_window *w = &c->p.win;
    int64_t kernel[2], ceil_mode, cip = 0;
    uint32_t nd;
    bm_attr a;
    int rc;
    if (need_rank(c, 0, 3, 4)) {
        return BM_E_UNSUPPORTED;
    }
    nd = c->in[0]->rank - 2;
    if (bm_node_attr(c->node, "kernel_shape", &a) != BM_OK) {
        return malformed(c, "needs kernel_shape");
    }
    if ((rc = attr_ints(c, "kernel_shape", nd, 1, BM_MAX_DIM, 1, kernel)) !=
            BM_OK ||
        (rc = attr_int(c, "ceil_mode", 0, &ceil_mode)) != BM_OK) {
        return rc;
    }
    if (is_avg && (rc = attr_int(c, "count_include_pad", 0, &cip)) != BM_OK) {
        return rc;
    }
    if ((rc = window(c, w, kernel, ceil_mode != 0)) != BM_OK) {
        return rc;
    }
    w->count_include_pad = cip != 0;
    w->m = w->c;
    return window_out(c, w, w->c);
}

static int prep_maxpool(bm_op_ctx *c)
{
    return prep_pool(c, 0);
}

static int prep_avgpool(bm_op_ctx *c)
{
    return prep_pool(c, 1);
}

/* Taps of one window along one dim that fall in [lo, hi). */
static int64_t taps_in(int64_t start, int64_t k, int64_t d, int64_t lo,
                       int64_t hi)
{
    int64_t t, n = 0;
    for (t = 0; t < k; t++) {
        const int64_t pos = start + t * d;
        n += pos >= lo && pos < hi;
    }
    return n;
}

static void run_pool(const bm_op_ctx *c, int is_avg)
{
    const bm_window *w = &c->p.win;
    const float *x = IN(c, 0);
    int64_t plane, oh, ow, kh, kw;
    for (plane = 0; plane < w->n * w->c; plane++) {
        const float *xp = x + plane * w->h * w->w;
        float *yp = c->y + plane * w->oh * w->ow;
        for (oh = 0; oh < w->oh; oh++) {
            const int64_t h0 = oh * w->sh - w->ph;
            for (ow = 0; ow < w->ow; ow++) {
                const int64_t w0 = ow * w->sw - w->pw;
                double sum = 0.0;
                float best = -INFINITY;
                for (kh = 0; kh < w->kh; kh++) {
                    const int64_t ih = h0 + kh * w->dh;
                    if (ih < 0 || ih >= w->h) {
                        continue;
                    }
                    for (kw = 0; kw < w->kw; kw++) {
                        const int64_t iw = w0 + kw * w->dw;
                        float v;
                        if (iw < 0 || iw >= w->w) {
                            continue;
                        }
                        v = xp[ih * w->w + iw];
                        sum += v;
                        /* once NaN, stays NaN: numpy's max propagates it */
                        if (best == best && (v > best || v != v)) {
                            best = v;
                        }
                    }
                }
                if (is_avg) {
                    /* real pixels, or with count_include_pad the padded
                     * input (never the extra room ceil_mode adds) */
                    int64_t lo_h = 0, hi_h = w->h, lo_w = 0, hi_w = w->w;
                    if (w->count_include_pad) {
                        lo_h = -w->ph;
                        hi_h = w->h + w->ph_end;
                        lo_w = -w->pw;
                        hi_w = w->w + w->pw_end;
                    }
                    yp[oh * w->ow + ow] =
                        (float)(sum /
                                (double)(taps_in(h0, w->kh, w->dh, lo_h, hi_h) *
                                         taps_in(w0, w->kw, w->dw, lo_w, hi_w)));
                } else {
                    yp[oh * w->ow + ow] = best;
                }
            }
        }
    }
}

static void run_maxpool(const bm_op_ctx *c)
{
    run_pool(c, 0);
}

static void run_avgpool(const bm_op_ctx *c)
{
    run_pool(c, 1);
}

static int prep_gap(bm_op_ctx *c)
{
    const bm_slot *x = c->in[0];
    int64_t dims[BM_MAX_RANK];
    uint32_t k;
    if (need_rank(c, 0, 3, BM_MAX_RANK)) {
        return BM_E_UNSUPPORTED;
    }
    dims[0] = x->dims[0];
    dims[1] = x->dims[1];
    c->p.gap.planes = x->dims[0] * x->dims[1];
    c->p.gap.size = 1;
    for (k = 2; k < x->rank; k++) {
        dims[k] = 1;
        c->p.gap.size *= x->dims[k];
    }
    return set_out(c, x->rank, dims);
}

static void run_gap(const bm_op_ctx *c)
{
    const float *x = IN(c, 0);
    int64_t p, i;
    for (p = 0; p < c->p.gap.planes; p++) {
        double sum = 0.0;
        for (i = 0; i < c->p.gap.size; i++) {
            sum += x[p * c->p.gap.size + i];
        }
        c->y[p] = (float)(sum / (double)c->p.gap.size);
    }
}

/* ------------------------------------------------------------------------
 * normalisation, softmax
 * --------------------------------------------------------------------- */

static int prep_batchnorm(bm_op_ctx *c)
{
    const bm_slot *x = c->in[0];
    int64_t training;
    uint32_t k;
    int rc;
    if (need_rank(c, 0, 2, BM_MAX_RANK)) {
        return BM_E_UNSUPPORTED;
    }
    if ((rc = attr_int(c, "training_mode", 0, &training)) != BM_OK ||
        (rc = attr_float(c, "epsilon", 1e-5, &c->p.bn.eps)) != BM_OK) {
        return rc;
    }
    if (training != 0) {
        return unsupported(c, "in training mode");
    }
    for (k = 1; k < 5; k++) {
        if (c->in[k] == NULL || c->in[k]->rank != 1 ||
            c->in[k]->dims[0] != x->dims[1]) {
            return malformed(c, "scale, bias, mean and var need one value per "
                                "channel");
        }
    }
    c->p.bn.n = x->dims[0];
    c->p.bn.c = x->dims[1];
    c->p.bn.inner = 1;
    for (k = 2; k < x->rank; k++) {
        c->p.bn.inner *= x->dims[k];
    }
    return copy_in_shape(c, 0);
}

static void run_batchnorm(const bm_op_ctx *c)
{
    const float *x = IN(c, 0), *scale = IN(c, 1), *bias = IN(c, 2);
    const float *mean = IN(c, 3), *var = IN(c, 4);
    int64_t n, ch, i;
    for (n = 0; n < c->p.bn.n; n++) {
        for (ch = 0; ch < c->p.bn.c; ch++) {
            const double sd = sqrt((double)var[ch] + c->p.bn.eps);
            const int64_t base = (n * c->p.bn.c + ch) * c->p.bn.inner;
            for (i = 0; i < c->p.bn.inner; i++) {
                /* the reference's order of operations, in double */
                const double v = ((double)x[base + i] - mean[ch]) / sd;
                c->y[base + i] = (float)(v * scale[ch] + bias[ch]);
            }
        }
    }
}

static int norm_axis(bm_op_ctx *c, int64_t axis, int64_t rank, int64_t *out)
{
    if (axis < -rank || axis >= rank) {
        return malformed(c, "axis out of range");
    }
    *out = axis < 0 ? axis + rank : axis;
    return BM_OK;
}

static int prep_softmax(bm_op_ctx *c)
{
    const bm_slot *x = c->in[0];
    int64_t axis, k;
    int rc;
    if (need_rank(c, 0, 1, BM_MAX_RANK)) {
        return BM_E_UNSUPPORTED;
    }
    if ((rc = attr_int(c, "axis", -1, &axis)) != BM_OK ||
        (rc = norm_axis(c, axis, x->rank, &axis)) != BM_OK) {
        return rc;
    }
    c->p.sm.outer = 1;
    c->p.sm.inner = 1;
    for (k = 0; k < axis; k++) {
        c->p.sm.outer *= x->dims[k];
    }
    c->p.sm.len = x->dims[axis];
    for (k = axis + 1; k < (int64_t)x->rank; k++) {
        c->p.sm.inner *= x->dims[k];
    }
    return copy_in_shape(c, 0);
}

static void run_softmax(const bm_op_ctx *c)
{
    const float *x = IN(c, 0);
    const int64_t len = c->p.sm.len, inner = c->p.sm.inner;
    int64_t o, i, k;
    for (o = 0; o < c->p.sm.outer; o++) {
        for (i = 0; i < inner; i++) {
            const int64_t base = o * len * inner + i;
            double mx = -INFINITY, sum = 0.0;
            for (k = 0; k < len; k++) {
                const double v = x[base + k * inner];
                mx = v > mx ? v : mx;
            }
            for (k = 0; k < len; k++) {
                sum += exp((double)x[base + k * inner] - mx);
            }
            /* reads x[j] before writing y[j]: safe when run in place */
            for (k = 0; k < len; k++) {
                const int64_t j = base + k * inner;
                c->y[j] = (float)(exp((double)x[j] - mx) / sum);
            }
        }
    }
}

/* ------------------------------------------------------------------------
 * shape ops: the bytes do not change, only the shape
 * --------------------------------------------------------------------- */

static int prep_flatten(bm_op_ctx *c)
{
    const bm_slot *x = c->in[0];
    int64_t axis, dims[2] = {1, 1}, k;
    int rc;
    if ((rc = attr_int(c, "axis", 1, &axis)) != BM_OK) {
        return rc;
    }
    /* Flatten's axis may equal the rank */
    if (axis < -(int64_t)x->rank || axis > (int64_t)x->rank) {
        return malformed(c, "axis out of range");
    }
    if (axis < 0) {
        axis += x->rank;
    }
    for (k = 0; k < (int64_t)x->rank; k++) {
        dims[k < axis ? 0 : 1] *= x->dims[k];
    }
    return set_out(c, 2, dims);
}

static int prep_reshape(bm_op_ctx *c)
{
    /* the target shape is the node's (static) declared shape; the shape
     * input only told the importer what that is */
    int rc = set_out(c, c->declared->rank, c->declared->dims);
    if (rc == BM_OK && c->out.count != c->in[0]->count) {
        return malformed(c, "changes the element count");
    }
    return rc;
}

static void run_copy(const bm_op_ctx *c)
{
    if ((const void *)c->y != c->in[0]->data) {
        memmove(c->y, c->in[0]->data, (size_t)c->out.count * sizeof(float));
    }
}

/* ------------------------------------------------------------------------
 * the table
 * --------------------------------------------------------------------- */

static const bm_op OPS[] = {
    {"Add", 2, 2, 0, 0, prep_binary, run_add},
    {"AveragePool", 1, 1, 0, 0, prep_avgpool, run_avgpool},
    {"BatchNormalization", 5, 5, 0, 0, prep_batchnorm, run_batchnorm},
    {"Clip", 1, 3, 0, 0, prep_clip, run_clip},
    {"Conv", 2, 3, 0, 0, prep_conv, run_conv},
    {"Flatten", 1, 1, 0, BM_OP_VIEW, prep_flatten, run_copy},
    {"Gemm", 2, 3, 0, 0, prep_gemm, run_gemm},
    {"GlobalAveragePool", 1, 1, 0, 0, prep_gap, run_gap},
    {"MatMul", 2, 2, 0, 0, prep_matmul, run_matmul},
    {"MaxPool", 1, 1, 0, 0, prep_maxpool, run_maxpool},
    {"Mul", 2, 2, 0, 0, prep_binary, run_mul},
    {"Relu", 1, 1, 0, 0, prep_unary, run_relu},
    {"Reshape", 2, 2, 1u << 1, BM_OP_VIEW, prep_reshape, run_copy},
    {"Sigmoid", 1, 1, 0, 0, prep_unary, run_sigmoid},
    {"Softmax", 1, 1, 0, 0, prep_softmax, run_softmax},
};

const bm_op *bm_op_find(bm_str name)
{
    size_t k;
    for (k = 0; k < sizeof OPS / sizeof OPS[0]; k++) {
        if (bm_str_eq(name, OPS[k].name)) {
            return &OPS[k];
        }
    }
    return NULL;
}
