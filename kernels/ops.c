/* ops.c — element-wise kernels and norms: the scalar references (the
 * specification) and the public dispatchers.
 *
 * The references follow llama.cpp's CPU backend (ggml-cpu/ops.cpp, vec.h)
 * operation by operation, float for float, so judgeq's logits can match
 * llama.cpp's: where ggml accumulates in double (ggml_float), so do we, and
 * where it rounds an intermediate to float, so do we.
 */
#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "isa_internal.h"
#include "kernels.h"
#include "ops_internal.h"

/* ----------------------------------------------------------- rmsnorm */

/* The sum of squares is accumulated in double, as ggml does (each product
 * x*x is rounded to float first, then widened, exactly like ggml's
 * `sum += (ggml_float)(x[i]*x[i])`). Two reasons: a float sum over n = 4096+
 * elements loses ~n*eps/2 relative precision, and with a double sum the
 * result barely depends on summation order, so the AVX-512 path (which sums
 * in 8 lanes) rounds to the same float mean almost always. The weight is
 * applied after the scale, as llama.cpp's separate MUL op does:
 * out = (x * scale) * w. */
void jq_ref_rmsnorm(float *out, const float *x, const float *w, int64_t n,
                    float eps)
{
    if (n <= 0)
        return;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < n; i++)
        out[i] = (x[i] * scale) * w[i];
}

/* ----------------------------------------------------------- softmax */

/* As ggml's soft_max: subtract the max (so exp cannot overflow and the
 * largest term is exactly 1), exp in float, the sum in double, then one
 * multiply by the float reciprocal of the sum. */
void jq_ref_softmax(float *x, int64_t n)
{
    if (n <= 0)
        return;
    float max = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        max = x[i] > max ? x[i] : max;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += (double)x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++)
        x[i] *= inv;
}

/* ---------------------------------------------------------- silu_mul */

/* silu(g) * u with silu(g) = g / (1 + exp(-g)), the form ggml uses: for
 * g -> -inf, exp(-g) overflows to inf and the quotient is a clean -0. Each
 * element is read before out is written, so out may alias gate or up. */
void jq_ref_silu_mul(float *out, const float *gate, const float *up,
                     int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i];
        const float silu = g / (1.0f + expf(-g));
        out[i] = silu * up[i];
    }
}

/* --------------------------------------------------------------- add */

void jq_ref_add(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}

/* -------------------------------------------------------------- RoPE */

void jq_rope_angles_init(jq_rope_angles *st, int32_t pos, float freq_base,
                         int rope_dim, const float *freq_factors)
{
    st->theta = (float)pos;
    st->theta_scale = powf(freq_base, -2.0f / (float)rope_dim);
    st->pair = 0;
    st->freq_factors = freq_factors;
}

/* cosf/sinf of the float theta (divided by the pair's frequency factor),
 * then theta *= theta_scale: llama.cpp's rope cache with freq_scale 1 and
 * mscale 1, whose multiplications by 1 are exact and so omitted. */
void jq_rope_angles_next(jq_rope_angles *st, float *cos_out, float *sin_out,
                         int n)
{
    for (int j = 0; j < n; j++) {
        const float ff = st->freq_factors ? st->freq_factors[st->pair] : 1.0f;
        const float theta = st->theta / ff;
        cos_out[j] = cosf(theta);
        sin_out[j] = sinf(theta);
        st->theta *= st->theta_scale;
        st->pair++;
    }
}

/* Pairs per chunk of the angle table: the table is on the stack and shared
 * by all heads, so any rope_dim works without allocation. */
#define ROPE_CHUNK 64

/* Rotation of one pair, written as ggml writes it (two products and one
 * add/sub each; no FMA, since this file is built without FMA flags and
 * ISO C mode keeps GCC from contracting). */
