/* quant_avx512.c — AVX-512 dequantization of Q4_0/Q4_K/Q6_K, activation
 * quantization, and the decode products with an int8 activation (VNNI);
 * BF16 with vdpbf16ps for comparison. Compiled with the AVX-512 flags;
 * called only after jq_cpu_has_avx512() (and _vnni() / _bf16() where
 * kernels.h says so).
 *
 * Why int8: decode is one pass over the weights per token, so a kernel is
 * good when it keeps up with memory. Converting weights to F32 and FMA-ing
 * with an F32 x (matvec_avx512.c) costs several vector ops per 16 weights;
 * here one vpdpbusd does 64 int8 products and the float work is one
 * convert + FMA per 16 lanes. What one thread computes with the weights in
 * cache (bench/kernel_bench --hot, 128 x 8192, GB/s of weights), F32-x
 * path -> this file:
 *   Q8_0 16.1 -> 34.0   Q4_0 3.6 -> 18.0   Q4_K 4.0 -> 16.5   Q6_K 5.7 -> 24.3
 * (F32 29.6, F16 42.8, BF16 41.3 for comparison): about 30 G weights/s per
 * thread for every integer type, at or above the ~11-16 GB/s one thread
 * reads from memory here (bench/stream_read). From memory (2048 x 8192,
 * 1 GiB of copies, one thread) the integer kernels reached 62-97% of
 * stream_read's figure in the same runs on a busy shared host, where F32
 * reached ~100%: the gap is memory parallelism, not arithmetic. A software
 * prefetch 1 KiB ahead in each row (rows_small_q) later measured +17%
 * (Q8_0) and +30% (Q4_0) from memory with two threads, alternating old and
 * new binaries five times.
 *
 * vpdpbusd multiplies unsigned by signed bytes, so every weight becomes an
 * unsigned quad: Q4_0 and Q4_K nibbles (0..15) and Q6_K's 6-bit quants
 * (0..63) already are; Q8_0 is made unsigned by flipping its sign bit
 * (q + 128). The offsets (8, 32, 128) come back as an integer correction
 * -offset * sum(x) per 32-bit lane, computed once per 64 activation bytes
 * with one more vpdpbusd and shared by the 4 rows processed together, and
 * used as the accumulator's start value: each lane holds exactly the
 * integer the reference computes for its 4 weights.
 *
 * Results differ from the reference (quant.c) by float summation order and
 * FMA contraction only; dequantization and activation quantization are
 * bit-identical to it.
 */
#include "kernels.h"
#include "quant_internal.h"
#include "quant_simd.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------ dequantization */

void jq_avx512_dequantize_q4_0(const void *src, float *dst, int64_t n)
{
    const unsigned char *s = src;
    const __m512i m4 = _mm512_set1_epi32(15), eight = _mm512_set1_epi32(8);
    for (int64_t b = 0; b < n / JQ_QK4_0; b++) {
        const unsigned char *blk = s + b * (int64_t)sizeof(jq_block_q4_0);
        const __m512 d = _mm512_set1_ps(half_at(blk));
        const __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const void *)(blk + 2)));
        const __m512i lo = _mm512_sub_epi32(_mm512_and_si512(q, m4), eight);
        const __m512i hi = _mm512_sub_epi32(_mm512_srli_epi32(q, 4), eight);
        _mm512_storeu_ps(dst + b * 32, _mm512_mul_ps(_mm512_cvtepi32_ps(lo), d));
        _mm512_storeu_ps(dst + b * 32 + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(hi), d));
    }
}

