/*
 * bm_msgpack.c -- a bounds-checked msgpack cursor that never allocates.
 *
 * The artifact header is one msgpack map (docs/FORMAT.md). Rather than
 * decoding it into a tree (which needs a heap), every value is addressed by a
 * cursor into the buffer and looked up on demand. Every read is checked
 * against the cursor's end, and skipping an object is iterative (a count of
 * pending items, bounded by the bytes left), so hostile nesting can neither
 * overflow the stack nor loop for longer than the header is long.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bm_internal.h"

typedef struct {
    int type;      /* bm_mp_type */
    size_t head;   /* bytes before the payload */
    uint64_t len;  /* str/bin/ext payload bytes */
    uint64_t count; /* array items or map pairs */
    int64_t i;     /* int value */
    int big;       /* an unsigned int above INT64_MAX */
    int b;         /* bool value */
    double f;      /* float value */
} mp_head;

static uint64_t be_read(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    unsigned k;
    for (k = 0; k < n; k++) {
        v = (v << 8) | p[k];
    }
    return v;
}

/* Decode the type byte and fixed-size fields at p; the payload is unchecked. */
static int mp_head_read(const uint8_t *p, const uint8_t *end, mp_head *h)
{
    size_t avail;
    uint8_t b;
    unsigned w = 0; /* width of the length / value field */
    memset(h, 0, sizeof *h);
    if (p == NULL || end == NULL || p >= end) {
        return BM_E_FORMAT;
    }
    avail = (size_t)(end - p);
    b = p[0];
    h->head = 1;
    if (b <= 0x7f) {
        h->type = BM_MP_INT;
        h->i = b;
        return BM_OK;
    }
    if (b >= 0xe0) {
        h->type = BM_MP_INT;
        h->i = (int64_t)b - 256;
        return BM_OK;
    }
    if ((b & 0xf0) == 0x80) {
        h->type = BM_MP_MAP;
        h->count = b & 0x0f;
        return BM_OK;
    }
    if ((b & 0xf0) == 0x90) {
        h->type = BM_MP_ARRAY;
        h->count = b & 0x0f;
        return BM_OK;
    }
    if ((b & 0xe0) == 0xa0) {
        h->type = BM_MP_STR;
        h->len = b & 0x1f;
        return BM_OK;
    }
    switch (b) {
    case 0xc0:
        h->type = BM_MP_NIL;
        return BM_OK;
    case 0xc2:
    case 0xc3:
        h->type = BM_MP_BOOL;
        h->b = b == 0xc3;
        return BM_OK;
    case 0xc4: case 0xc5: case 0xc6:
        h->type = BM_MP_BIN;
        w = 1u << (b - 0xc4);
        break;
    case 0xc7: case 0xc8: case 0xc9:
        h->type = BM_MP_EXT;
        w = 1u << (b - 0xc7);
        break;
    case 0xca: case 0xcb:
        h->type = BM_MP_FLOAT;
        w = b == 0xca ? 4 : 8;
        break;
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
        h->type = BM_MP_INT;
        w = 1u << (b - 0xcc);
        break;
    case 0xd0: case 0xd1: case 0xd2: case 0xd3:
        h->type = BM_MP_INT;
        w = 1u << (b - 0xd0);
        break;
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
        /* fixext: one type byte, then 1..16 data bytes */
        if (avail < 2) {
            return BM_E_FORMAT;
        }
        h->type = BM_MP_EXT;
        h->head = 2;
        h->len = 1u << (b - 0xd4);
        return BM_OK;
    case 0xd9: case 0xda: case 0xdb:
        h->type = BM_MP_STR;
        w = 1u << (b - 0xd9);
        break;
    case 0xdc: case 0xdd:
        h->type = BM_MP_ARRAY;
        w = b == 0xdc ? 2 : 4;
        break;
    case 0xde: case 0xdf:
        h->type = BM_MP_MAP;
        w = b == 0xde ? 2 : 4;
        break;
    default: /* 0xc1 is reserved and never valid */
        return BM_E_FORMAT;
    }
    if (avail - 1 < w) {
        return BM_E_FORMAT;
    }
    h->head = 1 + w;
    switch (h->type) {
    case BM_MP_BIN:
    case BM_MP_STR:
        h->len = be_read(p + 1, w);
        break;
    case BM_MP_EXT:
        if (avail - 1 - w < 1) {
            return BM_E_FORMAT;
        }
        h->len = be_read(p + 1, w);
        h->head += 1; /* the ext type byte */
        break;
    case BM_MP_ARRAY:
    case BM_MP_MAP:
        h->count = be_read(p + 1, w);
        break;
    case BM_MP_FLOAT:
        if (w == 4) {
            uint32_t bits = (uint32_t)be_read(p + 1, 4);
            float f;
            memcpy(&f, &bits, sizeof f);
            h->f = f;
        } else {
            uint64_t bits = be_read(p + 1, 8);
            double d;
            memcpy(&d, &bits, sizeof d);
            h->f = d;
        }
        break;
    default: { /* ints */
        uint64_t u = be_read(p + 1, w);
        if (b >= 0xd0) { /* signed: sign-extend from w bytes */
            if (w < 8 && (u >> (8 * w - 1)) & 1u) {
                u |= ~(uint64_t)0 << (8 * w);
            }
            /* two's complement reinterpretation without implementation-defined
             * conversion of an out-of-range unsigned value */
            if (u >> 63) {
                h->i = -(int64_t)(~u) - 1;
            } else {
                h->i = (int64_t)u;
            }
        } else if (u > (uint64_t)INT64_MAX) {
            h->big = 1;
        } else {
            h->i = (int64_t)u;
        }
        break;
    }
    }
    return BM_OK;
}

