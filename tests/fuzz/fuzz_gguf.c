/* fuzz_gguf.c — any bytes as a GGUF file: the reader, every accessor, the
 * vocabulary loader and tokenizers on what it accepts, and the model loader
 * (plus one tiny forward pass) on the same bytes.
 *
 * The reader promises (gguf.h) that a corrupt file is an error, never an
 * out-of-bounds read; everything it hands out afterwards (strings, array
 * data, tensor data) must lie inside the buffer. The input is copied into
 * an exactly-sized malloc'd block, so ASan reports a read one byte past the
 * end, and the target checks the ranges explicitly as well, which also
 * catches a pointer into the wrong part of the buffer.
 */
#include <float.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "gguf.h"
#include "model.h"
#include "tokenizer.h"

/* Forward passes only on models this small: the point is the code paths
 * (shapes, types, RoPE variants), and a big model would slow every run. */
#define FORWARD_MAX_WEIGHT_BYTES (1u << 20)

typedef struct {
    const uint8_t *base;
    size_t size;
    uint64_t sum; /* folded bytes: keeps the touching loads alive */
} buf_view;

/* Asserts that [p, p + len) lies inside the input and reads every byte. */
static void touch(buf_view *b, const void *p, uint64_t len, const char *what)
{
    if (len == 0)
        return;
    const uint8_t *q = p;
    jq_fuzz_check(q >= b->base && q <= b->base + b->size &&
                      len <= (uint64_t)(b->base + b->size - q),
                  "%s: [%p, +%llu) outside the input [%p, +%zu)", what, p,
                  (unsigned long long)len, (const void *)b->base, b->size);
    for (uint64_t i = 0; i < len; i++)
        b->sum = b->sum * 31 + q[i];
}

/* A NUL-terminated copy of s, or NULL when s holds a NUL (the by-name
 * accessors take C strings, so such a name cannot be looked up). */
static char *cstr(jq_str s)
{
    if (memchr(s.ptr, 0, (size_t)s.len))
        return NULL;
    char *c = malloc((size_t)s.len + 1);
    jq_fuzz_check(c != NULL, "out of memory for a %llu-byte name",
                  (unsigned long long)s.len);
    memcpy(c, s.ptr, (size_t)s.len);
    c[s.len] = 0;
    return c;
}

