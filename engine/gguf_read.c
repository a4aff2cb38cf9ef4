/* gguf_read.c — the GGUF v2/v3 reader (see gguf.h).
 *
 * Layout (all little-endian):
 *   "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv x  { string key | u32 type | value }
 *   n_tensors x { string name | u32 n_dims | i64 ne[n_dims] | u32 type |
 *                 u64 offset }
 *   padding to the alignment (general.alignment, default 32)
 *   data section: tensor data at the aligned offsets, relative to its start
 * where string = u64 length + bytes, and an array value = u32 element type +
 * u64 count + elements (strings and arrays may be elements; arrays nest).
 *
 * The whole file is validated once at open, so the accessors afterwards only
 * check their arguments. Every field is read with memcpy from a position
 * already checked against the bytes remaining (the file gives no alignment
 * guarantee, and UBSan rejects casted unaligned loads). Every count is
 * compared with the bytes left before anything is allocated for it, using the
 * smallest encoding an element can have, so a corrupt count costs an error,
 * not a huge malloc or a long loop.
 *
 * Rules beyond the byte layout: bool values are 0 or 1; general.alignment,
 * when present, is a uint32 power of two; keys and tensor names are unique;
 * n_dims <= 4, every ne >= 0 and their product fits int64; the tensor type is
 * one jq_type_traits_get() knows and ne[0] is a multiple of its block size;
 * each tensor's data is aligned and inside the file. Tensors need not be
 * in order or contiguous (llama.cpp's writer makes them so; the format does
 * not require it).
 */
#include "gguf.h"
#include "kernels.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf_read.c copies little-endian fields straight into host integers"
#endif

/* Nested arrays are legal GGUF but no model uses them; the limit bounds the
 * recursion (and the stack) for a file that nests thousands deep. */
#define MAX_ARRAY_DEPTH 8

/* Smallest encodings, used to bound counts by the bytes remaining. */
#define MIN_STRING_BYTES 8       /* u64 length, no bytes */
#define MIN_ARRAY_BYTES 12       /* u32 element type + u64 count */
#define MIN_KV_BYTES 13          /* key length 8 + type 4 + a 1-byte value */
#define MIN_TENSOR_INFO_BYTES 24 /* name length 8 + n_dims 4 + type 4 +
                                    offset 8 (n_dims may be 0) */

typedef struct {
    jq_str key;
    jq_gguf_type type;
    size_t val_off;    /* file offset of the value */
    jq_str str;        /* STRING: the value */
    jq_gguf_type elem; /* ARRAY: element type and count */
    uint64_t n;
    size_t data_off;   /* ARRAY: file offset of element 0 */
    uint64_t *str_off; /* STRING array: file offset of each element's u64
                          length, so element i is O(1) */
} kv_entry;

/* Names (keys or tensor names) sorted, for duplicate detection and binary
 * search. A sorted array rather than a hash table: O(n log n) whatever the
 * names are, where a crafted file could make a fixed hash collide on every
 * name and turn open into O(n^2). */
typedef struct {
    jq_str name;
    int64_t idx;
} name_slot;

typedef struct {
    name_slot *slots;
    int64_t n;
} name_index;

struct jq_gguf {
    const uint8_t *base;
    size_t size;
    bool mapped; /* base is our mmap (else the caller's buffer) */
    uint32_t version;
    uint32_t alignment;
    size_t data_start; /* file offset of the data section */
    int64_t n_kv;
    kv_entry *kv;
    name_index kv_index;
    int64_t n_tensors;
    jq_gguf_tensor *tensors;
    name_index tensor_index;
};

/* ------------------------------------------------------------ errors */

typedef struct {
    const uint8_t *base;
    size_t size;
    size_t pos;
    char *err;
    size_t errlen;
} reader;

static void vset_err(char *err, size_t errlen, const char *fmt, va_list ap)
{
    if (!err || errlen == 0)
        return;
    int n = snprintf(err, errlen, "gguf: ");
    if (n < 0 || (size_t)n >= errlen)
        return;
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset_err(err, errlen, fmt, ap);
    va_end(ap);
}

/* "gguf: <ctx>: <message> (file offset <r->pos>, file size <size>)". The
 * position is where the item that failed starts. Returns false so callers
 * can `return fail_at(...)`. */
