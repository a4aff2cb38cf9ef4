/* ops_internal.h — pieces shared between the scalar and AVX-512 files of
 * the element-wise, attention and top-k kernels (not public).
 *
 * Whatever must be bit-identical on both paths (the RoPE angles, the top-k
 * order) is computed by one copy of the code, compiled once in a portable
 * file, and called from both; the vector exp lives here as a static inline
 * because only *_avx512.c files may be compiled with the AVX-512 flags.
 */
#ifndef JQ_OPS_INTERNAL_H
#define JQ_OPS_INTERNAL_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "kernels.h"

/* ------------------------------------------------------------- RoPE */

/* Running state of the RoPE angle sequence theta_i = pos * base^(-2i/d),
 * computed as llama.cpp's ggml_rope_cache_init does (ext_factor 0,
 * attn_factor 1, freq_scale 1): theta starts at (float)pos and is multiplied
 * by theta_scale = powf(base, -2/d) once per pair, in float. Reproducing
 * that accumulated float rounding (instead of computing each theta_i
 * exactly) is what lets judgeq's logits match llama.cpp's to ~1e-5. The
 * state lets callers fill the table in chunks of any size. */
typedef struct {
    float theta;        /* theta of the next pair, before freq_factors */
    float theta_scale;  /* powf(freq_base, -2.0f / rope_dim) */
    int pair;           /* index of the next pair */
    const float *freq_factors; /* NULL or rope_dim/2 divisors */
} jq_rope_angles;

void jq_rope_angles_init(jq_rope_angles *st, int32_t pos, float freq_base,
                         int rope_dim, const float *freq_factors);
/* cos_out[j], sin_out[j] for the next n pairs; advances the state. Defined
 * in ops.c (portable flags) so both paths get the very same values. */
void jq_rope_angles_next(jq_rope_angles *st, float *cos_out, float *sin_out,
                         int n);

/* ------------------------------------------------------------ top-k */

/* The top-k order: higher score first, ties to the lower index, NaN below
 * everything (NaNs among themselves by index). A strict total order on
 * indices, so the top-k set and its sorted order are unique and both paths
 * must produce exactly the same output. */
static inline bool jq_topk_ranks_above(const float *s, int32_t a, int32_t b)
{
    const float sa = s[a], sb = s[b];
    if (isnan(sa))
        return isnan(sb) && a < b;
    if (isnan(sb))
        return true;
    if (sa != sb)
        return sa > sb;
    return a < b; /* equal, including -0 == +0 */
}

/* A min-heap (root = lowest ranked) of k indices into scores, kept in the
 * caller's output array so top-k needs no allocation. */
void jq_topk_heap_build(const float *s, int32_t *heap, int64_t k);
/* Replaces the root by j and restores the heap (caller checked that j ranks
 * above the root). */
void jq_topk_heap_replace_root(const float *s, int32_t *heap, int64_t k,
                               int32_t j);
/* Heap sort: leaves heap[0..k) ordered best first. */
void jq_topk_heap_sort(const float *s, int32_t *heap, int64_t k);

/* ---------------------------------------------------------- max-pool */

/* The order jq_maxpool1d takes its maximum in, shared by both paths so
 * that they agree bit for bit: the usual float order, with +0 above -0
 * (so the result does not depend on which of two zeros is met first) and
 * NaN below everything (NaN is ignored unless a whole window is NaN). */
static inline bool jq_maxpool_above(float a, float b)
{
    if (isnan(a))
        return false;
    if (isnan(b))
        return true;
    if (a != b)
        return a > b;
    return !signbit(a) && signbit(b);
}

/* What an all-NaN window yields: the default quiet NaN (0x7fc00000), not
 * one of the input NaNs, whose choice would depend on the visiting order. */
#define JQ_MAXPOOL_NAN_BITS 0x7fc00000u

/* -------------------------------------------------------- attention */

/* The number of keys in the first K/V segment of jq_attn_args (0: a
 * single segment), after checking it: both paths read segments by these
 * counts, so a count outside [0, n_kv] would read past a segment; that is
 * a caller bug and aborts, as a bad kv_type does. */
static inline int64_t jq_attn_first_segment(const jq_attn_args *a)
{
    if (a->k0 == NULL)
        return 0;
    if (a->n_kv0 < 0 || a->n_kv0 > a->n_kv)
        abort();
    return a->n_kv0;
}

/* ---------------------------------------------------- vector exp */

/* y[i] = exp(x[i]) with the AVX-512 exp below (ops_avx512.c); only for
 * tests measuring its error. Needs jq_cpu_has_avx512(). */
void jq_avx512_exp_row(float *y, const float *x, int64_t n);

#if defined(__AVX512F__)
#include <immintrin.h>

/* exp(x) for 16 floats. Measured error against the correctly rounded
 * result: at most 0.94 ulp over every float in [-104, 89] (an exhaustive
 * sweep, run once; tests/test_kernels_ops.c test_vexp_accuracy samples
 * every 61st float and asserts <= 1.5 ulp), subnormal results included;
 * max relative error 7.7e-8 for normal results (glibc expf: 0.50 ulp).
 * exp(-inf) = 0, exp(+inf) = +inf, NaN -> NaN.
 *
 * Range reduction x = n ln2 + r, n = round(x / ln2), |r| <= ln2/2, with ln2
 * split in a 17-bit head and a float tail (together ln2 to 5e-14), each
 * subtracted by one FMA so the product n * ln2 is never rounded on its own. exp(r) is the degree-7 Taylor polynomial: its
 * truncation error at |r| = ln2/2 is r^8/8! ~ 5e-9 (0.1 ulp), so no minimax
 * fit is needed. The result is scaled by 2^n with VSCALEFPS, which rounds
 * once and handles the subnormal and overflow ranges that building 2^n from
 * exponent bits would get wrong. */
static inline __m512 jq_exp512(__m512 x)
{
    /* Below -104 the result rounds to 0 even as a subnormal, above 89 it is
     * +inf; clamping keeps r finite for +-inf inputs. x is the second
     * operand so a NaN input is passed through (VMAXPS/VMINPS return the
     * second operand when either is NaN). */
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
    const __m512 n = _mm512_roundscale_ps(
        _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* Sum of 16 floats in double (lanes widened before adding), as the scalar
 * references sum softmax denominators in double. */
static inline __m512d jq_add_ps_as_pd(__m512d acc, __m512 v)
{
    acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    return _mm512_add_pd(acc,
                         _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
}
#endif

#endif
