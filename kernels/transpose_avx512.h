/* transpose_avx512.h — in-register transpose of a 16 x 16 matrix of 32-bit
 * elements, shared by the GEMMs that pack weight panels (gemm_q_avx512.c,
 * gemm_half_avx512.c). Include only from *_avx512.c files. */
#ifndef JQ_TRANSPOSE_AVX512_H
#define JQ_TRANSPOSE_AVX512_H

#include <immintrin.h>

/* r[m] is row m on entry, column m on exit. */
static inline __attribute__((always_inline)) void jq_transpose16x16(__m512i r[16])
{
    __m512i t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    /* r[4 i + j], 128-bit lane L: rows 4 i .. 4 i + 3, element 4 L + j */
    for (int i = 0; i < 4; i++) {
        r[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int j = 0; j < 4; j++) {
        const __m512i a = _mm512_shuffle_i32x4(r[j], r[4 + j], 0x88);
        const __m512i b = _mm512_shuffle_i32x4(r[j], r[4 + j], 0xdd);
        const __m512i c = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0x88);
        const __m512i d = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0xdd);
        t[j] = _mm512_shuffle_i32x4(a, c, 0x88);      /* element j */
        t[8 + j] = _mm512_shuffle_i32x4(a, c, 0xdd);  /* element 8 + j */
        t[4 + j] = _mm512_shuffle_i32x4(b, d, 0x88);  /* element 4 + j */
        t[12 + j] = _mm512_shuffle_i32x4(b, d, 0xdd); /* element 12 + j */
    }
    for (int m = 0; m < 16; m++)
        r[m] = t[m];
}

#endif