static size_t elem_size(jq_gguf_type t)
{
    switch (t) {
    case JQ_GGUF_UINT8: case JQ_GGUF_INT8: case JQ_GGUF_BOOL: return 1;
    case JQ_GGUF_UINT16: case JQ_GGUF_INT16: return 2;
    case JQ_GGUF_UINT32: case JQ_GGUF_INT32: case JQ_GGUF_FLOAT32: return 4;
    case JQ_GGUF_UINT64: case JQ_GGUF_INT64: case JQ_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

static void walk_array(const jq_gguf *g, buf_view *b, const char *key)
{
    jq_gguf_type elem;
    uint64_t n;
    jq_fuzz_check(jq_gguf_get_arr(g, key, &elem, &n), "array %s", key);
    jq_fuzz_check(elem < JQ_GGUF_TYPE_COUNT_, "element type %d", (int)elem);
    /* every element takes at least one byte of the file */
    jq_fuzz_check(n <= b->size, "array %s of %llu elements in %zu bytes", key,
                  (unsigned long long)n, b->size);
    jq_str s;
    if (elem == JQ_GGUF_STRING) {
        for (uint64_t i = 0; i < n; i++) {
            jq_fuzz_check(jq_gguf_arr_str(g, key, i, &s), "%s[%llu]", key,
                          (unsigned long long)i);
            touch(b, s.ptr, s.len, "string array element");
        }
        jq_fuzz_check(!jq_gguf_arr_str(g, key, n, &s), "%s[n] readable", key);
        jq_fuzz_check(jq_gguf_arr_data(g, key) == NULL,
                      "string array %s has numeric data", key);
        return;
    }
    jq_fuzz_check(!jq_gguf_arr_str(g, key, 0, &s), "%s is not strings", key);
    size_t esz = elem_size(elem);
    const void *data = jq_gguf_arr_data(g, key);
    if (esz == 0) { /* array of arrays: parsed, not accessible */
        jq_fuzz_check(data == NULL, "nested array %s has data", key);
        return;
    }
    jq_fuzz_check(data != NULL || n == 0, "numeric array %s without data",
                  key);
    if (data)
        touch(b, data, n * esz, "numeric array data");
    float *f = malloc((size_t)(n ? n : 1) * sizeof *f);
    int32_t *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    jq_fuzz_check(f && v, "out of memory for %llu elements",
                  (unsigned long long)n);
    if (jq_gguf_arr_to_f32(g, key, f, n))
        for (uint64_t i = 0; i < n; i++)
            b->sum += (uint64_t)(f[i] == f[i]);
    if (jq_gguf_arr_to_i32(g, key, v, n))
        for (uint64_t i = 0; i < n; i++)
            b->sum += (uint32_t)v[i];
    /* a length other than the array's is refused, never half-filled */
    jq_fuzz_check(!jq_gguf_arr_to_f32(g, key, f, n + 1), "%s: n + 1", key);
    jq_fuzz_check(!jq_gguf_arr_to_i32(g, key, v, n + 1), "%s: n + 1", key);
    free(f);
    free(v);
}

static void walk_kv(const jq_gguf *g, buf_view *b, int64_t i)
{
    jq_str k = jq_gguf_kv_key(g, i);
    jq_gguf_type t = jq_gguf_kv_type(g, i);
    jq_fuzz_check(t < JQ_GGUF_TYPE_COUNT_, "key #%lld type %d", (long long)i,
                  (int)t);
    touch(b, k.ptr, k.len, "key");
    char *key = cstr(k);
    if (!key)
        return;
    /* keys are unique, so the name finds this very entry */
    jq_fuzz_check(jq_gguf_find_key(g, key) == i, "find_key(#%lld)",
                  (long long)i);
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    int64_t i64;
    float f32;
    double f64;
    bool bv;
    jq_str s;
    bool is_int = t <= JQ_GGUF_INT32 || t == JQ_GGUF_UINT64 ||
                  t == JQ_GGUF_INT64;
    /* added, not ||: every getter runs */
    bool any_int = (jq_gguf_get_u32(g, key, &u32) +
                    jq_gguf_get_i32(g, key, &i32) +
                    jq_gguf_get_u64(g, key, &u64) +
                    jq_gguf_get_i64(g, key, &i64)) > 0;
    /* every integer fits u64 or i64, and nothing else is an integer */
    jq_fuzz_check(any_int == is_int, "%s: integer getters vs type %d", key,
                  (int)t);
    bool any_float = (jq_gguf_get_f32(g, key, &f32) +
                      jq_gguf_get_f64(g, key, &f64)) > 0;
    /* f32 takes any FLOAT32, f64 any FLOAT64 */
    jq_fuzz_check(any_float == (t == JQ_GGUF_FLOAT32 || t == JQ_GGUF_FLOAT64),
                  "%s: float getters vs type %d", key, (int)t);
    jq_fuzz_check(jq_gguf_get_bool(g, key, &bv) == (t == JQ_GGUF_BOOL),
                  "%s: bool getter vs type %d", key, (int)t);
    jq_fuzz_check(jq_gguf_get_str(g, key, &s) == (t == JQ_GGUF_STRING),
                  "%s: string getter vs type %d", key, (int)t);
    if (t == JQ_GGUF_STRING)
        touch(b, s.ptr, s.len, "string value");
    if (t == JQ_GGUF_ARRAY)
        walk_array(g, b, key);
    else
        jq_fuzz_check(!jq_gguf_get_arr(g, key, NULL, NULL) &&
                          jq_gguf_arr_data(g, key) == NULL,
                      "%s: array getters on type %d", key, (int)t);
    free(key);
}

static void walk_tensor(const jq_gguf *g, buf_view *b, int64_t i)
{
    const jq_gguf_tensor *t = jq_gguf_tensor_at(g, i);
    jq_fuzz_check(t != NULL, "tensor #%lld", (long long)i);
    touch(b, t->name.ptr, t->name.len, "tensor name");
    jq_fuzz_check(t->n_dims <= JQ_GGUF_MAX_DIMS, "n_dims %u", t->n_dims);
    for (int d = 0; d < JQ_GGUF_MAX_DIMS; d++)
        jq_fuzz_check(t->ne[d] >= 0, "ne[%d] = %lld", d, (long long)t->ne[d]);
    jq_fuzz_check(t->nbytes <= b->size, "tensor of %llu bytes in %zu",
                  (unsigned long long)t->nbytes, b->size);
    touch(b, t->data, t->nbytes, "tensor data");
    /* the data section starts aligned and offsets are multiples of the
     * alignment, so the data sits at an aligned file offset */
    jq_fuzz_check((size_t)((const uint8_t *)t->data - b->base) %
                          jq_gguf_alignment(g) == 0,
                  "tensor data at unaligned file offset %zu",
                  (size_t)((const uint8_t *)t->data - b->base));
    char *name = cstr(t->name);
    if (name) {
        jq_fuzz_check(jq_gguf_find_tensor(g, name) == t, "find_tensor(%s)",
                      name);
        free(name);
    }
}

/* Tokenizes a few fixed strings (valid and invalid UTF-8, specials-looking
 * text, NUL) with whatever vocabulary the file holds, and detokenizes. */
static void walk_vocab(const jq_vocab *v, buf_view *b)
{
    int32_t n = jq_vocab_size(v);
    jq_fuzz_check(n > 0 && (uint64_t)n <= b->size, "vocab of %d tokens", n);
    int32_t specials[] = {jq_vocab_bos(v), jq_vocab_eos(v), jq_vocab_unk(v),
                          jq_vocab_pad(v)};
    for (size_t k = 0; k < sizeof specials / sizeof *specials; k++)
        jq_fuzz_check(specials[k] >= -1 && specials[k] < n,
                      "special id %d of %d", specials[k], n);
    for (int32_t id = 0; id < n; id++) {
        const char *text = jq_vocab_token_text(v, id);
        jq_fuzz_check(text != NULL, "token %d has no text", id);
        b->sum += strlen(text) + (uint64_t)jq_vocab_token_type(v, id);
        int len = jq_token_to_piece(v, id, NULL, 0);
        jq_fuzz_check(len >= 0, "piece of %d", id);
        char piece[64];
        int again = jq_token_to_piece(v, id, piece, sizeof piece);
        jq_fuzz_check(again == len, "piece length %d then %d", len, again);
    }
    jq_fuzz_check(jq_vocab_token_text(v, n) == NULL &&
                      jq_vocab_token_text(v, -1) == NULL &&
                      jq_token_to_piece(v, n, NULL, 0) == -1,
                  "ids out of range accepted");

    static const struct {
        const char *s;
        size_t len;
    } texts[] = {
        {"", 0},
        {"Hello world", 11},
        {"  two  spaces\t\n\r\n", 17},
        {"caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\xa6\x99", 17},
        {"bad \xff\xfe \xc3 \xe2\x82 \xed\xa0\x80 \xc0\xaf", 19},
        {"<s></s><|endoftext|><unk>", 25},
        {"nul\0byte", 8},
        {"3.14159 'll 've", 15},
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        int32_t *ids = NULL;
        size_t nid = 0;
        char err[256];
        if (jq_tokenize(v, texts[i].s, texts[i].len, i & 1, &ids, &nid, err,
                        sizeof err) != 0)
            continue; /* e.g. an unsupported pre-tokenizer: an error is fine */
        for (size_t k = 0; k < nid; k++)
            jq_fuzz_check(ids[k] >= 0 && ids[k] < n, "token id %d of %d",
                          ids[k], n);
        char *back = jq_detokenize(v, ids, nid);
        jq_fuzz_check(back != NULL, "detokenize of valid ids failed");
        free(back);
        free(ids);
    }
}

/* The model loader over the same bytes, through a memory file (it takes a
 * path); when it accepts a tiny model, one forward pass of two tokens. */
static void try_model(const uint8_t *data, size_t size)
{
    const char *path = jq_fuzz_memfile(data, size);
    char err[512];
    jq_model *m = jq_model_load(path, err, sizeof err);
    if (!m)
        return;
    if (jq_model_weight_bytes(m) <= FORWARD_MAX_WEIGHT_BYTES &&
        m->hp.n_embd <= 1024 && m->hp.n_ff <= 4096 && m->hp.n_layer <= 8) {
        jq_ctx *c = jq_ctx_new(m, 4, 0, NULL, err, sizeof err);
        if (c) {
            int32_t toks[2] = {0, m->hp.n_vocab - 1};
            float *logits = malloc((size_t)m->hp.n_vocab * sizeof *logits);
            jq_fuzz_check(logits != NULL, "out of memory");
            jq_ctx_eval(c, toks, 2, logits, err, sizeof err);
            free(logits);
            jq_ctx_free(c);
        }
    }
    jq_model_free(m);
}

int jq_fuzz_gguf(const uint8_t *data, size_t size)
{
    /* exactly sized, so ASan sees a read one past the end */
    uint8_t *copy = malloc(size ? size : 1);
    jq_fuzz_check(copy != NULL, "out of memory for %zu bytes", size);
    if (size)
        memcpy(copy, data, size);
    char err[512];
    jq_gguf *g = jq_gguf_open_buffer(copy, size, err, sizeof err);
    if (!g) {
        jq_fuzz_check(err[0] != 0, "an error without a message");
        free(copy);
        return 0;
    }
    buf_view b = {copy, size, 0};
    jq_fuzz_check(jq_gguf_file_size(g) == size &&
                      jq_gguf_file_data(g) == copy,
                  "size/data of the handle");
    uint32_t v = jq_gguf_version(g), a = jq_gguf_alignment(g);
    jq_fuzz_check(v == 2 || v == 3, "version %u accepted", v);
    jq_fuzz_check(a != 0 && (a & (a - 1)) == 0, "alignment %u", a);

    int64_t n_kv = jq_gguf_n_kv(g), n_t = jq_gguf_n_tensors(g);
    jq_fuzz_check(n_kv >= 0 && n_t >= 0 && (uint64_t)(n_kv + n_t) <= size,
                  "%lld keys, %lld tensors in %zu bytes", (long long)n_kv,
                  (long long)n_t, size);
    for (int64_t i = 0; i < n_kv; i++)
        walk_kv(g, &b, i);
    jq_fuzz_check(jq_gguf_kv_key(g, n_kv).ptr == NULL &&
                      jq_gguf_kv_key(g, -1).ptr == NULL &&
                      jq_gguf_kv_type(g, n_kv) == JQ_GGUF_TYPE_COUNT_,
                  "key index out of range accepted");
    for (int64_t i = 0; i < n_t; i++)
        walk_tensor(g, &b, i);
    jq_fuzz_check(jq_gguf_tensor_at(g, n_t) == NULL &&
                      jq_gguf_tensor_at(g, -1) == NULL,
                  "tensor index out of range accepted");

    jq_vocab *voc = jq_vocab_load(g, err, sizeof err);
    jq_gguf_close(g);
    /* The vocabulary copies what it needs (tokenizer.h): free the file
     * first, so ASan reports any pointer it kept into it. */
    free(copy);
    if (voc) {
        walk_vocab(voc, &b);
        jq_vocab_free(voc);
    }

    /* only files the reader accepts: the model loader starts with the same
     * reader, and the memory file costs system calls on every run */
    try_model(data, size);
    return 0;
}
