/* ops_avx512.c — AVX-512 element-wise kernels and norms.
 *
 * Each function computes what its jq_ref_* twin in ops.c computes, with the
 * same roundings wherever that is cheap: rmsnorm and softmax sum in double
 * like the references, RoPE takes its angles from the very same scalar code
 * and rotates with the same products and sums (no FMA), so it is
 * bit-identical. Only exp differs (jq_exp512, <= 1 ulp, against glibc's
 * expf); tests/test_kernels_ops.c states the resulting tolerances.
 *
 * Tails are handled with masked loads and stores, which neither read nor
 * write past n, so callers need no padding.
 */
#include <assert.h>
#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels.h"
#include "ops_internal.h"

static inline __mmask16 tail_mask(int64_t left)
{
    return left >= 16 ? (__mmask16)0xFFFF
                      : (__mmask16)((1u << (unsigned)left) - 1u);
}

void jq_avx512_exp_row(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m,
                              jq_exp512(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* ----------------------------------------------------------- rmsnorm */

void jq_avx512_rmsnorm(float *out, const float *x, const float *w, int64_t n,
                       float eps)
{
    if (n <= 0)
        return;
    /* Squares rounded to float, then summed in double (two accumulators to
     * overlap the add latency): the reference's arithmetic in another
     * order, so the float mean nearly always comes out identical. Masked
     * lanes load 0 and add exactly 0. */
    __m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd();
    for (int64_t i = 0; i < n; i += 16) {
        const __m512 v = _mm512_maskz_loadu_ps(tail_mask(n - i), x + i);
        const __m512 sq = _mm512_mul_ps(v, v);
        acc0 = _mm512_add_pd(acc0,
                             _mm512_cvtps_pd(_mm512_castps512_ps256(sq)));
        acc1 = _mm512_add_pd(acc1,
                             _mm512_cvtps_pd(_mm512_extractf32x8_ps(sq, 1)));
    }
    const double sum = _mm512_reduce_add_pd(_mm512_add_pd(acc0, acc1));
    const float mean = (float)(sum / (double)n);
    const __m512 scale = _mm512_set1_ps(1.0f / sqrtf(mean + eps));
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        const __m512 wv = _mm512_maskz_loadu_ps(m, w + i);
        _mm512_mask_storeu_ps(out + i, m,
                              _mm512_mul_ps(_mm512_mul_ps(v, scale), wv));
    }
}

/* ----------------------------------------------------------- softmax */

void jq_avx512_softmax(float *x, int64_t n)
{
    if (n <= 0)
        return;
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        vmax = _mm512_mask_max_ps(vmax, m, vmax, _mm512_maskz_loadu_ps(m, x + i));
    }
    const __m512 max = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
    __m512d sum = _mm512_setzero_pd();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        const __m512 e =
            jq_exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), max));
        _mm512_mask_storeu_ps(x + i, m, e);
        /* masked-off lanes must add 0, not exp(0 - max) */
        sum = jq_add_ps_as_pd(sum, _mm512_maskz_mov_ps(m, e));
    }
    const __m512 inv = _mm512_set1_ps((float)(1.0 / _mm512_reduce_add_pd(sum)));
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, m,
                              _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
    }
}

/* ---------------------------------------------------------- silu_mul */

void jq_avx512_silu_mul(float *out, const float *gate, const float *up,
                        int64_t n)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
        const __m512 u = _mm512_maskz_loadu_ps(m, up + i);
        /* g / (1 + exp(-g)) with a true division, as the reference: a
         * reciprocal approximation would add several ulp. */
        const __m512 e = jq_exp512(_mm512_sub_ps(_mm512_setzero_ps(), g));
        const __m512 silu = _mm512_div_ps(g, _mm512_add_ps(one, e));
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(silu, u));
    }
}

/* --------------------------------------------------------------- add */

void jq_avx512_add(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m,
                              _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i),
                                            _mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* -------------------------------------------------------------- RoPE */

#define ROPE_CHUNK 64 /* pairs per angle table, as in ops.c */

/* The angles come from jq_rope_angles_next (ops.c), the reference's own
 * code. The rotation uses separate multiplies and adds, never FMA, so each
 * output is the reference's x0*c - x1*s / x0*s + x1*c rounded the same way
 * (GCC does not contract _mm512_mul_ps + _mm512_add_ps in ISO C mode). */
