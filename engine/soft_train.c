/* soft_train.c — see soft_train.h.
 *
 * Forward: the llama block of forward.c restricted to the n soft rows, with
 * everything the backward needs kept per layer (block inputs, normalised
 * inputs, RoPE'd queries, the keys and values each head sees, the attention
 * probabilities, the attention outputs, the FFN pre-activations). The
 * probabilities are materialised (n x (L + n) per head and layer): that is
 * the quantity the loss acts on, and the backward needs them anyway.
 *
 * Backward, top layer down, with dx the gradient of the block's output:
 *   FFN:   dh = dx W_down; (dgate, dup) = SwiGLU'; dxb2 = dgate W_gate +
 *          dup W_up; dxmid = dx + RMSNorm'(xmid, dxb2)
 *   attn:  datt = dxmid W_o; per head, attention' with the output gradient
 *          and the loss's direct gradient on the probabilities gives dq and
 *          (soft keys only) dk, dv; RoPE' on dq, dk; dxb1 = dq W_q + dk W_k +
 *          dv W_v; dx_in = dxmid + RMSNorm'(x_in, dxb1)
 * The prompt's keys and values are constants: no gradient flows to them.
 */
#include "soft_train.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

#define CACHE_LINE 64

struct jq_soft_work {
    const jq_model *m;
    int32_t n, max_L;
    int64_t E, qd, kvd, ff, NL, H, Hkv, d;
    int64_t kv_rows; /* max_L + n: rows per (layer, KV head) block */
    /* saved by the forward pass, per layer */
    float *x_in;  /* (NL, n, E) input of each block */
    float *xb1;   /* (NL, n, E) attention rmsnorm output */
    float *q;     /* (NL, n, qd) queries after RoPE */
    float *kall;  /* (NL, Hkv, kv_rows, d) prompt keys, then soft keys */
    float *vall;  /* (NL, Hkv, kv_rows, d) prompt values, then soft values */
    float *vt_all; /* (NL, Hkv, d, L + n) the same values transposed */
    float *kt_all; /* (NL, Hkv, d, L + n) the keys transposed */
    float *ds;     /* (n, kv_rows) dloss/dp, then dloss/dscore, of a head */
    float *oh;     /* (n, d) one head's rows, contiguous */
    float *p;     /* (NL, H, n, kv_rows) probabilities, row stride L + n */
    float *att;   /* (NL, n, qd) attention outputs */
    float *xmid;  /* (NL, n, E) residual after attention */
    float *xb2;   /* (NL, n, E) ffn rmsnorm output */
    float *gate;  /* (NL, n, ff) */
    float *up;    /* (NL, n, ff) */
    float *sum;   /* (NL, H, max_L) Σ over soft rows of p(j), j < L */
    float *dpe;   /* (NL, H, max_L) dloss / dp(j) of every soft row */
    /* temporaries */
    float *kt, *vt;  /* (n, kvd) soft keys / values of one layer */
    float *hb;       /* (n, ff) */
    float *proj;     /* (n, E) */
    float *dx, *dxmid, *dxb; /* (n, E) */
    float *datt, *dq;        /* (n, qd) */
    float *dk, *dv;          /* (n, kvd) */
    float *dh, *dgate, *dup; /* (n, ff) */
    float *zero_qd;          /* (n, qd) zeros: the top layer's output grad */
    float *scratch;  /* GEMM panels, attention rows */
    size_t bytes;
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

static float *alloc_floats(jq_soft_work *w, size_t n)
{
    /* 64-byte aligned so vector loads of whole rows stay within lines */
    size_t bytes = (n * sizeof(float) + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
    if (!bytes)
        bytes = CACHE_LINE;
    w->bytes += bytes;
    float *p = aligned_alloc(CACHE_LINE, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

jq_soft_work *jq_soft_work_new(const jq_model *m, int32_t n_soft,
                               int32_t max_L)
{
    const jq_hparams *hp = &m->hp;
    if (n_soft < 1 || max_L < 1 || hp->n_head % hp->n_head_kv != 0)
        return NULL;
    jq_soft_work *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->m = m;
    w->n = n_soft;
    w->max_L = max_L;
    w->E = hp->n_embd;
    w->d = hp->head_dim;
    w->H = hp->n_head;
    w->Hkv = hp->n_head_kv;
    w->qd = w->H * w->d;
    w->kvd = w->Hkv * w->d;
    w->ff = hp->n_ff;
    w->NL = hp->n_layer;
    w->kv_rows = (int64_t)max_L + n_soft;
    size_t n = (size_t)n_soft, NL = (size_t)w->NL;
    size_t E = (size_t)w->E, qd = (size_t)w->qd, kvd = (size_t)w->kvd;
    size_t ff = (size_t)w->ff, rows = (size_t)w->kv_rows;

    w->x_in = alloc_floats(w, NL * n * E);
    w->xb1 = alloc_floats(w, NL * n * E);
    w->q = alloc_floats(w, NL * n * qd);
    w->kall = alloc_floats(w, NL * (size_t)w->Hkv * rows * (size_t)w->d);
    w->vall = alloc_floats(w, NL * (size_t)w->Hkv * rows * (size_t)w->d);
    w->vt_all = alloc_floats(w, NL * (size_t)w->Hkv * rows * (size_t)w->d);
    w->kt_all = alloc_floats(w, NL * (size_t)w->Hkv * rows * (size_t)w->d);
    w->ds = alloc_floats(w, n * rows);
    w->oh = alloc_floats(w, n * (size_t)w->d);
    w->p = alloc_floats(w, NL * (size_t)w->H * n * rows);
    w->att = alloc_floats(w, NL * n * qd);
    w->xmid = alloc_floats(w, NL * n * E);
    w->xb2 = alloc_floats(w, NL * n * E);
    w->gate = alloc_floats(w, NL * n * ff);
    w->up = alloc_floats(w, NL * n * ff);
    w->sum = alloc_floats(w, NL * (size_t)w->H * (size_t)max_L);
    w->dpe = alloc_floats(w, NL * (size_t)w->H * (size_t)max_L);
    w->kt = alloc_floats(w, n * kvd);
    w->vt = alloc_floats(w, n * kvd);
    w->hb = alloc_floats(w, n * ff);
    w->proj = alloc_floats(w, n * E);
    w->dx = alloc_floats(w, n * E);
    w->dxmid = alloc_floats(w, n * E);
    w->dxb = alloc_floats(w, n * E);
    w->datt = alloc_floats(w, n * qd);
    w->dq = alloc_floats(w, n * qd);
    w->dk = alloc_floats(w, n * kvd);
    w->dv = alloc_floats(w, n * kvd);
    w->dh = alloc_floats(w, n * ff);
    w->dgate = alloc_floats(w, n * ff);
    w->dup = alloc_floats(w, n * ff);
    w->zero_qd = alloc_floats(w, n * qd);
    int64_t widest = max64(max64(w->E, w->ff), max64(w->qd, w->kvd));
    w->scratch = alloc_floats(w, (size_t)max64(JQ_GEMM_PANEL * widest,
                                               w->kv_rows));
    if (!w->x_in || !w->xb1 || !w->q || !w->kall || !w->vall || !w->vt_all ||
        !w->kt_all || !w->ds || !w->oh || !w->p ||
        !w->att || !w->xmid || !w->xb2 || !w->gate || !w->up || !w->sum ||
        !w->dpe || !w->kt || !w->vt || !w->hb || !w->proj || !w->dx ||
        !w->dxmid || !w->dxb || !w->datt || !w->dq || !w->dk || !w->dv ||
        !w->dh || !w->dgate || !w->dup || !w->zero_qd || !w->scratch) {
        jq_soft_work_free(w);
        return NULL;
    }
    return w;
}

void jq_soft_work_free(jq_soft_work *w)
{
    if (!w)
        return;
    float *bufs[] = {w->x_in, w->xb1, w->q, w->kall, w->vall, w->vt_all, w->kt_all,
                     w->ds, w->oh, w->p, w->att,
                     w->xmid, w->xb2, w->gate, w->up, w->sum, w->dpe, w->kt,
                     w->vt, w->hb, w->proj, w->dx, w->dxmid, w->dxb, w->datt,
                     w->dq, w->dk, w->dv, w->dh, w->dgate, w->dup,
                     w->zero_qd, w->scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    free(w);
}

size_t jq_soft_work_bytes(const jq_soft_work *w) { return w->bytes; }


/* Y (M x W->rows) = X (M x W->cols) . W^T */
static void linear(jq_soft_work *w, const jq_matrix *W, const float *X,
                   float *Y)
{
    jq_gemm(W->type, W->data, W->cols, X, w->n, Y, W->rows, 0, W->rows,
            w->scratch);
}

/* dX (M x W->cols) += dY (M x W->rows) . W */
static void linear_backward(jq_soft_work *w, const jq_matrix *W,
                            const float *dY, float *dX)
{
    jq_matmul_backward_x(W->type, W->data, W->cols, dY, W->rows, w->n, dX,
                          W->cols, 0, W->rows, w->scratch);
}

static float *kv_block(const jq_soft_work *w, float *base, int64_t l,
                       int64_t g)
{
    return base + ((size_t)l * w->Hkv + (size_t)g) * (size_t)w->kv_rows *
                      (size_t)w->d;
}

static float *p_block(const jq_soft_work *w, int64_t l, int64_t h)
{
    return w->p + ((size_t)l * w->H + (size_t)h) * (size_t)w->n *
                      (size_t)w->kv_rows;
}

/* The soft rows' attention in layer l for every query head: probabilities
 * into p (row i sees the L prompt keys and soft keys 0..i), outputs into
 * att, and Σ_i p_i(j), j < L, into sum. Scores and outputs are two GEMMs
 * per head (S = Q K^T over all keys, then O = P V with the masked entries
 * of P zero): with head_dim 8 (stories260K) one dot-product call per key
 * cost 3x more than the whole GEMM. */
static void attention_forward(jq_soft_work *w, int64_t l, int32_t L)
{
    const int64_t n = w->n, d = w->d, ldp = (int64_t)L + n;
    const int64_t group = w->H / w->Hkv;
    const float scale = 1.0f / sqrtf((float)d);
    float *qh = w->dq, *oh = w->datt; /* free until the backward */
    for (int64_t h = 0; h < w->H; h++) {
        const float *K = kv_block(w, w->kall, l, h / group);
        const float *Vt = kv_block(w, w->vt_all, l, h / group);
        float *P = p_block(w, l, h);
        float *sum = w->sum + ((size_t)l * w->H + (size_t)h) * (size_t)L;
        for (int64_t i = 0; i < n; i++)
            memcpy(qh + i * d, w->q + ((size_t)l * n + (size_t)i) * w->qd +
                                   (size_t)h * d,
                   sizeof(float) * (size_t)d);
        jq_gemm(JQ_TYPE_F32, K, d, qh, n, P, ldp, 0, ldp, w->scratch);
        memset(sum, 0, sizeof(float) * (size_t)L);
        for (int64_t i = 0; i < n; i++) {
            float *pr = P + i * ldp;
            int64_t vis = (int64_t)L + i + 1;
            for (int64_t j = 0; j < vis; j++)
                pr[j] *= scale;
            jq_softmax(pr, vis);
            memset(pr + vis, 0, sizeof(float) * (size_t)(ldp - vis));
            /* rows in ascending order, one float sum: as the engine's
             * scoring adds them, so the ranking matches jq_prefill */
            for (int64_t j = 0; j < L; j++)
                sum[j] += pr[j];
        }
        jq_gemm(JQ_TYPE_F32, Vt, ldp, P, n, oh, d, 0, d, w->scratch);
        for (int64_t i = 0; i < n; i++)
            memcpy(w->att + ((size_t)l * n + (size_t)i) * w->qd +
                       (size_t)h * d,
                   oh + i * d, sizeof(float) * (size_t)d);
    }
}

static int check_example(const jq_soft_work *w, const jq_soft_example *ex,
                         char *err, size_t errlen)
{
    const jq_kv_store *kv = ex->prompt_kv;
    if (ex->L < 1 || ex->L > w->max_L) {
        set_err(err, errlen, "prompt of %d tokens outside the workspace's "
                "1..%d", ex->L, w->max_L);
        return -1;
    }
    if (!kv || kv->type != JQ_TYPE_F32 || kv->prefix ||
        kv->n_layer != w->NL || kv->n_head_kv != w->Hkv ||
        kv->head_dim != w->d) {
        set_err(err, errlen, "the prompt's KV store must be an F32 store of "
                "the model's shape without a shared prefix");
        return -1;
    }
    for (int64_t h = 0; h < w->NL * w->Hkv; h++) {
        if (kv->len[h] < ex->L) {
            set_err(err, errlen, "the prompt's KV store holds %d entries in "
                    "a head, fewer than the prompt's %d", kv->len[h], ex->L);
            return -1;
        }
    }
    return 0;
}

static void forward(jq_soft_work *w, const float *Emb, const jq_soft_example *ex)
{
    const jq_model *m = w->m;
    const jq_hparams *hp = &m->hp;
    const int64_t n = w->n, E = w->E, d = w->d, L = ex->L;
    memcpy(w->x_in, Emb, sizeof(float) * (size_t)(n * E));
    for (int64_t l = 0; l < w->NL; l++) {
        const jq_layer *ly = &m->layers[l];
        float *x = w->x_in + (size_t)l * n * E;
        float *xb1 = w->xb1 + (size_t)l * n * E;
        float *q = w->q + (size_t)l * n * w->qd;
        /* attention rmsnorm */
        for (int64_t i = 0; i < n; i++)
            jq_rmsnorm(xb1 + i * E, x + i * E, ly->attn_norm, E, hp->rms_eps);
        /* qkv matmuls */
        linear(w, &ly->wq, xb1, q);
        linear(w, &ly->wk, xb1, w->kt);
        linear(w, &ly->wv, xb1, w->vt);
        /* RoPE at positions L + i */
        for (int64_t i = 0; i < n; i++) {
            jq_rope(q + i * w->qd, (int)w->H, (int)d, hp->rope_dim,
                    (int32_t)(L + i), hp->rope_base, NULL, hp->rope_neox);
            jq_rope(w->kt + i * w->kvd, (int)w->Hkv, (int)d, hp->rope_dim,
                    (int32_t)(L + i), hp->rope_base, NULL, hp->rope_neox);
        }
        /* each KV head sees the prompt's entries, then the soft rows' */
        for (int64_t g = 0; g < w->Hkv; g++) {
            float *K = kv_block(w, w->kall, l, g);
            float *V = kv_block(w, w->vall, l, g);
            memcpy(K, jq_kv_key(ex->prompt_kv, (int32_t)l, (int32_t)g, 0),
                   sizeof(float) * (size_t)(L * d));
            memcpy(V, jq_kv_value(ex->prompt_kv, (int32_t)l, (int32_t)g, 0),
                   sizeof(float) * (size_t)(L * d));
            for (int64_t i = 0; i < n; i++) {
                memcpy(K + (L + i) * d, w->kt + i * w->kvd + g * d,
                       sizeof(float) * (size_t)d);
                memcpy(V + (L + i) * d, w->vt + i * w->kvd + g * d,
                       sizeof(float) * (size_t)d);
            }
            /* transposed copies: the right operands of P V and dS K */
            float *Vt = kv_block(w, w->vt_all, l, g);
            float *Kt = kv_block(w, w->kt_all, l, g);
            for (int64_t j = 0; j < L + n; j++) {
                for (int64_t c = 0; c < d; c++) {
                    Vt[c * (L + n) + j] = V[j * d + c];
                    Kt[c * (L + n) + j] = K[j * d + c];
                }
            }
        }
        /* attention (probabilities kept) */
        attention_forward(w, l, (int32_t)L);
        /* the top layer matters only through its probabilities */
        if (l == w->NL - 1)
            break;
        /* output projection and residual */
        float *xmid = w->xmid + (size_t)l * n * E;
        linear(w, &ly->wo, w->att + (size_t)l * n * w->qd, w->proj);
        for (int64_t i = 0; i < n * E; i++)
            xmid[i] = x[i] + w->proj[i];
        /* ffn rmsnorm, SwiGLU, down projection and residual */
        float *xb2 = w->xb2 + (size_t)l * n * E;
        float *gate = w->gate + (size_t)l * n * w->ff;
        float *up = w->up + (size_t)l * n * w->ff;
        for (int64_t i = 0; i < n; i++)
            jq_rmsnorm(xb2 + i * E, xmid + i * E, ly->ffn_norm, E, hp->rms_eps);
        linear(w, &ly->w_gate, xb2, gate);
        linear(w, &ly->w_up, xb2, up);
        for (int64_t i = 0; i < n; i++)
            jq_silu_mul(w->hb + i * w->ff, gate + i * w->ff, up + i * w->ff,
                        w->ff);
        linear(w, &ly->w_down, w->hb, w->proj);
        float *xnext = w->x_in + (size_t)(l + 1) * n * E;
        for (int64_t i = 0; i < n * E; i++)
            xnext[i] = xmid[i] + w->proj[i];
    }
}

/* loss = scale * mean (A - A*)^2 with A = sum / n; dpe = dloss/dp of each
 * soft row (the same for every row: A averages them). */
static double loss_and_dp(jq_soft_work *w, const jq_soft_example *ex)
{
    const int64_t L = ex->L, cells = w->NL * w->H * L;
    const double scale = ex->loss_scale > 0 ? ex->loss_scale : (double)L;
    const double inv_n = 1.0 / (double)w->n;
    const double g = 2.0 * scale / (double)cells * inv_n;
    double acc = 0;
    for (int64_t c = 0; c < cells; c++) {
        double diff = (double)w->sum[c] * inv_n - (double)ex->target[c];
        acc += diff * diff;
        w->dpe[c] = (float)(g * diff);
    }
    return scale * acc / (double)cells;
}

/* Backward of one head's attention in layer l, as GEMMs over the n soft
 * rows (the shapes attention_forward uses) rather than the row-by-row
 * jq_attention_backward kernel, which computes the same thing: on
 * stories260K (head_dim 8, L = 400, n = 32) training took 9.4 s of CPU
 * this way vs 10.9 s through the kernel (its AVX-512 path was still the
 * scalar reference then; worth re-measuring when it lands):
 *   dP = dO V^T + dpe (the loss's own gradient on the probabilities),
 *   dS = scale * softmax'(P, dP) over each row's visible keys,
 *   dq = dS K (written), and for the soft keys and values only (the
 *   prompt's are constants) dk_j += Σ_i dS_ij q_i, dv_j += Σ_i P_ij dO_i,
 *   accumulated into the head's KV group. */
static void attention_backward(jq_soft_work *w, int64_t l, int64_t h,
                               int64_t L, const float *datt)
{
    const int64_t n = w->n, d = w->d, ldp = L + n;
    const int64_t g = h / (w->H / w->Hkv);
    const float scale = 1.0f / sqrtf((float)d);
    const float *P = p_block(w, l, h);
    const float *dpe = w->dpe + ((size_t)l * w->H + (size_t)h) * (size_t)L;
    const float *q = w->q + (size_t)l * n * w->qd + h * d;
    float *dS = w->ds, *oh = w->oh;
    for (int64_t i = 0; i < n; i++)
        memcpy(oh + i * d, datt + i * w->qd + h * d, sizeof(float) * (size_t)d);
    jq_gemm(JQ_TYPE_F32, kv_block(w, w->vall, l, g), d, oh, n, dS, ldp, 0,
            ldp, w->scratch);
    for (int64_t i = 0; i < n; i++) {
        float *row = dS + i * ldp;
        const float *pr = P + i * ldp;
        int64_t vis = L + i + 1;
        for (int64_t j = 0; j < L; j++)
            row[j] += dpe[j];
        jq_softmax_backward(row, pr, row, vis);
        for (int64_t j = 0; j < vis; j++)
            row[j] *= scale;
        memset(row + vis, 0, sizeof(float) * (size_t)(ldp - vis));
    }
    /* soft keys and values: row i sees soft key s for s <= i */
    for (int64_t s = 0; s < n; s++) {
        float *dk = w->dk + s * w->kvd + g * d;
        float *dv = w->dv + s * w->kvd + g * d;
        for (int64_t i = s; i < n; i++) {
            const float ds = dS[i * ldp + L + s], p = P[i * ldp + L + s];
            const float *qi = q + i * w->qd, *go = oh + i * d;
            for (int64_t c = 0; c < d; c++) {
                dk[c] += ds * qi[c];
                dv[c] += p * go[c];
            }
        }
    }
    jq_gemm(JQ_TYPE_F32, kv_block(w, w->kt_all, l, g), ldp, dS, n, oh, d, 0,
            d, w->scratch);
    for (int64_t i = 0; i < n; i++)
        memcpy(w->dq + i * w->qd + h * d, oh + i * d, sizeof(float) * (size_t)d);
}

static void backward(jq_soft_work *w, const jq_soft_example *ex, float *dEmb)
{
    const jq_model *m = w->m;
    const jq_hparams *hp = &m->hp;
    const int64_t n = w->n, E = w->E, d = w->d, L = ex->L;
    memset(w->dx, 0, sizeof(float) * (size_t)(n * E));
    for (int64_t l = w->NL - 1; l >= 0; l--) {
        const jq_layer *ly = &m->layers[l];
        const float *datt = w->zero_qd;
        if (l == w->NL - 1) {
            /* nothing above depends on this block's output */
            memset(w->dxmid, 0, sizeof(float) * (size_t)(n * E));
        } else {
            /* down projection, SwiGLU, ffn rmsnorm, residual */
            memset(w->dh, 0, sizeof(float) * (size_t)(n * w->ff));
            linear_backward(w, &ly->w_down, w->dx, w->dh);
            const float *gate = w->gate + (size_t)l * n * w->ff;
            const float *up = w->up + (size_t)l * n * w->ff;
            for (int64_t i = 0; i < n; i++)
                jq_silu_mul_backward(w->dgate + i * w->ff, w->dup + i * w->ff,
                                      gate + i * w->ff, up + i * w->ff,
                                      w->dh + i * w->ff, w->ff);
            memset(w->dxb, 0, sizeof(float) * (size_t)(n * E));
            linear_backward(w, &ly->w_gate, w->dgate, w->dxb);
            linear_backward(w, &ly->w_up, w->dup, w->dxb);
            const float *xmid = w->xmid + (size_t)l * n * E;
            for (int64_t i = 0; i < n; i++) {
                jq_rmsnorm_backward(w->dxmid + i * E, xmid + i * E,
                                     ly->ffn_norm, w->dxb + i * E, E,
                                     hp->rms_eps);
            }
            for (int64_t i = 0; i < n * E; i++)
                w->dxmid[i] += w->dx[i];
            /* output projection */
            memset(w->datt, 0, sizeof(float) * (size_t)(n * w->qd));
            linear_backward(w, &ly->wo, w->dxmid, w->datt);
            datt = w->datt;
        }
        /* attention: the output's gradient and the loss's direct one on
         * the probabilities; soft keys and values get gradients, the
         * prompt's are constants */
        memset(w->dk, 0, sizeof(float) * (size_t)(n * w->kvd));
        memset(w->dv, 0, sizeof(float) * (size_t)(n * w->kvd));
        for (int64_t h = 0; h < w->H; h++)
            attention_backward(w, l, h, L, datt);
        /* RoPE: rotate the gradients back */
        for (int64_t i = 0; i < n; i++) {
            jq_rope_backward(w->dq + i * w->qd, (int)w->H, (int)d,
                              hp->rope_dim, (int32_t)(L + i), hp->rope_base,
                              NULL, hp->rope_neox);
            jq_rope_backward(w->dk + i * w->kvd, (int)w->Hkv, (int)d,
                              hp->rope_dim, (int32_t)(L + i), hp->rope_base,
                              NULL, hp->rope_neox);
        }
        /* qkv matmuls, attention rmsnorm, residual */
        memset(w->dxb, 0, sizeof(float) * (size_t)(n * E));
        linear_backward(w, &ly->wq, w->dq, w->dxb);
        linear_backward(w, &ly->wk, w->dk, w->dxb);
        linear_backward(w, &ly->wv, w->dv, w->dxb);
        const float *x = w->x_in + (size_t)l * n * E;
        for (int64_t i = 0; i < n; i++)
            jq_rmsnorm_backward(w->dx + i * E, x + i * E, ly->attn_norm,
                                 w->dxb + i * E, E, hp->rms_eps);
        for (int64_t i = 0; i < n * E; i++)
            w->dx[i] += w->dxmid[i];
    }
    memcpy(dEmb, w->dx, sizeof(float) * (size_t)(n * E));
}

int jq_soft_loss_grad(jq_soft_work *w, const float *E,
                      const jq_soft_example *ex, double *loss, float *dE,
                      float *scores, char *err, size_t errlen)
{
    if (check_example(w, ex, err, errlen) != 0)
        return -1;
    forward(w, E, ex);
    if (scores) {
        size_t cells = (size_t)w->NL * w->H * (size_t)ex->L;
        memcpy(scores, w->sum, sizeof(float) * cells);
    }
    if (!ex->target)
        return 0;
    double l = loss_and_dp(w, ex);
    if (loss)
        *loss = l;
    if (dE)
        backward(w, ex, dE);
    return 0;
}
