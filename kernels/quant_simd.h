/* quant_simd.h — AVX-512 unpacking of weight blocks into unsigned bytes
 * for vpdpbusd, shared by quant_avx512.c (decode) and gemm_q_avx512.c
 * (prefill). Include only from *_avx512.c files. */
#ifndef JQ_QUANT_SIMD_H
#define JQ_QUANT_SIMD_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "quant_internal.h"

#define JQ_INLINE static inline __attribute__((always_inline))

JQ_INLINE float half_at(const unsigned char *p)
{
    return _cvtsh_ss(jq_load_u16(p));
}

/* The 6-bit quants (0..63) of half h of a Q6_K block: elements 128 h + 0..63
 * in *qa and 128 h + 64..127 in *qb, in element order. */
JQ_INLINE void q6k_half(const unsigned char *blk, int h, __m512i *qa,
                        __m512i *qb)
{
    const __m512i m0f = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    const __m512i L = _mm512_loadu_si512(blk + 64 * h);
    /* [qh, qh >> 2]: 16-bit shifts move bits across bytes, but only bits
     * that the 0x30 masks below discard. */
    __m512i H = _mm512_broadcast_i64x4(_mm256_loadu_si256((const void *)(blk + 128 + 32 * h)));
    H = _mm512_mask_srli_epi16(H, (__mmask32)0xffff0000u, H, 2);
    *qa = _mm512_ternarylogic_epi32(_mm512_and_si512(L, m0f),
                                    _mm512_slli_epi16(H, 4), m30, 0xf8);
    *qb = _mm512_ternarylogic_epi32(
        _mm512_and_si512(_mm512_srli_epi16(L, 4), m0f), H, m30, 0xf8);
}

/* One Q8_0 or Q4_0 block's 32 weights as unsigned bytes in element order
 * (Q8_0: q + 128, Q4_0: the nibble), in the low 256 bits, zeros above. */
JQ_INLINE __m512i q8_0_one(const unsigned char *blk)
{
    return _mm512_zextsi256_si512(_mm256_xor_si256(
        _mm256_loadu_si256((const void *)(blk + 2)), _mm256_set1_epi8((char)0x80)));
}

JQ_INLINE __m512i q4_0_one(const unsigned char *blk)
{
    const __m128i q = _mm_loadu_si128((const void *)(blk + 2));
    const __m256i z = _mm256_inserti128_si256(_mm256_castsi128_si256(q),
                                              _mm_srli_epi16(q, 4), 1);
    return _mm512_zextsi256_si512(_mm256_and_si256(z, _mm256_set1_epi8(0x0f)));
}

/* Q4_K's 8 scales and 8 mins of a block as bytes in two 64-bit words. */
JQ_INLINE void q4k_scale_words(const unsigned char *s, uint64_t *sc,
                               uint64_t *m)
{
    uint32_t a, b, c;
    memcpy(&a, s, 4);
    memcpy(&b, s + 4, 4);
    memcpy(&c, s + 8, 4);
    const uint32_t sc_hi = (c & 0x0f0f0f0fu) | ((a >> 2) & 0x30303030u);
    const uint32_t m_hi = ((c >> 4) & 0x0f0f0f0fu) | ((b >> 2) & 0x30303030u);
    *sc = (a & 0x3f3f3f3fu) | ((uint64_t)sc_hi << 32);
    *m = (b & 0x3f3f3f3fu) | ((uint64_t)m_hi << 32);
}

#endif
