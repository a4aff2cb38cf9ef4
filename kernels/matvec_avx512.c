/* matvec_avx512.c — AVX-512 dot product, matrix-vector product and row
 * dequantization (compiled with the AVX-512 flags; only called after
 * jq_cpu_has_avx512()).
 *
 * Decode is bound by the bandwidth of streaming W, so the kernels convert
 * weights exactly to F32 in registers (cvtph2ps for F16, a 16-bit shift for
 * BF16, sign extension + cvtdq2ps for Q8_0) and FMA with an F32 x: the
 * products of the scalar reference, only summed in a different order. Four
 * rows share each x load; two accumulators per row (or four rows' chains for
 * Q8_0) cover the FMA latency. Tails use masked loads and stores so that no
 * lane ever touches memory past the end of a row or of y.
 */
#include "kernels.h"
#include "quant_internal.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define JQ_INLINE static inline __attribute__((always_inline))

/* The row loops below run over nr <= 4 accumulators held in arrays; fully
 * unrolled they live in registers, otherwise GCC keeps them on the stack. */

JQ_INLINE __mmask16 tail_mask(int64_t n) /* 0 < n < 16 */
{
    return (__mmask16)((1u << n) - 1u);
}

float jq_avx512_dot_f32(const float *a, const float *b, int64_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    __m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16),
                             _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32),
                             _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48),
                             _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i),
                             _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(
        _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/* 16 weights of a plain-type row starting at element i, as F32. `type` is a
 * compile-time constant at every call site, so the switch folds away. */
JQ_INLINE __m512 load_w16(uint32_t type, const unsigned char *row, int64_t i)
{
    switch (type) {
    case JQ_TYPE_F32:
        return _mm512_loadu_ps(row + 4 * i);
    case JQ_TYPE_F16:
        return _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(row + 2 * i)));
    default: /* BF16: the upper half of an F32 */
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const void *)(row + 2 * i))),
            16));
    }
}

JQ_INLINE __m512 load_w16_mask(uint32_t type, const unsigned char *row,
                               int64_t i, __mmask16 m)
{
    switch (type) {
    case JQ_TYPE_F32:
        return _mm512_maskz_loadu_ps(m, row + 4 * i);
    case JQ_TYPE_F16:
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + 2 * i));
    default:
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row + 2 * i)),
            16));
    }
}

/* How far ahead (bytes) each row is prefetched. Decode reads every weight
 * once from memory, four rows at a time; the hardware prefetchers alone
 * left 10-20% of stream_read's bandwidth unused with two threads
 * (BF16, 2048 x 8192 and 8192 x 2048; 512 to 2048 bytes ahead all helped,
 * 1024 most: PERFORMANCE.md). Past the end of a row the prefetch lands in
 * the next rows, which are read next anyway (and a prefetch never
 * faults). */
#define PREFETCH_AHEAD 1024

/* NR (1..4, constant) rows of a plain type starting at `w`, 64 columns a
 * step with four accumulators per row: more loads in flight per step than
 * 32 columns with two (BF16 2048 x 8192, two threads: 87-92% of
 * stream_read against 83-87%). */
JQ_INLINE void rows_plain(uint32_t type, int nr, const unsigned char *w,
                          size_t stride, const float *x, int64_t cols,
                          float *y)
{
    const int esize = type == JQ_TYPE_F32 ? 4 : 2;
    __m512 a[4][4];
    _Pragma("GCC unroll 4")
    for (int k = 0; k < nr; k++)
        a[k][0] = a[k][1] = a[k][2] = a[k][3] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= cols; i += 64) {
        __m512 xv[4];
        _Pragma("GCC unroll 4")
        for (int j = 0; j < 4; j++)
            xv[j] = _mm512_loadu_ps(x + i + 16 * j);
        _Pragma("GCC unroll 4")
        for (int k = 0; k < nr; k++) {
            const unsigned char *row = w + (size_t)k * stride;
            /* 64 weights: two lines (F16/BF16) or four (F32) */
            _Pragma("GCC unroll 4")
            for (int l = 0; l < esize; l++)
                _mm_prefetch((const char *)(row + esize * i + 64 * l + PREFETCH_AHEAD),
                             _MM_HINT_T0);
            _Pragma("GCC unroll 4")
            for (int j = 0; j < 4; j++)
                a[k][j] = _mm512_fmadd_ps(load_w16(type, row, i + 16 * j), xv[j], a[k][j]);
        }
    }
    for (; i + 16 <= cols; i += 16) {
        __m512 x0 = _mm512_loadu_ps(x + i);
        _Pragma("GCC unroll 4")
        for (int k = 0; k < nr; k++)
            a[k][0] = _mm512_fmadd_ps(load_w16(type, w + (size_t)k * stride, i),
                                      x0, a[k][0]);
    }
    if (i < cols) {
        __mmask16 m = tail_mask(cols - i);
        __m512 x0 = _mm512_maskz_loadu_ps(m, x + i);
        _Pragma("GCC unroll 4")
        for (int k = 0; k < nr; k++)
            a[k][1] = _mm512_fmadd_ps(
                load_w16_mask(type, w + (size_t)k * stride, i, m), x0, a[k][1]);
    }
    _Pragma("GCC unroll 4")
    for (int k = 0; k < nr; k++)
        y[k] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a[k][0], a[k][1]),
                                                  _mm512_add_ps(a[k][2], a[k][3])));
}