void jq_avx512_dequantize_q4_K(const void *src, float *dst, int64_t n)
{
    const unsigned char *s = src;
    const __m512i m4 = _mm512_set1_epi32(15);
    for (int64_t b = 0; b < n / JQ_QK_K; b++) {
        const unsigned char *blk = s + b * (int64_t)sizeof(jq_block_q4_K);
        const float d = half_at(blk), dmin = half_at(blk + 2);
        uint8_t sc[8], m[8];
        jq_q4k_scales(blk + 4, sc, m);
        float *y = dst + b * JQ_QK_K;
        for (int c = 0; c < 4; c++) {
            /* the reference's (d * sc) * q - dmin * m: mul, then sub */
            const __m512 d1 = _mm512_set1_ps(d * (float)sc[2 * c]);
            const __m512 m1 = _mm512_set1_ps(dmin * (float)m[2 * c]);
            const __m512 d2 = _mm512_set1_ps(d * (float)sc[2 * c + 1]);
            const __m512 m2 = _mm512_set1_ps(dmin * (float)m[2 * c + 1]);
            for (int h = 0; h < 2; h++) {
                const __m512i q = _mm512_cvtepu8_epi32(
                    _mm_loadu_si128((const void *)(blk + 16 + 32 * c + 16 * h)));
                const __m512 lo = _mm512_cvtepi32_ps(_mm512_and_si512(q, m4));
                const __m512 hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(q, 4));
                _mm512_storeu_ps(y + 64 * c + 16 * h,
                                 _mm512_sub_ps(_mm512_mul_ps(d1, lo), m1));
                _mm512_storeu_ps(y + 64 * c + 32 + 16 * h,
                                 _mm512_sub_ps(_mm512_mul_ps(d2, hi), m2));
            }
        }
    }
}

void jq_avx512_dequantize_q6_K(const void *src, float *dst, int64_t n)
{
    const unsigned char *s = src;
    const __m512i k32 = _mm512_set1_epi32(32);
    for (int64_t b = 0; b < n / JQ_QK_K; b++) {
        const unsigned char *blk = s + b * (int64_t)sizeof(jq_block_q6_K);
        const float d = half_at(blk + 208);
        const int8_t *sc = (const int8_t *)(blk + 192);
        float *y = dst + b * JQ_QK_K;
        for (int h = 0; h < 2; h++) {
            uint8_t q[128];
            __m512i qa, qb;
            q6k_half(blk, h, &qa, &qb);
            _mm512_storeu_si512(q, qa);
            _mm512_storeu_si512(q + 64, qb);
            for (int g = 0; g < 8; g++) { /* sub-blocks of 16 */
                const __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(
                    _mm512_cvtepu8_epi32(_mm_loadu_si128((const void *)(q + 16 * g))),
                    k32));
                const int t = 8 * h + g;
                _mm512_storeu_ps(y + 16 * t,
                                 _mm512_mul_ps(_mm512_set1_ps(d * (float)sc[t]), v));
            }
        }
    }
}

/* ---------------------------------------------- activation quantization */

