/* soft_tokens.c — Judge Q soft tokens: initialisation, GGUF load/save and
 * the model-identity hash. See soft_tokens.h for the file format. */
#include "errors.h"
#include "soft_tokens.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "kernels.h"
#include "tokenizer.h"

/* ----------------------------------------------------------------- jqh64 */

/* Odd 64-bit constants with well-mixed bits (golden ratio and the
 * splitmix64 / murmur3 finalizer multipliers). */
#define H_K1 0x9e3779b97f4a7c15ull
#define H_K2 0xbf58476d1ce4e5b9ull
#define H_K3 0x94d049bb133111ebull
#define H_K4 0xd6e8feb86659fd93ull
#define H_K5 0xff51afd7ed558ccdull

static inline uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

/* Little-endian word on any host; memcpy because the bytes of a tensor in
 * a caller's buffer need not be 8-byte aligned. */
static inline uint64_t load_le64(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

/* One lane step: the multiply spreads the word's low bits upwards, the
 * rotation brings the well-mixed high bits back down for the next
 * multiply. */
static inline uint64_t lane_step(uint64_t acc, uint64_t w)
{
    return rotl64(acc + w * H_K2, 31) * H_K1;
}

uint64_t jq_hash64(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    size_t rem = len;
    uint64_t h;
    if (rem >= 32) {
        /* four independent dependency chains, so the multiplier pipeline
         * stays full and a 1 GB tensor hashes at memory speed */
        uint64_t v0 = seed + H_K1 + H_K2, v1 = seed + H_K2, v2 = seed,
                 v3 = seed - H_K1;
        do {
            v0 = lane_step(v0, load_le64(p));
            v1 = lane_step(v1, load_le64(p + 8));
            v2 = lane_step(v2, load_le64(p + 16));
            v3 = lane_step(v3, load_le64(p + 24));
            p += 32;
            rem -= 32;
        } while (rem >= 32);
        h = rotl64(v0, 1) + rotl64(v1, 7) + rotl64(v2, 12) + rotl64(v3, 18);
        /* fold each lane in again so a difference confined to one lane
         * cannot cancel in the sum above */
        h = (h ^ lane_step(0, v0)) * H_K1 + H_K4;
        h = (h ^ lane_step(0, v1)) * H_K1 + H_K4;
        h = (h ^ lane_step(0, v2)) * H_K1 + H_K4;
        h = (h ^ lane_step(0, v3)) * H_K1 + H_K4;
    } else {
        h = seed + H_K3;
    }
    /* the length separates inputs that differ only by trailing zero bytes
     * (the last partial word is zero-padded) */
    h += (uint64_t)len;
    while (rem >= 8) {
        h ^= lane_step(0, load_le64(p));
        h = rotl64(h, 27) * H_K1 + H_K4;
        p += 8;
        rem -= 8;
    }
    if (rem) {
        unsigned char tail[8] = {0};
        memcpy(tail, p, rem);
        h ^= load_le64(tail) * H_K1;
        h = rotl64(h, 23) * H_K2 + H_K3;
    }
    /* avalanche: every input bit affects every output bit */
    h ^= h >> 33;
    h *= H_K5;
    h ^= h >> 29;
    h *= H_K3;
    h ^= h >> 32;
    return h;
}

static void store_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

uint64_t jq_model_embd_hash(const jq_model *m)
{
    const jq_matrix *e = &m->tok_embd;
    uint64_t nbytes = (uint64_t)e->rows * e->row_bytes;
    unsigned char desc[32];
    store_le64(desc, e->type);
    store_le64(desc + 8, (uint64_t)e->cols); /* ne0 */
    store_le64(desc + 16, (uint64_t)e->rows); /* ne1 */
    store_le64(desc + 24, nbytes);
    return jq_hash64(e->data, (size_t)nbytes, jq_hash64(desc, sizeof desc, 0));
}

/* ------------------------------------------------------------------ init */

/* splitmix64: a tiny generator whose output depends only on the seed, so
 * the chosen tokens are the same on every platform and libc. */
static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += H_K1);
    z = (z ^ (z >> 30)) * H_K2;
    z = (z ^ (z >> 27)) * H_K3;
    return z ^ (z >> 31);
}