JQ_INLINE float q8_scale(const unsigned char *blk)
{
    uint16_t d;
    memcpy(&d, blk, sizeof d);
    return _cvtsh_ss(d);
}

/* The 32 weights of a Q8_0 block as two F32 vectors (d * q is exact). */
JQ_INLINE void q8_block(const unsigned char *blk, __m512 *lo, __m512 *hi)
{
    __m512 d = _mm512_set1_ps(q8_scale(blk));
    __m128i q0 = _mm_loadu_si128((const void *)(blk + 2));
    __m128i q1 = _mm_loadu_si128((const void *)(blk + 18));
    *lo = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)), d);
    *hi = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)), d);
}

/* Q8_0 rows: per block, sum q * x over the 32 lanes first and apply the
 * block scale with one FMA into the accumulator. Scaling the weights instead
 * (d * q, then FMA) rounds closer to the reference but costs a multiply per
 * 16 weights, and this loop is bound by those conversion/FP ports, not by
 * memory: the block-level FMA measured 25% faster. The difference from the
 * reference stays at reassociation level (checked by the tests). */
JQ_INLINE void rows_q8_0(int nr, const unsigned char *w, size_t stride,
                         const float *x, int64_t cols, float *y)
{
    __m512 a[4];
    _Pragma("GCC unroll 4")
    for (int k = 0; k < nr; k++)
        a[k] = _mm512_setzero_ps();
    const int64_t nb = cols / JQ_QK8_0;
    for (int64_t bi = 0; bi < nb; bi++) {
        const float *xb = x + bi * JQ_QK8_0;
        __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
        _Pragma("GCC unroll 4")
        for (int k = 0; k < nr; k++) {
            const unsigned char *blk = w + (size_t)k * stride +
                                       (size_t)bi * sizeof(jq_block_q8_0);
            __m128i q0 = _mm_loadu_si128((const void *)(blk + 2));
            __m128i q1 = _mm_loadu_si128((const void *)(blk + 18));
            __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)), x0);
            t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)), x1, t);
            a[k] = _mm512_fmadd_ps(t, _mm512_set1_ps(q8_scale(blk)), a[k]);
        }
    }
    _Pragma("GCC unroll 4")
    for (int k = 0; k < nr; k++)
        y[k] = _mm512_reduce_add_ps(a[k]);
}

/* One specialisation per type, so the per-row code has no type switch. */
#define MATVEC_LOOP(ROWS_CALL4, ROWS_CALL1)                                    \
    do {                                                                       \
        int64_t r = r0;                                                        \
        for (; r + 4 <= r1; r += 4)                                            \
            ROWS_CALL4;                                                        \
        for (; r < r1; r++)                                                    \
            ROWS_CALL1;                                                        \
    } while (0)

static void matvec_f32(const unsigned char *w, size_t stride, const float *x,
                       int64_t cols, float *y, int64_t r0, int64_t r1)
{
    MATVEC_LOOP(rows_plain(JQ_TYPE_F32, 4, w + (size_t)r * stride, stride, x,
                           cols, y + r),
                rows_plain(JQ_TYPE_F32, 1, w + (size_t)r * stride, stride, x,
                           cols, y + r));
}

static void matvec_f16(const unsigned char *w, size_t stride, const float *x,
                       int64_t cols, float *y, int64_t r0, int64_t r1)
{
    MATVEC_LOOP(rows_plain(JQ_TYPE_F16, 4, w + (size_t)r * stride, stride, x,
                           cols, y + r),
                rows_plain(JQ_TYPE_F16, 1, w + (size_t)r * stride, stride, x,
                           cols, y + r));
}

static void matvec_bf16(const unsigned char *w, size_t stride, const float *x,
                        int64_t cols, float *y, int64_t r0, int64_t r1)
{
    MATVEC_LOOP(rows_plain(JQ_TYPE_BF16, 4, w + (size_t)r * stride, stride, x,
                           cols, y + r),
                rows_plain(JQ_TYPE_BF16, 1, w + (size_t)r * stride, stride, x,
                           cols, y + r));
}