void jq_ref_rope(float *x, int n_heads, int head_dim, int rope_dim,
                 int32_t pos, float freq_base, const float *freq_factors,
                 bool neox)
{
    const int n_pairs = rope_dim / 2;
    if (n_pairs <= 0)
        return; /* nothing rotates (and powf(base, -2/0) is avoided) */
    float cos_t[ROPE_CHUNK], sin_t[ROPE_CHUNK];
    jq_rope_angles st;
    jq_rope_angles_init(&st, pos, freq_base, rope_dim, freq_factors);
    for (int p0 = 0; p0 < n_pairs; p0 += ROPE_CHUNK) {
        const int np = n_pairs - p0 < ROPE_CHUNK ? n_pairs - p0 : ROPE_CHUNK;
        jq_rope_angles_next(&st, cos_t, sin_t, np);
        for (int h = 0; h < n_heads; h++) {
            float *xh = x + (size_t)h * (size_t)head_dim;
            for (int j = 0; j < np; j++) {
                const int i = p0 + j;
                /* NORM rotates neighbours, NEOX the two halves. */
                float *a = neox ? &xh[i] : &xh[2 * i];
                float *b = neox ? &xh[i + n_pairs] : &xh[2 * i + 1];
                const float x0 = *a, x1 = *b;
                *a = x0 * cos_t[j] - x1 * sin_t[j];
                *b = x0 * sin_t[j] + x1 * cos_t[j];
            }
        }
    }
}

/* ---------------------------------------------------------- max-pool */

/* The window scan, as the definition reads: O(n * k), which is cheap for
 * the k of 7 or so that SnapKV-style pooling uses. The window is clipped
 * to [0, n) rather than padded, so padding can never win. */
void jq_ref_maxpool1d(const float *x, float *out, int64_t n, int k)
{
    assert(k >= 1 && k % 2 == 1);
    const int64_t r = (k - 1) / 2;
    for (int64_t j = 0; j < n; j++) {
        const int64_t lo = j - r < 0 ? 0 : j - r;
        const int64_t hi = j + r >= n ? n - 1 : j + r;
        float best = x[lo];
        for (int64_t t = lo + 1; t <= hi; t++)
            if (jq_maxpool_above(x[t], best))
                best = x[t];
        if (isnan(best)) {
            const uint32_t b = JQ_MAXPOOL_NAN_BITS;
            memcpy(&best, &b, sizeof best);
        }
        out[j] = best;
    }
}

/* -------------------------------------------------------- dispatchers */

void jq_rmsnorm(float *out, const float *x, const float *w, int64_t n,
                float eps)
{
    if (JQ_USE_AVX512())
        jq_avx512_rmsnorm(out, x, w, n, eps);
    else
        jq_ref_rmsnorm(out, x, w, n, eps);
}

void jq_softmax(float *x, int64_t n)
{
    if (JQ_USE_AVX512())
        jq_avx512_softmax(x, n);
    else
        jq_ref_softmax(x, n);
}

void jq_silu_mul(float *out, const float *gate, const float *up, int64_t n)
{
    if (JQ_USE_AVX512())
        jq_avx512_silu_mul(out, gate, up, n);
    else
        jq_ref_silu_mul(out, gate, up, n);
}

void jq_add(float *y, const float *x, int64_t n)
{
    if (JQ_USE_AVX512())
        jq_avx512_add(y, x, n);
    else
        jq_ref_add(y, x, n);
}

void jq_rope(float *x, int n_heads, int head_dim, int rope_dim, int32_t pos,
             float freq_base, const float *freq_factors, bool neox)
{
    if (JQ_USE_AVX512())
        jq_avx512_rope(x, n_heads, head_dim, rope_dim, pos, freq_base,
                       freq_factors, neox);
    else
        jq_ref_rope(x, n_heads, head_dim, rope_dim, pos, freq_base,
                    freq_factors, neox);
}

void jq_maxpool1d(const float *x, float *out, int64_t n, int k)
{
    if (JQ_USE_AVX512())
        jq_avx512_maxpool1d(x, out, n, k);
    else
        jq_ref_maxpool1d(x, out, n, k);
}
