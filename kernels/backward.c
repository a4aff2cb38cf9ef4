/* backward.c — scalar references of the backward kernels (input gradients
 * of RMSNorm, RoPE, softmax, SiLU gating, matmul and attention) and their
 * public dispatchers.
 *
 * The soft-token trainer keeps the model frozen, so only input gradients
 * exist. Each reference differentiates the forward kernel as it is
 * implemented in ops.c / attention.c (RMSNorm's float scale applied before
 * the weight, the RoPE angles from jq_rope_angles_*, the causal rule of
 * jq_attention_ex), so finite differences of the forward kernels are the
 * test oracle (tests/test_kernels_backward.c). Reductions whose result is
 * subtracted from every element (RMSNorm's and softmax's inner products)
 * are summed in double: their cancellation is where float would lose the
 * gradient's precision.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "isa_internal.h"
#include "kernels.h"
#include "ops_internal.h"

/* ----------------------------------------------------------- rmsnorm */

/* y_i = (x_i * s) * w_i with s = (mean(x^2) + eps)^(-1/2) and
 * ds/dx_j = -s^3 x_j / n, so
 *   dx_j = s * (w_j dy_j - x_j * s^2 * sum_i(dy_i w_i x_i) / n).
 * s is the forward's own float value (same double sum of squares). */
void jq_ref_rmsnorm_backward(float *dx, const float *x, const float *w,
                             const float *dy, int64_t n, float eps)
{
    if (n <= 0)
        return;
    double ss = 0.0, dot = 0.0;
    for (int64_t i = 0; i < n; i++) {
        ss += (double)(x[i] * x[i]);
        dot += (double)x[i] * (double)w[i] * (double)dy[i];
    }
    const float mean = (float)(ss / (double)n);
    const float s = 1.0f / sqrtf(mean + eps);
    const float coef = (float)((double)s * (double)s * dot / (double)n);
    /* element i is read before it is written: dx may alias x or dy */
    for (int64_t i = 0; i < n; i++)
        dx[i] = s * (w[i] * dy[i] - x[i] * coef);
}

/* -------------------------------------------------------------- RoPE */

#define ROPE_CHUNK 64

/* A rotation's transpose is the rotation by -theta: with the forward's
 * (a, b) -> (a c - b s, a s + b c), the gradient maps back as
 * (da, db) -> (da c + db s, -da s + db c). Same angle table as the
 * forward, so the pair is exactly orthogonal up to cos/sin rounding. */
void jq_ref_rope_backward(float *dx, int n_heads, int head_dim, int rope_dim,
                          int32_t pos, float freq_base,
                          const float *freq_factors, bool neox)
{
    const int n_pairs = rope_dim / 2;
    if (n_pairs <= 0)
        return;
    float cos_t[ROPE_CHUNK], sin_t[ROPE_CHUNK];
    jq_rope_angles st;
    jq_rope_angles_init(&st, pos, freq_base, rope_dim, freq_factors);
    for (int p0 = 0; p0 < n_pairs; p0 += ROPE_CHUNK) {
        const int np = n_pairs - p0 < ROPE_CHUNK ? n_pairs - p0 : ROPE_CHUNK;
        jq_rope_angles_next(&st, cos_t, sin_t, np);
        for (int h = 0; h < n_heads; h++) {
            float *xh = dx + (size_t)h * (size_t)head_dim;
            for (int j = 0; j < np; j++) {
                const int i = p0 + j;
                float *a = neox ? &xh[i] : &xh[2 * i];
                float *b = neox ? &xh[i + n_pairs] : &xh[2 * i + 1];
                const float g0 = *a, g1 = *b;
                *a = g0 * cos_t[j] + g1 * sin_t[j];
                *b = g1 * cos_t[j] - g0 * sin_t[j];
            }
        }
    }
}

/* ----------------------------------------------------------- softmax */

