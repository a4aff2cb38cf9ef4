/* matvec.c — scalar reference dot product and matrix-vector product, and
 * the public entry points that dispatch to them or to matvec_avx512.c.
 *
 * The reference is the specification: plain F32 accumulation in index order,
 * each weight first converted exactly to F32 (Q8_0 as d * q, which is exact
 * in F32: 11 + 8 significant bits; Q4_0, Q4_K, Q6_K as jq_dequantize_row).
 * This F32-x path is the reference for every type; the fast decode path of
 * the integer types is jq_matvec_q (quant.c), with an int8 activation. The fast path may only differ by
 * summation order, FMA contraction and, for Q8_0, applying the block scale
 * to the block's sum instead of to each weight.
 */
#include "kernels.h"
#include "isa_internal.h"

#include <stdlib.h>
#include <string.h>

float jq_ref_dot_f32(const float *a, const float *b, int64_t n)
{
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++)
        sum += a[i] * b[i];
    return sum;
}

static float ref_dot_row(uint32_t type, const unsigned char *row,
                         const float *x, int64_t cols)
{
    float sum = 0.0f;
    switch (type) {
    case JQ_TYPE_F32:
        for (int64_t i = 0; i < cols; i++) {
            float w;
            memcpy(&w, row + 4 * i, sizeof w);
            sum += w * x[i];
        }
        return sum;
    case JQ_TYPE_F16:
    case JQ_TYPE_BF16:
        for (int64_t i = 0; i < cols; i++) {
            uint16_t h;
            memcpy(&h, row + 2 * i, sizeof h);
            float w = type == JQ_TYPE_F16 ? jq_f16_to_f32(h) : jq_bf16_to_f32(h);
            sum += w * x[i];
        }
        return sum;
    case JQ_TYPE_Q8_0: {
        float w[JQ_QK8_0];
        for (int64_t b = 0; b < cols / JQ_QK8_0; b++) {
            jq_ref_dequantize_row(JQ_TYPE_Q8_0,
                                  row + b * (int64_t)sizeof(jq_block_q8_0), w,
                                  JQ_QK8_0);
            const float *xb = x + b * JQ_QK8_0;
            for (int j = 0; j < JQ_QK8_0; j++)
                sum += w[j] * xb[j];
        }
        return sum;
    }
    case JQ_TYPE_Q4_0:
    case JQ_TYPE_Q4_K:
    case JQ_TYPE_Q6_K: {
        /* one block at a time, dequantized exactly as jq_dequantize_row */
        const jq_type_traits *t = jq_type_traits_get(type);
        float w[JQ_QK_K];
        for (int64_t b = 0; b < cols / t->block_size; b++) {
            jq_ref_dequantize_row(type, row + b * (int64_t)t->type_size, w,
                                  t->block_size);
            const float *xb = x + b * t->block_size;
            for (uint32_t j = 0; j < t->block_size; j++)
                sum += w[j] * xb[j];
        }
        return sum;
    }
    default:
        abort(); /* caller bug: the loader rejects non-compute types */
    }
}

void jq_ref_matvec(uint32_t type, const void *W, int64_t cols, const float *x,
                   float *y, int64_t r0, int64_t r1)
{
    const unsigned char *w = W;
    size_t stride = jq_row_bytes(type, cols);
    for (int64_t r = r0; r < r1; r++)
        y[r] = ref_dot_row(type, w + (size_t)r * stride, x, cols);
}

float jq_dot_f32(const float *a, const float *b, int64_t n)
{
    return JQ_USE_AVX512() ? jq_avx512_dot_f32(a, b, n)
                           : jq_ref_dot_f32(a, b, n);
}

void jq_matvec(uint32_t type, const void *W, int64_t cols, const float *x,
               float *y, int64_t r0, int64_t r1)
{
    if (JQ_USE_AVX512())
        jq_avx512_matvec(type, W, cols, x, y, r0, r1);
    else
        jq_ref_matvec(type, W, cols, x, y, r0, r1);
}