void jq_avx512_quantize_act(uint32_t type, const float *x, int64_t K,
                            void *xq)
{
    if (jq_act_kind_of(type) == JQ_ACT_F32) {
        if (K > 0)
            memcpy(xq, x, (size_t)K * sizeof(float));
        return;
    }
    unsigned char *p = xq;
    const int64_t nb = K / JQ_QA;
    const __m512 sign = _mm512_set1_ps(-0.0f), half = _mm512_set1_ps(0.5f);
    const __m512 one = _mm512_set1_ps(1.0f), lim = _mm512_set1_ps(127.0f);
    for (int64_t b = 0; b < nb; b++) {
        __m512 v[2] = {_mm512_loadu_ps(x + 32 * b), _mm512_loadu_ps(x + 32 * b + 16)};
        /* vmaxps returns its second operand when either is NaN: NaNs are
         * skipped, as the reference's `>` skips them */
        const __m512 amax = _mm512_max_ps(_mm512_andnot_ps(sign, v[1]),
                                          _mm512_max_ps(_mm512_andnot_ps(sign, v[0]),
                                                        _mm512_setzero_ps()));
        const float d = _mm512_reduce_max_ps(amax) / 127.0f;
        const __m512 id = _mm512_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        int sum[2];
        for (int h = 0; h < 2; h++) {
            const __m512 t = _mm512_mul_ps(v[h], id);
            /* roundf: truncate, then step away from zero when the exact
             * remainder is at least one half */
            __m512 r = _mm512_roundscale_ps(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __m512 rem = _mm512_andnot_ps(sign, _mm512_sub_ps(t, r));
            const __mmask16 up = _mm512_cmp_ps_mask(rem, half, _CMP_GE_OQ);
            r = _mm512_mask_add_ps(r, up, r, _mm512_or_ps(one, _mm512_and_ps(t, sign)));
            r = _mm512_max_ps(_mm512_min_ps(r, lim), _mm512_sub_ps(_mm512_setzero_ps(), lim));
            const __mmask16 ord = _mm512_cmp_ps_mask(t, t, _CMP_ORD_Q); /* NaN -> 0 */
            const __m512i q = _mm512_maskz_cvtps_epi32(ord, r);
            _mm_storeu_si128((void *)(p + 32 * b + 16 * h), _mm512_cvtepi32_epi8(q));
            sum[h] = _mm512_reduce_add_epi32(q);
        }
        const float s = d * (float)(sum[0] + sum[1]);
        const int16_t s16[2] = {(int16_t)sum[0], (int16_t)sum[1]};
        memcpy(p + K + 4 * b, &d, 4);
        memcpy(p + K + 4 * nb + 4 * b, &s, 4);
        memcpy(p + K + 8 * nb + 4 * b, s16, 4);
    }
    const size_t used = (size_t)K + 12 * (size_t)nb;
    memset(p + used, 0, jq_actq_bytes(K) - used);
}

/* ------------------------------------------------------- decode GEMV */

/* Rows are processed NR = 4 at a time (then 1): the activation loads, the
 * offset corrections and the activation-scale vectors are shared by the 4
 * rows, and 4 independent accumulator chains hide the FMA latency. */

/* -offset * (sum of each lane's 4 activation bytes), the start value of a
 * vpdpbusd whose unsigned operand is weight + offset. */
JQ_INLINE __m512i neg_offset_sum(__m512i X, int offset)
{
    const __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(),
                                          _mm512_set1_epi8((char)offset), X);
    return _mm512_sub_epi32(_mm512_setzero_si512(), s);
}

/* lanes 0-7 <- v[0], lanes 8-15 <- v[1] */
JQ_INLINE __m512 spread2(__m128 v)
{
    const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0,
                                         0, 0, 0, 0);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(v));
}

/* The two f16 scales of blocks at blk and blk + step, as F32 in lanes 0, 1. */
JQ_INLINE __m128 two_halves(const unsigned char *blk, size_t step)
{
    const uint32_t both = (uint32_t)jq_load_u16(blk) |
                          ((uint32_t)jq_load_u16(blk + step) << 16);
    return _mm_cvtph_ps(_mm_cvtsi32_si128((int)both));
}

/* Q8_0 and Q4_0: one 64-byte step covers two 32-weight blocks. */
JQ_INLINE __m512i q8_0_pair(const unsigned char *blk)
{
    const __m512i w = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256((const void *)(blk + 2))),
        _mm256_loadu_si256((const void *)(blk + 2 + sizeof(jq_block_q8_0))), 1);
    return _mm512_xor_si512(w, _mm512_set1_epi8((char)0x80)); /* q + 128 */
}

JQ_INLINE __m512i q4_0_pair(const unsigned char *blk)
{
    /* 128-bit lanes [b0, b0, b1, b1], lanes 1 and 3 shifted by 4: low
     * nibbles then high nibbles of each block = its elements in order */
    __m512i z = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_broadcastsi128_si256(
            _mm_loadu_si128((const void *)(blk + 2)))),
        _mm256_broadcastsi128_si256(
            _mm_loadu_si128((const void *)(blk + 2 + sizeof(jq_block_q4_0)))),
        1);
    z = _mm512_mask_srli_epi16(z, (__mmask32)0xff00ff00u, z, 4);
    return _mm512_and_si512(z, _mm512_set1_epi8(0x0f));
}