/* Bytes from p to the end of its payload, checked against end. */
static int mp_span_head(const uint8_t *p, const uint8_t *end, mp_head *h,
                        const uint8_t **after)
{
    int rc = mp_head_read(p, end, h);
    size_t rest;
    if (rc != BM_OK) {
        return rc;
    }
    rest = (size_t)(end - p) - h->head;
    if (h->len > rest) {
        return BM_E_FORMAT;
    }
    *after = p + h->head + (size_t)h->len;
    return BM_OK;
}

int bm_mp_type(bm_val v)
{
    mp_head h;
    const uint8_t *after;
    if (mp_span_head(v.p, v.end, &h, &after) != BM_OK) {
        return BM_MP_INVALID;
    }
    return h.type;
}

int bm_mp_next(bm_val v, bm_val *next)
{
    /* Items still to skip; each needs at least one byte, which bounds it. */
    uint64_t pending = 1;
    const uint8_t *p = v.p;
    while (pending > 0) {
        mp_head h;
        const uint8_t *after;
        int rc = mp_span_head(p, v.end, &h, &after);
        if (rc != BM_OK) {
            return rc;
        }
        pending--;
        p = after;
        if (h.type == BM_MP_ARRAY) {
            pending += h.count;
        } else if (h.type == BM_MP_MAP) {
            pending += 2 * h.count;
        }
        if (pending > (uint64_t)(v.end - p)) {
            return BM_E_FORMAT;
        }
    }
    next->p = p;
    next->end = v.end;
    return BM_OK;
}

int bm_mp_int(bm_val v, int64_t *out)
{
    mp_head h;
    const uint8_t *after;
    if (mp_span_head(v.p, v.end, &h, &after) != BM_OK ||
        h.type != BM_MP_INT || h.big) {
        return BM_E_FORMAT;
    }
    *out = h.i;
    return BM_OK;
}

int bm_mp_bool(bm_val v, int *out)
{
    mp_head h;
    const uint8_t *after;
    if (mp_span_head(v.p, v.end, &h, &after) != BM_OK ||
        h.type != BM_MP_BOOL) {
        return BM_E_FORMAT;
    }
    *out = h.b;
    return BM_OK;
}

int bm_mp_float(bm_val v, double *out)
{
    mp_head h;
    const uint8_t *after;
    if (mp_span_head(v.p, v.end, &h, &after) != BM_OK ||
        h.type != BM_MP_FLOAT) {
        return BM_E_FORMAT;
    }
    *out = h.f;
    return BM_OK;
}

int bm_mp_str(bm_val v, bm_str *out)
{
    mp_head h;
    const uint8_t *after;
    if (mp_span_head(v.p, v.end, &h, &after) != BM_OK ||
        h.type != BM_MP_STR) {
        return BM_E_FORMAT;
    }
    out->ptr = (const char *)(v.p + h.head);
    out->len = (size_t)h.len;
    return BM_OK;
}

static int mp_container(bm_val v, int type, uint32_t *n, bm_val *first)
{
    mp_head h;
    const uint8_t *after;
    if (mp_span_head(v.p, v.end, &h, &after) != BM_OK || h.type != type) {
        return BM_E_FORMAT;
    }
    /* every item takes at least a byte: a count past the end is a lie */
    if (h.count > (uint64_t)(v.end - after) ||
        (type == BM_MP_MAP && 2 * h.count > (uint64_t)(v.end - after))) {
        return BM_E_FORMAT;
    }
    *n = (uint32_t)h.count;
    first->p = after;
    first->end = v.end;
    return BM_OK;
}

int bm_mp_array(bm_val v, uint32_t *n, bm_val *first)
{
    return mp_container(v, BM_MP_ARRAY, n, first);
}

int bm_mp_map(bm_val v, uint32_t *n, bm_val *first_key)
{
    return mp_container(v, BM_MP_MAP, n, first_key);
}