/* Uniform in [0, bound) without modulo bias: reject the top partial
 * range. */
static uint64_t rng_below(uint64_t *s, uint64_t bound)
{
    uint64_t limit = -bound % bound; /* 2^64 mod bound */
    for (;;) {
        uint64_t r = splitmix64(s);
        if (r >= limit)
            return r % bound;
    }
}

static bool all_finite(const float *x, size_t n, size_t *bad)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) {
            *bad = i;
            return false;
        }
    return true;
}

void jq_soft_tokens_free(jq_soft_tokens *s)
{
    if (!s)
        return;
    free(s->emb);
    free(s->init_token_ids);
    free(s);
}

/* A zeroed struct with room for n rows (and n init ids when with_ids). */
static jq_soft_tokens *soft_alloc(int32_t n, int32_t n_embd, bool with_ids)
{
    jq_soft_tokens *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->n = n;
    s->n_embd = n_embd;
    s->emb = malloc((size_t)n * (size_t)n_embd * sizeof(float));
    if (with_ids)
        s->init_token_ids = malloc((size_t)n * sizeof(int32_t));
    if (!s->emb || (with_ids && !s->init_token_ids)) {
        jq_soft_tokens_free(s);
        return NULL;
    }
    return s;
}

jq_soft_tokens *jq_soft_tokens_init(const jq_model *m, int32_t n,
                                    uint64_t seed, char *err, size_t errlen)
{
    if (!m || !m->vocab || !m->tok_embd.data) {
        jq_set_err(err, errlen, "soft tokens: no model (or it has no vocabulary)");
        return NULL;
    }
    if (n < 1 || n > JQ_SOFT_MAX_TOKENS) {
        jq_set_err(err, errlen, "soft tokens: n must be in 1..%d, got %" PRId32,
                JQ_SOFT_MAX_TOKENS, n);
        return NULL;
    }
    int32_t n_vocab = m->hp.n_vocab;
    if (jq_vocab_size(m->vocab) < n_vocab)
        n_vocab = jq_vocab_size(m->vocab);
    int32_t *pool = malloc((size_t)(n_vocab > 0 ? n_vocab : 1) * sizeof *pool);
    if (!pool) {
        jq_set_err(err, errlen, "soft tokens: out of memory");
        return NULL;
    }
    /* Only NORMAL tokens: control, byte, unknown and unused tokens have
     * embeddings that training barely shaped, a poor starting point. */
    int32_t n_normal = 0;
    for (int32_t id = 0; id < n_vocab; id++)
        if (jq_vocab_token_type(m->vocab, id) == JQ_TOKEN_NORMAL)
            pool[n_normal++] = id;
    if (n_normal == 0) {
        free(pool);
        jq_set_err(err, errlen,
                "soft tokens: the model's vocabulary has no ordinary (NORMAL) "
                "tokens to start from");
        return NULL;
    }
    int32_t n_embd = m->hp.n_embd;
    jq_soft_tokens *s = soft_alloc(n, n_embd, true);
    if (!s) {
        free(pool);
        jq_set_err(err, errlen, "soft tokens: out of memory");
        return NULL;
    }
    /* Incremental Fisher-Yates over the NORMAL ids: draws are distinct
     * until the pool is used up, then a new round reshuffles it, so n may
     * exceed the number of ordinary tokens. */
    uint64_t rng = seed;
    for (int32_t i = 0; i < n; i++) {
        int32_t k = i % n_normal;
        int32_t j = k + (int32_t)rng_below(&rng, (uint64_t)(n_normal - k));
        int32_t t = pool[k];
        pool[k] = pool[j];
        pool[j] = t;
        s->init_token_ids[i] = pool[k];
    }
    free(pool);

    const jq_matrix *e = &m->tok_embd;
    for (int32_t i = 0; i < n; i++) {
        float *row = s->emb + (size_t)i * (size_t)n_embd;
        jq_dequantize_row(e->type,
                          (const char *)e->data +
                              (size_t)s->init_token_ids[i] * e->row_bytes,
                          row, n_embd);
        size_t bad;
        if (!all_finite(row, (size_t)n_embd, &bad)) {
            jq_set_err(err, errlen,
                    "soft tokens: the embedding of token %" PRId32
                    " has a non-finite value at %zu",
                    s->init_token_ids[i], bad);
            jq_soft_tokens_free(s);
            return NULL;
        }
    }
    s->model_hash = jq_model_embd_hash(m);
    snprintf(s->model_arch, sizeof s->model_arch, "%s", m->hp.arch);
    s->model_n_layer = m->hp.n_layer;
    snprintf(s->init, sizeof s->init, "%s", JQ_SOFT_INIT_RANDOM_TOKENS);
    s->has_seed = true;
    s->seed = seed;
    s->trained_steps = 0;
    return s;
}