#define Q_PREFETCH_AHEAD 1024

/* lanes 0-7 <- v[i], lanes 8-15 <- v[j] */
#define SPREAD_IDX(i, j)                                                       \
    _mm512_set_epi32(j, j, j, j, j, j, j, j, i, i, i, i, i, i, i, i)

JQ_INLINE void rows_small_q(uint32_t type, int nr, const unsigned char *w,
                            size_t stride, const jq_actq_view *x, int64_t nb,
                            float *y)
{
    const size_t bs = type == JQ_TYPE_Q8_0 ? sizeof(jq_block_q8_0)
                                           : sizeof(jq_block_q4_0);
    const int offset = type == JQ_TYPE_Q8_0 ? 128 : 8;
    __m512 acc[4];
    _Pragma("GCC unroll 4")
    for (int k = 0; k < nr; k++)
        acc[k] = _mm512_setzero_ps();
    int64_t b = 0;
    /* Two blocks (one 64-byte activation step) at a time, each row's two
     * F16 scales from two scalar loads. A gather of 16 rows' scales per 16
     * blocks was tried and measured slower here, from memory and in cache
     * (bench/kernel_bench, one alternating run: Q8_0 16.8 vs 21 GB/s with
     * two threads, Q4_0 hot 13.0 vs 16.3 GB/s on one). The prefetch one
     * kilobyte ahead in each row's stream lifted both types from memory by
     * 17-30% (512 B to 4 KiB measured alike): with four rows per thread the
     * hardware prefetcher alone does not keep enough lines in flight. */
    for (; b + 2 <= nb; b += 2) {
        const __m512i X = _mm512_loadu_si512(x->qs + 32 * b);
        const __m512i corr = neg_offset_sum(X, offset);
        const __m512 dx = spread2(_mm_castpd_ps(_mm_load_sd((const double *)(x->d + b))));
        _Pragma("GCC unroll 4")
        for (int k = 0; k < nr; k++) {
            const unsigned char *blk = w + (size_t)k * stride + (size_t)b * bs;
            _mm_prefetch((const char *)(blk + Q_PREFETCH_AHEAD), _MM_HINT_T0);
            const __m512i u = type == JQ_TYPE_Q8_0 ? q8_0_pair(blk) : q4_0_pair(blk);
            const __m512i s = _mm512_dpbusd_epi32(corr, u, X);
            const __m512 sc = _mm512_mul_ps(spread2(two_halves(blk, bs)), dx);
            acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), sc, acc[k]);
        }
    }
    if (b < nb) {
        const __m512i X = _mm512_zextsi256_si512(_mm256_loadu_si256((const void *)(x->qs + 32 * b)));
        const __m512i corr = neg_offset_sum(X, offset);
        _Pragma("GCC unroll 4")
        for (int k = 0; k < nr; k++) {
            const unsigned char *blk = w + (size_t)k * stride + (size_t)b * bs;
            const __m512i u = type == JQ_TYPE_Q8_0 ? q8_0_one(blk) : q4_0_one(blk);
            const __m512i s = _mm512_dpbusd_epi32(corr, u, X);
            const __m512 sc = _mm512_set1_ps(half_at(blk) * x->d[b]);
            acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), sc, acc[k]);
        }
    }
    _Pragma("GCC unroll 4")
    for (int k = 0; k < nr; k++)
        y[k] = _mm512_reduce_add_ps(acc[k]);
}

JQ_INLINE __m256 bytes8_ps(uint64_t v)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)v)));
}

/* Q4_K: per block the 128 nibble bytes are two 64-byte loads; the low
 * nibbles of one load are sub-blocks 4p and 4p + 2, the high nibbles
 * 4p + 1 and 4p + 3, so the activation's 128-bit lanes are regrouped to
 * match (once, shared by the rows). */