int bm_str_eq(bm_str s, const char *z)
{
    size_t n = strlen(z);
    return s.len == n && memcmp(s.ptr, z, n) == 0;
}

int bm_str_same(bm_str a, bm_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

int bm_mp_get(bm_val map, const char *key, bm_val *out)
{
    uint32_t n, k;
    bm_val cur;
    int found = 0, rc = bm_mp_map(map, &n, &cur);
    if (rc != BM_OK) {
        return rc;
    }
    for (k = 0; k < n; k++) {
        bm_str s;
        bm_val value;
        rc = bm_mp_next(cur, &value);
        if (rc != BM_OK) {
            return rc;
        }
        if (bm_mp_str(cur, &s) == BM_OK && bm_str_eq(s, key)) {
            *out = value; /* keep scanning: the last duplicate wins */
            found = 1;
        }
        rc = bm_mp_next(value, &cur);
        if (rc != BM_OK) {
            return rc;
        }
    }
    return found ? BM_OK : BM_E_NOT_FOUND;
}

int bm_mp_at(bm_val array, uint32_t i, bm_val *out)
{
    uint32_t n, k;
    bm_val cur;
    int rc = bm_mp_array(array, &n, &cur);
    if (rc != BM_OK) {
        return rc;
    }
    if (i >= n) {
        return BM_E_NOT_FOUND;
    }
    for (k = 0; k < i; k++) {
        rc = bm_mp_next(cur, &cur);
        if (rc != BM_OK) {
            return rc;
        }
    }
    *out = cur;
    return BM_OK;
}

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF), the
 * same set Python's decoder accepts, so both readers reject the same bytes. */
static int utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t need, k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i - 1 < need) {
            return 0;
        }
        for (k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return 0;
            }
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return 0;
        }
        i += need + 1;
    }
    return 1;
}

int bm_mp_validate(const uint8_t *p, const uint8_t *end, const uint8_t **after)
{
    /* Items left in each open container; the top bit marks a map, whose
     * items alternate key, value (a key is read when the count is even). */
    const uint64_t map_bit = (uint64_t)1 << 63;
    uint64_t stack[BM_MP_MAX_DEPTH];
    int depth = 0;
    for (;;) {
        mp_head h;
        const uint8_t *next;
        int rc, is_key = 0;
        if (depth > 0 && (stack[depth - 1] & map_bit)) {
            is_key = ((stack[depth - 1] & ~map_bit) % 2) == 0;
        }
        rc = mp_span_head(p, end, &h, &next);
        if (rc != BM_OK) {
            return rc;
        }
        if (is_key && h.type != BM_MP_STR && h.type != BM_MP_BIN) {
            return BM_E_FORMAT;
        }
        if (h.type == BM_MP_STR && !utf8_valid(p + h.head, (size_t)h.len)) {
            return BM_E_FORMAT;
        }
        p = next;
        if (depth > 0) {
            stack[depth - 1]--;
        }
        if ((h.type == BM_MP_ARRAY || h.type == BM_MP_MAP) && h.count > 0) {
            uint64_t items = h.type == BM_MP_MAP ? 2 * h.count : h.count;
            if (items > (uint64_t)(end - p)) {
                return BM_E_FORMAT;
            }
            if (depth == BM_MP_MAX_DEPTH) {
                return BM_E_LIMIT;
            }
            stack[depth++] = items | (h.type == BM_MP_MAP ? map_bit : 0);
        }
        while (depth > 0 && (stack[depth - 1] & ~map_bit) == 0) {
            depth--;
        }
        if (depth == 0) {
            break;
        }
    }
    *after = p;
    return BM_OK;
}

int bm_fail(bm_status *st, int code, long node, const char *fmt, ...)
{
    if (st != NULL) {
        va_list ap;
        st->code = code;
        st->node = (int32_t)node;
        va_start(ap, fmt);
        vsnprintf(st->msg, sizeof st->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *bm_code_name(int code)
{
    switch (code) {
    case BM_OK: return "BM_OK";
    case BM_E_ARG: return "BM_E_ARG";
    case BM_E_FORMAT: return "BM_E_FORMAT";
    case BM_E_VERSION: return "BM_E_VERSION";
    case BM_E_NOT_FOUND: return "BM_E_NOT_FOUND";
    case BM_E_UNSUPPORTED: return "BM_E_UNSUPPORTED";
    case BM_E_ARENA: return "BM_E_ARENA";
    case BM_E_LIMIT: return "BM_E_LIMIT";
    default: return "BM_E_UNKNOWN";
    }
}

int bm_mul_checked(uint64_t a, uint64_t b, uint64_t limit, uint64_t *out)
{
    if (a != 0 && b > limit / a) {
        return BM_E_LIMIT;
    }
    *out = a * b;
    return BM_OK;
}
