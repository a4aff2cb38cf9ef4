/* pretrain_model.c — the pretrained model's parameters, their seeded
 * initialisation, and the forward and backward pass over a group of
 * sequences (see pretrain.h).
 *
 * A group is several whole sequences laid end to end as one matrix of T
 * rows (T = their positions in all), so every linear layer is one GEMM of
 * T rows: the forward product, the input gradient dX = dY W and the weight
 * gradient dW += dY^T X (the one extra GEMM per linear layer training
 * needs). Only attention and RoPE look at sequence boundaries. The
 * forward keeps what the backward needs: every layer's input, normed
 * inputs, q/k/v after RoPE, attention output and log-sum-exp, the FFN's
 * gate, up and gated product; backward recomputes attention probabilities
 * from the log-sum-exp (pretrain_attn.c). The output matrix and its
 * softmax are applied only to the scored rows (the answer tokens), a few
 * per sequence, which makes the vocabulary nearly free.
 *
 * The arithmetic mirrors engine/forward.c (rmsnorm as jq_rmsnorm, RoPE
 * by jq_rope with the llama pair layout, attention scale
 * 1/sqrt(head_dim)), so the exported GGUF gives the same logits under
 * judgeq's own forward pass (tests/test_pretrain.c).
 */
#include "pretrain_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "kernels.h"

/* --------------------------------------------------------- parameters */

int jq_pt_hparams_check(const jq_pt_hparams *hp, char *err, size_t errlen)
{
    const struct { const char *name; int32_t v, lo, hi; } dims[] = {
        {"n_vocab", hp->n_vocab, 4, 1 << 20},
        {"n_embd", hp->n_embd, 2, 1 << 14},
        {"n_layer", hp->n_layer, 1, 256},
        {"n_head", hp->n_head, 1, 1024},
        {"n_head_kv", hp->n_head_kv, 1, 1024},
        {"n_ff", hp->n_ff, 1, 1 << 16},
        {"n_ctx", hp->n_ctx, 2, 1 << 16},
    };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (dims[i].v < dims[i].lo || dims[i].v > dims[i].hi)
            return jq_fail(err, errlen, "%s %d is out of range [%d, %d]",
                           dims[i].name, dims[i].v, dims[i].lo, dims[i].hi);
    if (hp->n_embd % hp->n_head)
        return jq_fail(err, errlen, "n_embd %d is not a multiple of n_head %d",
                       hp->n_embd, hp->n_head);
    if ((hp->n_embd / hp->n_head) % 2)
        return jq_fail(err, errlen,
                       "head dimension n_embd/n_head = %d must be even (RoPE "
                       "rotates pairs)",
                       hp->n_embd / hp->n_head);
    if (hp->n_head % hp->n_head_kv)
        return jq_fail(err, errlen,
                       "n_head %d is not a multiple of n_head_kv %d",
                       hp->n_head, hp->n_head_kv);
    if (!(hp->rope_base >= 1.0f && hp->rope_base <= 1e9f))
        return jq_fail(err, errlen, "rope base %g is out of range [1, 1e9]",
                       (double)hp->rope_base);
    if (!(hp->rms_eps > 0.0f && hp->rms_eps <= 1e-2f))
        return jq_fail(err, errlen, "rms eps %g is out of range (0, 0.01]",
                       (double)hp->rms_eps);
    return 0;
}

int jq_pt_layer_tensor(const jq_pt_model *m, int layer, int kind)
{
    (void)m;
    return 1 + layer * JQ_PT_LAYER_TENSORS + kind;
}

int jq_pt_output_norm(const jq_pt_model *m)
{
    return m->hp.tie_embd ? m->n_tensors - 1 : m->n_tensors - 2;
}

int jq_pt_output(const jq_pt_model *m)
{
    return m->hp.tie_embd ? JQ_PT_TOK_EMBD : m->n_tensors - 1;
}