JQ_INLINE void rows_q4_K(int nr, const unsigned char *w, size_t stride,
                         const jq_actq_view *x, int64_t nsb, float *y)
{
    const __m512i m0f = _mm512_set1_epi8(0x0f);
    __m512 acc[4];
    __m256 accm[4];
    _Pragma("GCC unroll 4")
    for (int k = 0; k < nr; k++) {
        acc[k] = _mm512_setzero_ps();
        accm[k] = _mm256_setzero_ps();
    }
    for (int64_t i = 0; i < nsb; i++) {
        const int8_t *xs = x->qs + 256 * i;
        __m512i xlo[2], xhi[2];
        for (int p = 0; p < 2; p++) {
            const __m512i a = _mm512_loadu_si512(xs + 128 * p);
            const __m512i b = _mm512_loadu_si512(xs + 128 * p + 64);
            xlo[p] = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(1, 0, 1, 0));
            xhi[p] = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(3, 2, 3, 2));
        }
        const __m256 dx = _mm256_loadu_ps(x->d + 8 * i);
        const __m256 sx = _mm256_loadu_ps(x->s + 8 * i);
        _Pragma("GCC unroll 4")
        for (int k = 0; k < nr; k++) {
            const unsigned char *blk = w + (size_t)k * stride + (size_t)i * sizeof(jq_block_q4_K);
            uint64_t scw, mw;
            q4k_scale_words(blk + 4, &scw, &mw);
            const __m512 S = _mm512_castps256_ps512(_mm256_mul_ps(
                _mm256_mul_ps(_mm256_set1_ps(half_at(blk)), bytes8_ps(scw)), dx));
            accm[k] = _mm256_fmadd_ps(
                _mm256_mul_ps(_mm256_set1_ps(half_at(blk + 2)), bytes8_ps(mw)), sx,
                accm[k]);
            for (int p = 0; p < 2; p++) {
                const __m512i z = _mm512_loadu_si512(blk + 16 + 64 * p);
                const __m512i lo = _mm512_and_si512(z, m0f);
                const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(z, 4), m0f);
                const __m512i slo = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xlo[p]);
                const __m512i shi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, xhi[p]);
                const __m512 flo = _mm512_permutexvar_ps(SPREAD_IDX(4 * p, 4 * p + 2), S);
                const __m512 fhi = _mm512_permutexvar_ps(SPREAD_IDX(4 * p + 1, 4 * p + 3), S);
                acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(slo), flo, acc[k]);
                acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(shi), fhi, acc[k]);
            }
        }
    }
    _Pragma("GCC unroll 4")
    for (int k = 0; k < nr; k++) {
        const __m256 m = accm[k];
        const __m128 m4 = _mm_add_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        const __m128 m2 = _mm_add_ps(m4, _mm_movehl_ps(m4, m4));
        const float mins = _mm_cvtss_f32(_mm_add_ss(m2, _mm_movehdup_ps(m2)));
        y[k] = _mm512_reduce_add_ps(acc[k]) - mins;
    }
}

/* lanes 4 g .. 4 g + 3 <- v[base + g]: sub-blocks of 16 are 4 lanes each */
#define SPREAD4_IDX(b)                                                         \
    _mm512_set_epi32(b + 3, b + 3, b + 3, b + 3, b + 2, b + 2, b + 2, b + 2,   \
                     b + 1, b + 1, b + 1, b + 1, b, b, b, b)

