/* gemm_q_avx512.c — prefill products of Q8_0/Q4_0/Q4_K/Q6_K weights with
 * int8 activations (VNNI). Compiled with the AVX-512 flags; called only
 * when the CPU has AVX-512 VNNI.
 *
 * Y[i][n] = sum_k X[i][k] W[n][k] for the output columns n in [n0, n1).
 * Per panel of 32 weight rows (= 32 output columns):
 *   1. pack: every weight becomes an unsigned byte (q + 128, the nibble,
 *      the 6-bit quant), laid out as [k / 4][column][4] so that one 64-byte
 *      load holds 4 consecutive k of 16 columns, the operand vpdpbusd
 *      wants; the F32 scale of every (group, column) beside it (groups of
 *      32 k, 16 for Q6_K's sub-blocks), and Q4_K's mins.
 *   2. for every tile of 4 activation rows: per group, 4 x 2 int32
 *      accumulators start at -offset * (the row's sum over the group: the
 *      activation's stored block sums), take G / 4 steps of 8 vpdpbusd (a
 *      broadcast 4-byte slice of each row times both column vectors), and
 *      then go to F32 once: acc += float(int) * (w_scale[col] * x_scale).
 * The integer sums are exact, so the result equals the reference's
 * (quant.c) up to float summation order: the same per-block products.
 *
 * The packed panel (32 K + 8 K + 4 K bytes) stays in L2 while all M rows
 * pass over it; the activation rows (1.375 K bytes each) stream from L2/L3.
 *
 * Why this and not dequantize + sgemm (jq_gemm), measured with
 * bench/kernel_bench.c --gemm, M 512 x N 2048 x K 2048, one thread, on a
 * shared 2-vCPU guest (absolute numbers vary run to run; the same run):
 *   F32 sgemm 81 GFLOP/s; dequantize + sgemm: Q8_0 47, Q4_0 44, Q4_K 46,
 *   Q6_K 43; this kernel (activation quantization included): Q8_0 125,
 *   Q4_0 130, Q4_K 127, Q6_K 106 (G/s of multiply-adds x 2).
 * So every integer type uses this kernel (jq_gemm_q); jq_gemm keeps
 * dequantize + sgemm for callers with only an F32 activation. Q6_K is
 * slower because its sub-blocks of 16 halve the vpdpbusd run between two
 * conversions to F32.
 */
#include "kernels.h"
#include "quant_internal.h"
#include "quant_simd.h"
#include "transpose_avx512.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define NP JQ_GEMMQ_NP /* columns per panel: two vectors of 16 */
#define MR 4           /* activation rows per tile */

typedef struct {
    uint8_t *q;  /* [K/4][NP][4] unsigned weight quads */
    float *sc;   /* [K/G][NP] weight scale per group and column */
    float *mn;   /* [K/32][NP] Q4_K: dmin * m, else unused */
    uint8_t *row; /* NP x K bytes: the rows unpacked before interleaving */
} panel;

static int group_of(uint32_t type)
{
    return type == JQ_TYPE_Q6_K ? 16 : 32;
}

/* One weight row -> unsigned bytes in element order (u) and its scales
 * into column c of p->sc / p->mn. */
static void unpack_row(uint32_t type, const unsigned char *w, int64_t K,
                       panel *p, int c, uint8_t *u)
{
    switch (type) {
    case JQ_TYPE_Q8_0:
    case JQ_TYPE_Q4_0: {
        const size_t bs = type == JQ_TYPE_Q8_0 ? sizeof(jq_block_q8_0)
                                               : sizeof(jq_block_q4_0);
        for (int64_t b = 0; b < K / 32; b++) {
            const unsigned char *blk = w + (size_t)b * bs;
            const __m512i v = type == JQ_TYPE_Q8_0 ? q8_0_one(blk) : q4_0_one(blk);
            _mm256_storeu_si256((void *)(u + 32 * b), _mm512_castsi512_si256(v));
            p->sc[b * NP + c] = half_at(blk);
        }
        return;
    }
    case JQ_TYPE_Q4_K: {
        const __m256i m0f = _mm256_set1_epi8(0x0f);
        for (int64_t i = 0; i < K / JQ_QK_K; i++) {
            const unsigned char *blk = w + (size_t)i * sizeof(jq_block_q4_K);
            const float d = half_at(blk), dmin = half_at(blk + 2);
            uint8_t sc[8], m[8];
            jq_q4k_scales(blk + 4, sc, m);
            for (int j = 0; j < 8; j++) {
                p->sc[(8 * i + j) * NP + c] = d * (float)sc[j];
                p->mn[(8 * i + j) * NP + c] = dmin * (float)m[j];
            }
            for (int ch = 0; ch < 4; ch++) {
                const __m256i v = _mm256_loadu_si256((const void *)(blk + 16 + 32 * ch));
                _mm256_storeu_si256((void *)(u + 256 * i + 64 * ch),
                                    _mm256_and_si256(v, m0f));
                _mm256_storeu_si256((void *)(u + 256 * i + 64 * ch + 32),
                                    _mm256_and_si256(_mm256_srli_epi16(v, 4), m0f));
            }
        }
        return;
    }
    case JQ_TYPE_Q6_K:
        for (int64_t i = 0; i < K / JQ_QK_K; i++) {
            const unsigned char *blk = w + (size_t)i * sizeof(jq_block_q6_K);
            const float d = half_at(blk + 208);
            const int8_t *sc = (const int8_t *)(blk + 192);
            for (int t = 0; t < 16; t++)
                p->sc[(16 * i + t) * NP + c] = d * (float)sc[t];
            for (int h = 0; h < 2; h++) {
                __m512i qa, qb;
                q6k_half(blk, h, &qa, &qb);
                _mm512_storeu_si512(u + 256 * i + 128 * h, qa);
                _mm512_storeu_si512(u + 256 * i + 128 * h + 64, qb);
            }
        }
        return;
    default:
        abort();
    }
}

