/* attention_avx512.c — AVX-512 two-pass attention (see attention.c).
 *
 * Per query row: scores of four keys at a time (four independent FMA chains
 * over head_dim, so the 4-cycle FMA latency is hidden even when head_dim is
 * a single vector), a vectorised max / exp / double sum over the scores,
 * then the weighted value sum one 16-float column strip of head_dim at a
 * time with four accumulators. head_dim may be any size >= 1: the last strip
 * is masked, and masked loads never touch memory past the row.
 *
 * Differences from the reference: the dot products sum in float lanes
 * instead of double, exp is jq_exp512 (<= 1 ulp) instead of expf, and the
 * value sum uses FMA in another order; tests/test_kernels_ops.c bounds the
 * effect.
 */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>

#include "kernels.h"
#include "ops_internal.h"

static inline __mmask16 tail_mask(int64_t left)
{
    return left >= 16 ? (__mmask16)0xFFFF
                      : (__mmask16)((1u << (unsigned)left) - 1u);
}

static int64_t kv_visible(int64_t n_kv, int64_t causal_base, int64_t i)
{
    const int64_t v = causal_base + i + 1;
    return v < 0 ? 0 : v > n_kv ? n_kv : v;
}

/* scores[j] = (q . K_j) * scale for j in [0, nv) */
static void scores_row(const float *qi, const float *K, int64_t ldk,
                       int64_t nv, int head_dim, float scale, float *scores)
{
    int64_t j = 0;
    for (; j + 4 <= nv; j += 4) {
        const float *k0 = K + j * ldk, *k1 = k0 + ldk, *k2 = k1 + ldk,
                    *k3 = k2 + ldk;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(),
               a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        for (int d = 0; d < head_dim; d += 16) {
            const __mmask16 m = tail_mask(head_dim - d);
            const __m512 qv = _mm512_maskz_loadu_ps(m, qi + d);
            a0 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, k0 + d), a0);
            a1 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, k1 + d), a1);
            a2 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, k2 + d), a2);
            a3 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, k3 + d), a3);
        }
        scores[j + 0] = _mm512_reduce_add_ps(a0) * scale;
        scores[j + 1] = _mm512_reduce_add_ps(a1) * scale;
        scores[j + 2] = _mm512_reduce_add_ps(a2) * scale;
        scores[j + 3] = _mm512_reduce_add_ps(a3) * scale;
    }
    for (; j < nv; j++) {
        const float *kj = K + j * ldk;
        __m512 a = _mm512_setzero_ps();
        for (int d = 0; d < head_dim; d += 16) {
            const __mmask16 m = tail_mask(head_dim - d);
            a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, qi + d),
                                _mm512_maskz_loadu_ps(m, kj + d), a);
        }
        scores[j] = _mm512_reduce_add_ps(a) * scale;
    }
}

/* In place p_j = exp(s_j - max); returns sum p_j (in double). */
static double exp_scores(float *s, int64_t nv)
{
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < nv; j += 16) {
        const __mmask16 m = tail_mask(nv - j);
        vmax = _mm512_mask_max_ps(vmax, m, vmax, _mm512_maskz_loadu_ps(m, s + j));
    }
    const __m512 max = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
    __m512d sum = _mm512_setzero_pd();
    for (int64_t j = 0; j < nv; j += 16) {
        const __mmask16 m = tail_mask(nv - j);
        const __m512 e =
            jq_exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + j), max));
        _mm512_mask_storeu_ps(s + j, m, e);
        sum = jq_add_ps_as_pd(sum, _mm512_maskz_mov_ps(m, e));
    }
    return _mm512_reduce_add_pd(sum);
}

/* oi[d] = inv * sum_j p[j] V_j[d], one 16-float strip at a time, so each
 * output element is written once. */
static void weighted_values(const float *p, const float *V, int64_t ldv,
                            int64_t nv, int head_dim, float inv, float *oi)
{
    for (int d = 0; d < head_dim; d += 16) {
        const __mmask16 m = tail_mask(head_dim - d);
        const float *vd = V + d;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(),
               a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        int64_t j = 0;
        for (; j + 4 <= nv; j += 4) {
            const float *v0 = vd + j * ldv;
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(p[j]),
                                 _mm512_maskz_loadu_ps(m, v0), a0);
            a1 = _mm512_fmadd_ps(_mm512_set1_ps(p[j + 1]),
                                 _mm512_maskz_loadu_ps(m, v0 + ldv), a1);
            a2 = _mm512_fmadd_ps(_mm512_set1_ps(p[j + 2]),
                                 _mm512_maskz_loadu_ps(m, v0 + 2 * ldv), a2);
            a3 = _mm512_fmadd_ps(_mm512_set1_ps(p[j + 3]),
                                 _mm512_maskz_loadu_ps(m, v0 + 3 * ldv), a3);
        }
        for (; j < nv; j++)
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(p[j]),
                                 _mm512_maskz_loadu_ps(m, vd + j * ldv), a0);
        const __m512 acc =
            _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
        _mm512_mask_storeu_ps(oi + d, m,
                              _mm512_mul_ps(acc, _mm512_set1_ps(inv)));
    }
}

void jq_avx512_attention(const float *q, int64_t ldq, int64_t n_q,
                         const float *K, int64_t ldk, const float *V,
                         int64_t ldv, int64_t n_kv, int head_dim, float scale,
                         int64_t causal_base, float *out, int64_t ldo,
                         float *scratch)
{
    for (int64_t i = 0; i < n_q; i++) {
        float *oi = out + i * ldo;
        const int64_t nv = kv_visible(n_kv, causal_base, i);
        if (nv == 0) {
            for (int d = 0; d < head_dim; d += 16)
                _mm512_mask_storeu_ps(oi + d, tail_mask(head_dim - d),
                                      _mm512_setzero_ps());
            continue;
        }
        scores_row(q + i * ldq, K, ldk, nv, head_dim, scale, scratch);
        const double sum = exp_scores(scratch, nv);
        weighted_values(scratch, V, ldv, nv, head_dim, (float)(1.0 / sum), oi);
    }
}