static bool fail_at(reader *r, const char *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool fail_at(reader *r, const char *ctx, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    set_err(r->err, r->errlen, "%s%s%s (file offset %zu, file size %zu)",
            ctx ? ctx : "", ctx ? ": " : "", msg, r->pos, r->size);
    return false;
}

/* A name from the file made printable for a message: bytes outside
 * printable ASCII as \xNN, cut at ~64 characters. */
static const char *printable(char *out, size_t cap, const char *p,
                             uint64_t len)
{
    size_t o = 0;
    for (uint64_t i = 0; i < len; i++) {
        if (o + 8 >= cap) {
            memcpy(out + o, "...", 4);
            return out;
        }
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
    }
    out[o] = '\0';
    return out;
}

#define NAME_BUF 80

static const char *type_name(uint32_t t)
{
    static const char *const names[JQ_GGUF_TYPE_COUNT_] = {
        "uint8", "int8",   "uint16", "int16",  "uint32", "int32",  "float32",
        "bool",  "string", "array",  "uint64", "int64",  "float64",
    };
    return t < JQ_GGUF_TYPE_COUNT_ ? names[t] : "?";
}

/* Bytes of one scalar value; 0 for STRING and ARRAY. */
static size_t scalar_size(jq_gguf_type t)
{
    switch (t) {
    case JQ_GGUF_UINT8:
    case JQ_GGUF_INT8:
    case JQ_GGUF_BOOL:
        return 1;
    case JQ_GGUF_UINT16:
    case JQ_GGUF_INT16:
        return 2;
    case JQ_GGUF_UINT32:
    case JQ_GGUF_INT32:
    case JQ_GGUF_FLOAT32:
        return 4;
    case JQ_GGUF_UINT64:
    case JQ_GGUF_INT64:
    case JQ_GGUF_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

/* ------------------------------------------------------------ cursor */

static size_t left(const reader *r) { return r->size - r->pos; }

/* The primitives do not move on failure, so r->pos names the field that
 * did not fit. */
static bool rd_u32(reader *r, uint32_t *v)
{
    if (left(r) < 4)
        return false;
    memcpy(v, r->base + r->pos, 4);
    r->pos += 4;
    return true;
}

static bool rd_u64(reader *r, uint64_t *v)
{
    if (left(r) < 8)
        return false;
    memcpy(v, r->base + r->pos, 8);
    r->pos += 8;
    return true;
}

/* A string whose fields `what` (e.g. "name") are reported under ctx. */
static bool rd_str(reader *r, const char *ctx, const char *what, jq_str *s)
{
    uint64_t len;
    if (!rd_u64(r, &len))
        return fail_at(r, ctx, "%s length truncated (needs 8 bytes, %zu left)",
                       what, left(r));
    if (len > left(r)) {
        r->pos -= 8;
        return fail_at(r, ctx,
                       "%s length %" PRIu64 " exceeds the %zu bytes left",
                       what, len, left(r) - 8);
    }
    s->ptr = (const char *)(r->base + r->pos);
    s->len = len;
    r->pos += (size_t)len;
    return true;
}

/* ------------------------------------------------------------ names */

static int cmp_bytes(const char *p, uint64_t plen, const char *q,
                     uint64_t qlen)
{
    uint64_t n = plen < qlen ? plen : qlen;
    int c = n ? memcmp(p, q, (size_t)n) : 0;
    if (c)
        return c;
    return (plen > qlen) - (plen < qlen);
}

/* By name, then by index, so equal names end up adjacent in file order. */
static int cmp_slot(const void *a, const void *b)
{
    const name_slot *x = a, *y = b;
    int c = cmp_bytes(x->name.ptr, x->name.len, y->name.ptr, y->name.len);
    return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

/* Sorts the n slots already filled in. When a name occurs twice, returns
 * the index of the first repetition in file order and sets *first to the
 * earlier occurrence; else -1. */
static int64_t index_sort(name_index *ix, int64_t *first)
{
    if (ix->n > 1)
        qsort(ix->slots, (size_t)ix->n, sizeof *ix->slots, cmp_slot);
    int64_t dup = -1;
    for (int64_t i = 1; i < ix->n; i++) {
        const name_slot *a = &ix->slots[i - 1], *b = &ix->slots[i];
        if (cmp_bytes(a->name.ptr, a->name.len, b->name.ptr, b->name.len) ==
                0 &&
            (dup < 0 || b->idx < dup)) {
            dup = b->idx;
            *first = a->idx; /* a name's smallest repetition is its second
                                occurrence, so a is its first */
        }
    }
    return dup;
}

/* Index of name, or -1. */
static int64_t index_find(const name_index *ix, const char *p, uint64_t len)
{
    int64_t lo = 0, hi = ix->n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const name_slot *s = &ix->slots[mid];
        int c = cmp_bytes(s->name.ptr, s->name.len, p, len);
        if (c == 0)
            return s->idx;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* ------------------------------------------------------------ values */

/* Reads an array value (after its ARRAY type id). str_off, when non-NULL,
 * receives a malloc'd index of a string array's elements. */
static bool parse_array(reader *r, const char *ctx, int depth,
                        jq_gguf_type *elem_out, uint64_t *n_out,
                        size_t *data_off, uint64_t **str_off)
{
    uint32_t elem;
    uint64_t n;
    if (!rd_u32(r, &elem))
        return fail_at(r, ctx, "array element type truncated");
    if (elem >= JQ_GGUF_TYPE_COUNT_) {
        r->pos -= 4;
        return fail_at(r, ctx, "array element type %" PRIu32
                       " is not a GGUF type", elem);
    }
    if (!rd_u64(r, &n))
        return fail_at(r, ctx, "array count truncated");
    *elem_out = (jq_gguf_type)elem;
    *n_out = n;
    *data_off = r->pos;
    const char *nest = depth > 0 ? "nested " : "";

    size_t esz = scalar_size((jq_gguf_type)elem);
    if (esz) {
        if (n > left(r) / esz)
            return fail_at(r, ctx,
                           "%sarray of %" PRIu64 " %s (%zu bytes each) "
                           "exceeds the %zu bytes left",
                           nest, n, type_name(elem), esz, left(r));
        if (elem == JQ_GGUF_BOOL) {
            for (uint64_t i = 0; i < n; i++) {
                uint8_t b = r->base[r->pos + i];
                if (b > 1) {
                    r->pos += (size_t)i;
                    return fail_at(r, ctx,
                                   "%sarray of %" PRIu64 " bools: element %"
                                   PRIu64 " is %u, not 0 or 1",
                                   nest, n, i, b);
                }
            }
        }
        r->pos += (size_t)(n * esz);
        return true;
    }

    if (elem == JQ_GGUF_STRING) {
        if (n > left(r) / MIN_STRING_BYTES)
            return fail_at(r, ctx,
                           "%sarray of %" PRIu64 " strings cannot fit in the "
                           "%zu bytes left (each needs at least 8)",
                           nest, n, left(r));
        uint64_t *offs = NULL;
        if (str_off && n > 0) {
            offs = malloc((size_t)n * sizeof *offs);
            if (!offs)
                return fail_at(r, ctx, "out of memory indexing %" PRIu64
                               " strings", n);
        }
        for (uint64_t i = 0; i < n; i++) {
            uint64_t len;
            size_t at = r->pos;
            if (!rd_u64(r, &len) || len > left(r)) {
                r->pos = at;
                free(offs);
                if (left(r) < 8)
                    return fail_at(r, ctx,
                                   "%sarray of %" PRIu64 " strings truncated "
                                   "at element %" PRIu64, nest, n, i);
                return fail_at(r, ctx,
                               "%sarray of %" PRIu64 " strings truncated at "
                               "element %" PRIu64 " (length %" PRIu64
                               ", %zu bytes left)",
                               nest, n, i, len, left(r) - 8);
            }
            if (offs)
                offs[i] = at;
            r->pos += (size_t)len;
        }
        if (str_off)
            *str_off = offs;
        return true;
    }

    /* array of arrays */
    if (depth + 1 >= MAX_ARRAY_DEPTH)
        return fail_at(r, ctx, "arrays nested deeper than %d levels",
                       MAX_ARRAY_DEPTH);
    if (n > left(r) / MIN_ARRAY_BYTES)
        return fail_at(r, ctx,
                       "%sarray of %" PRIu64 " arrays cannot fit in the %zu "
                       "bytes left (each needs at least 12)",
                       nest, n, left(r));
    for (uint64_t i = 0; i < n; i++) {
        jq_gguf_type e;
        uint64_t m;
        size_t off;
        if (!parse_array(r, ctx, depth + 1, &e, &m, &off, NULL))
            return false;
    }
    return true;
}

static bool parse_kv(reader *r, jq_gguf *g, int64_t i)
{
    kv_entry *e = &g->kv[i];
    char ctx[NAME_BUF + 48], name[NAME_BUF];
    snprintf(ctx, sizeof ctx, "key #%" PRId64, i);
    if (!rd_str(r, ctx, "name", &e->key))
        return false;
    snprintf(ctx, sizeof ctx, "key '%s' (#%" PRId64 ")",
             printable(name, sizeof name, e->key.ptr, e->key.len), i);
    g->kv_index.slots[i] = (name_slot){e->key, i};

    uint32_t type;
    if (!rd_u32(r, &type))
        return fail_at(r, ctx, "value type truncated");
    if (type >= JQ_GGUF_TYPE_COUNT_) {
        r->pos -= 4;
        return fail_at(r, ctx, "value type %" PRIu32 " is not a GGUF type",
                       type);
    }
    e->type = (jq_gguf_type)type;
    e->val_off = r->pos;

    size_t sz = scalar_size(e->type);
    if (sz) {
        if (left(r) < sz)
            return fail_at(r, ctx, "%s value truncated (needs %zu bytes, "
                           "%zu left)", type_name(type), sz, left(r));
        if (e->type == JQ_GGUF_BOOL && r->base[r->pos] > 1)
            return fail_at(r, ctx, "bool value is %u, not 0 or 1",
                           r->base[r->pos]);
        r->pos += sz;
        return true;
    }
    if (e->type == JQ_GGUF_STRING)
        return rd_str(r, ctx, "string value", &e->str);
    return parse_array(r, ctx, 0, &e->elem, &e->n, &e->data_off,
                       &e->str_off);
}

/* ------------------------------------------------------------ tensors */

static bool parse_tensor_info(reader *r, jq_gguf *g, int64_t i)
{
    jq_gguf_tensor *t = &g->tensors[i];
    char ctx[NAME_BUF + 48], name[NAME_BUF];
    snprintf(ctx, sizeof ctx, "tensor #%" PRId64, i);
    if (!rd_str(r, ctx, "name", &t->name))
        return false;
    snprintf(ctx, sizeof ctx, "tensor '%s' (#%" PRId64 ")",
             printable(name, sizeof name, t->name.ptr, t->name.len), i);
    g->tensor_index.slots[i] = (name_slot){t->name, i};

    if (!rd_u32(r, &t->n_dims))
        return fail_at(r, ctx, "n_dims truncated");
    if (t->n_dims > JQ_GGUF_MAX_DIMS) {
        r->pos -= 4;
        return fail_at(r, ctx, "n_dims %" PRIu32 " exceeds the maximum %d",
                       t->n_dims, JQ_GGUF_MAX_DIMS);
    }
    for (int d = 0; d < JQ_GGUF_MAX_DIMS; d++)
        t->ne[d] = 1;
    int64_t nelem = 1;
    bool overflow = false;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t u;
        if (!rd_u64(r, &u))
            return fail_at(r, ctx, "ne[%" PRIu32 "] truncated", d);
        int64_t v;
        memcpy(&v, &u, sizeof v);
        if (v < 0) {
            r->pos -= 8;
            return fail_at(r, ctx, "ne[%" PRIu32 "] = %" PRId64
                           " is negative", d, v);
        }
        t->ne[d] = v;
        if (__builtin_mul_overflow(nelem, v, &nelem))
            overflow = true;
    }
    /* A zero dimension makes the product 0 whatever the others are. */
    if (overflow && t->ne[0] && t->ne[1] && t->ne[2] && t->ne[3])
        return fail_at(r, ctx, "element count overflows int64 (ne = [%"
                       PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64 "])",
                       t->ne[0], t->ne[1], t->ne[2], t->ne[3]);

    if (!rd_u32(r, &t->type))
        return fail_at(r, ctx, "type truncated");
    const jq_type_traits *tt = jq_type_traits_get(t->type);
    if (!tt || tt->block_size == 0 || tt->type_size == 0) {
        r->pos -= 4;
        return fail_at(r, ctx, "unknown tensor type id %" PRIu32, t->type);
    }
    if (t->ne[0] % tt->block_size != 0)
        return fail_at(r, ctx, "ne[0] = %" PRId64 " is not a multiple of "
                       "the block size %" PRIu32 " of type %s",
                       t->ne[0], tt->block_size, tt->name);
    if (!rd_u64(r, &t->offset))
        return fail_at(r, ctx, "data offset truncated");

    /* Bytes: (ne0 / block) blocks per row, ne1*ne2*ne3 rows. Checked even
     * though the element count fits, since type_size / block_size can be
     * 8 (f64) and a zero dimension hides overflowing others. */
    uint64_t nbytes = 0;
    if (nelem != 0) {
        uint64_t rows = (uint64_t)t->ne[1] * (uint64_t)t->ne[2] *
                        (uint64_t)t->ne[3]; /* <= nelem: no overflow */
        uint64_t row_bytes;
        if (__builtin_mul_overflow((uint64_t)t->ne[0] / tt->block_size,
                                   (uint64_t)tt->type_size, &row_bytes) ||
            __builtin_mul_overflow(row_bytes, rows, &nbytes))
            return fail_at(r, ctx, "byte size overflows (ne = [%" PRId64
                           ", %" PRId64 ", %" PRId64 ", %" PRId64 "], %s)",
                           t->ne[0], t->ne[1], t->ne[2], t->ne[3], tt->name);
    }
    t->nbytes = nbytes;
    return true;
}

/* Checks each tensor's data range against the data section and points
 * t->data at it. */
static bool place_tensors(jq_gguf *g, char *err, size_t errlen)
{
    size_t data_size = g->size - g->data_start;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        jq_gguf_tensor *t = &g->tensors[i];
        char name[NAME_BUF];
        printable(name, sizeof name, t->name.ptr, t->name.len);
        if (t->offset % g->alignment != 0) {
            set_err(err, errlen, "tensor '%s' (#%" PRId64 "): data offset %"
                    PRIu64 " is not a multiple of the alignment %" PRIu32,
                    name, i, t->offset, g->alignment);
            return false;
        }
        if (t->offset > data_size || t->nbytes > data_size - t->offset) {
            set_err(err, errlen, "tensor '%s' (#%" PRId64 "): data [offset %"
                    PRIu64 ", %" PRIu64 " bytes] exceeds file size %zu "
                    "(data section starts at file offset %zu)",
                    name, i, t->offset, t->nbytes, g->size, g->data_start);
            return false;
        }
        t->data = g->base + g->data_start + t->offset;
    }
    return true;
}

/* ------------------------------------------------------------ open */

static uint32_t bswap32(uint32_t v)
{
    return (v >> 24) | ((v >> 8) & 0xff00u) | ((v << 8) & 0xff0000u) |
           (v << 24);
}

/* Names the later of two equal names and where it starts (its u64 length
 * field precedes the bytes). */
static bool fail_duplicate(const jq_gguf *g, char *err, size_t errlen,
                           const char *what, jq_str name, int64_t dup,
                           int64_t first)
{
    char buf[NAME_BUF];
    set_err(err, errlen, "%s '%s' (#%" PRId64 "): duplicate %s name (first "
            "defined as #%" PRId64 ") (file offset %zu, file size %zu)",
            what, printable(buf, sizeof buf, name.ptr, name.len), dup, what,
            first, (size_t)((const uint8_t *)name.ptr - g->base) - 8,
            g->size);
    return false;
}

static bool parse(jq_gguf *g, char *err, size_t errlen)
{
    reader r = {.base = g->base, .size = g->size, .err = err,
                .errlen = errlen};
    if (g->size < 4) {
        set_err(err, errlen, "file is %zu bytes, too short for the GGUF "
                "magic", g->size);
        return false;
    }
    if (memcmp(g->base, JQ_GGUF_MAGIC, 4) != 0) {
        char m[NAME_BUF];
        set_err(err, errlen, "not a GGUF file (magic '%s', expected 'GGUF')",
                printable(m, sizeof m, (const char *)g->base, 4));
        return false;
    }
    r.pos = 4;
    uint32_t version;
    if (!rd_u32(&r, &version))
        return fail_at(&r, "header", "version truncated");
    g->version = version;
    if (version == 1) {
        r.pos -= 4;
        return fail_at(&r, "header", "GGUF version 1 is not supported "
                       "(only versions 2 and 3; convert the file)");
    }
    if ((version & 0xffffu) == 0 && bswap32(version) >= 1 &&
        bswap32(version) <= 3) {
        r.pos -= 4;
        return fail_at(&r, "header", "version reads as %" PRIu32 ": this "
                       "is a big-endian GGUF file (version %" PRIu32 "), "
                       "which is not supported", version, bswap32(version));
    }
    if (version != 2 && version != 3) {
        r.pos -= 4;
        return fail_at(&r, "header", "unsupported GGUF version %" PRIu32
                       " (only versions 2 and 3)", version);
    }
    uint64_t n_tensors, n_kv;
    if (!rd_u64(&r, &n_tensors))
        return fail_at(&r, "header", "tensor count truncated");
    if (!rd_u64(&r, &n_kv))
        return fail_at(&r, "header", "metadata key count truncated");
    /* Both counts against the smallest encodings, before any malloc. */
    if (n_kv > left(&r) / MIN_KV_BYTES)
        return fail_at(&r, "header", "%" PRIu64 " metadata keys cannot fit "
                       "in the %zu bytes left (each needs at least %d)",
                       n_kv, left(&r), MIN_KV_BYTES);
    if (n_tensors > (left(&r) - n_kv * MIN_KV_BYTES) / MIN_TENSOR_INFO_BYTES)
        return fail_at(&r, "header", "%" PRIu64 " tensor infos cannot fit "
                       "in the %zu bytes left after %" PRIu64 " keys (each "
                       "needs at least %d)",
                       n_tensors, left(&r), n_kv, MIN_TENSOR_INFO_BYTES);

    g->kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(n_tensors ? (size_t)n_tensors : 1,
                        sizeof *g->tensors);
    g->kv_index.slots = malloc((n_kv ? (size_t)n_kv : 1) *
                               sizeof *g->kv_index.slots);
    g->tensor_index.slots = malloc((n_tensors ? (size_t)n_tensors : 1) *
                                   sizeof *g->tensor_index.slots);
    if (!g->kv || !g->tensors || !g->kv_index.slots ||
        !g->tensor_index.slots) {
        set_err(err, errlen, "out of memory for %" PRIu64 " keys and %"
                PRIu64 " tensors", n_kv, n_tensors);
        return false;
    }
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = (int64_t)i + 1; /* so close() frees what was parsed */
        if (!parse_kv(&r, g, (int64_t)i))
            return false;
    }
    g->kv_index.n = g->n_kv;
    int64_t first, dup = index_sort(&g->kv_index, &first);
    if (dup >= 0)
        return fail_duplicate(g, err, errlen, "key", g->kv[dup].key, dup,
                              first);

    g->alignment = JQ_GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = index_find(&g->kv_index, "general.alignment", 17);
    if (ai >= 0) {
        const kv_entry *e = &g->kv[ai];
        if (e->type != JQ_GGUF_UINT32) {
            set_err(err, errlen, "key 'general.alignment' has type %s, "
                    "expected uint32", type_name(e->type));
            return false;
        }
        uint32_t a;
        memcpy(&a, g->base + e->val_off, 4);
        if (a == 0 || (a & (a - 1)) != 0) {
            set_err(err, errlen, "general.alignment %" PRIu32 " is not a "
                    "non-zero power of two", a);
            return false;
        }
        g->alignment = a;
    }

    if (n_tensors > left(&r) / MIN_TENSOR_INFO_BYTES)
        return fail_at(&r, "tensor infos", "%" PRIu64 " tensor infos cannot "
                       "fit in the %zu bytes left (each needs at least %d)",
                       n_tensors, left(&r), MIN_TENSOR_INFO_BYTES);
    g->n_tensors = (int64_t)n_tensors;
    for (uint64_t i = 0; i < n_tensors; i++)
        if (!parse_tensor_info(&r, g, (int64_t)i))
            return false;
    g->tensor_index.n = g->n_tensors;
    dup = index_sort(&g->tensor_index, &first);
    if (dup >= 0)
        return fail_duplicate(g, err, errlen, "tensor", g->tensors[dup].name,
                              dup, first);

    /* The data section starts at the next multiple of the alignment. A file
     * without tensors may end before it (vocabulary-only files do). */
    uint64_t start = ((uint64_t)r.pos + g->alignment - 1) &
                     ~(uint64_t)(g->alignment - 1);
    if (start > g->size) {
        if (n_tensors > 0) {
            set_err(err, errlen, "data section would start at file offset %"
                    PRIu64 " (tensor infos end at %zu, alignment %" PRIu32
                    "), past the end of the file (size %zu)",
                    start, r.pos, g->alignment, g->size);
            return false;
        }
        start = g->size;
    }
    g->data_start = (size_t)start;
    return place_tensors(g, err, errlen);
}

static void free_contents(jq_gguf *g)
{
    for (int64_t i = 0; i < g->n_kv; i++)
        free(g->kv[i].str_off);
    free(g->kv);
    free(g->tensors);
    free(g->kv_index.slots);
    free(g->tensor_index.slots);
}

jq_gguf *jq_gguf_open_buffer(const void *data, size_t size, char *err,
                             size_t errlen)
{
    if (!data && size) {
        set_err(err, errlen, "NULL buffer of %zu bytes", size);
        return NULL;
    }
    jq_gguf *g = calloc(1, sizeof *g);
    if (!g) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    g->base = data;
    g->size = size;
    if (!parse(g, err, errlen)) {
        free_contents(g);
        free(g);
        return NULL;
    }
    return g;
}

jq_gguf *jq_gguf_open(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        set_err(err, errlen, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if (st.st_size == 0) {
        set_err(err, errlen, "%s: file is empty", path);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd); /* the mapping keeps the file */
    if (map == MAP_FAILED) {
        set_err(err, errlen, "%s: mmap of %zu bytes: %s", path, size,
                strerror(map_errno));
        return NULL;
    }
    char msg[512];
    jq_gguf *g = jq_gguf_open_buffer(map, size, msg, sizeof msg);
    if (!g) {
        /* Name the file: "gguf: PATH: <what the parser said>". */
        const char *what = strncmp(msg, "gguf: ", 6) == 0 ? msg + 6 : msg;
        set_err(err, errlen, "%s: %s", path, what);
        munmap(map, size);
        return NULL;
    }
    g->mapped = true;
    return g;
}

void jq_gguf_close(jq_gguf *g)
{
    if (!g)
        return;
    if (g->mapped)
        munmap((void *)g->base, g->size);
    free_contents(g);
    free(g);
}

uint32_t jq_gguf_version(const jq_gguf *g) { return g->version; }
size_t jq_gguf_file_size(const jq_gguf *g) { return g->size; }
const void *jq_gguf_file_data(const jq_gguf *g) { return g->base; }
uint32_t jq_gguf_alignment(const jq_gguf *g) { return g->alignment; }

/* ------------------------------------------------------------ metadata */

int64_t jq_gguf_n_kv(const jq_gguf *g) { return g->n_kv; }

int64_t jq_gguf_find_key(const jq_gguf *g, const char *key)
{
    return index_find(&g->kv_index, key, strlen(key));
}

jq_str jq_gguf_kv_key(const jq_gguf *g, int64_t i)
{
    if (i < 0 || i >= g->n_kv)
        return (jq_str){NULL, 0};
    return g->kv[i].key;
}

jq_gguf_type jq_gguf_kv_type(const jq_gguf *g, int64_t i)
{
    if (i < 0 || i >= g->n_kv)
        return JQ_GGUF_TYPE_COUNT_;
    return g->kv[i].type;
}

static const kv_entry *find_kv(const jq_gguf *g, const char *key)
{
    int64_t i = jq_gguf_find_key(g, key);
    return i < 0 ? NULL : &g->kv[i];
}

/* An integer as sign + magnitude, so every source type converts to every
 * target type without a wider intermediate. False for non-integers. */
typedef struct {
    bool neg;
    uint64_t mag;
} int_val;

static bool load_int(jq_gguf_type t, const uint8_t *p, int_val *v)
{
    int64_t s;
    switch (t) {
    case JQ_GGUF_UINT8: { uint8_t x; memcpy(&x, p, 1); *v = (int_val){false, x}; return true; }
    case JQ_GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); *v = (int_val){false, x}; return true; }
    case JQ_GGUF_UINT32: { uint32_t x; memcpy(&x, p, 4); *v = (int_val){false, x}; return true; }
    case JQ_GGUF_UINT64: { uint64_t x; memcpy(&x, p, 8); *v = (int_val){false, x}; return true; }
    case JQ_GGUF_INT8: { int8_t x; memcpy(&x, p, 1); s = x; break; }
    case JQ_GGUF_INT16: { int16_t x; memcpy(&x, p, 2); s = x; break; }
    case JQ_GGUF_INT32: { int32_t x; memcpy(&x, p, 4); s = x; break; }
    case JQ_GGUF_INT64: memcpy(&s, p, 8); break;
    default:
        return false;
    }
    /* -(s + 1) + 1 avoids negating INT64_MIN. */
    *v = s < 0 ? (int_val){true, (uint64_t)(-(s + 1)) + 1}
               : (int_val){false, (uint64_t)s};
    return true;
}

static bool int_to_i32(int_val v, int32_t *out)
{
    if (v.neg ? v.mag > (uint64_t)INT32_MAX + 1 : v.mag > INT32_MAX)
        return false;
    *out = v.neg ? (int32_t)(-(int64_t)(v.mag - 1) - 1) : (int32_t)v.mag;
    return true;
}

static bool kv_int(const jq_gguf *g, const char *key, int_val *v)
{
    const kv_entry *e = find_kv(g, key);
    return e && load_int(e->type, g->base + e->val_off, v);
}

bool jq_gguf_get_u32(const jq_gguf *g, const char *key, uint32_t *out)
{
    int_val v;
    if (!kv_int(g, key, &v) || v.neg || v.mag > UINT32_MAX)
        return false;
    *out = (uint32_t)v.mag;
    return true;
}

bool jq_gguf_get_i32(const jq_gguf *g, const char *key, int32_t *out)
{
    int_val v;
    return kv_int(g, key, &v) && int_to_i32(v, out);
}

bool jq_gguf_get_u64(const jq_gguf *g, const char *key, uint64_t *out)
{
    int_val v;
    if (!kv_int(g, key, &v) || v.neg)
        return false;
    *out = v.mag;
    return true;
}

bool jq_gguf_get_i64(const jq_gguf *g, const char *key, int64_t *out)
{
    int_val v;
    if (!kv_int(g, key, &v) ||
        (v.neg ? v.mag > (uint64_t)INT64_MAX + 1 : v.mag > INT64_MAX))
        return false;
    *out = v.neg ? -(int64_t)(v.mag - 1) - 1 : (int64_t)v.mag;
    return true;
}

/* f64 -> f32 when the value is in float's range (infinities and NaN pass
 * through: they are representable). */
static bool double_to_float(double d, float *out)
{
    if (isfinite(d) && fabs(d) > FLT_MAX)
        return false;
    *out = (float)d;
    return true;
}

bool jq_gguf_get_f32(const jq_gguf *g, const char *key, float *out)
{
    const kv_entry *e = find_kv(g, key);
    if (!e)
        return false;
    if (e->type == JQ_GGUF_FLOAT32) {
        memcpy(out, g->base + e->val_off, 4);
        return true;
    }
    if (e->type == JQ_GGUF_FLOAT64) {
        double d;
        memcpy(&d, g->base + e->val_off, 8);
        return double_to_float(d, out);
    }
    return false;
}

bool jq_gguf_get_f64(const jq_gguf *g, const char *key, double *out)
{
    const kv_entry *e = find_kv(g, key);
    if (!e)
        return false;
    if (e->type == JQ_GGUF_FLOAT32) {
        float f;
        memcpy(&f, g->base + e->val_off, 4);
        *out = f;
        return true;
    }
    if (e->type == JQ_GGUF_FLOAT64) {
        memcpy(out, g->base + e->val_off, 8);
        return true;
    }
    return false;
}

bool jq_gguf_get_bool(const jq_gguf *g, const char *key, bool *out)
{
    const kv_entry *e = find_kv(g, key);
    if (!e || e->type != JQ_GGUF_BOOL)
        return false;
    *out = g->base[e->val_off] != 0;
    return true;
}

bool jq_gguf_get_str(const jq_gguf *g, const char *key, jq_str *out)
{
    const kv_entry *e = find_kv(g, key);
    if (!e || e->type != JQ_GGUF_STRING)
        return false;
    *out = e->str;
    return true;
}

bool jq_gguf_get_arr(const jq_gguf *g, const char *key, jq_gguf_type *elem,
                     uint64_t *n)
{
    const kv_entry *e = find_kv(g, key);
    if (!e || e->type != JQ_GGUF_ARRAY)
        return false;
    if (elem)
        *elem = e->elem;
    if (n)
        *n = e->n;
    return true;
}

bool jq_gguf_arr_str(const jq_gguf *g, const char *key, uint64_t i,
                     jq_str *out)
{
    const kv_entry *e = find_kv(g, key);
    if (!e || e->type != JQ_GGUF_ARRAY || e->elem != JQ_GGUF_STRING ||
        i >= e->n)
        return false;
    uint64_t len;
    memcpy(&len, g->base + e->str_off[i], 8);
    out->ptr = (const char *)(g->base + e->str_off[i] + 8);
    out->len = len;
    return true;
}

/* A numeric (or bool) array's entry, else NULL. */
static const kv_entry *find_numeric_arr(const jq_gguf *g, const char *key)
{
    const kv_entry *e = find_kv(g, key);
    if (!e || e->type != JQ_GGUF_ARRAY || scalar_size(e->elem) == 0)
        return NULL;
    return e;
}

const void *jq_gguf_arr_data(const jq_gguf *g, const char *key)
{
    const kv_entry *e = find_numeric_arr(g, key);
    return e ? g->base + e->data_off : NULL;
}

/* n must be the array's length: a caller's buffer sized for another array
 * is a bug we would rather report than half-fill. */
bool jq_gguf_arr_to_f32(const jq_gguf *g, const char *key, float *out,
                        uint64_t n)
{
    const kv_entry *e = find_numeric_arr(g, key);
    if (!e || e->n != n)
        return false;
    size_t esz = scalar_size(e->elem);
    const uint8_t *p = g->base + e->data_off;
    for (uint64_t i = 0; i < n; i++, p += esz) {
        int_val v;
        if (e->elem == JQ_GGUF_FLOAT32) {
            memcpy(&out[i], p, 4);
        } else if (e->elem == JQ_GGUF_FLOAT64) {
            double d;
            memcpy(&d, p, 8);
            if (!double_to_float(d, &out[i]))
                return false;
        } else if (e->elem == JQ_GGUF_BOOL) {
            out[i] = *p ? 1.0f : 0.0f;
        } else if (load_int(e->elem, p, &v)) {
            out[i] = v.neg ? -(float)v.mag : (float)v.mag;
        } else {
            return false;
        }
    }
    return true;
}

/* Floats convert only when they hold an integer in int32's range. */
static bool double_to_i32(double d, int32_t *out)
{
    if (!(d >= -2147483648.0 && d <= 2147483647.0) || d != trunc(d))
        return false;
    *out = (int32_t)d;
    return true;
}

bool jq_gguf_arr_to_i32(const jq_gguf *g, const char *key, int32_t *out,
                        uint64_t n)
{
    const kv_entry *e = find_numeric_arr(g, key);
    if (!e || e->n != n)
        return false;
    size_t esz = scalar_size(e->elem);
    const uint8_t *p = g->base + e->data_off;
    for (uint64_t i = 0; i < n; i++, p += esz) {
        int_val v;
        if (e->elem == JQ_GGUF_FLOAT32) {
            float f;
            memcpy(&f, p, 4);
            if (!double_to_i32(f, &out[i]))
                return false;
        } else if (e->elem == JQ_GGUF_FLOAT64) {
            double d;
            memcpy(&d, p, 8);
            if (!double_to_i32(d, &out[i]))
                return false;
        } else if (e->elem == JQ_GGUF_BOOL) {
            out[i] = *p ? 1 : 0;
        } else if (!load_int(e->elem, p, &v) || !int_to_i32(v, &out[i])) {
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------ tensors */

int64_t jq_gguf_n_tensors(const jq_gguf *g) { return g->n_tensors; }

const jq_gguf_tensor *jq_gguf_tensor_at(const jq_gguf *g, int64_t i)
{
    if (i < 0 || i >= g->n_tensors)
        return NULL;
    return &g->tensors[i];
}

const jq_gguf_tensor *jq_gguf_find_tensor(const jq_gguf *g, const char *name)
{
    int64_t i = index_find(&g->tensor_index, name, strlen(name));
    return i < 0 ? NULL : &g->tensors[i];
}

bool jq_str_eq(jq_str s, const char *c)
{
    size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}