static void matvec_q8_0(const unsigned char *w, size_t stride, const float *x,
                        int64_t cols, float *y, int64_t r0, int64_t r1)
{
    MATVEC_LOOP(rows_q8_0(4, w + (size_t)r * stride, stride, x, cols, y + r),
                rows_q8_0(1, w + (size_t)r * stride, stride, x, cols, y + r));
}

/* Q4_0, Q4_K, Q6_K with an F32 x: dequantize a block into a small stack
 * buffer and FMA. Not the decode path (jq_matvec_q is, at memory
 * speed); this keeps jq_matvec complete for every compute type and serves
 * as the F32-x baseline in bench/kernel_bench.c. */
static void matvec_dequant(uint32_t type, const unsigned char *w,
                           size_t stride, const float *x, int64_t cols,
                           float *y, int64_t r0, int64_t r1)
{
    const jq_type_traits *t = jq_type_traits_get(type);
    const int64_t bs = t->block_size;
    float buf[JQ_QK_K];
    for (int64_t r = r0; r < r1; r++) {
        const unsigned char *row = w + (size_t)r * stride;
        __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
        for (int64_t blk = 0; blk < cols / bs; blk++) {
            jq_avx512_dequantize_row(type, row + blk * t->type_size, buf, bs);
            const float *xb = x + blk * bs;
            for (int64_t j = 0; j < bs; j += 32) {
                a = _mm512_fmadd_ps(_mm512_loadu_ps(buf + j), _mm512_loadu_ps(xb + j), a);
                b = _mm512_fmadd_ps(_mm512_loadu_ps(buf + j + 16),
                                    _mm512_loadu_ps(xb + j + 16), b);
            }
        }
        y[r] = _mm512_reduce_add_ps(_mm512_add_ps(a, b));
    }
}

void jq_avx512_matvec(uint32_t type, const void *W, int64_t cols,
                      const float *x, float *y, int64_t r0, int64_t r1)
{
    const unsigned char *w = W;
    size_t stride = jq_row_bytes(type, cols);
    switch (type) {
    case JQ_TYPE_F32:
        matvec_f32(w, stride, x, cols, y, r0, r1);
        return;
    case JQ_TYPE_F16:
        matvec_f16(w, stride, x, cols, y, r0, r1);
        return;
    case JQ_TYPE_BF16:
        matvec_bf16(w, stride, x, cols, y, r0, r1);
        return;
    case JQ_TYPE_Q8_0:
        matvec_q8_0(w, stride, x, cols, y, r0, r1);
        return;
    case JQ_TYPE_Q4_0:
    case JQ_TYPE_Q4_K:
    case JQ_TYPE_Q6_K:
        matvec_dequant(type, w, stride, x, cols, y, r0, r1);
        return;
    default:
        abort(); /* caller bug: the loader rejects non-compute types */
    }
}

void jq_avx512_dequantize_row(uint32_t type, const void *src, float *dst,
                              int64_t n)
{
    const unsigned char *s = src;
    int64_t i = 0;
    switch (type) {
    case JQ_TYPE_F32:
        if (n > 0)
            memcpy(dst, s, (size_t)n * sizeof(float));
        return;
    case JQ_TYPE_F16:
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(dst + i, load_w16(JQ_TYPE_F16, s, i));
        if (i < n) {
            __mmask16 m = tail_mask(n - i);
            _mm512_mask_storeu_ps(dst + i, m, load_w16_mask(JQ_TYPE_F16, s, i, m));
        }
        return;
    case JQ_TYPE_BF16:
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(dst + i, load_w16(JQ_TYPE_BF16, s, i));
        if (i < n) {
            __mmask16 m = tail_mask(n - i);
            _mm512_mask_storeu_ps(dst + i, m,
                                  load_w16_mask(JQ_TYPE_BF16, s, i, m));
        }
        return;
    case JQ_TYPE_Q8_0:
        for (int64_t b = 0; b < n / JQ_QK8_0; b++) {
            __m512 lo, hi;
            q8_block(s + (size_t)b * sizeof(jq_block_q8_0), &lo, &hi);
            _mm512_storeu_ps(dst + b * JQ_QK8_0, lo);
            _mm512_storeu_ps(dst + b * JQ_QK8_0 + 16, hi);
        }
        return;
    case JQ_TYPE_Q4_0:
        jq_avx512_dequantize_q4_0(src, dst, n);
        return;
    case JQ_TYPE_Q4_K:
        jq_avx512_dequantize_q4_K(src, dst, n);
        return;
    case JQ_TYPE_Q6_K:
        jq_avx512_dequantize_q6_K(src, dst, n);
        return;
    default:
        abort();
    }
}
