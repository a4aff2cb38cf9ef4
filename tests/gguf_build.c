/* gguf_build.c — see gguf_build.h. */
#include "gguf_build.h"

#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "testutil.h"

void gb_raw(gb *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 256;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
void gb_u32(gb *b, uint32_t v) { gb_raw(b, &v, 4); }
void gb_u64(gb *b, uint64_t v) { gb_raw(b, &v, 8); }
void gb_str(gb *b, const char *s)
{
    gb_u64(b, strlen(s));
    gb_raw(b, s, strlen(s));
}
void gb_key(gb *b, const char *k, uint32_t type)
{
    gb_str(b, k);
    gb_u32(b, type);
    b->n_kv++;
}
void kv_str(gb *b, const char *k, const char *v)
{
    gb_key(b, k, JQ_GGUF_STRING);
    gb_str(b, v);
}
void kv_u32(gb *b, const char *k, uint32_t v)
{
    gb_key(b, k, JQ_GGUF_UINT32);
    gb_u32(b, v);
}
void kv_bool(gb *b, const char *k, bool v)
{
    gb_key(b, k, JQ_GGUF_BOOL);
    unsigned char c = v;
    gb_raw(b, &c, 1);
}
void kv_strs(gb *b, const char *k, const char *const *v, size_t n)
{
    gb_key(b, k, JQ_GGUF_ARRAY);
    gb_u32(b, JQ_GGUF_STRING);
    gb_u64(b, n);
    for (size_t i = 0; i < n; i++)
        gb_str(b, v[i]);
}
void kv_f32s(gb *b, const char *k, const float *v, size_t n)
{
    gb_key(b, k, JQ_GGUF_ARRAY);
    gb_u32(b, JQ_GGUF_FLOAT32);
    gb_u64(b, n);
    gb_raw(b, v, n * 4);
}
void kv_i32s(gb *b, const char *k, const int32_t *v, size_t n)
{
    gb_key(b, k, JQ_GGUF_ARRAY);
    gb_u32(b, JQ_GGUF_INT32);
    gb_u64(b, n);
    gb_raw(b, v, n * 4);
}

/* Wraps the key/values in a GGUF v3 header (no tensors). */
unsigned char *gb_finish(gb *b, size_t *size)
{
    gb out = {0};
    gb_raw(&out, "GGUF", 4);
    gb_u32(&out, 3);
    gb_u64(&out, 0);
    gb_u64(&out, b->n_kv);
    gb_raw(&out, b->p, b->n);
    free(b->p);
    *size = out.n;
    return out.p;
}

/* Loads a vocabulary from the built buffer; returns it or NULL with err. */
jq_vocab *load_built(gb *b, char *err, size_t errlen)
{
    size_t size;
    unsigned char *data = gb_finish(b, &size);
    jq_gguf *g = jq_gguf_open_buffer(data, size, err, errlen);
    if (!g)
        fail_msg("the built GGUF does not open: %s", err);
    jq_vocab *v = jq_vocab_load(g, err, errlen);
    jq_gguf_close(g);
    free(data);
    return v;
}