/* Packs weight rows [n, n + ncols) (ncols <= NP); the columns past ncols
 * get zero weights and scales. The rows are unpacked to bytes one after
 * another, then interleaved 16 rows x 64 bytes at a time with an
 * in-register transpose: storing each 4-byte quad on its own (a 128-byte
 * stride) took 1.1 ms per 1024 x 2048 Q8_0 weights, 20% of a 512-row
 * GEMM; the transposes take a few percent of that. */
static void pack_panel(uint32_t type, const unsigned char *w, size_t stride,
                       int64_t K, int ncols, panel *p)
{
    const int64_t ng = K / group_of(type);
    if (ncols < NP) {
        memset(p->row + (size_t)ncols * K, 0, (size_t)(NP - ncols) * K);
        memset(p->sc, 0, (size_t)ng * NP * sizeof(float));
        if (type == JQ_TYPE_Q4_K)
            memset(p->mn, 0, (size_t)(K / 32) * NP * sizeof(float));
    }
    for (int c = 0; c < ncols; c++)
        unpack_row(type, w + (size_t)c * stride, K, p, c, p->row + (size_t)c * K);
    const int64_t nq = K / 4; /* quads per row */
    int64_t q0 = 0;
    for (; q0 + 16 <= nq; q0 += 16)
        for (int c0 = 0; c0 < NP; c0 += 16) {
            __m512i r[16];
            for (int m = 0; m < 16; m++)
                r[m] = _mm512_loadu_si512(p->row + (size_t)(c0 + m) * K + 4 * q0);
            jq_transpose16x16(r);
            for (int k = 0; k < 16; k++)
                _mm512_store_si512(p->q + ((size_t)(q0 + k) * NP + c0) * 4, r[k]);
        }
    for (; q0 < nq; q0++) /* K = 32 mod 64: the last 8 quads */
        for (int c = 0; c < NP; c++)
            memcpy(p->q + ((size_t)q0 * NP + c) * 4, p->row + (size_t)c * K + 4 * q0, 4);
}

/* mr (1..MR, constant at each call) activation rows times the panel. */
JQ_INLINE void tile(int mr, int G, int offset, int has_min, const panel *p,
                    int64_t K, const jq_actq_view *x, float *y, int64_t ldy,
                    int ncols)
{
    __m512 f[MR][2];
    _Pragma("GCC unroll 4")
    for (int r = 0; r < mr; r++)
        f[r][0] = f[r][1] = _mm512_setzero_ps();
    const int64_t ng = K / G;
    for (int64_t g = 0; g < ng; g++) {
        __m512i a[MR][2];
        _Pragma("GCC unroll 4")
        for (int r = 0; r < mr; r++) {
            const int sum = G == 32 ? x[r].s16[2 * g] + x[r].s16[2 * g + 1]
                                    : x[r].s16[g];
            a[r][0] = a[r][1] = _mm512_set1_epi32(-offset * sum);
        }
        const uint8_t *qp = p->q + (size_t)g * G * NP;
        _Pragma("GCC unroll 8")
        for (int k4 = 0; k4 < G / 4; k4++) {
            const __m512i w0 = _mm512_load_si512(qp + 4 * NP * k4);
            const __m512i w1 = _mm512_load_si512(qp + 4 * NP * k4 + 64);
            _Pragma("GCC unroll 4")
            for (int r = 0; r < mr; r++) {
                int32_t q4;
                memcpy(&q4, x[r].qs + g * G + 4 * k4, 4);
                const __m512i xb = _mm512_set1_epi32(q4);
                a[r][0] = _mm512_dpbusd_epi32(a[r][0], w0, xb);
                a[r][1] = _mm512_dpbusd_epi32(a[r][1], w1, xb);
            }
        }
        const __m512 s0 = _mm512_load_ps(p->sc + g * NP);
        const __m512 s1 = _mm512_load_ps(p->sc + g * NP + 16);
        const int64_t b = g * G / 32; /* activation block */
        _Pragma("GCC unroll 4")
        for (int r = 0; r < mr; r++) {
            const __m512 dx = _mm512_set1_ps(x[r].d[b]);
            f[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[r][0]), _mm512_mul_ps(s0, dx), f[r][0]);
            f[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[r][1]), _mm512_mul_ps(s1, dx), f[r][1]);
        }
        if (has_min) {
            const __m512 m0 = _mm512_load_ps(p->mn + g * NP);
            const __m512 m1 = _mm512_load_ps(p->mn + g * NP + 16);
            _Pragma("GCC unroll 4")
            for (int r = 0; r < mr; r++) {
                const __m512 sx = _mm512_set1_ps(x[r].s[g]);
                f[r][0] = _mm512_fnmadd_ps(m0, sx, f[r][0]);
                f[r][1] = _mm512_fnmadd_ps(m1, sx, f[r][1]);
            }
        }
    }
    const __mmask16 k0 = ncols >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << ncols) - 1);
    const __mmask16 k1 = ncols >= 32 ? (__mmask16)0xffff
                         : ncols <= 16 ? 0 : (__mmask16)((1u << (ncols - 16)) - 1);
    _Pragma("GCC unroll 4")
    for (int r = 0; r < mr; r++) {
        _mm512_mask_storeu_ps(y + r * ldy, k0, f[r][0]);
        _mm512_mask_storeu_ps(y + r * ldy + 16, k1, f[r][1]);
    }
}