void jq_ref_softmax_backward(float *ds, const float *p, const float *dp,
                             int64_t n)
{
    double dot = 0.0;
    for (int64_t i = 0; i < n; i++)
        dot += (double)p[i] * (double)dp[i];
    const float d = (float)dot;
    for (int64_t i = 0; i < n; i++)
        ds[i] = p[i] * (dp[i] - d);
}

/* ---------------------------------------------------------- silu_mul */

/* out = silu(g) u, silu(g) = g s, s = 1 / (1 + e), e = exp(-g):
 *   d silu / dg = s (1 + g (1 - s)),  with 1 - s = e s.
 * e s is exact where 1 - s would cancel (g >> 0), but is inf * 0 = NaN once
 * e overflows (g < -88.7), where 1 - s is exactly 1: hence the clamp, which
 * also maps that NaN to 1. silu itself is g / (1 + e), as the forward
 * computes it. */
void jq_ref_silu_mul_backward(float *dgate, float *dup, const float *gate,
                              const float *up, const float *dout, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i], u = up[i], d = dout[i];
        const float e = expf(-g);
        const float s = 1.0f / (1.0f + e);
        float oms = e * s;
        if (!(oms <= 1.0f))
            oms = 1.0f;
        const float silu = g / (1.0f + e);
        /* all of element i was read above, so the outputs may alias */
        dgate[i] = d * u * (s * (1.0f + g * oms));
        dup[i] = d * silu;
    }
}

/* ---------------------------------------------------------- matmul dX */

/* Weight row by weight row: dequantize W[r] once into scratch, then
 * dX[i] += dY[i][r] * W[r] for every activation row, so each element of dX
 * is a float sum over r in ascending order (the AVX-512 path keeps that
 * order and differs only by FMA's single rounding). */
void jq_ref_matmul_backward_x(uint32_t type, const void *W, int64_t K,
                              const float *dY, int64_t ldy, int64_t M,
                              float *dX, int64_t ldx, int64_t r0, int64_t r1,
                              float *scratch)
{
    const unsigned char *w = W;
    const size_t stride = jq_row_bytes(type, K);
    for (int64_t r = r0; r < r1; r++) {
        jq_ref_dequantize_row(type, w + (size_t)r * stride, scratch, K);
        for (int64_t i = 0; i < M; i++) {
            const float a = dY[i * ldy + r];
            float *xi = dX + i * ldx;
            for (int64_t c = 0; c < K; c++)
                xi[c] += a * scratch[c];
        }
    }
}

/* --------------------------------------------------------- attention */

static int64_t kv_visible(int64_t n_kv, int64_t causal_base, int64_t i)
{
    const int64_t v = causal_base + i + 1;
    return v < 0 ? 0 : v > n_kv ? n_kv : v;
}

/* Accumulators of dq kept in double, this many dims at a time (any
 * head_dim works without allocation). */
#define DQ_CHUNK 64

/* Row by row, as the forward: dp over the visible keys, ds = the softmax
 * backward, then the three products. Keys the row does not see have
 * p = 0 and get no gradient; a row that sees no key has dq = 0. */
