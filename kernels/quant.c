/* quant.c — Q4_0, Q4_K and Q6_K weights, and products with an activation
 * quantized to int8: scalar references (the specification) and the public
 * entry points that dispatch to them or to quant_avx512.c / gemm_q_avx512.c.
 *
 * Dequantization follows ggml's arithmetic exactly (the same F32 operations
 * in the same order: Q4_K is (d * sc) * q - dmin * m, Q6_K (d * sc) * q,
 * never fused), so a GGUF file means the same weights here as in llama.cpp.
 *
 * Quantization is for gen-model and the tests. Q4_0 is ggml's
 * quantize_row_q4_0_ref (a file written here is byte-identical). The
 * K-quants are simpler than ggml's (Q4_K: a short search of the step per
 * sub-block with a least-squares refit; Q6_K: the Q4_0 rule per sub-block
 * of 16, no search). Their error on N(0,1) weights, measured by
 * tests/test_kernels_quant.c (NMSE of dequantize(quantize(x)) vs x):
 *   Q8_0 2.9e-5   Q4_0 7.4e-3   Q4_K 5.3e-3   Q6_K 3.6e-4
 * (plain min/max scales gave 6.3e-3 for Q4_K). It matters only for how
 * close a generated model is to its F32 source: every block is valid and
 * dequantizes the same here as in llama.cpp.
 *
 * The quantized-activation products (the JQ_ACT_Q8 kind) are specified as:
 * per activation block b of 32, d[b] = amax / 127 and q = round(x / d[b]);
 * per weight block (or K-quant sub-block), the exact integer sum of
 * products of the weight quants (offsets applied: q - 8, q - 32) and the
 * activation quants, times the F32 product of the scales, summed in F32 in
 * block order; Q4_K subtracts (dmin * m) * s[b] per sub-block, s[b] =
 * d[b] * sum of the block's quants. The AVX-512 paths differ only in
 * summation order and FMA contraction.
 */
#include "kernels.h"
#include "isa_internal.h"
#include "quant_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------ dequantization */

void jq_ref_dequantize_q4_0(const void *src, float *dst, int64_t n)
{
    const unsigned char *s = src;
    for (int64_t b = 0; b < n / JQ_QK4_0; b++) {
        const unsigned char *blk = s + b * (int64_t)sizeof(jq_block_q4_0);
        const float d = jq_f16_to_f32(jq_load_u16(blk));
        const uint8_t *qs = blk + 2;
        float *y = dst + b * JQ_QK4_0;
        for (int j = 0; j < JQ_QK4_0 / 2; j++) {
            y[j] = (float)((qs[j] & 15) - 8) * d;
            y[j + 16] = (float)((qs[j] >> 4) - 8) * d;
        }
    }
}

void jq_ref_dequantize_q4_K(const void *src, float *dst, int64_t n)
{
    const unsigned char *s = src;
    for (int64_t b = 0; b < n / JQ_QK_K; b++) {
        const unsigned char *blk = s + b * (int64_t)sizeof(jq_block_q4_K);
        const float d = jq_f16_to_f32(jq_load_u16(blk));
        const float dmin = jq_f16_to_f32(jq_load_u16(blk + 2));
        uint8_t sc[8], m[8];
        jq_q4k_scales(blk + 4, sc, m);
        const uint8_t *qs = blk + 16;
        float *y = dst + b * JQ_QK_K;
        for (int c = 0; c < 4; c++) {
            const float d1 = d * (float)sc[2 * c], m1 = dmin * (float)m[2 * c];
            const float d2 = d * (float)sc[2 * c + 1];
            const float m2 = dmin * (float)m[2 * c + 1];
            for (int l = 0; l < 32; l++) {
                y[64 * c + l] = d1 * (float)(qs[32 * c + l] & 15) - m1;
                y[64 * c + 32 + l] = d2 * (float)(qs[32 * c + l] >> 4) - m2;
            }
        }
    }
}

/* The 6-bit quant (0..63) of element e (0..255) of a Q6_K block. */
static int q6k_quant(const unsigned char *blk, int e)
{
    const int h = e / 128, g = (e % 128) / 32, l = e % 32;
    const uint8_t lo = blk[64 * h + (g & 1) * 32 + l];
    const uint8_t hi = blk[128 + 32 * h + l];
    return ((g >= 2 ? lo >> 4 : lo & 15) | (((hi >> (2 * g)) & 3) << 4));
}

