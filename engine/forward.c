/* forward.c — the llama forward pass over a batch of tokens.
 *
 * One call evaluates n tokens at positions n_past .. n_past+n-1: the whole
 * prompt at once (GEMM through jq_gemm) or one decoded token (GEMV through
 * jq_matvec). Each step is split across the pool's threads by output rows
 * (matmuls), by query heads (attention) or by tokens (norms, RoPE), so every
 * parallel region writes disjoint memory and needs no locks.
 *
 * The K/V of every row go into the active jq_kv_store (per layer and KV
 * head, F32 or F16), after RoPE, so a stored key never needs its position
 * again and heads may hold different numbers of entries after eviction.
 * Extra rows (Judge Q soft tokens, oracle observers) run in the same batch
 * after the tokens and can be dropped from the store afterwards.
 */
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "kernels.h"
#include "model.h"

#define CACHE_LINE 64

struct jq_ctx {
    const jq_model *m;
    jq_pool *pool;
    int32_t max_batch;
    jq_kv_store *own;    /* the context's own store (prefill scratch) */
    jq_kv_store *kv;     /* the active store: own, or one set by the caller */
    bool kv_owned;       /* kv != own and the context frees it */
    float *x;       /* (max_batch, n_embd) residual stream */
    float *xb;      /* (max_batch, n_embd) normalised input of a block */
    float *q;       /* (max_batch, n_head * head_dim) */
    float *k;       /* (max_batch, n_head_kv * head_dim) */
    float *v;       /* (max_batch, n_head_kv * head_dim) */
    float *att;     /* (max_batch, n_head * head_dim) attention output */
    float *proj;    /* (max_batch, n_embd) attention / FFN projection */
    float *hb;      /* (max_batch, n_ff) gate, then silu(gate) * up */
    float *hb2;     /* (max_batch, n_ff) up */
    void *xq;       /* (max_batch, xq_row_bytes) int8-quantized input rows
                     * for the integer weight types (jq_quantize_act) */
    size_t xq_row_bytes; /* the widest row of any matrix (buffer sizing) */
    float *scratch; /* per thread: GEMM panel or attention scores */
    size_t scratch_floats; /* per thread, padded to a cache line */
    int32_t scratch_kv;    /* attention keys the scratch can score */
    int n_threads;
};

