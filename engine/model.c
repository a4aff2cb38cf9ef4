/* model.c — loading a llama-architecture model from GGUF.
 *
 * Hyperparameters come from "{arch}.*" metadata, tensors by their standard
 * llama.cpp names. Every tensor is checked for its expected shape and for a
 * type the kernels compute with before any pointer is handed out, so the
 * forward pass never meets a surprise. Weights stay in the mapping; only
 * the small norm vectors are copied to F32 (they may be stored in another
 * type, and an owned copy is always aligned).
 */
#include "errors.h"
#include "model.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

/* Limits that keep the arithmetic below in range; real models are far
 * inside them. */
#define MAX_DIM (1 << 20)
#define MAX_LAYERS 4096

typedef struct {
    jq_model *m;
    char *err;
    size_t errlen;
    size_t norm_used; /* floats of m->norms handed out */
} loader;

static bool arch_key(const jq_model *m, const char *suffix, char *key,
                     size_t n)
{
    return snprintf(key, n, "%s.%s", m->hp.arch, suffix) < (int)n;
}

/* Reads "{arch}.suffix" as a positive int32 in [lo, hi]. */
static bool get_dim(loader *L, const char *suffix, bool required,
                    int32_t fallback, int32_t lo, int32_t hi, int32_t *out)
{
    char key[128];
    arch_key(L->m, suffix, key, sizeof key);
    uint32_t v;
    if (jq_gguf_find_key(L->m->gguf, key) < 0) {
        if (required) {
            jq_set_err(L->err, L->errlen, "model: metadata key '%s' is missing",
                    key);
            return false;
        }
        *out = fallback;
        return true;
    }
    if (!jq_gguf_get_u32(L->m->gguf, key, &v) || v < (uint32_t)lo ||
        v > (uint32_t)hi) {
        jq_set_err(L->err, L->errlen,
                "model: metadata key '%s' must be an integer in [%d, %d]",
                key, lo, hi);
        return false;
    }
    *out = (int32_t)v;
    return true;
}

static bool get_float(loader *L, const char *suffix, float fallback,
                      float lo, float hi, float *out)
{
    char key[128];
    arch_key(L->m, suffix, key, sizeof key);
    if (jq_gguf_find_key(L->m->gguf, key) < 0) {
        *out = fallback;
        return true;
    }
    float v;
    if (!jq_gguf_get_f32(L->m->gguf, key, &v) || !(v >= lo && v <= hi)) {
        jq_set_err(L->err, L->errlen,
                "model: metadata key '%s' must be a number in [%g, %g]", key,
                lo, hi);
        return false;
    }
    *out = v;
    return true;
}