JQ_INLINE void rows_q6_K(int nr, const unsigned char *w, size_t stride,
                         const jq_actq_view *x, int64_t nsb, float *y)
{
    /* the activation scale of each sub-block of 16: d[b] twice */
    const __m512i dup = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2,
                                         1, 1, 0, 0);
    __m512 acc[4];
    _Pragma("GCC unroll 4")
    for (int k = 0; k < nr; k++)
        acc[k] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nsb; i++) {
        const int8_t *xs = x->qs + 256 * i;
        __m512i X[4], corr[4];
        for (int g = 0; g < 4; g++) {
            X[g] = _mm512_loadu_si512(xs + 64 * g);
            corr[g] = neg_offset_sum(X[g], 32);
        }
        const __m512 dx16 = _mm512_permutexvar_ps(
            dup, _mm512_castps256_ps512(_mm256_loadu_ps(x->d + 8 * i)));
        _Pragma("GCC unroll 4")
        for (int k = 0; k < nr; k++) {
            const unsigned char *blk = w + (size_t)k * stride + (size_t)i * sizeof(jq_block_q6_K);
            /* 210 bytes: its four lines 1 KiB ahead (+25% from memory with
             * two threads, alternating runs; the same for Q4_K measured no
             * change, so it has none) */
            for (int l = 0; l < 4; l++)
                _mm_prefetch((const char *)(blk + Q_PREFETCH_AHEAD + 64 * l), _MM_HINT_T0);
            const __m512 sc = _mm512_cvtepi32_ps(
                _mm512_cvtepi8_epi32(_mm_loadu_si128((const void *)(blk + 192))));
            const __m512 S = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(half_at(blk + 208)), sc), dx16);
            for (int h = 0; h < 2; h++) {
                __m512i qa, qb;
                q6k_half(blk, h, &qa, &qb);
                /* qa: elements 128 h + 0..63 = activation group 2 h,
                 * qb: 128 h + 64..127 = group 2 h + 1 */
                const __m512i sa = _mm512_dpbusd_epi32(corr[2 * h], qa, X[2 * h]);
                const __m512i sb = _mm512_dpbusd_epi32(corr[2 * h + 1], qb, X[2 * h + 1]);
                acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sa),
                                         _mm512_permutexvar_ps(SPREAD4_IDX(8 * h), S), acc[k]);
                acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sb),
                                         _mm512_permutexvar_ps(SPREAD4_IDX(8 * h + 4), S), acc[k]);
            }
        }
    }
    _Pragma("GCC unroll 4")
    for (int k = 0; k < nr; k++)
        y[k] = _mm512_reduce_add_ps(acc[k]);
}

#define ROWS_LOOP(CALL)                                                        \
    do {                                                                       \
        int64_t r = r0;                                                        \
        for (; r + 4 <= r1; r += 4)                                            \
            CALL(4, w + (size_t)r * stride, y + r);                            \
        for (; r < r1; r++)                                                    \
            CALL(1, w + (size_t)r * stride, y + r);                            \
    } while (0)

static void matvec_q8_0(const unsigned char *w, size_t stride,
                        const jq_actq_view *x, int64_t K, float *y,
                        int64_t r0, int64_t r1)
{
#define CALL(nr, row, out) rows_small_q(JQ_TYPE_Q8_0, nr, row, stride, x, K / 32, out)
    ROWS_LOOP(CALL);
#undef CALL
}

static void matvec_q4_0(const unsigned char *w, size_t stride,
                        const jq_actq_view *x, int64_t K, float *y,
                        int64_t r0, int64_t r1)
{
#define CALL(nr, row, out) rows_small_q(JQ_TYPE_Q4_0, nr, row, stride, x, K / 32, out)
    ROWS_LOOP(CALL);
#undef CALL
}

static void matvec_q4_K(const unsigned char *w, size_t stride,
                        const jq_actq_view *x, int64_t K, float *y,
                        int64_t r0, int64_t r1)
{
#define CALL(nr, row, out) rows_q4_K(nr, row, stride, x, K / JQ_QK_K, out)
    ROWS_LOOP(CALL);
#undef CALL
}

static void matvec_q6_K(const unsigned char *w, size_t stride,
                        const jq_actq_view *x, int64_t K, float *y,
                        int64_t r0, int64_t r1)
{
#define CALL(nr, row, out) rows_q6_K(nr, row, stride, x, K / JQ_QK_K, out)
    ROWS_LOOP(CALL);
#undef CALL
}