void jq_ref_attention_backward(const jq_attn_bwd_args *a)
{
    const int hd = a->head_dim;
    float *ds = a->scratch;
    for (int64_t i = 0; i < a->n_q; i++) {
        const float *qi = a->q + i * a->ldq;
        const float *pi = a->p + i * a->ldp;
        const float *doi = a->dout + i * a->lddo;
        float *dqi = a->dq + i * a->ldq_out;
        const int64_t nv = kv_visible(a->n_kv, a->causal_base, i);
        if (nv == 0) {
            memset(dqi, 0, (size_t)hd * sizeof *dqi);
            continue;
        }
        /* dp_j = dout_i . v_j (+ the direct gradient), ds = p (dp - p.dp) */
        double pdp = 0.0;
        for (int64_t j = 0; j < nv; j++) {
            const float *vj = a->v + j * a->ldv;
            double dot = 0.0;
            for (int d = 0; d < hd; d++)
                dot += (double)doi[d] * (double)vj[d];
            float dp = (float)dot;
            if (a->dp_extra && j < a->n_pe)
                dp += a->dp_extra[i * a->ldpe + j];
            ds[j] = dp;
            pdp += (double)pi[j] * (double)dp;
        }
        const float dsum = (float)pdp;
        for (int64_t j = 0; j < nv; j++)
            ds[j] = pi[j] * (ds[j] - dsum);
        /* dq_i = scale * sum_j ds_j k_j */
        for (int d0 = 0; d0 < hd; d0 += DQ_CHUNK) {
            const int nd = hd - d0 < DQ_CHUNK ? hd - d0 : DQ_CHUNK;
            double acc[DQ_CHUNK] = {0};
            for (int64_t j = 0; j < nv; j++) {
                const float *kj = a->k + j * a->ldk + d0;
                for (int d = 0; d < nd; d++)
                    acc[d] += (double)ds[j] * (double)kj[d];
            }
            for (int d = 0; d < nd; d++)
                dqi[d0 + d] = (float)(acc[d] * (double)a->scale);
        }
        /* the trainable keys and values this row sees */
        const int64_t j0 = a->kgrad0 > 0 ? a->kgrad0 : 0;
        for (int64_t j = j0; j < nv; j++) {
            if (a->dk) {
                float *dkj = a->dk + (j - a->kgrad0) * a->lddk;
                const float g = a->scale * ds[j];
                for (int d = 0; d < hd; d++)
                    dkj[d] += g * qi[d];
            }
            if (a->dv) {
                float *dvj = a->dv + (j - a->kgrad0) * a->lddv;
                for (int d = 0; d < hd; d++)
                    dvj[d] += pi[j] * doi[d];
            }
        }
    }
}

/* -------------------------------------------------------- dispatchers */

void jq_rmsnorm_backward(float *dx, const float *x, const float *w,
                         const float *dy, int64_t n, float eps)
{
    if (JQ_USE_AVX512())
        jq_avx512_rmsnorm_backward(dx, x, w, dy, n, eps);
    else
        jq_ref_rmsnorm_backward(dx, x, w, dy, n, eps);
}

void jq_rope_backward(float *dx, int n_heads, int head_dim, int rope_dim,
                      int32_t pos, float freq_base, const float *freq_factors,
                      bool neox)
{
    if (JQ_USE_AVX512())
        jq_avx512_rope_backward(dx, n_heads, head_dim, rope_dim, pos,
                                freq_base, freq_factors, neox);
    else
        jq_ref_rope_backward(dx, n_heads, head_dim, rope_dim, pos, freq_base,
                             freq_factors, neox);
}

void jq_softmax_backward(float *ds, const float *p, const float *dp,
                         int64_t n)
{
    if (JQ_USE_AVX512())
        jq_avx512_softmax_backward(ds, p, dp, n);
    else
        jq_ref_softmax_backward(ds, p, dp, n);
}

void jq_silu_mul_backward(float *dgate, float *dup, const float *gate,
                          const float *up, const float *dout, int64_t n)
{
    if (JQ_USE_AVX512())
        jq_avx512_silu_mul_backward(dgate, dup, gate, up, dout, n);
    else
        jq_ref_silu_mul_backward(dgate, dup, gate, up, dout, n);
}

void jq_matmul_backward_x(uint32_t type, const void *W, int64_t K,
                          const float *dY, int64_t ldy, int64_t M, float *dX,
                          int64_t ldx, int64_t r0, int64_t r1, float *scratch)
{
    if (JQ_USE_AVX512())
        jq_avx512_matmul_backward_x(type, W, K, dY, ldy, M, dX, ldx, r0, r1,
                                    scratch);
    else
        jq_ref_matmul_backward_x(type, W, K, dY, ldy, M, dX, ldx, r0, r1,
                                 scratch);
}

void jq_attention_backward(const jq_attn_bwd_args *a)
{
    if (JQ_USE_AVX512())
        jq_avx512_attention_backward(a);
    else
        jq_ref_attention_backward(a);
}