static bool load_hparams(loader *L)
{
    jq_model *m = L->m;
    jq_hparams *hp = &m->hp;
    jq_str arch;
    if (!jq_gguf_get_str(m->gguf, "general.architecture", &arch)) {
        jq_set_err(L->err, L->errlen,
                "model: general.architecture is missing or not a string");
        return false;
    }
    /* Mistral and TinyLlama files say "llama"; qwen2 differs by q/k/v
     * biases and the NEOX RoPE pair layout (llama.cpp's rope type for it) */
    if (jq_str_eq(arch, "llama")) {
        snprintf(hp->arch, sizeof hp->arch, "llama");
        hp->rope_neox = false;
    } else if (jq_str_eq(arch, "qwen2")) {
        snprintf(hp->arch, sizeof hp->arch, "qwen2");
        hp->rope_neox = true;
    } else {
        jq_set_err(L->err, L->errlen,
                "model: architecture '%.*s' is not supported (judgeq runs "
                "'llama' and 'qwen2')",
                (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
        return false;
    }
    hp->rope_linear = 1.0f;

    if (!get_dim(L, "embedding_length", true, 0, 1, MAX_DIM, &hp->n_embd) ||
        !get_dim(L, "block_count", true, 0, 1, MAX_LAYERS, &hp->n_layer) ||
        !get_dim(L, "feed_forward_length", true, 0, 1, MAX_DIM, &hp->n_ff) ||
        !get_dim(L, "attention.head_count", true, 0, 1, MAX_DIM,
                 &hp->n_head) ||
        !get_dim(L, "attention.head_count_kv", false, hp->n_head, 1, MAX_DIM,
                 &hp->n_head_kv) ||
        !get_dim(L, "context_length", false, 2048, 1, 1 << 24,
                 &hp->n_ctx_train))
        return false;
    if (hp->n_embd % hp->n_head != 0) {
        jq_set_err(L->err, L->errlen,
                "model: embedding_length %d is not a multiple of "
                "head_count %d",
                hp->n_embd, hp->n_head);
        return false;
    }
    if (!get_dim(L, "attention.key_length", false, hp->n_embd / hp->n_head,
                 1, MAX_DIM, &hp->head_dim))
        return false;
    int32_t value_len;
    if (!get_dim(L, "attention.value_length", false, hp->head_dim, 1,
                 MAX_DIM, &value_len))
        return false;
    if (value_len != hp->head_dim) {
        jq_set_err(L->err, L->errlen,
                "model: attention.value_length %d differs from key_length "
                "%d (not supported)",
                value_len, hp->head_dim);
        return false;
    }
    if (hp->n_head % hp->n_head_kv != 0) {
        jq_set_err(L->err, L->errlen,
                "model: head_count %d is not a multiple of head_count_kv %d",
                hp->n_head, hp->n_head_kv);
        return false;
    }
    if (!get_dim(L, "rope.dimension_count", false, hp->head_dim, 2,
                 hp->head_dim, &hp->rope_dim))
        return false;
    if (hp->rope_dim % 2 != 0) {
        jq_set_err(L->err, L->errlen,
                "model: rope.dimension_count %d is odd", hp->rope_dim);
        return false;
    }
    if (!get_float(L, "rope.freq_base", 10000.0f, 1.0f, 1e12f,
                   &hp->rope_base) ||
        !get_float(L, "attention.layer_norm_rms_epsilon", 1e-5f, 0.0f, 1.0f,
                   &hp->rms_eps))
        return false;
    /* RoPE scaling: "linear" divides positions by the factor; Llama 3's
     * per-frequency factors come as the rope_freqs.weight tensor. Other
     * kinds (yarn, longrope) would give silently wrong logits: refuse. */
    char key[128];
    jq_str scaling;
    arch_key(m, "rope.scaling.type", key, sizeof key);
    if (jq_gguf_get_str(m->gguf, key, &scaling) && !jq_str_eq(scaling, "none")) {
        if (!jq_str_eq(scaling, "linear")) {
            jq_set_err(L->err, L->errlen,
                    "model: RoPE scaling '%.*s' is not supported (none, "
                    "linear, and Llama 3's rope_freqs are)",
                    (int)(scaling.len > 32 ? 32 : scaling.len), scaling.ptr);
            return false;
        }
        if (!get_float(L, "rope.scaling.factor", 1.0f, 1e-3f, 1e6f,
                       &hp->rope_linear))
            return false;
    }
    return true;
}

/* Finds a tensor and checks its shape [cols, rows] (rows = 0 for 1-D). */
static const jq_gguf_tensor *find_shaped(loader *L, const char *name,
                                         int64_t cols, int64_t rows)
{
    const jq_gguf_tensor *t = jq_gguf_find_tensor(L->m->gguf, name);
    if (!t) {
        jq_set_err(L->err, L->errlen, "model: tensor '%s' is missing", name);
        return NULL;
    }
    uint32_t want_dims = rows ? 2 : 1;
    bool ok = t->n_dims == want_dims && t->ne[0] == cols &&
              (rows == 0 || t->ne[1] == rows);
    if (!ok) {
        jq_set_err(L->err, L->errlen,
                "model: tensor '%s' has shape [%lld, %lld] (%u dims), "
                "expected [%lld, %lld]",
                name, (long long)t->ne[0], (long long)t->ne[1], t->n_dims,
                (long long)cols, (long long)(rows ? rows : 1));
        return NULL;
    }
    const jq_type_traits *tt = jq_type_traits_get(t->type);
    if (!tt || !tt->compute) {
        jq_set_err(L->err, L->errlen,
                "model: tensor '%s' has type %s (id %u), which judgeq cannot "
                "compute with yet (supported: f32, f16, bf16, q8_0, q4_0, q4_k, q6_k)",
                name, tt ? tt->name : "unknown", t->type);
        return NULL;
    }
    return t;
}

static bool load_matrix(loader *L, const char *name, int64_t cols,
                        int64_t rows, jq_matrix *out)
{
    const jq_gguf_tensor *t = find_shaped(L, name, cols, rows);
    if (!t)
        return false;
    out->data = t->data;
    out->type = t->type;
    out->rows = rows;
    out->cols = cols;
    out->row_bytes = jq_row_bytes(t->type, cols);
    if (out->row_bytes == 0) {
        jq_set_err(L->err, L->errlen,
                "model: tensor '%s': rows of %lld elements do not fit type "
                "%s blocks",
                name, (long long)cols, jq_type_traits_get(t->type)->name);
        return false;
    }
    return true;
}

static const float *load_norm(loader *L, const char *name, int64_t n)
{
    const jq_gguf_tensor *t = find_shaped(L, name, n, 0);
    if (!t)
        return NULL;
    float *dst = L->m->norms + L->norm_used;
    L->norm_used += (size_t)n;
    jq_dequantize_row(t->type, t->data, dst, n);
    return dst;
}

/* An optional 1-D F32-convertible vector of n (a bias), or NULL. */
static bool load_optional_vec(loader *L, const char *name, int64_t n,
                              const float **out)
{
    *out = NULL;
    if (!jq_gguf_find_tensor(L->m->gguf, name))
        return true;
    return (*out = load_norm(L, name, n)) != NULL;
}

static bool load_rope_factors(loader *L)
{
    jq_model *m = L->m;
    const jq_hparams *hp = &m->hp;
    int32_t half = hp->rope_dim / 2;
    bool has_freqs = jq_gguf_find_tensor(m->gguf, "rope_freqs.weight") != NULL;
    if (!has_freqs && hp->rope_linear == 1.0f)
        return true;
    m->rope_factors = malloc(sizeof(float) * (size_t)half);
    if (!m->rope_factors) {
        jq_set_err(L->err, L->errlen, "model: out of memory");
        return false;
    }
    for (int32_t i = 0; i < half; i++)
        m->rope_factors[i] = 1.0f;
    if (has_freqs) {
        const jq_gguf_tensor *t = find_shaped(L, "rope_freqs.weight", half, 0);
        if (!t)
            return false;
        jq_dequantize_row(t->type, t->data, m->rope_factors, half);
        for (int32_t i = 0; i < half; i++) {
            if (!(m->rope_factors[i] > 0.0f) || !(m->rope_factors[i] < 1e30f)) {
                jq_set_err(L->err, L->errlen,
                        "model: rope_freqs.weight[%d] = %g is not a positive "
                        "finite factor",
                        i, (double)m->rope_factors[i]);
                return false;
            }
        }
    }
    /* dividing every angle by the linear factor = dividing positions */
    for (int32_t i = 0; i < half; i++)
        m->rope_factors[i] *= hp->rope_linear;
    return true;
}

static bool load_tensors(loader *L)
{
    jq_model *m = L->m;
    const jq_hparams *hp = &m->hp;
    const jq_gguf_tensor *emb = jq_gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!emb || emb->n_dims != 2) {
        jq_set_err(L->err, L->errlen,
                "model: tensor 'token_embd.weight' is missing or not 2-D");
        return false;
    }
    if (emb->ne[1] < 1 || emb->ne[1] > INT32_MAX) {
        jq_set_err(L->err, L->errlen,
                "model: token_embd.weight has %lld rows (vocabulary size out "
                "of range)",
                (long long)emb->ne[1]);
        return false;
    }
    m->hp.n_vocab = (int32_t)emb->ne[1];
    if (!load_matrix(L, "token_embd.weight", hp->n_embd, hp->n_vocab,
                     &m->tok_embd))
        return false;

    /* norms, plus room for q/k/v biases of every layer */
    size_t n_norms = (size_t)hp->n_embd * (2 * (size_t)hp->n_layer + 1) +
                     (size_t)hp->n_layer *
                         ((size_t)hp->n_head + 2 * (size_t)hp->n_head_kv) *
                         (size_t)hp->head_dim;
    m->norms = malloc(n_norms * sizeof(float));
    m->layers = calloc((size_t)hp->n_layer, sizeof(jq_layer));
    if (!m->norms || !m->layers) {
        jq_set_err(L->err, L->errlen, "model: out of memory");
        return false;
    }
    if (!(m->output_norm = load_norm(L, "output_norm.weight", hp->n_embd)))
        return false;
    if (jq_gguf_find_tensor(m->gguf, "output.weight")) {
        if (!load_matrix(L, "output.weight", hp->n_embd, hp->n_vocab,
                         &m->output))
            return false;
    } else {
        m->output = m->tok_embd; /* tied classifier */
        m->output_tied = true;
    }

    int64_t q_dim = (int64_t)hp->n_head * hp->head_dim;
    int64_t kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;
    char name[96];
#define BLK(suffix) (snprintf(name, sizeof name, "blk.%d." suffix, l), name)
    for (int l = 0; l < hp->n_layer; l++) {
        jq_layer *ly = &m->layers[l];
        if (!(ly->attn_norm = load_norm(L, BLK("attn_norm.weight"), hp->n_embd)) ||
            !load_matrix(L, BLK("attn_q.weight"), hp->n_embd, q_dim, &ly->wq) ||
            !load_matrix(L, BLK("attn_k.weight"), hp->n_embd, kv_dim, &ly->wk) ||
            !load_matrix(L, BLK("attn_v.weight"), hp->n_embd, kv_dim, &ly->wv) ||
            !load_matrix(L, BLK("attn_output.weight"), q_dim, hp->n_embd, &ly->wo) ||
            !(ly->ffn_norm = load_norm(L, BLK("ffn_norm.weight"), hp->n_embd)) ||
            !load_matrix(L, BLK("ffn_gate.weight"), hp->n_embd, hp->n_ff, &ly->w_gate) ||
            !load_matrix(L, BLK("ffn_up.weight"), hp->n_embd, hp->n_ff, &ly->w_up) ||
            !load_matrix(L, BLK("ffn_down.weight"), hp->n_ff, hp->n_embd, &ly->w_down))
            return false;
        if (!load_optional_vec(L, BLK("attn_q.bias"), q_dim, &ly->bq) ||
            !load_optional_vec(L, BLK("attn_k.bias"), kv_dim, &ly->bk) ||
            !load_optional_vec(L, BLK("attn_v.bias"), kv_dim, &ly->bv))
            return false;
        if (!ly->bq != !ly->bk || !ly->bq != !ly->bv) {
            jq_set_err(L->err, L->errlen,
                    "model: block %d has some but not all of the q/k/v "
                    "biases",
                    l);
            return false;
        }
        /* an output-projection bias would be silently ignored: refuse */
        if (jq_gguf_find_tensor(m->gguf, BLK("attn_output.bias"))) {
            jq_set_err(L->err, L->errlen,
                    "model: %s is not supported", name);
            return false;
        }
    }
#undef BLK
    return load_rope_factors(L);
}

jq_model *jq_model_load(const char *path, char *err, size_t errlen)
{
    jq_kernels_init();
    jq_model *m = calloc(1, sizeof *m);
    if (!m) {
        jq_set_err(err, errlen, "model: out of memory");
        return NULL;
    }
    loader L = {.m = m, .err = err, .errlen = errlen};
    char gerr[512];
    m->gguf = jq_gguf_open(path, gerr, sizeof gerr);
    if (!m->gguf) {
        jq_set_err(err, errlen, "%s: %s", path, gerr);
        goto fail;
    }
    m->path = strdup(path);
    if (!m->path || !load_hparams(&L) || !load_tensors(&L))
        goto fail_named;
    m->vocab = jq_vocab_load(m->gguf, gerr, sizeof gerr);
    if (!m->vocab) {
        jq_set_err(err, errlen, "%s: %s", path, gerr);
        goto fail;
    }
    if (jq_vocab_size(m->vocab) != m->hp.n_vocab) {
        jq_set_err(err, errlen,
                "%s: model: tokenizer has %d tokens but token_embd.weight has "
                "%d rows",
                path, jq_vocab_size(m->vocab), m->hp.n_vocab);
        goto fail;
    }
    return m;
fail_named:
    if (err && errlen) {
        /* Prefix the loader's message with the file name. */
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%s", err);
        jq_set_err(err, errlen, "%s: %s", path, tmp);
    }
fail:
    jq_model_free(m);
    return NULL;
}

void jq_model_free(jq_model *m)
{
    if (!m)
        return;
    jq_vocab_free(m->vocab);
    jq_gguf_close(m->gguf);
    free(m->layers);
    free(m->norms);
    free(m->rope_factors);
    free(m->path);
    free(m);
}

uint64_t jq_model_weight_bytes(const jq_model *m)
{
    uint64_t total = 0;
    for (int64_t i = 0; i < jq_gguf_n_tensors(m->gguf); i++)
        total += jq_gguf_tensor_at(m->gguf, i)->nbytes;
    return total;
}