void jq_avx512_rope(float *x, int n_heads, int head_dim, int rope_dim,
                    int32_t pos, float freq_base, const float *freq_factors,
                    bool neox)
{
    const int n_pairs = rope_dim / 2;
    if (n_pairs <= 0)
        return; /* nothing rotates (and powf(base, -2/0) is avoided) */
    float cos_t[ROPE_CHUNK], sin_t[ROPE_CHUNK];
    /* NORM layout: cosines duplicated per pair and sines signed (-s, +s),
     * so out = x * C + swap_pairs(x) * S gives (x0 c - x1 s, x1 c + x0 s). */
    float cdup[2 * ROPE_CHUNK], sdup[2 * ROPE_CHUNK];
    jq_rope_angles st;
    jq_rope_angles_init(&st, pos, freq_base, rope_dim, freq_factors);
    for (int p0 = 0; p0 < n_pairs; p0 += ROPE_CHUNK) {
        const int np = n_pairs - p0 < ROPE_CHUNK ? n_pairs - p0 : ROPE_CHUNK;
        jq_rope_angles_next(&st, cos_t, sin_t, np);
        if (neox) {
            for (int h = 0; h < n_heads; h++) {
                float *lo = x + (size_t)h * (size_t)head_dim + p0;
                float *hi = lo + n_pairs;
                for (int j = 0; j < np; j += 16) {
                    const __mmask16 m = tail_mask(np - j);
                    const __m512 c = _mm512_maskz_loadu_ps(m, cos_t + j);
                    const __m512 s = _mm512_maskz_loadu_ps(m, sin_t + j);
                    const __m512 x0 = _mm512_maskz_loadu_ps(m, lo + j);
                    const __m512 x1 = _mm512_maskz_loadu_ps(m, hi + j);
                    _mm512_mask_storeu_ps(
                        lo + j, m,
                        _mm512_sub_ps(_mm512_mul_ps(x0, c), _mm512_mul_ps(x1, s)));
                    _mm512_mask_storeu_ps(
                        hi + j, m,
                        _mm512_add_ps(_mm512_mul_ps(x0, s), _mm512_mul_ps(x1, c)));
                }
            }
            continue;
        }
        for (int j = 0; j < np; j++) {
            cdup[2 * j] = cdup[2 * j + 1] = cos_t[j];
            sdup[2 * j] = -sin_t[j];
            sdup[2 * j + 1] = sin_t[j];
        }
        for (int h = 0; h < n_heads; h++) {
            float *xh = x + (size_t)h * (size_t)head_dim + 2 * p0;
            for (int f = 0; f < 2 * np; f += 16) {
                const __mmask16 m = tail_mask(2 * np - f);
                const __m512 v = _mm512_maskz_loadu_ps(m, xh + f);
                const __m512 swapped = _mm512_permute_ps(v, 0xB1);
                const __m512 c = _mm512_maskz_loadu_ps(m, cdup + f);
                const __m512 s = _mm512_maskz_loadu_ps(m, sdup + f);
                _mm512_mask_storeu_ps(
                    xh + f, m,
                    _mm512_add_ps(_mm512_mul_ps(v, c), _mm512_mul_ps(swapped, s)));
            }
        }
    }
}

/* ---------------------------------------------------------- max-pool */

/* Lanes of `acc` that v beats, merged in, in jq_maxpool_above's order:
 * NaN lanes of v are masked off (and do not count as seen), and VRANGEPS
 * with imm 0x5 (select the maximum, sign from the comparison) orders +0
 * above -0, which VMAXPS does not (it returns its second operand on equal
 * inputs). The non-NaN maximum is a value of x, so its bits are unique. */
static inline __m512 pool_merge(__m512 acc, __m512 v, __mmask16 lanes,
                                __mmask16 *seen)
{
    const __mmask16 ok = _mm512_mask_cmp_ps_mask(lanes, v, v, _CMP_ORD_Q);
    *seen |= ok;
    return _mm512_mask_range_ps(acc, ok, acc, v, 0x5);
}

/* Sixteen outputs at a time, each the maximum of 2r + 1 shifted loads (any
 * O(n k / 16) method is fast enough for k <= 63; a van Herk/Gil-Werman
 * scheme would need an n-float scratch the interface does not give).
 * Blocks whose whole window lies inside x use plain loads; blocks near
 * either end load only the lanes whose index is in [0, n), with an expand
 * load so that no pointer before x is ever formed. */
void jq_avx512_maxpool1d(const float *x, float *out, int64_t n, int k)
{
    assert(k >= 1 && k % 2 == 1);
    const int64_t r = (k - 1) / 2;
    const __m512 qnan = _mm512_castsi512_ps(
        _mm512_set1_epi32((int)JQ_MAXPOOL_NAN_BITS));
    for (int64_t j0 = 0; j0 < n; j0 += 16) {
        __m512 a0 = _mm512_set1_ps(-INFINITY), a1 = a0;
        __mmask16 seen = 0;
        if (j0 - r >= 0 && j0 + 16 + r <= n) {
            /* two accumulators halve the VRANGEPS dependency chain */
            int64_t t = -r;
            for (; t + 1 <= r; t += 2) {
                a0 = pool_merge(a0, _mm512_loadu_ps(x + j0 + t), 0xFFFF, &seen);
                a1 = pool_merge(a1, _mm512_loadu_ps(x + j0 + t + 1), 0xFFFF,
                                &seen);
            }
            if (t <= r)
                a0 = pool_merge(a0, _mm512_loadu_ps(x + j0 + t), 0xFFFF, &seen);
        } else {
            /* offsets whose 16 lanes touch [0, n) at all */
            const int64_t t0 = -r > -j0 - 15 ? -r : -j0 - 15;
            const int64_t t1 = r < n - 1 - j0 ? r : n - 1 - j0;
            for (int64_t t = t0; t <= t1; t++) {
                const int64_t s = j0 + t; /* x index of lane 0 */
                const int64_t lo = s < 0 ? -s : 0;
                const int64_t hi = n - s < 16 ? n - s : 16;
                const __mmask16 lanes =
                    (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
                const __m512 v = _mm512_maskz_expandloadu_ps(lanes, x + s + lo);
                a0 = pool_merge(a0, v, lanes, &seen);
            }
        }
        const __m512 m = _mm512_range_ps(a0, a1, 0x5);
        _mm512_mask_storeu_ps(out + j0, tail_mask(n - j0),
                              _mm512_mask_blend_ps(seen, qnan, m));
    }
}
