/* types.c — ggml type table, half-precision conversions, row
 * (de)quantization.
 *
 * The scalar conversions here are the specification the AVX-512 paths are
 * tested against bit for bit, so they are exact: integer bit manipulation,
 * round to nearest even, subnormals kept (not flushed), NaN kept NaN (quiet,
 * as the F16C/AVX-512 conversion instructions produce it, so that the two
 * paths agree on every one of the 65536 patterns).
 *
 * Weights arrive as bytes from a mapped GGUF file: a Q8_0 block is 34 bytes,
 * so its f16 scale is only 2-byte aligned, and callers may hand us any
 * offset. Every multi-byte load from a `const void *` goes through memcpy,
 * which compiles to a plain load but is defined for any alignment.
 */
#include "kernels.h"
#include "isa_internal.h"
#include "quant_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define T(id_, name_, bs_, ts_, compute_)                                      \
    [id_] = {.name = (name_), .block_size = (bs_), .type_size = (ts_),         \
             .compute = (compute_)}

/* Block sizes and bytes per block are ggml's (ggml-common.h); GGUF sizes
 * tensors from them, so they must match exactly even for types judgeq cannot
 * compute with. */
static const jq_type_traits type_traits[JQ_TYPE_COUNT_] = {
    T(JQ_TYPE_F32, "f32", 1, 4, true),
    T(JQ_TYPE_F16, "f16", 1, 2, true),
    T(JQ_TYPE_Q4_0, "q4_0", 32, 18, true),
    T(JQ_TYPE_Q4_1, "q4_1", 32, 20, false),
    T(JQ_TYPE_Q5_0, "q5_0", 32, 22, false),
    T(JQ_TYPE_Q5_1, "q5_1", 32, 24, false),
    T(JQ_TYPE_Q8_0, "q8_0", 32, 34, true),
    T(JQ_TYPE_Q8_1, "q8_1", 32, 36, false),
    T(JQ_TYPE_Q2_K, "q2_K", 256, 84, false),
    T(JQ_TYPE_Q3_K, "q3_K", 256, 110, false),
    T(JQ_TYPE_Q4_K, "q4_K", 256, 144, true),
    T(JQ_TYPE_Q5_K, "q5_K", 256, 176, false),
    T(JQ_TYPE_Q6_K, "q6_K", 256, 210, true),
    T(JQ_TYPE_Q8_K, "q8_K", 256, 292, false),
    T(JQ_TYPE_IQ2_XXS, "iq2_xxs", 256, 66, false),
    T(JQ_TYPE_IQ2_XS, "iq2_xs", 256, 74, false),
    T(JQ_TYPE_IQ3_XXS, "iq3_xxs", 256, 98, false),
    T(JQ_TYPE_IQ1_S, "iq1_s", 256, 50, false),
    T(JQ_TYPE_IQ4_NL, "iq4_nl", 32, 18, false),
    T(JQ_TYPE_IQ3_S, "iq3_s", 256, 110, false),
    T(JQ_TYPE_IQ2_S, "iq2_s", 256, 82, false),
    T(JQ_TYPE_IQ4_XS, "iq4_xs", 256, 136, false),
    T(JQ_TYPE_I8, "i8", 1, 1, false),
    T(JQ_TYPE_I16, "i16", 1, 2, false),
    T(JQ_TYPE_I32, "i32", 1, 4, false),
    T(JQ_TYPE_I64, "i64", 1, 8, false),
    T(JQ_TYPE_F64, "f64", 1, 8, false),
    T(JQ_TYPE_IQ1_M, "iq1_m", 256, 56, false),
    T(JQ_TYPE_BF16, "bf16", 1, 2, true),
    T(JQ_TYPE_TQ1_0, "tq1_0", 256, 54, false),
    T(JQ_TYPE_TQ2_0, "tq2_0", 256, 66, false),
};
#undef T

const jq_type_traits *jq_type_traits_get(uint32_t type)
{
    /* Holes in the id space (4, 5, 31..33, ...) are zero-filled entries. */
    if (type >= JQ_TYPE_COUNT_ || type_traits[type].name == NULL)
        return NULL;
    return &type_traits[type];
}

size_t jq_row_bytes(uint32_t type, int64_t n)
{
    const jq_type_traits *t = jq_type_traits_get(type);
    if (t == NULL || n < 0 || n % t->block_size != 0)
        return 0;
    uint64_t blocks = (uint64_t)n / t->block_size;
    if (blocks > SIZE_MAX / t->type_size)
        return 0;
    return (size_t)blocks * t->type_size;
}

int jq_type_from_name(const char *name)
{
    if (name == NULL)
        return -1;
    for (int i = 0; i < JQ_TYPE_COUNT_; i++)
        if (type_traits[i].name != NULL && strcmp(type_traits[i].name, name) == 0)
            return i;
    return -1;
}

/* ------------------------------------------------------- conversions */

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float jq_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) /* inf, or NaN made quiet with its payload kept */
        return f32_from_bits(sign | 0x7f800000u | (mant ? 0x400000u : 0) |
                             (mant << 13));
    if (exp == 0) {
        /* Zero or subnormal: mant * 2^-24 is exact in float. */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    return f32_from_bits(sign | ((exp + (127 - 15)) << 23) | (mant << 13));
}