void jq_avx512_matvec_q(uint32_t type, const void *W, int64_t cols,
                        const void *xq, float *y, int64_t r0, int64_t r1)
{
    if (jq_act_kind_of(type) == JQ_ACT_F32) {
        jq_avx512_matvec(type, W, cols, xq, y, r0, r1);
        return;
    }
    const unsigned char *w = W;
    const size_t stride = jq_row_bytes(type, cols);
    const jq_actq_view x = jq_actq_view_of(xq, cols);
    switch (type) {
    case JQ_TYPE_Q8_0:
        matvec_q8_0(w, stride, &x, cols, y, r0, r1);
        return;
    case JQ_TYPE_Q4_0:
        matvec_q4_0(w, stride, &x, cols, y, r0, r1);
        return;
    case JQ_TYPE_Q4_K:
        matvec_q4_K(w, stride, &x, cols, y, r0, r1);
        return;
    case JQ_TYPE_Q6_K:
        matvec_q6_K(w, stride, &x, cols, y, r0, r1);
        return;
    default:
        abort();
    }
}

/* -------------------------------------------------- BF16 with vdpbf16ps */

/* x rounded to BF16 (nearest even) 32 elements at a time, in registers,
 * shared by 4 rows; one vdpbf16ps then does 32 products. The rounding is
 * a relative error of at most 2^-9 per element of x, so the result can
 * differ from the exact path by up to 2^-9 of sum |w x| (RMS about
 * 2^-9 / sqrt(3) of it for random rounding errors), far more than the
 * exact path's reassociation. Measured on this machine (bench/
 * kernel_bench.c): no faster at memory speed, and vdpbf16ps issues only
 * about one per 3 cycles here (0.75-1.2 ns vs 0.22 ns for an FMA), so
 * jq_matvec keeps the exact shift path. */
JQ_INLINE void rows_bf16_dp(int nr, const unsigned char *w, size_t stride,
                            const float *x, int64_t cols, float *y)
{
    __m512 acc[4];
    _Pragma("GCC unroll 4")
    for (int k = 0; k < nr; k++)
        acc[k] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= cols; i += 32) {
        const __m512bh xb = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16),
                                                _mm512_loadu_ps(x + i));
        _Pragma("GCC unroll 4")
        for (int k = 0; k < nr; k++)
            acc[k] = _mm512_dpbf16_ps(
                acc[k],
                (__m512bh)_mm512_loadu_si512(w + (size_t)k * stride + 2 * i), xb);
    }
    if (i < cols) {
        const int64_t left = cols - i;
        const __mmask32 m = left >= 32 ? ~(__mmask32)0 : (((__mmask32)1 << left) - 1);
        const __mmask16 m0 = (__mmask16)m, m1 = (__mmask16)(m >> 16);
        const __m512bh xb = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, x + i + 16),
                                                _mm512_maskz_loadu_ps(m0, x + i));
        _Pragma("GCC unroll 4")
        for (int k = 0; k < nr; k++)
            acc[k] = _mm512_dpbf16_ps(
                acc[k],
                (__m512bh)_mm512_maskz_loadu_epi16(m, w + (size_t)k * stride + 2 * i), xb);
    }
    _Pragma("GCC unroll 4")
    for (int k = 0; k < nr; k++)
        y[k] = _mm512_reduce_add_ps(acc[k]);
}

void jq_avx512_matvec_bf16_dp(const void *W, int64_t cols, const float *x,
                              float *y, int64_t r0, int64_t r1)
{
    const unsigned char *w = W;
    const size_t stride = (size_t)cols * 2;
#define CALL(nr, row, out) rows_bf16_dp(nr, row, stride, x, cols, out)
    ROWS_LOOP(CALL);
#undef CALL
}