static void *alloc_floats(size_t n)
{
    /* 64-byte aligned so vector loads of whole rows stay within lines. */
    size_t bytes = (n * sizeof(float) + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
    return aligned_alloc(CACHE_LINE, bytes ? bytes : CACHE_LINE);
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* The largest quantized-activation row any matrix of m needs (0 when no
 * matrix has an integer weight type). */
static size_t widest_act_row(const jq_model *m)
{
    size_t widest = 0;
    const jq_matrix *mats[9];
    for (int l = -1; l < m->hp.n_layer; l++) {
        int n = 0;
        if (l < 0) {
            mats[n++] = &m->output;
        } else {
            const jq_layer *ly = &m->layers[l];
            mats[n++] = &ly->wq, mats[n++] = &ly->wk, mats[n++] = &ly->wv;
            mats[n++] = &ly->wo, mats[n++] = &ly->w_gate;
            mats[n++] = &ly->w_up, mats[n++] = &ly->w_down;
        }
        for (int i = 0; i < n; i++) {
            if (jq_act_kind_of(mats[i]->type) != JQ_ACT_Q8)
                continue;
            size_t rb = jq_act_row_bytes(mats[i]->type, mats[i]->cols);
            if (rb > widest)
                widest = rb;
        }
    }
    return widest;
}

jq_ctx *jq_ctx_new_typed(const jq_model *m, int32_t n_ctx, int32_t max_batch,
                         uint32_t kv_type, jq_pool *pool, char *err,
                         size_t errlen)
{
    const jq_hparams *hp = &m->hp;
    if (n_ctx < 1) {
        jq_set_err(err, errlen, "context size %d must be at least 1", n_ctx);
        return NULL;
    }
    if (kv_type != JQ_TYPE_F32 && kv_type != JQ_TYPE_F16) {
        jq_set_err(err, errlen, "KV type must be f32 or f16");
        return NULL;
    }
    if (max_batch <= 0 || max_batch > n_ctx)
        max_batch = n_ctx;
    jq_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        jq_set_err(err, errlen, "out of memory");
        return NULL;
    }
    c->m = m;
    c->pool = pool;
    c->max_batch = max_batch;
    c->n_threads = pool && pool->n_threads > 1 ? pool->n_threads : 1;

    size_t q_dim = (size_t)hp->n_head * hp->head_dim;
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    size_t B = (size_t)max_batch;
    int64_t widest = max64(max64(hp->n_embd, hp->n_ff), (int64_t)q_dim);
    c->scratch_kv = n_ctx;
    size_t per_thread = (size_t)max64(JQ_GEMM_PANEL * widest, n_ctx);
    c->scratch_floats = (per_thread + 15) / 16 * 16;

    c->own = jq_kv_store_new(hp->n_layer, hp->n_head_kv, hp->head_dim,
                             kv_type, n_ctx);
    c->kv = c->own;
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
    c->xq_row_bytes = widest_act_row(m);
    if (c->xq_row_bytes)
        c->xq = aligned_alloc(CACHE_LINE, c->xq_row_bytes * B);
    if ((c->xq_row_bytes && !c->xq) || !c->own || !c->x || !c->xb || !c->q || !c->k || !c->v || !c->att ||
        !c->proj || !c->hb || !c->hb2 || !c->scratch) {
        jq_set_err(err, errlen,
                "out of memory allocating a context of %d positions", n_ctx);
        jq_ctx_free(c);
        return NULL;
    }
    return c;
}

jq_ctx *jq_ctx_new(const jq_model *m, int32_t n_ctx, int32_t max_batch,
                   jq_pool *pool, char *err, size_t errlen)
{
    return jq_ctx_new_typed(m, n_ctx, max_batch, JQ_TYPE_F32, pool, err,
                            errlen);
}

void jq_ctx_free(jq_ctx *c)
{
    if (!c)
        return;
    if (c->kv_owned)
        jq_kv_store_free(c->kv);
    jq_kv_store_free(c->own);
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
    free(c->xq);
    free(c);
}

const jq_model *jq_ctx_model(const jq_ctx *c) { return c->m; }
int32_t jq_ctx_max_batch(const jq_ctx *c) { return c->max_batch; }
int32_t jq_ctx_n_past(const jq_ctx *c) { return c->kv->next_pos; }
int32_t jq_ctx_n_ctx(const jq_ctx *c) { return c->own->cap[0]; }
jq_kv_store *jq_ctx_kv(jq_ctx *c) { return c->kv; }
jq_kv_store *jq_ctx_own_kv(jq_ctx *c) { return c->own; }

void jq_ctx_set_kv(jq_ctx *c, jq_kv_store *kv, bool owned)
{
    if (c->kv_owned && c->kv != kv)
        jq_kv_store_free(c->kv);
    c->kv = kv;
    c->kv_owned = owned && kv != c->own;
}

jq_kv_store *jq_ctx_detach_kv(jq_ctx *c)
{
    jq_kv_store *kv = c->kv == c->own ? NULL : c->kv;
    c->kv = c->own;
    c->kv_owned = false;
    jq_kv_store_clear(c->own);
    return kv;
}

void jq_ctx_reset(jq_ctx *c)
{
    jq_ctx_set_kv(c, c->own, false);
    jq_kv_store_clear(c->own);
}

uint64_t jq_ctx_kv_bytes(const jq_ctx *c, int32_t n_positions)
{
    const jq_hparams *hp = &c->m->hp;
    return jq_kv_bytes_for(hp->n_layer, hp->n_head_kv, hp->head_dim,
                           c->own->type, n_positions);
}

/* Runs fn on the pool when the step is big enough to pay for waking the
 * workers, else inline as a single share. Why: a parallel region costs a
 * few microseconds of hand-off when every thread is on a core, and a whole
 * scheduler quantum when another process holds one of them; stories260K's
 * 64 x 64 matrices take well under a microsecond, so parallel decode of
 * such a model was 3x slower than one thread (8.4k vs 25k tok/s) and
 * collapsed to ~15 tok/s on a loaded 2-core machine. `work` counts
 * multiply-adds (or element operations); 2^18 of them take ~20 us on one
 * core, well above the hand-off cost, while every matrix of a 1B model
 * (4M+ per token) still runs on all threads. */
#define PARALLEL_MIN_WORK (1 << 18)
static void run_step(jq_ctx *c, jq_pool_fn fn, void *arg, double work)
{
    if (work < PARALLEL_MIN_WORK)
        fn(arg, 0, 1);
    else
        jq_pool_run(c->pool, fn, arg);
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

/* ---- Y (M x W->rows) = X (M x W->cols) . W^T
 *
 * The output columns (weight rows) are handed out in chunks from a shared
 * counter rather than split evenly up front: on a shared machine one of the
 * threads is often descheduled for a time slice, and with a fixed half each
 * the other then waited (22% of a BF16 decode's samples were the pool's
 * spin-wait). Chunk boundaries depend only on the shape and the thread
 * count, never on which thread takes a chunk, so results are reproducible
 * run to run. */

/* One matrix of a job: its output and how its columns are chunked. */
typedef struct {
    const jq_matrix *W;
    float *Y;
    int64_t chunk; /* output columns per chunk */
    int64_t first; /* index of its first chunk in the job */
} linear_part;

/* Up to three products of the same input (q, k, v; gate, up) in one pool
 * step: a decoded token then waits at 5 barriers per layer instead of 8,
 * which matters because a barrier costs a whole time slice whenever the
 * other thread has been descheduled. */
enum { MAX_PARTS = 3 };

typedef struct {
    jq_ctx *c;
    const float *X;
    int64_t M;
    const void *xq; /* X quantized for the weights' type, or NULL (F32) */
    int n_parts;
    linear_part part[MAX_PARTS];
    int64_t n_chunks;
    _Atomic int64_t next; /* the next chunk to take, over all parts */
} linear_job;

/* Columns per chunk. Decode (M == 1): about 512 KB of weights, a multiple
 * of 4 rows (the GEMV's row group), so a chunk is long enough that taking
 * it costs nothing and short enough to even out a lost time slice. Prefill:
 * whole GEMM panels (JQ_GEMM_PANEL columns, dequantized or packed once), as
 * wide as 512 columns (gemm_half_avx512.c packs 512 at a time; F32: 2048,
 * as OpenBLAS packs all of X again for every call, which cost 3-5% at
 * 512) while every thread still gets at least two. */
static int64_t chunk_columns(const jq_matrix *W, int64_t M, int nth)
{
    if (M == 1) {
        int64_t rows = (int64_t)(((size_t)1 << 19) / (W->row_bytes ? W->row_bytes : 1));
        rows = rows / 4 * 4;
        return rows < 16 ? 16 : rows;
    }
    int64_t chunk = W->type == JQ_TYPE_F32 ? 2048 : 512;
    while (chunk > JQ_GEMM_PANEL && W->rows < 2 * (int64_t)nth * chunk)
        chunk /= 2;
    return chunk;
}

static void linear_task(void *arg, int ith, int nth)
{
    (void)nth; /* the chunks were sized for the pool's thread count */
    linear_job *j = arg;
    for (;;) {
        const int64_t k = atomic_fetch_add_explicit(&j->next, 1,
                                                    memory_order_relaxed);
        if (k >= j->n_chunks)
            return;
        int p = 0;
        while (p + 1 < j->n_parts && k >= j->part[p + 1].first)
            p++;
        const linear_part *pt = &j->part[p];
        const jq_matrix *W = pt->W;
        const int64_t n0 = (k - pt->first) * pt->chunk;
        const int64_t n1 = n0 + pt->chunk < W->rows ? n0 + pt->chunk : W->rows;
        if (j->M == 1) {
            if (j->xq)
                jq_matvec_q(W->type, W->data, W->cols, j->xq, pt->Y, n0, n1);
            else
                jq_matvec(W->type, W->data, W->cols, j->X, pt->Y, n0, n1);
        } else if (j->xq) {
            jq_gemm_q(W->type, W->data, W->cols, j->xq, j->M, pt->Y, W->rows,
                      n0, n1, thread_scratch(j->c, ith));
        } else {
            jq_gemm(W->type, W->data, W->cols, j->X, j->M, pt->Y, W->rows, n0,
                    n1, thread_scratch(j->c, ith));
        }
    }
}

typedef struct {
    jq_ctx *c;
    uint32_t type;
    const float *X;
    int64_t M, K;
    size_t rb; /* bytes per quantized row: the kernels expect them packed */
} quantize_job;

static void quantize_task(void *arg, int ith, int nth)
{
    quantize_job *q = arg;
    int64_t lo, hi;
    split_range(q->M, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        jq_quantize_act(q->type, q->X + i * q->K, q->K,
                        (char *)q->c->xq + (size_t)i * q->rb);
}

/* Y[i] = X W[i]^T for n matrices of the same input. For the integer weight
 * types the input is quantized to int8 once here and multiplied with VNNI
 * (kernels.h explains the format); the float types multiply the F32 rows
 * directly. Matrices of different types (a Q4_K_M file's Q6_K attn_v
 * beside Q4_K attn_q) are multiplied one step each. */
static void linear_n(jq_ctx *c, const jq_matrix *const *W, float *const *Y,
                     int n, const float *X, int64_t M)
{
    for (int i = 1; i < n; i++)
        if (W[i]->type != W[0]->type || W[i]->cols != W[0]->cols) {
            for (int k = 0; k < n; k++)
                linear_n(c, &W[k], &Y[k], 1, X, M);
            return;
        }
    linear_job j = {.c = c, .X = X, .M = M, .n_parts = n};
    double work = 0;
    for (int i = 0; i < n; i++) {
        linear_part *pt = &j.part[i];
        pt->W = W[i];
        pt->Y = Y[i];
        pt->chunk = chunk_columns(W[i], M, c->n_threads);
        pt->first = j.n_chunks;
        j.n_chunks += (W[i]->rows + pt->chunk - 1) / pt->chunk;
        work += (double)M * (double)W[i]->rows * (double)W[i]->cols;
    }
    atomic_init(&j.next, 0);
    if (jq_act_kind_of(W[0]->type) == JQ_ACT_Q8) {
        quantize_job q = {.c = c, .type = W[0]->type, .X = X, .M = M,
                          .K = W[0]->cols,
                          .rb = jq_act_row_bytes(W[0]->type, W[0]->cols)};
        run_step(c, quantize_task, &q, (double)M * (double)W[0]->cols * 4);
        j.xq = c->xq;
    }
    run_step(c, linear_task, &j, work);
}

static void linear(jq_ctx *c, const jq_matrix *W, const float *X, int64_t M,
                   float *Y)
{
    linear_n(c, &W, &Y, 1, X, M);
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
            jq_kv_store *kv = c->kv;
            int32_t pos = kv->next_pos + (int32_t)i;
            float *q = c->q + i * q_dim, *k = c->k + i * kv_dim;
            const jq_layer *ly = &c->m->layers[j->layer];
            float *v = c->v + i * kv_dim;
            if (ly->bq) { /* qwen2's biases, before RoPE */
                jq_add(q, ly->bq, (int64_t)q_dim);
                jq_add(k, ly->bk, (int64_t)kv_dim);
                jq_add(v, ly->bv, (int64_t)kv_dim);
            }
            jq_rope(q, hp->n_head, hp->head_dim, hp->rope_dim, pos,
                    hp->rope_base, c->m->rope_factors, hp->rope_neox);
            jq_rope(k, hp->n_head_kv, hp->head_dim, hp->rope_dim, pos,
                    hp->rope_base, c->m->rope_factors, hp->rope_neox);
            for (int g = 0; g < hp->n_head_kv; g++) {
                int32_t at = kv->len[jq_kv_head(kv, j->layer, g)] + (int32_t)i;
                jq_kv_put(kv, j->layer, g, at, k + (size_t)g * hp->head_dim,
                          v + (size_t)g * hp->head_dim, pos);
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
    const jq_hparams *hp = &c->m->hp;
    double width = kind == STEP_SWIGLU ? hp->n_ff
                   : kind == STEP_ROPE_STORE
                       ? (double)(hp->n_head + 2 * hp->n_head_kv) * hp->head_dim
                       : hp->n_embd;
    run_step(c, rows_task, &j, (double)n * width * 8);
}

/* ---- attention: each thread takes whole query heads */

typedef struct {
    jq_ctx *c;
    int32_t n;
    int layer;
    const jq_eval_opts *opts;
} attn_job;

static void attn_task(void *arg, int ith, int nth)
{
    attn_job *j = arg;
    jq_ctx *c = j->c;
    const jq_hparams *hp = &c->m->hp;
    const jq_kv_store *kv = c->kv;
    int group = hp->n_head / hp->n_head_kv;
    size_t q_dim = (size_t)hp->n_head * hp->head_dim;
    float scale = 1.0f / sqrtf((float)hp->head_dim);
    const jq_eval_opts *o = j->opts;
    for (int h = ith; h < hp->n_head; h += nth) {
        int g = h / group;
        /* the head already shows n0 prefix + len own entries; row i also
         * sees rows 0..i of this batch */
        size_t hd = jq_kv_head(kv, j->layer, g);
        int32_t n0 = kv->prefix ? kv->prefix->len[hd] : 0;
        int32_t len = n0 + kv->len[hd];
        jq_attn_args a = {
            .q = c->q + (size_t)h * hp->head_dim,
            .ldq = (int64_t)q_dim,
            .n_q = j->n,
            .kv_type = kv->type,
            .k = jq_kv_key(kv, j->layer, g, 0),
            .v = jq_kv_value(kv, j->layer, g, 0),
            .ldk = hp->head_dim,
            .ldv = hp->head_dim,
            .n_kv = (int64_t)len + j->n,
            .head_dim = hp->head_dim,
            .scale = scale,
            .causal_base = len,
            .out = c->att + (size_t)h * hp->head_dim,
            .ldo = (int64_t)q_dim,
            .scratch = thread_scratch(c, ith),
            .k0 = n0 ? jq_kv_key(kv->prefix, j->layer, g, 0) : NULL,
            .v0 = n0 ? jq_kv_value(kv->prefix, j->layer, g, 0) : NULL,
            .n_kv0 = n0,
        };
        if (o && o->scores) {
            a.score = o->scores +
                      ((size_t)j->layer * hp->n_head + h) * (size_t)o->n_score;
            a.score_row0 = o->score_row0;
            a.score_row1 = o->score_row1;
            a.n_score = o->n_score;
        }
        jq_attention_ex(&a);
    }
}

/* ---- the forward pass */

static void embed_rows(jq_ctx *c, const int32_t *tokens, int32_t n,
                       int32_t first_row)
{
    const jq_model *m = c->m;
    size_t E = (size_t)m->hp.n_embd;
    for (int32_t i = 0; i < n; i++)
        jq_dequantize_row(m->tok_embd.type,
                          (const char *)m->tok_embd.data +
                              (size_t)tokens[i] * m->tok_embd.row_bytes,
                          c->x + (size_t)(first_row + i) * E, m->hp.n_embd);
}

static int check_tokens(const jq_hparams *hp, const int32_t *t, int32_t n,
                        int32_t first_row, char *err, size_t errlen)
{
    for (int32_t i = 0; i < n; i++) {
        if (t[i] < 0 || t[i] >= hp->n_vocab) {
            jq_set_err(err, errlen,
                    "token id %d at batch index %d is outside the vocabulary "
                    "(0..%d)",
                    t[i], first_row + i, hp->n_vocab - 1);
            return -1;
        }
    }
    return 0;
}

int jq_ctx_eval_ex(jq_ctx *c, const int32_t *tokens, int32_t n,
                   const jq_eval_opts *o, float *logits, char *err,
                   size_t errlen)
{
    const jq_model *m = c->m;
    const jq_hparams *hp = &m->hp;
    jq_kv_store *kv = c->kv;
    int32_t n_extra = o ? o->n_extra : 0;
    if (n_extra < 0 || (n_extra > 0 && !o->extra_tokens && !o->extra_embd)) {
        jq_set_err(err, errlen, "extra rows given without tokens or embeddings");
        return -1;
    }
    int32_t rows = n + n_extra;
    if (n < 1 || rows > c->max_batch) {
        jq_set_err(err, errlen, "batch of %d tokens + %d extra rows (allowed "
                "1..%d rows)", n, n_extra, c->max_batch);
        return -1;
    }
    if (jq_kv_store_room(kv) < rows) {
        jq_set_err(err, errlen,
                "context full: %d positions used, %d free, %d new",
                kv->next_pos, jq_kv_store_room(kv), rows);
        return -1;
    }
    if (kv->n_layer != hp->n_layer || kv->n_head_kv != hp->n_head_kv ||
        kv->head_dim != hp->head_dim) {
        jq_set_err(err, errlen, "KV store shape does not match the model");
        return -1;
    }
    for (size_t h = 0; h < (size_t)hp->n_layer * hp->n_head_kv; h++) {
        int64_t shown = (int64_t)kv->len[h] + (kv->prefix ? kv->prefix->len[h] : 0);
        if (shown + rows > c->scratch_kv) {
            jq_set_err(err, errlen,
                    "a head would attend over %lld entries; this context's "
                    "scratch holds %d",
                    (long long)shown + rows, c->scratch_kv);
            return -1;
        }
    }
    if (check_tokens(hp, tokens, n, 0, err, errlen) != 0)
        return -1;
    if (o && o->extra_tokens &&
        check_tokens(hp, o->extra_tokens, n_extra, n, err, errlen) != 0)
        return -1;
    int32_t logits_row = (o && o->logits_row >= 0) ? o->logits_row : n - 1;
    if (o && (o->logits_row >= rows)) {
        jq_set_err(err, errlen, "logits row %d outside the batch of %d rows",
                o->logits_row, rows);
        return -1;
    }
    if (o && o->scores) {
        int32_t max_keys = 0; /* every head appends rows */
        for (size_t h = 0; h < (size_t)hp->n_layer * hp->n_head_kv; h++) {
            int32_t shown = kv->len[h] + (kv->prefix ? kv->prefix->len[h] : 0);
            if (shown + rows > max_keys)
                max_keys = shown + rows;
        }
        if (o->score_row0 < 0 || o->score_row1 > rows ||
            o->score_row0 > o->score_row1 || o->n_score < 0 ||
            o->n_score > max_keys) {
            jq_set_err(err, errlen, "scoring rows [%d, %d) or keys %d outside "
                    "the batch", o->score_row0, o->score_row1, o->n_score);
            return -1;
        }
    }
    size_t E = (size_t)hp->n_embd;

    /* token embeddings, then the extra rows */
    embed_rows(c, tokens, n, 0);
    if (n_extra > 0) {
        if (o->extra_tokens)
            embed_rows(c, o->extra_tokens, n_extra, n);
        else
            memcpy(c->x + (size_t)n * E, o->extra_embd,
                   (size_t)n_extra * E * sizeof(float));
    }

    for (int l = 0; l < hp->n_layer; l++) {
        const jq_layer *ly = &m->layers[l];
        /* attention rmsnorm */
        rows_step(c, rows, l, ly->attn_norm, STEP_NORM);
        /* qkv matmuls */
        linear_n(c, (const jq_matrix *[]){&ly->wq, &ly->wk, &ly->wv},
                 (float *[]){c->q, c->k, c->v}, 3, c->xb, rows);
        /* RoPE on q and k; k and v appended to the store */
        rows_step(c, rows, l, NULL, STEP_ROPE_STORE);
        /* causal attention over the store (and scoring by observers) */
        attn_job aj = {.c = c, .n = rows, .layer = l, .opts = o};
        double keys = (double)kv->len[0] + rows +
                      (kv->prefix ? kv->prefix->len[0] : 0);
        run_step(c, attn_task, &aj,
                 2.0 * rows * hp->n_head * hp->head_dim * keys);
        for (int g = 0; g < hp->n_head_kv; g++)
            kv->len[jq_kv_head(kv, l, g)] += rows;
        /* output projection and residual */
        linear(c, &ly->wo, c->att, rows, c->proj);
        rows_step(c, rows, l, NULL, STEP_RESIDUAL);
        /* ffn rmsnorm, SwiGLU, down projection and residual */
        rows_step(c, rows, l, ly->ffn_norm, STEP_NORM);
        linear_n(c, (const jq_matrix *[]){&ly->w_gate, &ly->w_up},
                 (float *[]){c->hb, c->hb2}, 2, c->xb, rows);
        rows_step(c, rows, l, NULL, STEP_SWIGLU);
        linear(c, &ly->w_down, c->hb, rows, c->proj);
        rows_step(c, rows, l, NULL, STEP_RESIDUAL);
    }
    kv->next_pos += rows;
    if (n_extra > 0 && !o->keep_extra)
        jq_kv_store_drop_last(kv, n_extra); /* observers leave nothing */

    if (logits) {
        /* final rmsnorm of the chosen row, then the classifier */
        float *last = c->xb; /* row 0 of xb is free now */
        jq_rmsnorm(last, c->x + (size_t)logits_row * E, m->output_norm,
                   hp->n_embd, hp->rms_eps);
        linear(c, &m->output, last, 1, logits);
    }
    return 0;
}

int jq_ctx_eval(jq_ctx *c, const int32_t *tokens, int32_t n, float *logits,
                char *err, size_t errlen)
{
    return jq_ctx_eval_ex(c, tokens, n, NULL, logits, err, errlen);
}