static void add_tensor(jq_pt_model *m, const char *name, int64_t rows,
                       int64_t cols, bool decay)
{
    jq_pt_tensor *t = &m->tensors[m->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->offset = m->n_params;
    t->rows = rows;
    t->cols = cols;
    t->decay = decay;
    m->n_params += (size_t)(rows * cols);
}

jq_pt_model *jq_pt_model_new(const jq_pt_hparams *hp, char *err,
                             size_t errlen)
{
    if (jq_pt_hparams_check(hp, err, errlen) != 0)
        return NULL;
    jq_pt_model *m = calloc(1, sizeof *m);
    if (!m)
        goto oom;
    m->hp = *hp;
    m->head_dim = hp->n_embd / hp->n_head;
    m->tensors = calloc((size_t)(3 + JQ_PT_LAYER_TENSORS * hp->n_layer),
                        sizeof *m->tensors);
    if (!m->tensors)
        goto oom;
    const int64_t E = hp->n_embd, F = hp->n_ff;
    const int64_t kv = (int64_t)hp->n_head_kv * m->head_dim;
    /* the token embedding is a lookup table, not a projection: decay would
     * pull rarely seen tokens' rows to zero between their appearances */
    add_tensor(m, "token_embd.weight", hp->n_vocab, E, false);
    for (int l = 0; l < hp->n_layer; l++) {
        char nm[48];
#define BLK(s) (snprintf(nm, sizeof nm, "blk.%d." s, l), nm)
        add_tensor(m, BLK("attn_norm.weight"), 1, E, false);
        add_tensor(m, BLK("attn_q.weight"), E, E, true);
        add_tensor(m, BLK("attn_k.weight"), kv, E, true);
        add_tensor(m, BLK("attn_v.weight"), kv, E, true);
        add_tensor(m, BLK("attn_output.weight"), E, E, true);
        add_tensor(m, BLK("ffn_norm.weight"), 1, E, false);
        add_tensor(m, BLK("ffn_gate.weight"), F, E, true);
        add_tensor(m, BLK("ffn_up.weight"), F, E, true);
        add_tensor(m, BLK("ffn_down.weight"), E, F, true);
#undef BLK
    }
    add_tensor(m, "output_norm.weight", 1, E, false);
    if (!hp->tie_embd)
        add_tensor(m, "output.weight", hp->n_vocab, E, true);
    m->params = calloc(m->n_params, sizeof *m->params);
    if (!m->params)
        goto oom;
    return m;
oom:
    jq_pt_model_free(m);
    jq_set_err(err, errlen, "out of memory for the model's parameters");
    return NULL;
}

void jq_pt_model_free(jq_pt_model *m)
{
    if (!m)
        return;
    free(m->tensors);
    free(m->params);
    free(m);
}

/* splitmix64: a full-period generator whose every output is a good hash of
 * the state, so one seed gives one stream without warm-up. */
static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A standard normal by Box-Muller from two 53-bit uniforms in (0, 1]. */
static double normal01(uint64_t *s)
{
    const double u1 = ((double)(splitmix64(s) >> 11) + 1.0) * 0x1p-53;
    const double u2 = (double)(splitmix64(s) >> 11) * 0x1p-53;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void jq_pt_model_init(jq_pt_model *m, uint64_t seed)
{
    uint64_t s = seed ^ 0x6a09e667f3bcc909ull;
    const double std = 0.02;
    const double std_out = std / sqrt(2.0 * m->hp.n_layer);
    for (int i = 0; i < m->n_tensors; i++) {
        const jq_pt_tensor *t = &m->tensors[i];
        float *p = m->params + t->offset;
        const size_t n = (size_t)(t->rows * t->cols);
        if (t->rows == 1) { /* norms */
            for (size_t j = 0; j < n; j++)
                p[j] = 1.0f;
            continue;
        }
        /* the projections that write into the residual stream */
        const bool out_proj = strstr(t->name, "attn_output") != NULL ||
                              strstr(t->name, "ffn_down") != NULL;
        const double sd = out_proj ? std_out : std;
        for (size_t j = 0; j < n; j++)
            p[j] = (float)(sd * normal01(&s));
    }
}

/* ------------------------------------------------------------ work */

struct jq_pt_work {
    int64_t cap_tokens, cap_seq;
    int n_layer;
    /* saved by the forward pass, per layer l (T rows each) */
    float **x;     /* (n_layer + 1) x (T, n_embd): layer inputs, then the
                    * final hidden state */
    float **xn;    /* (T, n_embd) attn-normed input */
    float **q;     /* (T, n_head * head_dim) after RoPE */
    float **k;     /* (T, n_head_kv * head_dim) after RoPE */
    float **v;     /* (T, n_head_kv * head_dim) */
    float **att;   /* (T, n_head * head_dim) attention output */
    float **lse;   /* (T, n_head) */
    float **xm;    /* (T, n_embd) after the attention residual */
    float **xn2;   /* (T, n_embd) ffn-normed */
    float **gate;  /* (T, n_ff) */
    float **up;    /* (T, n_ff) */
    float **hgate; /* (T, n_ff) silu(gate) * up */
    /* backward */
    float *dx;     /* (T, n_embd) gradient of the residual stream */
    float *dxn;    /* (T, n_embd) */
    float *dh;     /* (T, n_ff) */
    float *dup;    /* (T, n_ff) */
    float *datt;   /* (T, n_head * head_dim) */
    float *dq;     /* (T, n_head * head_dim) */
    float *dk, *dv; /* (T, n_head_kv * head_dim) */
    float *row;    /* (n_embd) one row of rmsnorm backward */
    /* attention scratch */
    float *S, *dP, *D;
    /* the head: scored rows */
    int64_t *rows;   /* (T) row index in the group */
    int32_t *target; /* (T) */
    int32_t *seq_of; /* (T) which sequence the row belongs to */
    unsigned char *is_ctx; /* (T) the row predicts a prompt token */
    float *xf;       /* (T, n_embd) output-normed */
    float *logits;   /* (T, n_vocab), then their gradient */
    float *dxf;      /* (T, n_embd) */
    unsigned char *seq_ok; /* (cap sequences) all scored tokens correct */
    float *arena;
};

int64_t jq_pt_work_cap_tokens(const jq_pt_work *w)
{
    return w->cap_tokens;
}

void jq_pt_work_free(jq_pt_work *w)
{
    if (!w)
        return;
    free(w->x);
    free(w->rows);
    free(w->target);
    free(w->seq_of);
    free(w->seq_ok);
    free(w->is_ctx);
    free(w->arena);
    free(w);
}

jq_pt_work *jq_pt_work_new(const jq_pt_model *m, int64_t cap_tokens,
                           int64_t cap_seq)
{
    const jq_pt_hparams *hp = &m->hp;
    if (cap_tokens < 1 || cap_seq < 1 || cap_seq > cap_tokens)
        return NULL;
    jq_pt_work *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->cap_tokens = cap_tokens;
    w->cap_seq = cap_seq;
    const int L = hp->n_layer;
    w->n_layer = L;
    const size_t T = (size_t)cap_tokens, E = (size_t)hp->n_embd,
                 F = (size_t)hp->n_ff, V = (size_t)hp->n_vocab,
                 QD = (size_t)hp->n_head * (size_t)m->head_dim,
                 KD = (size_t)hp->n_head_kv * (size_t)m->head_dim,
                 H = (size_t)hp->n_head;
    const size_t per_layer = T * (E + E + QD + KD + KD + QD + H + E + E +
                                  3 * F);
    const size_t bwd = T * (E + E + F + F + QD + QD + KD + KD) + E;
    const size_t attn = 2 * (size_t)JQ_PT_ATTN_BLOCK * (size_t)cap_seq +
                        (size_t)cap_seq;
    const size_t head = T * (E + V + E);
    const size_t total = T * E * (size_t)(L + 1) + per_layer * (size_t)L +
                         bwd + attn + head;
    w->x = calloc((size_t)(L + 1) * 12, sizeof(float *));
    w->rows = malloc(T * sizeof *w->rows);
    w->target = malloc(T * sizeof *w->target);
    w->seq_of = malloc(T * sizeof *w->seq_of);
    w->seq_ok = malloc(T);
    w->is_ctx = malloc(T);
    w->arena = malloc(total * sizeof(float));
    if (!w->x || !w->rows || !w->target || !w->seq_of || !w->seq_ok ||
        !w->is_ctx || !w->arena) {
        jq_pt_work_free(w);
        return NULL;
    }
    float **slots = w->x;
    w->xn = slots + (L + 1);
    w->q = w->xn + L;
    w->k = w->q + L;
    w->v = w->k + L;
    w->att = w->v + L;
    w->lse = w->att + L;
    w->xm = w->lse + L;
    w->xn2 = w->xm + L;
    w->gate = w->xn2 + L;
    w->up = w->gate + L;
    w->hgate = w->up + L;
    float *p = w->arena;
#define TAKE(n) (p += (n), p - (n))
    for (int l = 0; l <= L; l++)
        w->x[l] = TAKE(T * E);
    for (int l = 0; l < L; l++) {
        w->xn[l] = TAKE(T * E);
        w->q[l] = TAKE(T * QD);
        w->k[l] = TAKE(T * KD);
        w->v[l] = TAKE(T * KD);
        w->att[l] = TAKE(T * QD);
        w->lse[l] = TAKE(T * H);
        w->xm[l] = TAKE(T * E);
        w->xn2[l] = TAKE(T * E);
        w->gate[l] = TAKE(T * F);
        w->up[l] = TAKE(T * F);
        w->hgate[l] = TAKE(T * F);
    }
    w->dx = TAKE(T * E);
    w->dxn = TAKE(T * E);
    w->dh = TAKE(T * F);
    w->dup = TAKE(T * F);
    w->datt = TAKE(T * QD);
    w->dq = TAKE(T * QD);
    w->dk = TAKE(T * KD);
    w->dv = TAKE(T * KD);
    w->row = TAKE(E);
    w->S = TAKE((size_t)JQ_PT_ATTN_BLOCK * (size_t)cap_seq);
    w->dP = TAKE((size_t)JQ_PT_ATTN_BLOCK * (size_t)cap_seq);
    w->D = TAKE((size_t)cap_seq);
    w->xf = TAKE(T * E);
    w->logits = TAKE(T * V);
    w->dxf = TAKE(T * E);
#undef TAKE
    return w;
}

int jq_pt_seq_check(const jq_pt_model *m, const jq_pt_seq *s, char *err,
                    size_t errlen)
{
    if (s->n_tokens < 2 || s->n_tokens > m->hp.n_ctx + 1)
        return jq_fail(err, errlen,
                       "a sequence of %d tokens is outside [2, n_ctx + 1 = %d]",
                       s->n_tokens, m->hp.n_ctx + 1);
    if (s->n_prompt < 1 || s->n_prompt >= s->n_tokens)
        return jq_fail(err, errlen,
                       "n_prompt %d is outside [1, n_tokens %d) (no token to "
                       "score)",
                       s->n_prompt, s->n_tokens);
    for (int32_t i = 0; i < s->n_tokens; i++)
        if (s->tokens[i] < 0 || s->tokens[i] >= m->hp.n_vocab)
            return jq_fail(err, errlen,
                           "token %d at position %d is outside the "
                           "vocabulary [0, %d)",
                           s->tokens[i], i, m->hp.n_vocab);
    return 0;
}

/* --------------------------------------------------------- helpers */

static const float *P(const jq_pt_model *m, int tensor)
{
    return m->params + m->tensors[tensor].offset;
}

static float *G(const jq_pt_model *m, float *grad, int tensor)
{
    return grad + m->tensors[tensor].offset;
}

/* Y (T x N) = X (T x K) W^T, W (N x K); beta 1 adds to Y. */
static void linear(const float *X, int64_t T, int64_t K, const float *W,
                   int64_t N, float *Y, float beta)
{
    jq_sgemm(false, true, T, N, K, 1.0f, X, K, W, K, beta, Y, N);
}

/* dX (T x K) (+)= dY (T x N) W; dW (N x K) += dY^T X. */
static void linear_backward(const float *X, int64_t T, int64_t K,
                            const float *W, int64_t N, const float *dY,
                            float *dX, float beta_dx, float *dW)
{
    if (dX)
        jq_sgemm(false, false, T, K, N, 1.0f, dY, N, W, K, beta_dx, dX, K);
    jq_sgemm(true, false, N, K, T, 1.0f, dY, N, X, K, 1.0f, dW, K);
}

/* The forward's rmsnorm scale of a row (as jq_rmsnorm computes it). */
static float rms_scale(const float *x, int64_t n, float eps)
{
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)(x[i] * x[i]);
    return 1.0f / sqrtf((float)(ss / (double)n) + eps);
}

/* Backward of y = (x * s) * w for one row: dx (+)= (accumulate), dw +=
 * dy * (x * s). */
static void rmsnorm_row_backward(float *dx, bool accumulate, float *tmp,
                                 const float *x, const float *w,
                                 const float *dy, int64_t n, float eps,
                                 float *dw)
{
    const float s = rms_scale(x, n, eps);
    for (int64_t i = 0; i < n; i++)
        dw[i] += dy[i] * (x[i] * s);
    if (accumulate) {
        jq_rmsnorm_backward(tmp, x, w, dy, n, eps);
        jq_add(dx, tmp, n);
    } else {
        jq_rmsnorm_backward(dx, x, w, dy, n, eps);
    }
}

/* ------------------------------------------------------------ passes */

typedef struct {
    int64_t off, len; /* rows [off, off + len) of the group */
} seq_span;

static void forward_layers(const jq_pt_model *m, jq_pt_work *w,
                           const jq_pt_seq *seqs, int n, const seq_span *sp,
                           int64_t T)
{
    const jq_pt_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, F = hp->n_ff, hd = m->head_dim;
    const int64_t QD = (int64_t)hp->n_head * hd,
                  KD = (int64_t)hp->n_head_kv * hd;
    const jq_pt_attn_shape as = {hp->n_head, hp->n_head_kv, (int)hd};
    const float eps = hp->rms_eps;

    /* token embeddings */
    const float *emb = P(m, JQ_PT_TOK_EMBD);
    for (int s = 0; s < n; s++)
        for (int64_t i = 0; i < sp[s].len; i++)
            memcpy(w->x[0] + (sp[s].off + i) * E,
                   emb + (size_t)seqs[s].tokens[i] * (size_t)E,
                   (size_t)E * sizeof(float));

    for (int l = 0; l < hp->n_layer; l++) {
        const float *x = w->x[l];
        /* attention rmsnorm */
        const float *an = P(m, jq_pt_layer_tensor(m, l, JQ_PT_ATTN_NORM));
        for (int64_t t = 0; t < T; t++)
            jq_rmsnorm(w->xn[l] + t * E, x + t * E, an, E, eps);
        /* qkv matmuls */
        linear(w->xn[l], T, E, P(m, jq_pt_layer_tensor(m, l, JQ_PT_WQ)), QD,
               w->q[l], 0.0f);
        linear(w->xn[l], T, E, P(m, jq_pt_layer_tensor(m, l, JQ_PT_WK)), KD,
               w->k[l], 0.0f);
        linear(w->xn[l], T, E, P(m, jq_pt_layer_tensor(m, l, JQ_PT_WV)), KD,
               w->v[l], 0.0f);
        /* RoPE (position = index within the sequence), causal attention */
        for (int s = 0; s < n; s++) {
            for (int64_t i = 0; i < sp[s].len; i++) {
                const int64_t t = sp[s].off + i;
                jq_rope(w->q[l] + t * QD, hp->n_head, (int)hd, (int)hd,
                        (int32_t)i, hp->rope_base, NULL, false);
                jq_rope(w->k[l] + t * KD, hp->n_head_kv, (int)hd, (int)hd,
                        (int32_t)i, hp->rope_base, NULL, false);
            }
            const int64_t o = sp[s].off;
            jq_pt_attn_forward(&as, sp[s].len, w->q[l] + o * QD,
                               w->k[l] + o * KD, w->v[l] + o * KD,
                               w->att[l] + o * QD,
                               w->lse[l] + o * hp->n_head, w->S);
        }
        /* output projection and residual */
        memcpy(w->xm[l], x, (size_t)(T * E) * sizeof(float));
        linear(w->att[l], T, QD, P(m, jq_pt_layer_tensor(m, l, JQ_PT_WO)), E,
               w->xm[l], 1.0f);
        /* ffn rmsnorm, SwiGLU, down projection and residual */
        const float *fn = P(m, jq_pt_layer_tensor(m, l, JQ_PT_FFN_NORM));
        for (int64_t t = 0; t < T; t++)
            jq_rmsnorm(w->xn2[l] + t * E, w->xm[l] + t * E, fn, E, eps);
        linear(w->xn2[l], T, E, P(m, jq_pt_layer_tensor(m, l, JQ_PT_W_GATE)),
               F, w->gate[l], 0.0f);
        linear(w->xn2[l], T, E, P(m, jq_pt_layer_tensor(m, l, JQ_PT_W_UP)), F,
               w->up[l], 0.0f);
        jq_silu_mul(w->hgate[l], w->gate[l], w->up[l], T * F);
        memcpy(w->x[l + 1], w->xm[l], (size_t)(T * E) * sizeof(float));
        linear(w->hgate[l], T, F, P(m, jq_pt_layer_tensor(m, l, JQ_PT_W_DOWN)),
               E, w->x[l + 1], 1.0f);
    }
}

static void backward_layers(const jq_pt_model *m, jq_pt_work *w,
                            const jq_pt_seq *seqs, int n, const seq_span *sp,
                            int64_t T, float *grad)
{
    const jq_pt_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, F = hp->n_ff, hd = m->head_dim;
    const int64_t QD = (int64_t)hp->n_head * hd,
                  KD = (int64_t)hp->n_head_kv * hd;
    const jq_pt_attn_shape as = {hp->n_head, hp->n_head_kv, (int)hd};
    const float eps = hp->rms_eps;
    float *dx = w->dx; /* d loss / d (the residual stream) */

    for (int l = hp->n_layer - 1; l >= 0; l--) {
        const int tq = jq_pt_layer_tensor(m, l, JQ_PT_WQ),
                  tk = jq_pt_layer_tensor(m, l, JQ_PT_WK),
                  tv = jq_pt_layer_tensor(m, l, JQ_PT_WV),
                  to = jq_pt_layer_tensor(m, l, JQ_PT_WO),
                  tg = jq_pt_layer_tensor(m, l, JQ_PT_W_GATE),
                  tu = jq_pt_layer_tensor(m, l, JQ_PT_W_UP),
                  td = jq_pt_layer_tensor(m, l, JQ_PT_W_DOWN),
                  tan = jq_pt_layer_tensor(m, l, JQ_PT_ATTN_NORM),
                  tfn = jq_pt_layer_tensor(m, l, JQ_PT_FFN_NORM);
        /* down projection: x[l+1] = xm + hgate Wd^T */
        linear_backward(w->hgate[l], T, F, P(m, td), E, dx, w->dh, 0.0f,
                        G(m, grad, td));
        /* SwiGLU (dgate into dh in place) */
        jq_silu_mul_backward(w->dh, w->dup, w->gate[l], w->up[l], w->dh,
                             T * F);
        linear_backward(w->xn2[l], T, E, P(m, tg), F, w->dh, w->dxn, 0.0f,
                        G(m, grad, tg));
        linear_backward(w->xn2[l], T, E, P(m, tu), F, w->dup, w->dxn, 1.0f,
                        G(m, grad, tu));
        /* ffn rmsnorm: dx (now d xm) += its input gradient */
        for (int64_t t = 0; t < T; t++)
            rmsnorm_row_backward(dx + t * E, true, w->row, w->xm[l] + t * E,
                                 P(m, tfn), w->dxn + t * E, E, eps,
                                 G(m, grad, tfn));
        /* output projection: xm = x + att Wo^T */
        linear_backward(w->att[l], T, QD, P(m, to), E, dx, w->datt, 0.0f,
                        G(m, grad, to));
        /* attention, then RoPE's transpose */
        for (int s = 0; s < n; s++) {
            const int64_t o = sp[s].off;
            jq_pt_attn_backward(&as, sp[s].len, w->q[l] + o * QD,
                                w->k[l] + o * KD, w->v[l] + o * KD,
                                w->att[l] + o * QD,
                                w->lse[l] + o * hp->n_head, w->datt + o * QD,
                                w->dq + o * QD, w->dk + o * KD,
                                w->dv + o * KD, w->S, w->dP, w->D);
            for (int64_t i = 0; i < sp[s].len; i++) {
                jq_rope_backward(w->dq + (o + i) * QD, hp->n_head, (int)hd,
                                 (int)hd, (int32_t)i, hp->rope_base, NULL,
                                 false);
                jq_rope_backward(w->dk + (o + i) * KD, hp->n_head_kv, (int)hd,
                                 (int)hd, (int32_t)i, hp->rope_base, NULL,
                                 false);
            }
        }
        /* qkv matmuls */
        linear_backward(w->xn[l], T, E, P(m, tq), QD, w->dq, w->dxn, 0.0f,
                        G(m, grad, tq));
        linear_backward(w->xn[l], T, E, P(m, tk), KD, w->dk, w->dxn, 1.0f,
                        G(m, grad, tk));
        linear_backward(w->xn[l], T, E, P(m, tv), KD, w->dv, w->dxn, 1.0f,
                        G(m, grad, tv));
        /* attention rmsnorm: dx (now d x[l]) += its input gradient */
        for (int64_t t = 0; t < T; t++)
            rmsnorm_row_backward(dx + t * E, true, w->row, w->x[l] + t * E,
                                 P(m, tan), w->dxn + t * E, E, eps,
                                 G(m, grad, tan));
    }
    /* token embeddings: each row's gradient goes to its token's row */
    float *demb = G(m, grad, JQ_PT_TOK_EMBD);
    for (int s = 0; s < n; s++)
        for (int64_t i = 0; i < sp[s].len; i++)
            jq_add(demb + (size_t)seqs[s].tokens[i] * (size_t)E,
                   dx + (sp[s].off + i) * E, E);
}

/* Index of the largest logit (the first of equals): greedy decoding. */
static int32_t argmax(const float *x, int64_t n)
{
    int64_t best = 0;
    for (int64_t j = 1; j < n; j++)
        if (x[j] > x[best])
            best = j;
    return (int32_t)best;
}

void jq_pt_group_pass(const jq_pt_model *m, jq_pt_work *w,
                      const jq_pt_seq *seqs, int n, float loss_scale,
                      float ctx_scale, float *grad, jq_pt_stats *st,
                      float *all_logits)
{
    const jq_pt_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, V = hp->n_vocab;
    seq_span sp_small[16];
    seq_span *sp = n <= 16 ? sp_small : malloc((size_t)n * sizeof *sp);
    if (!sp)
        abort(); /* a few bytes per sequence; the work arena is far larger */
    int64_t T = 0, R = 0;
    for (int s = 0; s < n; s++) {
        sp[s].off = T;
        sp[s].len = jq_pt_seq_positions(&seqs[s]);
        /* the scored rows: position i predicts token i + 1; rows before
         * the answer's are the prompt's (context rows) */
        const int64_t answer = seqs[s].n_prompt - 1;
        const int64_t first = all_logits || ctx_scale > 0 ? 0 : answer;
        for (int64_t i = first; i < sp[s].len; i++) {
            w->rows[R] = T + i;
            w->target[R] = seqs[s].tokens[i + 1];
            w->seq_of[R] = s;
            w->is_ctx[R] = !all_logits && i < answer;
            R++;
        }
        T += sp[s].len;
        w->seq_ok[s] = 1;
    }

    forward_layers(m, w, seqs, n, sp, T);

    /* the head on the scored rows: final rmsnorm, logits */
    const float *xL = w->x[hp->n_layer];
    const int ton = jq_pt_output_norm(m), tout = jq_pt_output(m);
    for (int64_t r = 0; r < R; r++)
        jq_rmsnorm(w->xf + r * E, xL + w->rows[r] * E, P(m, ton), E,
                   hp->rms_eps);
    linear(w->xf, R, E, P(m, tout), V, w->logits, 0.0f);
    if (all_logits)
        memcpy(all_logits, w->logits, (size_t)(R * V) * sizeof(float));

    /* cross-entropy; logits become loss_scale * (softmax - onehot) */
    for (int64_t r = 0; r < R; r++) {
        float *z = w->logits + r * V;
        const int32_t y = w->target[r];
        const bool correct = argmax(z, V) == y;
        const float zy = z[y];
        float max = z[0];
        for (int64_t j = 1; j < V; j++)
            max = z[j] > max ? z[j] : max;
        double sum = 0.0;
        for (int64_t j = 0; j < V; j++)
            sum += exp((double)(z[j] - max));
        const double loss = (double)max + log(sum) - (double)zy;
        if (w->is_ctx[r]) {
            st->ctx_loss_sum += loss;
            st->n_ctx_tokens++;
        } else {
            st->loss_sum += loss;
            st->n_tokens++;
            st->n_correct += correct;
            if (!correct)
                w->seq_ok[w->seq_of[r]] = 0;
        }
        if (grad) {
            const float scale = w->is_ctx[r] ? ctx_scale : loss_scale;
            jq_softmax(z, V);
            z[y] -= 1.0f;
            for (int64_t j = 0; j < V; j++)
                z[j] *= scale;
        }
    }
    st->n_seq += n;
    st->n_positions += T;
    for (int s = 0; s < n; s++)
        st->n_seq_correct += w->seq_ok[s];

    if (grad) {
        /* classifier and final rmsnorm */
        linear_backward(w->xf, R, E, P(m, tout), V, w->logits, w->dxf, 0.0f,
                        G(m, grad, tout));
        memset(w->dx, 0, (size_t)(T * E) * sizeof(float));
        for (int64_t r = 0; r < R; r++)
            rmsnorm_row_backward(w->dx + w->rows[r] * E, false, w->row,
                                 xL + w->rows[r] * E, P(m, ton),
                                 w->dxf + r * E, E, hp->rms_eps,
                                 G(m, grad, ton));
        backward_layers(m, w, seqs, n, sp, T, grad);
    }
    if (sp != sp_small)
        free(sp);
}

int jq_pt_logits(const jq_pt_model *m, const int32_t *tokens, int32_t n,
                 float *logits, char *err, size_t errlen)
{
    if (n < 1 || n > m->hp.n_ctx)
        return jq_fail(err, errlen, "%d tokens is outside [1, n_ctx = %d]", n,
                       m->hp.n_ctx);
    /* one more token so every position has a target (the last one's is a
     * dummy: only the logits are wanted) */
    int32_t *tok = malloc(((size_t)n + 1) * sizeof *tok);
    jq_pt_work *w = jq_pt_work_new(m, n, n);
    if (!tok || !w) {
        free(tok);
        jq_pt_work_free(w);
        return jq_fail(err, errlen, "out of memory for %d positions", n);
    }
    memcpy(tok, tokens, (size_t)n * sizeof *tok);
    tok[n] = 0;
    const jq_pt_seq s = {tok, n + 1, 1};
    int rc = jq_pt_seq_check(m, &s, err, errlen);
    if (rc == 0) {
        jq_pt_stats st = {0};
        jq_pt_group_pass(m, w, &s, 1, 0.0f, 0.0f, NULL, &st, logits);
    }
    jq_pt_work_free(w);
    free(tok);
    return rc;
}