/* ------------------------------------------------------------------ load */

/* Copies a string value into a fixed buffer; false when absent, not a
 * string, empty, too long or holding a NUL. */
static bool get_short_str(const jq_gguf *g, const char *key, char *out,
                          size_t outlen)
{
    jq_str v;
    if (!jq_gguf_get_str(g, key, &v) || v.len == 0 || v.len >= outlen ||
        memchr(v.ptr, 0, v.len))
        return false;
    memcpy(out, v.ptr, v.len);
    out[v.len] = 0;
    return true;
}

/* Exactly 16 hex digits (what save writes), either case. */
static bool parse_hash(jq_str v, uint64_t *out)
{
    if (v.len != 16)
        return false;
    uint64_t h = 0;
    for (int i = 0; i < 16; i++) {
        char c = v.ptr[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return false;
        h = h << 4 | (uint64_t)d;
    }
    *out = h;
    return true;
}

/* A positive integer key that fits int32; otherwise an error naming it. */
static bool get_pos_i32(const jq_gguf *g, const char *path, const char *key,
                        int32_t *out, char *err, size_t errlen)
{
    if (jq_gguf_find_key(g, key) < 0) {
        jq_set_err(err, errlen, "%s: metadata %s is missing", path, key);
        return false;
    }
    int32_t v;
    if (!jq_gguf_get_i32(g, key, &v) || v < 1) {
        jq_set_err(err, errlen, "%s: metadata %s is not a positive 32-bit integer",
                path, key);
        return false;
    }
    *out = v;
    return true;
}

/* Checks the metadata and tensor against each other and fills s. */
static jq_soft_tokens *load_checked(const jq_gguf *g, const char *path,
                                    const jq_model *m, char *err,
                                    size_t errlen)
{
    jq_str arch;
    if (!jq_gguf_get_str(g, "general.architecture", &arch)) {
        jq_set_err(err, errlen,
                "%s: not a judgeq soft-token file (general.architecture is "
                "missing or not a string)",
                path);
        return NULL;
    }
    if (!jq_str_eq(arch, JQ_SOFT_ARCH)) {
        jq_set_err(err, errlen,
                "%s: not a judgeq soft-token file (general.architecture is "
                "'%.*s', expected '" JQ_SOFT_ARCH "')",
                path, (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
        return NULL;
    }
    uint32_t version;
    if (!jq_gguf_get_u32(g, "judgeq.soft.format_version", &version)) {
        jq_set_err(err, errlen,
                "%s: metadata judgeq.soft.format_version is missing or not an "
                "integer",
                path);
        return NULL;
    }
    if (version != JQ_SOFT_FORMAT_VERSION) {
        jq_set_err(err, errlen,
                "%s: soft-token format version %" PRIu32
                " is not supported (this build reads version %d)",
                path, version, JQ_SOFT_FORMAT_VERSION);
        return NULL;
    }

    char model_arch[32];
    if (!get_short_str(g, "judgeq.soft.model_architecture", model_arch,
                       sizeof model_arch)) {
        jq_set_err(err, errlen,
                "%s: metadata judgeq.soft.model_architecture is missing or "
                "not a short string",
                path);
        return NULL;
    }
    int32_t model_n_embd, model_n_layer, n_tokens;
    if (!get_pos_i32(g, path, "judgeq.soft.model_n_embd", &model_n_embd, err,
                     errlen) ||
        !get_pos_i32(g, path, "judgeq.soft.model_n_layer", &model_n_layer,
                     err, errlen) ||
        !get_pos_i32(g, path, "judgeq.soft.n_tokens", &n_tokens, err, errlen))
        return NULL;
    jq_str hash_str;
    uint64_t model_hash;
    if (!jq_gguf_get_str(g, "judgeq.soft.model_token_embd_hash", &hash_str) ||
        !parse_hash(hash_str, &model_hash)) {
        jq_set_err(err, errlen,
                "%s: metadata judgeq.soft.model_token_embd_hash is missing or "
                "not 16 hex digits",
                path);
        return NULL;
    }

    const jq_gguf_tensor *t = jq_gguf_find_tensor(g, JQ_SOFT_TENSOR);
    if (!t) {
        jq_set_err(err, errlen, "%s: tensor " JQ_SOFT_TENSOR " is missing", path);
        return NULL;
    }
    if (t->type != JQ_TYPE_F32) {
        const jq_type_traits *tr = jq_type_traits_get(t->type);
        jq_set_err(err, errlen,
                "%s: tensor " JQ_SOFT_TENSOR " has type %s, expected f32",
                path, tr ? tr->name : "(unknown)");
        return NULL;
    }
    if (t->n_dims != 2) {
        jq_set_err(err, errlen,
                "%s: tensor " JQ_SOFT_TENSOR " has %" PRIu32
                " dimensions, expected 2 ([n_embd, n])",
                path, t->n_dims);
        return NULL;
    }
    if (t->ne[0] != model_n_embd) {
        jq_set_err(err, errlen,
                "%s: tensor " JQ_SOFT_TENSOR " has rows of %" PRId64
                " values but judgeq.soft.model_n_embd is %" PRId32,
                path, t->ne[0], model_n_embd);
        return NULL;
    }
    if (t->ne[1] < 1 || t->ne[1] > JQ_SOFT_MAX_TOKENS) {
        jq_set_err(err, errlen,
                "%s: tensor " JQ_SOFT_TENSOR " has %" PRId64
                " soft tokens, expected 1..%d",
                path, t->ne[1], JQ_SOFT_MAX_TOKENS);
        return NULL;
    }
    if (t->ne[1] != n_tokens) {
        jq_set_err(err, errlen,
                "%s: tensor " JQ_SOFT_TENSOR " has %" PRId64
                " soft tokens but judgeq.soft.n_tokens is %" PRId32,
                path, t->ne[1], n_tokens);
        return NULL;
    }
    size_t n_vals = (size_t)t->ne[0] * (size_t)t->ne[1];
    if (t->nbytes != n_vals * sizeof(float)) {
        /* the reader sizes tensors from their shape; a mismatch means a
         * bug there, but never read past what it validated */
        jq_set_err(err, errlen, "%s: tensor " JQ_SOFT_TENSOR " has %" PRIu64
                " bytes, expected %zu", path, t->nbytes,
                n_vals * sizeof(float));
        return NULL;
    }

    /* The model check comes before the values are read: "wrong model" is
     * the more useful message, and it is cheap. */
    if (m) {
        if (strcmp(model_arch, m->hp.arch) != 0) {
            jq_set_err(err, errlen,
                    "%s: made for a model of architecture '%s', this model is "
                    "'%s'",
                    path, model_arch, m->hp.arch);
            return NULL;
        }
        if (model_n_embd != m->hp.n_embd) {
            jq_set_err(err, errlen,
                    "%s: made for a model with n_embd %" PRId32
                    ", this model has %" PRId32,
                    path, model_n_embd, m->hp.n_embd);
            return NULL;
        }
        if (model_n_layer != m->hp.n_layer) {
            jq_set_err(err, errlen,
                    "%s: made for a model with n_layer %" PRId32
                    ", this model has %" PRId32,
                    path, model_n_layer, m->hp.n_layer);
            return NULL;
        }
        uint64_t mh = jq_model_embd_hash(m);
        if (mh != model_hash) {
            jq_set_err(err, errlen,
                    "%s: made for a model with token embedding hash %016" PRIx64
                    ", which differs from this model's %016" PRIx64
                    " (another model or another quantization)",
                    path, model_hash, mh);
            return NULL;
        }
    }

    /* optional provenance, validated when present */
    bool has_ids = jq_gguf_find_key(g, "judgeq.soft.init_token_ids") >= 0;
    jq_soft_tokens *s = soft_alloc(n_tokens, model_n_embd, has_ids);
    if (!s) {
        jq_set_err(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    if (has_ids) {
        jq_gguf_type elem;
        uint64_t cnt;
        if (!jq_gguf_get_arr(g, "judgeq.soft.init_token_ids", &elem, &cnt) ||
            cnt != (uint64_t)n_tokens ||
            !jq_gguf_arr_to_i32(g, "judgeq.soft.init_token_ids",
                                s->init_token_ids, cnt)) {
            jq_set_err(err, errlen,
                    "%s: metadata judgeq.soft.init_token_ids is not an array "
                    "of %" PRId32 " 32-bit integers",
                    path, n_tokens);
            goto fail;
        }
        int32_t limit = m ? m->hp.n_vocab : INT32_MAX;
        for (int32_t i = 0; i < n_tokens; i++)
            if (s->init_token_ids[i] < 0 || s->init_token_ids[i] >= limit) {
                jq_set_err(err, errlen,
                        "%s: judgeq.soft.init_token_ids[%" PRId32 "] = %" PRId32
                        " is not a token id of the model",
                        path, i, s->init_token_ids[i]);
                goto fail;
            }
    }
    if (jq_gguf_find_key(g, "judgeq.soft.init") >= 0 &&
        !get_short_str(g, "judgeq.soft.init", s->init, sizeof s->init)) {
        jq_set_err(err, errlen,
                "%s: metadata judgeq.soft.init is not a short string", path);
        goto fail;
    }
    if (jq_gguf_find_key(g, "judgeq.soft.seed") >= 0) {
        if (!jq_gguf_get_u64(g, "judgeq.soft.seed", &s->seed)) {
            jq_set_err(err, errlen,
                    "%s: metadata judgeq.soft.seed is not an unsigned integer",
                    path);
            goto fail;
        }
        s->has_seed = true;
    }
    if (jq_gguf_find_key(g, "judgeq.soft.trained_steps") >= 0 &&
        !jq_gguf_get_u64(g, "judgeq.soft.trained_steps", &s->trained_steps)) {
        jq_set_err(err, errlen,
                "%s: metadata judgeq.soft.trained_steps is not an unsigned "
                "integer",
                path);
        goto fail;
    }

    /* memcpy: the data offset is only as aligned as the file says */
    memcpy(s->emb, t->data, n_vals * sizeof(float));
    size_t bad;
    if (!all_finite(s->emb, n_vals, &bad)) {
        jq_set_err(err, errlen,
                "%s: soft token %zu, element %zu is not finite (%g)", path,
                bad / (size_t)model_n_embd, bad % (size_t)model_n_embd,
                (double)s->emb[bad]);
        goto fail;
    }
    s->model_hash = model_hash;
    memcpy(s->model_arch, model_arch, sizeof s->model_arch);
    s->model_n_layer = model_n_layer;
    return s;
fail:
    jq_soft_tokens_free(s);
    return NULL;
}

jq_soft_tokens *jq_soft_tokens_load(const char *path, const jq_model *m,
                                    char *err, size_t errlen)
{
    /* the reader's messages already start with the path */
    jq_gguf *g = jq_gguf_open(path, err, errlen);
    if (!g)
        return NULL;
    jq_soft_tokens *s = load_checked(g, path, m, err, errlen);
    jq_gguf_close(g);
    return s;
}

/* ------------------------------------------------------------------ save */

int jq_soft_tokens_save(const jq_soft_tokens *s, const jq_model *m,
                        const char *path, char *err, size_t errlen)
{
    if (!s || !s->emb || s->n < 1 || s->n > JQ_SOFT_MAX_TOKENS ||
        s->n_embd < 1) {
        jq_set_err(err, errlen, "%s: nothing to save (need 1..%d soft tokens)",
                path, JQ_SOFT_MAX_TOKENS);
        return -1;
    }
    size_t n_vals = (size_t)s->n * (size_t)s->n_embd;
    size_t bad;
    if (!all_finite(s->emb, n_vals, &bad)) {
        jq_set_err(err, errlen,
                "%s: not saved: soft token %zu, element %zu is not finite",
                path, bad / (size_t)s->n_embd, bad % (size_t)s->n_embd);
        return -1;
    }
    const char *arch = s->model_arch;
    int32_t n_layer = s->model_n_layer;
    uint64_t hash = s->model_hash;
    if (m) {
        uint64_t mh = jq_model_embd_hash(m);
        if (s->n_embd != m->hp.n_embd || mh != hash) {
            jq_set_err(err, errlen,
                    "%s: not saved: these soft tokens (n_embd %" PRId32
                    ", model hash %016" PRIx64 ") were made for another model "
                    "(n_embd %" PRId32 ", hash %016" PRIx64 ")",
                    path, s->n_embd, hash, m->hp.n_embd, mh);
            return -1;
        }
        arch = m->hp.arch;
        n_layer = m->hp.n_layer;
    }
    if (!arch[0] || n_layer < 1) {
        jq_set_err(err, errlen,
                "%s: not saved: the model's architecture and layer count are "
                "unknown",
                path);
        return -1;
    }

    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, hash);
    int rc = -1;
    jq_gguf_writer *w = jq_gguf_writer_new();
    if (!w) {
        jq_set_err(err, errlen, "%s: out of memory", path);
        return -1;
    }
    int bad_kv = 0;
    bad_kv |= jq_gguf_writer_set_str(w, "general.architecture", JQ_SOFT_ARCH);
    bad_kv |= jq_gguf_writer_set_u32(w, "judgeq.soft.format_version",
                                     JQ_SOFT_FORMAT_VERSION);
    bad_kv |= jq_gguf_writer_set_u32(w, "judgeq.soft.n_tokens", (uint32_t)s->n);
    bad_kv |= jq_gguf_writer_set_str(w, "judgeq.soft.model_architecture", arch);
    bad_kv |= jq_gguf_writer_set_u32(w, "judgeq.soft.model_n_embd",
                                     (uint32_t)s->n_embd);
    bad_kv |= jq_gguf_writer_set_u32(w, "judgeq.soft.model_n_layer",
                                     (uint32_t)n_layer);
    bad_kv |= jq_gguf_writer_set_str(w, "judgeq.soft.model_token_embd_hash", hex);
    if (s->init[0])
        bad_kv |= jq_gguf_writer_set_str(w, "judgeq.soft.init", s->init);
    if (s->has_seed)
        bad_kv |= jq_gguf_writer_set_u64(w, "judgeq.soft.seed", s->seed);
    if (s->init_token_ids)
        bad_kv |= jq_gguf_writer_set_arr_i32(w, "judgeq.soft.init_token_ids",
                                             s->init_token_ids,
                                             (uint64_t)s->n);
    bad_kv |= jq_gguf_writer_set_u64(w, "judgeq.soft.trained_steps",
                                     s->trained_steps);
    if (bad_kv) {
        jq_set_err(err, errlen, "%s: %s", path, jq_gguf_writer_error(w));
        goto done;
    }
    int64_t ne[2] = {s->n_embd, s->n};
    int ti = jq_gguf_writer_add_tensor(w, JQ_SOFT_TENSOR, JQ_TYPE_F32, 2, ne);
    if (ti < 0) {
        jq_set_err(err, errlen, "%s: %s", path, jq_gguf_writer_error(w));
        goto done;
    }
    if (jq_gguf_writer_tensor_bytes(w, ti) != n_vals * sizeof(float)) {
        jq_set_err(err, errlen, "%s: GGUF writer sizes the tensor at %" PRIu64
                " bytes, expected %zu", path,
                jq_gguf_writer_tensor_bytes(w, ti), n_vals * sizeof(float));
        goto done;
    }
    /* begin/finish write PATH.tmp and rename it over PATH, so a reader
     * never sees a half-written file; on failure the writer removes it */
    if (jq_gguf_writer_begin(w, path) != 0 ||
        jq_gguf_writer_write_tensor(w, ti, s->emb) != 0 ||
        jq_gguf_writer_finish(w) != 0) {
        jq_set_err(err, errlen, "%s", jq_gguf_writer_error(w));
        goto done;
    }
    rc = 0;
done:
    jq_gguf_writer_free(w);
    return rc;
}