/* One specialisation per (type, rows), so the group loop is fully known. */
#define TILE_TYPE(T, G, OFF, MIN)                                              \
    static void tiles_##T(const panel *p, int64_t K, const unsigned char *Xq,  \
                          size_t rb, int64_t M, float *y, int64_t ldy,         \
                          int ncols)                                           \
    {                                                                          \
        jq_actq_view x[MR];                                                    \
        int64_t i = 0;                                                         \
        for (; i + MR <= M; i += MR) {                                         \
            for (int r = 0; r < MR; r++)                                       \
                x[r] = jq_actq_view_of(Xq + (size_t)(i + r) * rb, K);          \
            tile(MR, G, OFF, MIN, p, K, x, y + i * ldy, ldy, ncols);           \
        }                                                                      \
        for (; i < M; i++) {                                                   \
            x[0] = jq_actq_view_of(Xq + (size_t)i * rb, K);                    \
            tile(1, G, OFF, MIN, p, K, x, y + i * ldy, ldy, ncols);            \
        }                                                                      \
    }
TILE_TYPE(q8_0, 32, 128, 0)
TILE_TYPE(q4_0, 32, 8, 0)
TILE_TYPE(q4_K, 32, 0, 1)
TILE_TYPE(q6_K, 16, 32, 0)
#undef TILE_TYPE

void jq_avx512_gemm_q(uint32_t type, const void *W, int64_t K,
                      const void *Xq, int64_t M, float *Y, int64_t ldy,
                      int64_t n0, int64_t n1, void *scratch)
{
    if (jq_act_kind_of(type) == JQ_ACT_F32) {
        jq_gemm(type, W, K, Xq, M, Y, ldy, n0, n1, scratch);
        return;
    }
    if (M <= 0 || n1 <= n0)
        return;
    /* A few rows: packing costs more than it saves (1024 x 2048 weights,
     * Q8_0: pack + tiles 0.30 ms at M = 1..4, 0.34 at 8; the GEMV per
     * row 0.07 ms each, 0.28 at M = 4 with the weights in L2 and worse
     * from memory), so up to 3 rows go through the GEMV. */
    if (M <= 3) {
        const size_t rb = jq_actq_bytes(K);
        for (int64_t i = 0; i < M; i++)
            jq_avx512_matvec_q(type, W, K, (const unsigned char *)Xq + i * rb,
                               Y + i * ldy, n0, n1);
        return;
    }
    const unsigned char *w = W;
    const size_t stride = jq_row_bytes(type, K), rb = jq_actq_bytes(K);
    /* carve the scratch: every piece 64-byte aligned */
    uintptr_t at = ((uintptr_t)scratch + 63) & ~(uintptr_t)63;
    panel p;
    p.q = (uint8_t *)at;
    at += (size_t)K * NP;
    p.sc = (float *)at;
    at += (size_t)(K / 16) * NP * sizeof(float);
    p.mn = (float *)at;
    at += (size_t)(K / 32) * NP * sizeof(float);
    p.row = (uint8_t *)at;
    for (int64_t n = n0; n < n1; n += NP) {
        const int ncols = n1 - n < NP ? (int)(n1 - n) : NP;
        pack_panel(type, w + (size_t)n * stride, stride, K, ncols, &p);
        const unsigned char *X = Xq;
        switch (type) {
        case JQ_TYPE_Q8_0:
            tiles_q8_0(&p, K, X, rb, M, Y + n, ldy, ncols);
            break;
        case JQ_TYPE_Q4_0:
            tiles_q4_0(&p, K, X, rb, M, Y + n, ldy, ncols);
            break;
        case JQ_TYPE_Q4_K:
            tiles_q4_K(&p, K, X, rb, M, Y + n, ldy, ncols);
            break;
        case JQ_TYPE_Q6_K:
            tiles_q6_K(&p, K, X, rb, M, Y + n, ldy, ncols);
            break;
        default:
            abort();
        }
    }
}
