/* quant_internal.h — shared between quant.c and quant_avx512.c (not public).
 *
 * The quantized activation row (JQ_ACT_Q8) for K elements, nb = K / 32:
 *
 *   offset 0          int8_t  qs[K]      quants, |q| <= 127
 *   offset K          float   d[nb]      block scale amax / 127
 *   offset K + 4 nb   float   s[nb]      d[b] * (sum of block b's quants)
 *   offset K + 8 nb   int16_t s16[2 nb]  sum of each 16 quants
 *   padded to a multiple of 64 bytes.
 *
 * qs comes first so a 64-byte aligned row keeps every 64-byte quant load
 * inside one cache line; the sums serve the weight types' offsets (Q4_0's
 * q - 8, Q6_K's q - 32, Q8_0's sign trick in the GEMM) and Q4_K's mins, so
 * no kernel sums x again per weight row.
 */
#ifndef JQ_QUANT_INTERNAL_H
#define JQ_QUANT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"

#define JQ_QA 32 /* activation block */

typedef struct {
    const int8_t *qs;
    const float *d;
    const float *s;
    const int16_t *s16;
} jq_actq_view;

static inline size_t jq_actq_bytes(int64_t K)
{
    size_t nb = (size_t)K / JQ_QA;
    size_t raw = (size_t)K + 12 * nb;
    return (raw + 63) / 64 * 64;
}

static inline jq_actq_view jq_actq_view_of(const void *xq, int64_t K)
{
    const unsigned char *p = xq;
    size_t nb = (size_t)K / JQ_QA;
    jq_actq_view v = {
        .qs = (const int8_t *)p,
        .d = (const float *)(const void *)(p + K),
        .s = (const float *)(const void *)(p + K + 4 * nb),
        .s16 = (const int16_t *)(const void *)(p + K + 8 * nb),
    };
    return v;
}

static inline uint16_t jq_load_u16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Q4_K's packed 6-bit scales and mins: sc[0..7], m[0..7]. */
static inline void jq_q4k_scales(const uint8_t s[12], uint8_t sc[8],
                                 uint8_t m[8])
{
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
        sc[j + 4] = (uint8_t)((s[j + 8] & 15) | ((s[j] >> 6) << 4));
        m[j + 4] = (uint8_t)((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4));
    }
}

/* The int8 GEMM's packed weight panel (gemm_q_avx512.c): 32 weight rows
 * (output columns) for all K, as u8 quads interleaved by column plus F32
 * scales per group and column (groups of 16 for Q6_K, of 32 otherwise) and
 * Q4_K's mins, and the rows unpacked before interleaving: 32 K + 8 K +
 * 4 K + 32 K bytes, plus alignment slack. */
#define JQ_GEMMQ_NP 32
static inline size_t jq_gemm_q_panel_bytes(int64_t K)
{
    return 76 * (size_t)K + 256;
}

/* Row dequantization of the types quant.c adds (n a multiple of the block
 * size), reference and AVX-512; types.c dispatches to them. */
void jq_ref_dequantize_q4_0(const void *src, float *dst, int64_t n);
void jq_ref_dequantize_q4_K(const void *src, float *dst, int64_t n);
void jq_ref_dequantize_q6_K(const void *src, float *dst, int64_t n);
void jq_avx512_dequantize_q4_0(const void *src, float *dst, int64_t n);
void jq_avx512_dequantize_q4_K(const void *src, float *dst, int64_t n);
void jq_avx512_dequantize_q6_K(const void *src, float *dst, int64_t n);
void jq_quantize_q4_0(const float *src, void *dst, int64_t n);
void jq_quantize_q4_K(const float *src, void *dst, int64_t n);
void jq_quantize_q6_K(const float *src, void *dst, int64_t n);

#endif
