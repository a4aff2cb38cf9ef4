/* attention_train_avx512.c — AVX-512 twins of the training attention rows
 * (attention_train.c has the specification). The same arithmetic in 16
 * lanes: scale multiply, max, exp (jq_exp512, <= 1 ulp against expf), the
 * sum in double; only exp and the double sum's order differ, which
 * tests/test_kernels_backward.c bounds. Tails use masked loads and stores
 * (nothing past n is read or written). */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "kernels.h"
#include "ops_internal.h"

static inline __mmask16 tail_mask(int64_t left)
{
    return left >= 16 ? (__mmask16)0xFFFF
                      : (__mmask16)((1u << (unsigned)left) - 1u);
}

float jq_avx512_softmax_lse(float *s, int64_t n, float scale)
{
    if (n <= 0)
        return -INFINITY;
    const __m512 vs = _mm512_set1_ps(scale);
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 m = tail_mask(n - j);
        const __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + j), vs);
        _mm512_mask_storeu_ps(s + j, m, x);
        vmax = _mm512_mask_max_ps(vmax, m, vmax, x);
    }
    const float maxf = _mm512_reduce_max_ps(vmax);
    const __m512 max = _mm512_set1_ps(maxf);
    __m512d sum = _mm512_setzero_pd();
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 m = tail_mask(n - j);
        const __m512 e =
            jq_exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + j), max));
        _mm512_mask_storeu_ps(s + j, m, e);
        sum = jq_add_ps_as_pd(sum, _mm512_maskz_mov_ps(m, e));
    }
    const double total = _mm512_reduce_add_pd(sum);
    const __m512 inv = _mm512_set1_ps((float)(1.0 / total));
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 m = tail_mask(n - j);
        _mm512_mask_storeu_ps(
            s + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + j), inv));
    }
    return maxf + (float)log(total);
}

void jq_avx512_softmax_lse_backward(float *s, float *dp, int64_t n,
                                    float scale, float lse, float d)
{
    const __m512 vs = _mm512_set1_ps(scale), vl = _mm512_set1_ps(lse),
                 vd = _mm512_set1_ps(d);
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 m = tail_mask(n - j);
        /* s * scale rounded before the subtraction, as the reference */
        const __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + j), vs);
        const __m512 p = jq_exp512(_mm512_sub_ps(x, vl));
        _mm512_mask_storeu_ps(s + j, m, p);
        const __m512 g = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, dp + j), vd);
        _mm512_mask_storeu_ps(dp + j, m, _mm512_mul_ps(p, g));
    }
}