void jq_ref_dequantize_q6_K(const void *src, float *dst, int64_t n)
{
    const unsigned char *s = src;
    for (int64_t b = 0; b < n / JQ_QK_K; b++) {
        const unsigned char *blk = s + b * (int64_t)sizeof(jq_block_q6_K);
        const float d = jq_f16_to_f32(jq_load_u16(blk + 208));
        const int8_t *sc = (const int8_t *)(blk + 192);
        for (int e = 0; e < JQ_QK_K; e++)
            dst[b * JQ_QK_K + e] =
                d * (float)sc[e / 16] * (float)(q6k_quant(blk, e) - 32);
    }
}

/* -------------------------------------------------------- quantization */

/* Largest-magnitude value of x[0..n) with its sign (the first one on ties). */
static float signed_absmax(const float *x, int n)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++)
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    return max;
}

static int clamp_int(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* round-to-nearest of a float known to be finite and small */
static int near_int(float v)
{
    return (int)lrintf(v);
}

void jq_quantize_q4_0(const float *src, void *dst, int64_t n)
{
    unsigned char *o = dst;
    for (int64_t b = 0; b < n / JQ_QK4_0; b++) {
        const float *x = src + b * JQ_QK4_0;
        unsigned char *blk = o + b * (int64_t)sizeof(jq_block_q4_0);
        /* ggml's rule: the extreme value maps to -8 exactly, so the whole
         * signed range [-8, 7] is used on that side. */
        const float d = signed_absmax(x, JQ_QK4_0) / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const uint16_t dh = jq_f32_to_f16(d);
        memcpy(blk, &dh, sizeof dh);
        for (int j = 0; j < JQ_QK4_0 / 2; j++) {
            /* x * id + 8.5 lies in [0.5, 16.5] (up to rounding), so the
             * truncating conversion is defined and rounds to nearest. */
            int q0 = (int8_t)(x[j] * id + 8.5f);
            int q1 = (int8_t)(x[j + 16] * id + 8.5f);
            q0 = q0 > 15 ? 15 : q0;
            q1 = q1 > 15 ? 15 : q1;
            blk[2 + j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* Fits x[0..32) ~ scale * q + base, q in 0..15, base <= 0 (Q4_K's mins
 * only subtract). Tries steps slightly finer than (max - min) / 15, each
 * followed by the least-squares refit of scale and base for the chosen
 * quants, and keeps the best: 20% lower error than plain min/max on
 * Gaussian data (a short form of ggml's search; not its code). */
static void fit_q4k_sub(const float *x, float *scale, float *base)
{
    float mn = 0.0f, mx = -INFINITY;
    for (int l = 0; l < 32; l++) {
        mn = fminf(mn, x[l]);
        mx = fmaxf(mx, x[l]);
    }
    *scale = 0.0f;
    *base = mn;
    if (!(mx > mn))
        return;
    double best = INFINITY;
    for (int t = 0; t <= 12; t++) {
        const float s0 = (mx - mn) / (15.0f + 0.125f * (float)t);
        double sq = 0, sqq = 0, sx = 0, sqx = 0;
        int q[32];
        for (int l = 0; l < 32; l++) {
            q[l] = clamp_int(near_int((x[l] - mn) / s0), 0, 15);
            sq += q[l];
            sqq += (double)q[l] * q[l];
            sx += x[l];
            sqx += (double)q[l] * x[l];
        }
        /* least squares for x = s q + b over the 32 points */
        const double det = 32 * sqq - sq * sq;
        if (det <= 0)
            continue;
        double s = (32 * sqx - sq * sx) / det;
        double b = (sx - s * sq) / 32;
        if (b > 0) { /* the format cannot add: refit with b = 0 */
            b = 0;
            s = sqq > 0 ? sqx / sqq : 0;
        }
        if (s <= 0)
            continue;
        double err = 0;
        for (int l = 0; l < 32; l++) {
            const double e = s * q[l] + b - x[l];
            err += e * e;
        }
        if (err < best) {
            best = err;
            *scale = (float)s;
            *base = (float)b;
        }
    }
}

void jq_quantize_q4_K(const float *src, void *dst, int64_t n)
{
    unsigned char *o = dst;
    for (int64_t b = 0; b < n / JQ_QK_K; b++) {
        const float *x = src + b * JQ_QK_K;
        unsigned char *blk = o + b * (int64_t)sizeof(jq_block_q4_K);
        float scale[8], off[8], max_scale = 0.0f, max_off = 0.0f;
        for (int j = 0; j < 8; j++) {
            float base;
            fit_q4k_sub(x + 32 * j, &scale[j], &base);
            off[j] = -base;
            max_scale = fmaxf(max_scale, scale[j]);
            max_off = fmaxf(max_off, off[j]);
        }
        /* the 8 scales and mins as 6-bit multiples of two F16 steps */
        const uint16_t dh = jq_f32_to_f16(max_scale / 63.0f);
        const uint16_t mh = jq_f32_to_f16(max_off / 63.0f);
        const float d = jq_f16_to_f32(dh), dmin = jq_f16_to_f32(mh);
        uint8_t sc[8], m[8];
        for (int j = 0; j < 8; j++) {
            sc[j] = (uint8_t)(d > 0 ? clamp_int(near_int(scale[j] / d), 0, 63) : 0);
            m[j] = (uint8_t)(dmin > 0 ? clamp_int(near_int(off[j] / dmin), 0, 63) : 0);
        }
        memcpy(blk, &dh, 2);
        memcpy(blk + 2, &mh, 2);
        uint8_t *s = blk + 4;
        for (int j = 0; j < 4; j++) {
            s[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
            s[j + 4] = (uint8_t)(m[j] | ((m[j + 4] >> 4) << 6));
            s[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
        }
        uint8_t q[JQ_QK_K];
        for (int j = 0; j < 8; j++) {
            /* the scale and min exactly as dequantization computes them */
            const float ds = d * (float)sc[j], dm = dmin * (float)m[j];
            for (int l = 0; l < 32; l++)
                q[32 * j + l] = (uint8_t)(
                    ds > 0 ? clamp_int(near_int((x[32 * j + l] + dm) / ds), 0, 15) : 0);
        }
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                blk[16 + 32 * c + l] =
                    (uint8_t)(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
    }
}

void jq_quantize_q6_K(const float *src, void *dst, int64_t n)
{
    unsigned char *o = dst;
    for (int64_t b = 0; b < n / JQ_QK_K; b++) {
        const float *x = src + b * JQ_QK_K;
        unsigned char *blk = o + b * (int64_t)sizeof(jq_block_q6_K);
        /* Per sub-block of 16 the Q4_0 rule (the extreme maps to -32),
         * then the 16 scales as int8 steps of d = max |scale| / 127. */
        float scale[16], max_scale = 0.0f;
        for (int t = 0; t < 16; t++) {
            scale[t] = signed_absmax(x + 16 * t, 16) / -32.0f;
            max_scale = fmaxf(max_scale, fabsf(scale[t]));
        }
        const uint16_t dh = jq_f32_to_f16(max_scale / 127.0f);
        const float d = jq_f16_to_f32(dh);
        int8_t *sc = (int8_t *)(blk + 192);
        uint8_t q[JQ_QK_K];
        for (int t = 0; t < 16; t++) {
            sc[t] = (int8_t)(d > 0 ? clamp_int(near_int(scale[t] / d), -127, 127) : 0);
            const float ds = d * (float)sc[t];
            for (int l = 0; l < 16; l++)
                q[16 * t + l] = (uint8_t)(
                    (ds != 0 ? clamp_int(near_int(x[16 * t + l] / ds), -32, 31) : 0) + 32);
        }
        memcpy(blk + 208, &dh, 2);
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const uint8_t *qq = q + 128 * h + l;
                blk[64 * h + l] = (uint8_t)((qq[0] & 15) | ((qq[64] & 15) << 4));
                blk[64 * h + 32 + l] = (uint8_t)((qq[32] & 15) | ((qq[96] & 15) << 4));
                blk[128 + 32 * h + l] =
                    (uint8_t)((qq[0] >> 4) | ((qq[32] >> 4) << 2) |
                              ((qq[64] >> 4) << 4) | ((qq[96] >> 4) << 6));
            }
    }
}

/* ------------------------------------------------ quantized activations */

jq_act_kind jq_act_kind_of(uint32_t type)
{
    switch (type) {
    case JQ_TYPE_Q8_0:
    case JQ_TYPE_Q4_0:
    case JQ_TYPE_Q4_K:
    case JQ_TYPE_Q6_K:
        return JQ_ACT_Q8;
    default:
        return JQ_ACT_F32;
    }
}

size_t jq_act_row_bytes(uint32_t type, int64_t K)
{
    if (K < 0)
        return 0;
    if (jq_act_kind_of(type) == JQ_ACT_F32)
        return (size_t)K * sizeof(float); /* jq_gemm's X rows: unpadded */
    if (K % JQ_QA != 0)
        return 0;
    return jq_actq_bytes(K);
}

/* roundf (ties away from zero) clamped to the int8 range used; NaN -> 0
 * (keeps the float->int conversion defined for any input). */
static int8_t round_act(float v)
{
    if (!(v == v))
        return 0;
    float r = roundf(v);
    r = r > 127.0f ? 127.0f : r < -127.0f ? -127.0f : r;
    return (int8_t)r;
}

void jq_ref_quantize_act(uint32_t type, const float *x, int64_t K, void *xq)
{
    if (jq_act_kind_of(type) == JQ_ACT_F32) {
        if (K > 0)
            memcpy(xq, x, (size_t)K * sizeof(float));
        return;
    }
    unsigned char *p = xq;
    const int64_t nb = K / JQ_QA;
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + b * JQ_QA;
        float amax = 0.0f;
        for (int j = 0; j < JQ_QA; j++)
            if (fabsf(xb[j]) > amax)
                amax = fabsf(xb[j]);
        /* As Q8_0: the reciprocal of the F32 scale (kept in F32: unlike a
         * weight it is never stored, and F16 would add its own error). */
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum[2] = {0, 0};
        for (int j = 0; j < JQ_QA; j++) {
            const int8_t q = round_act(xb[j] * id);
            p[b * JQ_QA + j] = (unsigned char)q;
            sum[j / 16] += q;
        }
        const float s = d * (float)(sum[0] + sum[1]);
        const int16_t s16[2] = {(int16_t)sum[0], (int16_t)sum[1]};
        memcpy(p + K + 4 * b, &d, 4);
        memcpy(p + K + 4 * nb + 4 * b, &s, 4);
        memcpy(p + K + 8 * nb + 4 * b, s16, 4);
    }
    const size_t used = (size_t)K + 12 * (size_t)nb;
    memset(p + used, 0, jq_actq_bytes(K) - used); /* deterministic bytes */
}

/* One weight row times a quantized activation, as specified above. */
static float ref_dot_q(uint32_t type, const unsigned char *row,
                       const jq_actq_view *x, int64_t K)
{
    float sum = 0.0f;
    switch (type) {
    case JQ_TYPE_Q8_0:
        for (int64_t b = 0; b < K / JQ_QK8_0; b++) {
            const unsigned char *blk = row + b * (int64_t)sizeof(jq_block_q8_0);
            const int8_t *qw = (const int8_t *)(blk + 2);
            const int8_t *qx = x->qs + b * JQ_QK8_0;
            int32_t isum = 0;
            for (int j = 0; j < JQ_QK8_0; j++)
                isum += qw[j] * qx[j];
            sum += jq_f16_to_f32(jq_load_u16(blk)) * x->d[b] * (float)isum;
        }
        return sum;
    case JQ_TYPE_Q4_0:
        for (int64_t b = 0; b < K / JQ_QK4_0; b++) {
            const unsigned char *blk = row + b * (int64_t)sizeof(jq_block_q4_0);
            const int8_t *qx = x->qs + b * JQ_QK4_0;
            int32_t isum = 0;
            for (int j = 0; j < 16; j++)
                isum += ((blk[2 + j] & 15) - 8) * qx[j] +
                        ((blk[2 + j] >> 4) - 8) * qx[j + 16];
            sum += jq_f16_to_f32(jq_load_u16(blk)) * x->d[b] * (float)isum;
        }
        return sum;
    case JQ_TYPE_Q4_K:
        for (int64_t i = 0; i < K / JQ_QK_K; i++) {
            const unsigned char *blk = row + i * (int64_t)sizeof(jq_block_q4_K);
            const float d = jq_f16_to_f32(jq_load_u16(blk));
            const float dmin = jq_f16_to_f32(jq_load_u16(blk + 2));
            uint8_t sc[8], m[8];
            jq_q4k_scales(blk + 4, sc, m);
            for (int j = 0; j < 8; j++) {
                const int64_t b = 8 * i + j;
                const uint8_t *qs = blk + 16 + 32 * (j / 2);
                const int8_t *qx = x->qs + b * JQ_QA;
                int32_t isum = 0;
                for (int l = 0; l < 32; l++)
                    isum += ((j & 1) ? qs[l] >> 4 : qs[l] & 15) * qx[l];
                sum += d * (float)sc[j] * x->d[b] * (float)isum;
                sum -= dmin * (float)m[j] * x->s[b];
            }
        }
        return sum;
    case JQ_TYPE_Q6_K:
        for (int64_t i = 0; i < K / JQ_QK_K; i++) {
            const unsigned char *blk = row + i * (int64_t)sizeof(jq_block_q6_K);
            const float d = jq_f16_to_f32(jq_load_u16(blk + 208));
            const int8_t *sc = (const int8_t *)(blk + 192);
            for (int t = 0; t < 16; t++) {
                const int8_t *qx = x->qs + i * JQ_QK_K + 16 * t;
                int32_t isum = 0;
                for (int l = 0; l < 16; l++)
                    isum += (q6k_quant(blk, 16 * t + l) - 32) * qx[l];
                sum += d * (float)sc[t] * x->d[8 * i + t / 2] * (float)isum;
            }
        }
        return sum;
    default:
        abort(); /* not a JQ_ACT_Q8 type: a caller bug */
    }
}

void jq_ref_matvec_q(uint32_t type, const void *W, int64_t cols,
                     const void *xq, float *y, int64_t r0, int64_t r1)
{
    if (jq_act_kind_of(type) == JQ_ACT_F32) {
        jq_ref_matvec(type, W, cols, xq, y, r0, r1);
        return;
    }
    const unsigned char *w = W;
    const size_t stride = jq_row_bytes(type, cols);
    const jq_actq_view x = jq_actq_view_of(xq, cols);
    for (int64_t r = r0; r < r1; r++)
        y[r] = ref_dot_q(type, w + (size_t)r * stride, &x, cols);
}

void jq_ref_gemm_q(uint32_t type, const void *W, int64_t K, const void *Xq,
                   int64_t M, float *Y, int64_t ldy, int64_t n0, int64_t n1)
{
    const size_t rb = jq_act_row_bytes(type, K);
    for (int64_t i = 0; i < M; i++)
        jq_ref_matvec_q(type, W, K, (const unsigned char *)Xq + (size_t)i * rb,
                        Y + i * ldy, n0, n1);
}

/* ------------------------------------------------------------ dispatch */

static bool use_vnni(void)
{
    return JQ_USE_AVX512() && jq_cpu_has_avx512_vnni();
}

void jq_quantize_act(uint32_t type, const float *x, int64_t K, void *xq)
{
    if (JQ_USE_AVX512())
        jq_avx512_quantize_act(type, x, K, xq);
    else
        jq_ref_quantize_act(type, x, K, xq);
}

void jq_matvec_q(uint32_t type, const void *W, int64_t cols, const void *xq,
                 float *y, int64_t r0, int64_t r1)
{
    if (jq_act_kind_of(type) == JQ_ACT_F32)
        jq_matvec(type, W, cols, xq, y, r0, r1);
    else if (use_vnni())
        jq_avx512_matvec_q(type, W, cols, xq, y, r0, r1);
    else
        jq_ref_matvec_q(type, W, cols, xq, y, r0, r1);
}

size_t jq_gemm_q_scratch_bytes(uint32_t type, int64_t K)
{
    if (jq_act_kind_of(type) == JQ_ACT_F32)
        return (size_t)JQ_GEMM_PANEL * (size_t)K * sizeof(float);
    return jq_gemm_q_panel_bytes(K);
}

void jq_gemm_q(uint32_t type, const void *W, int64_t K, const void *Xq,
               int64_t M, float *Y, int64_t ldy, int64_t n0, int64_t n1,
               void *scratch)
{
    if (jq_act_kind_of(type) == JQ_ACT_F32)
        jq_gemm(type, W, K, Xq, M, Y, ldy, n0, n1, scratch);
    else if (use_vnni())
        jq_avx512_gemm_q(type, W, K, Xq, M, Y, ldy, n0, n1, scratch);
    else
        jq_ref_gemm_q(type, W, K, Xq, M, Y, ldy, n0, n1);
}