uint16_t jq_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;

    if (ax > 0x7f800000u) /* NaN: quiet, top payload bits kept */
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    /* 65520 is the midpoint between 65504 (odd mantissa) and 2^16, so it and
     * everything above round to infinity. */
    if (ax >= 0x477ff000u)
        return (uint16_t)(sign | 0x7c00u);
    if (ax >= 0x38800000u) { /* result is a normal half (>= 2^-14) */
        /* Adding 0xfff plus the lowest kept bit rounds the 13 dropped bits
         * to nearest even; a carry moves into the exponent, which is right
         * (it also turns the largest mantissa into the next power of 2). */
        ax += 0xfffu + ((ax >> 13) & 1u);
        ax -= (uint32_t)(127 - 15) << 23;
        return (uint16_t)(sign | (ax >> 13));
    }
    /* At or below 2^-25 (half the smallest subnormal; the tie goes to even
     * zero) the result is a signed zero. */
    if (ax <= 0x33000000u)
        return sign;
    /* Subnormal result in units of 2^-24: the 24-bit significand shifted
     * right by 126 - exp (14..24 here), rounded to nearest even. Rounding up
     * to 0x400 yields the smallest normal, which is the correct encoding. */
    uint32_t e = ax >> 23;
    uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e;
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u)))
        q++;
    return (uint16_t)(sign | q);
}

float jq_bf16_to_f32(uint16_t h)
{
    return f32_from_bits((uint32_t)h << 16);
}

uint16_t jq_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: truncation could make inf */
        return (uint16_t)((x >> 16) | 0x40u);
    /* Round to nearest even on the 16 dropped bits; overflow carries into
     * the exponent and reaches infinity exactly when it should. Cannot wrap:
     * the largest non-NaN input is 0xff800000. */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

/* ----------------------------------------------------- dequantization */

static inline uint16_t load_u16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

void jq_ref_dequantize_row(uint32_t type, const void *src, float *dst,
                           int64_t n)
{
    const unsigned char *s = src;
    switch (type) {
    case JQ_TYPE_F32:
        if (n > 0)
            memcpy(dst, s, (size_t)n * sizeof(float));
        return;
    case JQ_TYPE_F16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = jq_f16_to_f32(load_u16(s + 2 * i));
        return;
    case JQ_TYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = jq_bf16_to_f32(load_u16(s + 2 * i));
        return;
    case JQ_TYPE_Q8_0:
        for (int64_t b = 0; b < n / JQ_QK8_0; b++) {
            const unsigned char *blk = s + b * (int64_t)sizeof(jq_block_q8_0);
            float d = jq_f16_to_f32(load_u16(blk));
            const int8_t *qs = (const int8_t *)(blk + 2);
            for (int j = 0; j < JQ_QK8_0; j++)
                dst[b * JQ_QK8_0 + j] = d * (float)qs[j];
        }
        return;
    case JQ_TYPE_Q4_0:
        jq_ref_dequantize_q4_0(src, dst, n);
        return;
    case JQ_TYPE_Q4_K:
        jq_ref_dequantize_q4_K(src, dst, n);
        return;
    case JQ_TYPE_Q6_K:
        jq_ref_dequantize_q6_K(src, dst, n);
        return;
    default:
        /* A caller bug (the loader must reject non-compute types): stop
         * rather than hand back garbage activations. */
        abort();
    }
}

void jq_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n)
{
    if (JQ_USE_AVX512())
        jq_avx512_dequantize_row(type, src, dst, n);
    else
        jq_ref_dequantize_row(type, src, dst, n);
}

/* ------------------------------------------------------- quantization */

static int8_t round_q8(float v)
{
    /* |v| <= 127 up to one rounding for finite input; the clamp and the NaN
     * test keep the float->int conversion defined for any input. */
    if (!(v == v))
        return 0;
    float r = roundf(v);
    if (r > 127.0f)
        r = 127.0f;
    if (r < -127.0f)
        r = -127.0f;
    return (int8_t)r;
}

void jq_quantize_row(uint32_t type, const float *src, void *dst, int64_t n)
{
    unsigned char *o = dst;
    switch (type) {
    case JQ_TYPE_F32:
        if (n > 0)
            memcpy(o, src, (size_t)n * sizeof(float));
        return;
    case JQ_TYPE_F16:
        /* bit-identical to the loop below (tests/test_kernels_ops.c) */
        if (JQ_USE_AVX512()) {
            jq_avx512_quantize_row_f16(src, dst, n);
            return;
        }
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = jq_f32_to_f16(src[i]);
            memcpy(o + 2 * i, &h, sizeof h);
        }
        return;
    case JQ_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = jq_f32_to_bf16(src[i]);
            memcpy(o + 2 * i, &h, sizeof h);
        }
        return;
    case JQ_TYPE_Q8_0:
        for (int64_t b = 0; b < n / JQ_QK8_0; b++) {
            const float *x = src + b * JQ_QK8_0;
            unsigned char *blk = o + b * (int64_t)sizeof(jq_block_q8_0);
            float amax = 0.0f;
            for (int j = 0; j < JQ_QK8_0; j++) {
                float a = fabsf(x[j]);
                if (a > amax)
                    amax = a;
            }
            /* As ggml: the scale is computed in f32 and the quants use
             * its f32 reciprocal, and only then is d rounded to f16. */
            float d = amax / 127.0f;
            float id = d != 0.0f ? 1.0f / d : 0.0f;
            uint16_t dh = jq_f32_to_f16(d);
            memcpy(blk, &dh, sizeof dh);
            for (int j = 0; j < JQ_QK8_0; j++) {
                int8_t q = round_q8(x[j] * id);
                memcpy(blk + 2 + j, &q, 1);
            }
        }
        return;
    case JQ_TYPE_Q4_0:
        jq_quantize_q4_0(src, dst, n);
        return;
    case JQ_TYPE_Q4_K:
        jq_quantize_q4_K(src, dst, n);
        return;
    case JQ_TYPE_Q6_K:
        jq_quantize_q6_K(src, dst, n);
        return;
    default:
        abort();
    }
}
