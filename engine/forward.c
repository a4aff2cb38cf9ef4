/* forward.c — the llama forward pass over a batch of tokens.
 *
 * One call evaluates n tokens at positions n_past .. n_past+n-1: the whole
 * prompt at once (GEMM through jq_gemm) or one decoded token (GEMV through
 * jq_matvec). Each step is split across the pool's threads by output rows
 * (matmuls), by query heads (attention) or by tokens (norms, RoPE), so every
 * parallel region writes disjoint memory and needs no locks.
 *
 * KV cache layout: (layer, kv head, position, head_dim), F32. Keys are
 * stored after RoPE, so a stored key never needs its position again.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "model.h"

#define CACHE_LINE 64

struct jq_ctx {
    const jq_model *m;
    jq_pool *pool;
    int32_t n_ctx, max_batch, n_past;
    float *k_cache; /* (n_layer, n_head_kv, n_ctx, head_dim) */
    float *v_cache; /* (n_layer, n_head_kv, n_ctx, head_dim) */
    float *x;       /* (max_batch, n_embd) residual stream */
    float *xb;      /* (max_batch, n_embd) normalised input of a block */
    float *q;       /* (max_batch, n_head * head_dim) */
    float *k;       /* (max_batch, n_head_kv * head_dim) */
    float *v;       /* (max_batch, n_head_kv * head_dim) */
    float *att;     /* (max_batch, n_head * head_dim) attention output */
    float *proj;    /* (max_batch, n_embd) attention / FFN projection */
    float *hb;      /* (max_batch, n_ff) gate, then silu(gate) * up */
    float *hb2;     /* (max_batch, n_ff) up */
    float *scratch; /* per thread: GEMM panel or attention scores */
    size_t scratch_floats; /* per thread, padded to a cache line */
    int n_threads;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void *alloc_floats(size_t n)
{
    /* 64-byte aligned so vector loads of whole rows stay within lines. */
    size_t bytes = (n * sizeof(float) + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
    return aligned_alloc(CACHE_LINE, bytes ? bytes : CACHE_LINE);
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

jq_ctx *jq_ctx_new(const jq_model *m, int32_t n_ctx, int32_t max_batch,
                   jq_pool *pool, char *err, size_t errlen)
{
    const jq_hparams *hp = &m->hp;
    if (n_ctx < 1) {
        set_err(err, errlen, "context size %d must be at least 1", n_ctx);
        return NULL;
    }
    if (max_batch <= 0 || max_batch > n_ctx)
        max_batch = n_ctx;
    jq_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    c->m = m;
    c->pool = pool;
    c->n_ctx = n_ctx;
    c->max_batch = max_batch;
    c->n_threads = pool && pool->n_threads > 1 ? pool->n_threads : 1;

    size_t q_dim = (size_t)hp->n_head * hp->head_dim;
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    size_t cache = (size_t)hp->n_layer * kv_dim * (size_t)n_ctx;
    size_t B = (size_t)max_batch;
    int64_t widest = max64(max64(hp->n_embd, hp->n_ff), (int64_t)q_dim);
    size_t per_thread = (size_t)max64(JQ_GEMM_PANEL * widest, n_ctx);
    c->scratch_floats = (per_thread + 15) / 16 * 16;

    c->k_cache = alloc_floats(cache);
    c->v_cache = alloc_floats(cache);
    c->x = alloc_floats(B * hp->n_embd);
    c->xb = alloc_floats(B * hp->n_embd);
    c->q = alloc_floats(B * q_dim);
    c->k = alloc_floats(B * kv_dim);
    c->v = alloc_floats(B * kv_dim);
    c->att = alloc_floats(B * q_dim);
    c->proj = alloc_floats(B * hp->n_embd);
    c->hb = alloc_floats(B * hp->n_ff);
    c->hb2 = alloc_floats(B * hp->n_ff);
    c->scratch = alloc_floats(c->scratch_floats * (size_t)c->n_threads);
    if (!c->k_cache || !c->v_cache || !c->x || !c->xb || !c->q || !c->k ||
        !c->v || !c->att || !c->proj || !c->hb || !c->hb2 || !c->scratch) {
        set_err(err, errlen,
                "out of memory allocating a context of %d positions", n_ctx);
        jq_ctx_free(c);
        return NULL;
    }
    return c;
}

void jq_ctx_free(jq_ctx *c)
{
    if (!c)
        return;
    free(c->k_cache);
    free(c->v_cache);
    free(c->x);
    free(c->xb);
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->att);
    free(c->proj);
    free(c->hb);
    free(c->hb2);
    free(c->scratch);
    free(c);
}

int32_t jq_ctx_n_past(const jq_ctx *c) { return c->n_past; }
int32_t jq_ctx_n_ctx(const jq_ctx *c) { return c->n_ctx; }
void jq_ctx_reset(jq_ctx *c) { c->n_past = 0; }

uint64_t jq_ctx_kv_bytes(const jq_ctx *c, int32_t n_positions)
{
    const jq_hparams *hp = &c->m->hp;
    return 2ull * (uint64_t)hp->n_layer * (uint64_t)hp->n_head_kv *
           (uint64_t)hp->head_dim * (uint64_t)n_positions * sizeof(float);
}

static float *thread_scratch(jq_ctx *c, int ith)
{
    return c->scratch + (size_t)ith * c->scratch_floats;
}

/* Even split of [0, n) into nth shares; share ith is [*lo, *hi). */
static void split_range(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi)
{
    int64_t per = n / nth, extra = n % nth;
    *lo = ith * per + (ith < extra ? ith : extra);
    *hi = *lo + per + (ith < extra ? 1 : 0);
}

/* ---- Y (M x W->rows) = X (M x W->cols) . W^T */

typedef struct {
    jq_ctx *c;
    const jq_matrix *W;
    const float *X;
    int64_t M;
    float *Y;
} linear_job;

static void linear_task(void *arg, int ith, int nth)
{
    linear_job *j = arg;
    const jq_matrix *W = j->W;
    if (j->M == 1) {
        int64_t r0, r1;
        split_range(W->rows, ith, nth, &r0, &r1);
        if (r1 > r0)
            jq_matvec(W->type, W->data, W->cols, j->X, j->Y, r0, r1);
        return;
    }
    /* Whole panels per thread so a quantized panel is dequantized once. */
    int64_t panels = (W->rows + JQ_GEMM_PANEL - 1) / JQ_GEMM_PANEL;
    int64_t p0, p1;
    split_range(panels, ith, nth, &p0, &p1);
    int64_t n0 = p0 * JQ_GEMM_PANEL, n1 = p1 * JQ_GEMM_PANEL;
    if (n1 > W->rows)
        n1 = W->rows;
    if (n1 > n0)
        jq_gemm(W->type, W->data, W->cols, j->X, j->M, j->Y, W->rows, n0, n1,
                thread_scratch(j->c, ith));
}

static void linear(jq_ctx *c, const jq_matrix *W, const float *X, int64_t M,
                   float *Y)
{
    linear_job j = {.c = c, .W = W, .X = X, .M = M, .Y = Y};
    jq_pool_run(c->pool, linear_task, &j);
}

/* ---- per-token steps: norms, RoPE + cache writes, SwiGLU */

typedef struct {
    jq_ctx *c;
    int32_t n;   /* tokens in the batch */
    int layer;
    const float *norm_w;
    int kind;    /* STEP_* */
} rows_job;

enum { STEP_NORM, STEP_ROPE_STORE, STEP_SWIGLU, STEP_RESIDUAL };

static void rows_task(void *arg, int ith, int nth)
{
    rows_job *j = arg;
    jq_ctx *c = j->c;
    const jq_hparams *hp = &c->m->hp;
    int64_t lo, hi;
    split_range(j->n, ith, nth, &lo, &hi);
    size_t E = (size_t)hp->n_embd;
    size_t q_dim = (size_t)hp->n_head * hp->head_dim;
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    for (int64_t i = lo; i < hi; i++) {
        switch (j->kind) {
        case STEP_NORM:
            jq_rmsnorm(c->xb + i * E, c->x + i * E, j->norm_w, (int64_t)E,
                       hp->rms_eps);
            break;
        case STEP_RESIDUAL:
            jq_add(c->x + i * E, c->proj + i * E, (int64_t)E);
            break;
        case STEP_SWIGLU:
            jq_silu_mul(c->hb + i * (size_t)hp->n_ff,
                        c->hb + i * (size_t)hp->n_ff,
                        c->hb2 + i * (size_t)hp->n_ff, hp->n_ff);
            break;
        case STEP_ROPE_STORE: {
            int32_t pos = c->n_past + (int32_t)i;
            float *q = c->q + i * q_dim, *k = c->k + i * kv_dim;
            jq_rope(q, hp->n_head, hp->head_dim, hp->rope_dim, pos,
                    hp->rope_base, NULL, hp->rope_neox);
            jq_rope(k, hp->n_head_kv, hp->head_dim, hp->rope_dim, pos,
                    hp->rope_base, NULL, hp->rope_neox);
            for (int g = 0; g < hp->n_head_kv; g++) {
                size_t off = (((size_t)j->layer * hp->n_head_kv + g) *
                                  (size_t)c->n_ctx + (size_t)pos) *
                             hp->head_dim;
                memcpy(c->k_cache + off, k + (size_t)g * hp->head_dim,
                       hp->head_dim * sizeof(float));
                memcpy(c->v_cache + off, c->v + i * kv_dim + (size_t)g * hp->head_dim,
                       hp->head_dim * sizeof(float));
            }
            break;
        }
        }
    }
}

static void rows_step(jq_ctx *c, int32_t n, int layer, const float *norm_w,
                      int kind)
{
    rows_job j = {.c = c, .n = n, .layer = layer, .norm_w = norm_w,
                  .kind = kind};
    jq_pool_run(c->pool, rows_task, &j);
}

/* ---- attention: each thread takes whole query heads */

typedef struct {
    jq_ctx *c;
    int32_t n;
    int layer;
} attn_job;

static void attn_task(void *arg, int ith, int nth)
{
    attn_job *j = arg;
    jq_ctx *c = j->c;
    const jq_hparams *hp = &c->m->hp;
    int group = hp->n_head / hp->n_head_kv;
    size_t q_dim = (size_t)hp->n_head * hp->head_dim;
    int64_t n_kv = (int64_t)c->n_past + j->n;
    float scale = 1.0f / sqrtf((float)hp->head_dim);
    for (int h = ith; h < hp->n_head; h += nth) {
        int g = h / group;
        size_t base = ((size_t)j->layer * hp->n_head_kv + g) * (size_t)c->n_ctx *
                      hp->head_dim;
        jq_attention(c->q + (size_t)h * hp->head_dim, (int64_t)q_dim, j->n,
                     c->k_cache + base, hp->head_dim, c->v_cache + base,
                     hp->head_dim, n_kv, hp->head_dim, scale, c->n_past,
                     c->att + (size_t)h * hp->head_dim, (int64_t)q_dim,
                     thread_scratch(c, ith));
    }
}

/* ---- the forward pass */

int jq_ctx_eval(jq_ctx *c, const int32_t *tokens, int32_t n, float *logits,
                char *err, size_t errlen)
{
    const jq_model *m = c->m;
    const jq_hparams *hp = &m->hp;
    if (n < 1 || n > c->max_batch) {
        set_err(err, errlen, "batch of %d tokens (allowed 1..%d)", n,
                c->max_batch);
        return -1;
    }
    if ((int64_t)c->n_past + n > c->n_ctx) {
        set_err(err, errlen,
                "context full: %d positions used + %d new > %d", c->n_past, n,
                c->n_ctx);
        return -1;
    }
    for (int32_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= hp->n_vocab) {
            set_err(err, errlen,
                    "token id %d at batch index %d is outside the vocabulary "
                    "(0..%d)",
                    tokens[i], i, hp->n_vocab - 1);
            return -1;
        }
    }
    size_t E = (size_t)hp->n_embd;

    /* token embeddings */
    for (int32_t i = 0; i < n; i++)
        jq_dequantize_row(m->tok_embd.type,
                          (const char *)m->tok_embd.data +
                              (size_t)tokens[i] * m->tok_embd.row_bytes,
                          c->x + i * E, hp->n_embd);

    for (int l = 0; l < hp->n_layer; l++) {
        const jq_layer *ly = &m->layers[l];
        /* attention rmsnorm */
        rows_step(c, n, l, ly->attn_norm, STEP_NORM);
        /* qkv matmuls */
        linear(c, &ly->wq, c->xb, n, c->q);
        linear(c, &ly->wk, c->xb, n, c->k);
        linear(c, &ly->wv, c->xb, n, c->v);
        /* RoPE on q and k; k and v into the cache */
        rows_step(c, n, l, NULL, STEP_ROPE_STORE);
        /* causal attention over the cache */
        attn_job aj = {.c = c, .n = n, .layer = l};
        jq_pool_run(c->pool, attn_task, &aj);
        /* output projection and residual */
        linear(c, &ly->wo, c->att, n, c->proj);
        rows_step(c, n, l, NULL, STEP_RESIDUAL);
        /* ffn rmsnorm, SwiGLU, down projection and residual */
        rows_step(c, n, l, ly->ffn_norm, STEP_NORM);
        linear(c, &ly->w_gate, c->xb, n, c->hb);
        linear(c, &ly->w_up, c->xb, n, c->hb2);
        rows_step(c, n, l, NULL, STEP_SWIGLU);
        linear(c, &ly->w_down, c->hb, n, c->proj);
        rows_step(c, n, l, NULL, STEP_RESIDUAL);
    }
    c->n_past += n;

    if (logits) {
        /* final rmsnorm of the last token, then the classifier */
        float *last = c->xb; /* row 0 of xb is free now */
        jq_rmsnorm(last, c->x + (size_t)(n - 1) * E, m->output_norm,
                   hp->n_embd, hp->rms_eps);
        linear(c, &m->output, last, 1, logits);
    }
    return 0;
}
