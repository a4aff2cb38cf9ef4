/* backward_avx512.c — AVX-512 twins of the backward kernels (backward.c
 * has the references and the math; compiled with the AVX-512 flags, only
 * called after jq_cpu_has_avx512()).
 *
 * The element-wise ones follow their reference operation by operation in
 * 16 lanes: double sums where the reference sums in double (products
 * rounded to float first), jq_exp512 for expf, FMA where the reference
 * multiplies then adds. The two that carry the trainer's work:
 *   - matmul_backward_x is a small GEMM dX += dY . W: weight panels (up to
 *     PANEL_R rows x PANEL_C columns) are dequantized once into an L1
 *     buffer (F32 weights are read in place) and a 6 x 64 register tile of
 *     dX accumulates over the panel's rows, so each dequantized weight
 *     feeds 6 FMAs from a register and dX is loaded and stored once per
 *     panel instead of once per weight row. Row blocks are the outer loop
 *     so that W is read as PANEL_R sequential streams (the prefetchers
 *     keep up; the column-outer order, which strides down all of W per
 *     panel, measured 2-4x slower), while dX (M x K floats, 1 MB at
 *     M = 32, K = 8192) stays in L2. Every dX element still sums its terms
 *     in ascending weight-row order, as the reference does.
 *   - attention_backward works row by row like the reference: the dot
 *     products dout . v_j for 16 keys at a time in 16 FMA chains, reduced
 *     together by a transpose-and-add tree into one vector of 16 dp's;
 *     then ds, dq (keys outer, two accumulator sets for latency) and the
 *     trainable keys' dk/dv rows.
 * Tails use masked loads and stores, so no lane touches memory past a row
 * or an output.
 */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "ops_internal.h"

#define JQ_INLINE static inline __attribute__((always_inline))

/* Lanes [0, left) of a 16-lane vector (all of them when left >= 16). */
JQ_INLINE __mmask16 lanes(int64_t left)
{
    if (left >= 16)
        return (__mmask16)0xFFFF;
    return left <= 0 ? 0 : (__mmask16)((1u << (unsigned)left) - 1u);
}

JQ_INLINE double hsum_pd(__m512d v)
{
    return _mm512_reduce_add_pd(v);
}

/* ----------------------------------------------------------- rmsnorm */

void jq_avx512_rmsnorm_backward(float *dx, const float *x, const float *w,
                                const float *dy, int64_t n, float eps)
{
    if (n <= 0)
        return;
    __m512d ss = _mm512_setzero_pd(), dot = _mm512_setzero_pd();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = lanes(n - i);
        const __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
        const __m512 wv = _mm512_maskz_loadu_ps(m, w + i);
        const __m512 gv = _mm512_maskz_loadu_ps(m, dy + i);
        ss = jq_add_ps_as_pd(ss, _mm512_mul_ps(xv, xv));
        dot = jq_add_ps_as_pd(dot, _mm512_mul_ps(_mm512_mul_ps(xv, wv), gv));
    }
    /* the scale exactly as the forward computes it */
    const float mean = (float)(hsum_pd(ss) / (double)n);
    const float s = 1.0f / sqrtf(mean + eps);
    const float coef = (float)((double)s * (double)s * hsum_pd(dot) /
                               (double)n);
    const __m512 sv = _mm512_set1_ps(s), cv = _mm512_set1_ps(coef);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = lanes(n - i);
        const __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
        const __m512 t = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, w + i),
                                       _mm512_maskz_loadu_ps(m, dy + i));
        _mm512_mask_storeu_ps(dx + i, m,
                              _mm512_mul_ps(sv, _mm512_fnmadd_ps(xv, cv, t)));
    }
}

/* -------------------------------------------------------------- RoPE */

#define ROPE_CHUNK 64

void jq_avx512_rope_backward(float *dx, int n_heads, int head_dim,
                             int rope_dim, int32_t pos, float freq_base,
                             const float *freq_factors, bool neox)
{
    const int n_pairs = rope_dim / 2;
    if (n_pairs <= 0)
        return;
    /* per chunk: cos/sin per pair (NEOX), or per element with the pair's
     * values duplicated and the sine signed +s for the first of a pair and
     * -s for the second (NORM: out = x c + swap(x) s') */
    float cos_t[ROPE_CHUNK], sin_t[ROPE_CHUNK];
    float cos_d[2 * ROPE_CHUNK], sin_d[2 * ROPE_CHUNK];
    jq_rope_angles st;
    jq_rope_angles_init(&st, pos, freq_base, rope_dim, freq_factors);
    for (int p0 = 0; p0 < n_pairs; p0 += ROPE_CHUNK) {
        const int np = n_pairs - p0 < ROPE_CHUNK ? n_pairs - p0 : ROPE_CHUNK;
        jq_rope_angles_next(&st, cos_t, sin_t, np);
        if (!neox)
            for (int j = 0; j < np; j++) {
                cos_d[2 * j] = cos_d[2 * j + 1] = cos_t[j];
                sin_d[2 * j] = sin_t[j];
                sin_d[2 * j + 1] = -sin_t[j];
            }
        for (int h = 0; h < n_heads; h++) {
            float *xh = dx + (size_t)h * (size_t)head_dim;
            if (neox) {
                float *a = xh + p0, *b = xh + p0 + n_pairs;
                for (int j = 0; j < np; j += 16) {
                    const __mmask16 m = lanes(np - j);
                    const __m512 c = _mm512_maskz_loadu_ps(m, cos_t + j);
                    const __m512 s = _mm512_maskz_loadu_ps(m, sin_t + j);
                    const __m512 av = _mm512_maskz_loadu_ps(m, a + j);
                    const __m512 bv = _mm512_maskz_loadu_ps(m, b + j);
                    _mm512_mask_storeu_ps(
                        a + j, m, _mm512_fmadd_ps(av, c, _mm512_mul_ps(bv, s)));
                    _mm512_mask_storeu_ps(
                        b + j, m, _mm512_fmsub_ps(bv, c, _mm512_mul_ps(av, s)));
                }
            } else {
                float *a = xh + 2 * p0;
                for (int e = 0; e < 2 * np; e += 16) {
                    const __mmask16 m = lanes(2 * np - e);
                    const __m512 c = _mm512_maskz_loadu_ps(m, cos_d + e);
                    const __m512 s = _mm512_maskz_loadu_ps(m, sin_d + e);
                    const __m512 v = _mm512_maskz_loadu_ps(m, a + e);
                    /* swap the two elements of every pair */
                    const __m512 sw = _mm512_permute_ps(v, 0xB1);
                    _mm512_mask_storeu_ps(
                        a + e, m, _mm512_fmadd_ps(v, c, _mm512_mul_ps(sw, s)));
                }
            }
        }
    }
}

/* ----------------------------------------------------------- softmax */

void jq_avx512_softmax_backward(float *ds, const float *p, const float *dp,
                                int64_t n)
{
    __m512d acc = _mm512_setzero_pd();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = lanes(n - i);
        acc = jq_add_ps_as_pd(acc,
                              _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p + i),
                                            _mm512_maskz_loadu_ps(m, dp + i)));
    }
    const __m512 d = _mm512_set1_ps((float)hsum_pd(acc));
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = lanes(n - i);
        const __m512 pv = _mm512_maskz_loadu_ps(m, p + i);
        const __m512 gv = _mm512_maskz_loadu_ps(m, dp + i);
        _mm512_mask_storeu_ps(ds + i, m,
                              _mm512_mul_ps(pv, _mm512_sub_ps(gv, d)));
    }
}

/* ---------------------------------------------------------- silu_mul */

void jq_avx512_silu_mul_backward(float *dgate, float *dup, const float *gate,
                                 const float *up, const float *dout,
                                 int64_t n)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = lanes(n - i);
        const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
        const __m512 u = _mm512_maskz_loadu_ps(m, up + i);
        const __m512 d = _mm512_maskz_loadu_ps(m, dout + i);
        const __m512 e = jq_exp512(_mm512_sub_ps(_mm512_setzero_ps(), g));
        const __m512 den = _mm512_add_ps(one, e);
        const __m512 s = _mm512_div_ps(one, den);
        /* 1 - s = e s; inf * 0 = NaN once e overflows, where 1 - s is 1:
         * VMINPS returns its second operand for a NaN, so it maps to 1 */
        const __m512 oms = _mm512_min_ps(_mm512_mul_ps(e, s), one);
        const __m512 silu = _mm512_div_ps(g, den);
        const __m512 dsilu = _mm512_mul_ps(s, _mm512_fmadd_ps(g, oms, one));
        _mm512_mask_storeu_ps(dgate + i, m,
                              _mm512_mul_ps(_mm512_mul_ps(d, u), dsilu));
        _mm512_mask_storeu_ps(dup + i, m, _mm512_mul_ps(d, silu));
    }
}

/* ---------------------------------------------------------- matmul dX */

/* Weight panel: PANEL_R rows x PANEL_C columns of F32 (16 KB, in L1 with
 * the dX tile). PANEL_C is a multiple of the Q8_0 block, so panels start
 * on block boundaries. */
#define PANEL_R 32
#define PANEL_C 128
#define TILE_M 6  /* dX rows per register tile */
#define TILE_V 4  /* 16-float vectors per register tile row */

/* dX[MR rows][64 columns] += dY[rows][r] * P[r][cols] over the panel's nr
 * rows; mk[v] masks the column vectors (0 for none past the end). MR is a
 * compile-time constant at each call, so acc lives in registers. */
JQ_INLINE void tile(int mr, const float *P, int64_t ldp, int nr,
                    const float *dY, int64_t ldy, float *dX, int64_t ldx,
                    const __mmask16 mk[TILE_V])
{
    __m512 acc[TILE_M][TILE_V];
    _Pragma("GCC unroll 6") for (int m = 0; m < mr; m++)
        _Pragma("GCC unroll 4") for (int v = 0; v < TILE_V; v++)
            acc[m][v] = _mm512_maskz_loadu_ps(mk[v], dX + m * ldx + 16 * v);
    for (int r = 0; r < nr; r++) {
        __m512 w[TILE_V];
        _Pragma("GCC unroll 4") for (int v = 0; v < TILE_V; v++)
            w[v] = _mm512_maskz_loadu_ps(mk[v], P + r * ldp + 16 * v);
        _Pragma("GCC unroll 6") for (int m = 0; m < mr; m++) {
            const __m512 b = _mm512_set1_ps(dY[m * ldy + r]);
            _Pragma("GCC unroll 4") for (int v = 0; v < TILE_V; v++)
                acc[m][v] = _mm512_fmadd_ps(b, w[v], acc[m][v]);
        }
    }
    _Pragma("GCC unroll 6") for (int m = 0; m < mr; m++)
        _Pragma("GCC unroll 4") for (int v = 0; v < TILE_V; v++)
            _mm512_mask_storeu_ps(dX + m * ldx + 16 * v, mk[v], acc[m][v]);
}

/* Columns [c0, c0 + nc) of weight row r as F32 into dst (c0 on a block
 * boundary for Q8_0). */
JQ_INLINE void panel_row(uint32_t type, const unsigned char *row, int64_t c0,
                         int nc, float *dst)
{
    int c = 0;
    switch (type) {
    case JQ_TYPE_F16:
        for (; c < nc; c += 16) {
            const __mmask16 m = lanes(nc - c);
            _mm512_mask_storeu_ps(
                dst + c, m,
                _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(
                    m, (const uint16_t *)row + c0 + c)));
        }
        return;
    case JQ_TYPE_BF16:
        for (; c < nc; c += 16) {
            const __mmask16 m = lanes(nc - c);
            const __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(
                m, (const uint16_t *)row + c0 + c));
            _mm512_mask_storeu_ps(dst + c, m,
                                  _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)));
        }
        return;
    case JQ_TYPE_Q8_0:
        for (; c < nc; c += JQ_QK8_0) {
            const unsigned char *blk =
                row + (size_t)((c0 + c) / JQ_QK8_0) * sizeof(jq_block_q8_0);
            uint16_t dh;
            memcpy(&dh, blk, sizeof dh);
            const __m512 d = _mm512_set1_ps(_cvtsh_ss(dh));
            const __m128i q0 = _mm_loadu_si128((const void *)(blk + 2));
            const __m128i q1 = _mm_loadu_si128((const void *)(blk + 18));
            /* d * q is exact in F32, as in the reference dequantization */
            _mm512_storeu_ps(dst + c,
                             _mm512_mul_ps(_mm512_cvtepi32_ps(
                                               _mm512_cvtepi8_epi32(q0)),
                                           d));
            _mm512_storeu_ps(dst + c + 16,
                             _mm512_mul_ps(_mm512_cvtepi32_ps(
                                               _mm512_cvtepi8_epi32(q1)),
                                           d));
        }
        return;
    default:
        abort(); /* F32 is read in place; other types are a caller bug */
    }
}

void jq_avx512_matmul_backward_x(uint32_t type, const void *W, int64_t K,
                                 const float *dY, int64_t ldy, int64_t M,
                                 float *dX, int64_t ldx, int64_t r0,
                                 int64_t r1, float *scratch)
{
    (void)scratch;
    if (type != JQ_TYPE_F32 && type != JQ_TYPE_F16 &&
        type != JQ_TYPE_BF16 && type != JQ_TYPE_Q8_0)
        abort();
    const unsigned char *w = W;
    const size_t stride = jq_row_bytes(type, K);
    float panel[PANEL_R * PANEL_C] __attribute__((aligned(64)));
    for (int64_t rb = r0; rb < r1; rb += PANEL_R) {
        const int nr = r1 - rb < PANEL_R ? (int)(r1 - rb) : PANEL_R;
        for (int64_t c0 = 0; c0 < K; c0 += PANEL_C) {
            const int nc = K - c0 < PANEL_C ? (int)(K - c0) : PANEL_C;
            const float *P;
            int64_t ldp;
            if (type == JQ_TYPE_F32) {
                P = (const float *)(w + (size_t)rb * stride) + c0;
                ldp = K;
            } else {
                for (int r = 0; r < nr; r++)
                    panel_row(type, w + (size_t)(rb + r) * stride, c0, nc,
                              panel + r * PANEL_C);
                P = panel;
                ldp = PANEL_C;
            }
            for (int cv = 0; cv < nc; cv += 16 * TILE_V) {
                __mmask16 mk[TILE_V];
                for (int v = 0; v < TILE_V; v++)
                    mk[v] = lanes(nc - cv - 16 * v);
                for (int64_t i = 0; i < M; i += TILE_M) {
                    const float *y = dY + i * ldy + rb;
                    float *x = dX + i * ldx + c0 + cv;
                    switch (M - i < TILE_M ? M - i : TILE_M) {
                    case 6: tile(6, P + cv, ldp, nr, y, ldy, x, ldx, mk); break;
                    case 5: tile(5, P + cv, ldp, nr, y, ldy, x, ldx, mk); break;
                    case 4: tile(4, P + cv, ldp, nr, y, ldy, x, ldx, mk); break;
                    case 3: tile(3, P + cv, ldp, nr, y, ldy, x, ldx, mk); break;
                    case 2: tile(2, P + cv, ldp, nr, y, ldy, x, ldx, mk); break;
                    default: tile(1, P + cv, ldp, nr, y, ldy, x, ldx, mk); break;
                    }
                }
            }
        }
    }
}

/* --------------------------------------------------------- attention */

static int64_t kv_visible(int64_t n_kv, int64_t causal_base, int64_t i)
{
    const int64_t v = causal_base + i + 1;
    return v < 0 ? 0 : v > n_kv ? n_kv : v;
}

/* Lane k of the result = the horizontal sum of a[k], for 16 vectors:
 * neighbours interleaved and added (unpack), then 4-key groups per 128-bit
 * block (shuffle), then the four blocks transposed and added
 * (shuffle_f32x4): 45 shuffles/adds instead of 16 full reductions. */
JQ_INLINE __m512 hsum16(const __m512 a[16])
{
    __m512 s2[8], s4[4];
    for (int k = 0; k < 8; k++)
        s2[k] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * k], a[2 * k + 1]),
                              _mm512_unpackhi_ps(a[2 * k], a[2 * k + 1]));
    /* s2[k] per 128-bit block: [x0, y0, x1, y1] partials of keys 2k, 2k+1 */
    for (int k = 0; k < 4; k++)
        s4[k] = _mm512_add_ps(
            _mm512_shuffle_ps(s2[2 * k], s2[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
            _mm512_shuffle_ps(s2[2 * k], s2[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    /* s4[k] block b: partials of keys 4k..4k+3; sum the blocks */
    const __m512 v01 = _mm512_add_ps(
        _mm512_shuffle_f32x4(s4[0], s4[1], _MM_SHUFFLE(2, 0, 2, 0)),
        _mm512_shuffle_f32x4(s4[0], s4[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512 v23 = _mm512_add_ps(
        _mm512_shuffle_f32x4(s4[2], s4[3], _MM_SHUFFLE(2, 0, 2, 0)),
        _mm512_shuffle_f32x4(s4[2], s4[3], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_add_ps(
        _mm512_shuffle_f32x4(v01, v23, _MM_SHUFFLE(2, 0, 2, 0)),
        _mm512_shuffle_f32x4(v01, v23, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* dp_j = dout . v_j for keys [j0, j0 + 16) (those >= nv read row j0 and
 * are discarded by the caller's mask). */
JQ_INLINE __m512 dots16(const float *dout, const float *v, int64_t ldv,
                        int64_t j0, int64_t nv, int hd)
{
    const float *rows[16];
    for (int k = 0; k < 16; k++)
        rows[k] = v + (j0 + k < nv ? j0 + k : j0) * ldv;
    __m512 acc[16];
    for (int k = 0; k < 16; k++)
        acc[k] = _mm512_setzero_ps();
    for (int d = 0; d < hd; d += 16) {
        const __mmask16 m = lanes(hd - d);
        const __m512 g = _mm512_maskz_loadu_ps(m, dout + d);
        for (int k = 0; k < 16; k++)
            acc[k] = _mm512_fmadd_ps(g, _mm512_maskz_loadu_ps(m, rows[k] + d),
                                     acc[k]);
    }
    return hsum16(acc);
}

/* dq = scale * sum_j ds_j k_j for the 64-float block at d0 (masked). */
JQ_INLINE void dq_block(const float *ds, const float *k, int64_t ldk,
                        int64_t nv, int d0, int hd, float scale, float *dq)
{
    __mmask16 mk[4];
    for (int v = 0; v < 4; v++)
        mk[v] = lanes(hd - d0 - 16 * v);
    __m512 a[4], b[4];
    for (int v = 0; v < 4; v++)
        a[v] = b[v] = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 2 <= nv; j += 2) {
        const __m512 s0 = _mm512_set1_ps(ds[j]), s1 = _mm512_set1_ps(ds[j + 1]);
        const float *k0 = k + j * ldk + d0, *k1 = k0 + ldk;
        for (int v = 0; v < 4; v++) {
            a[v] = _mm512_fmadd_ps(s0, _mm512_maskz_loadu_ps(mk[v], k0 + 16 * v),
                                   a[v]);
            b[v] = _mm512_fmadd_ps(s1, _mm512_maskz_loadu_ps(mk[v], k1 + 16 * v),
                                   b[v]);
        }
    }
    if (j < nv) {
        const __m512 s0 = _mm512_set1_ps(ds[j]);
        const float *k0 = k + j * ldk + d0;
        for (int v = 0; v < 4; v++)
            a[v] = _mm512_fmadd_ps(s0, _mm512_maskz_loadu_ps(mk[v], k0 + 16 * v),
                                   a[v]);
    }
    const __m512 sc = _mm512_set1_ps(scale);
    for (int v = 0; v < 4; v++)
        _mm512_mask_storeu_ps(dq + d0 + 16 * v, mk[v],
                              _mm512_mul_ps(_mm512_add_ps(a[v], b[v]), sc));
}

/* y[0..hd) += a * x[0..hd) */
JQ_INLINE void axpy(float *y, float a, const float *x, int hd)
{
    const __m512 av = _mm512_set1_ps(a);
    for (int d = 0; d < hd; d += 16) {
        const __mmask16 m = lanes(hd - d);
        _mm512_mask_storeu_ps(
            y + d, m,
            _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + d),
                            _mm512_maskz_loadu_ps(m, y + d)));
    }
}

void jq_avx512_attention_backward(const jq_attn_bwd_args *a)
{
    const int hd = a->head_dim;
    float *ds = a->scratch;
    for (int64_t i = 0; i < a->n_q; i++) {
        const float *qi = a->q + i * a->ldq;
        const float *pi = a->p + i * a->ldp;
        const float *doi = a->dout + i * a->lddo;
        float *dqi = a->dq + i * a->ldq_out;
        const int64_t nv = kv_visible(a->n_kv, a->causal_base, i);
        if (nv == 0) {
            memset(dqi, 0, (size_t)hd * sizeof *dqi);
            continue;
        }
        const int64_t npe = a->dp_extra ? (a->n_pe < nv ? a->n_pe : nv) : 0;
        const float *pe = a->dp_extra ? a->dp_extra + i * a->ldpe : NULL;
        __m512d pdp = _mm512_setzero_pd();
        for (int64_t j = 0; j < nv; j += 16) {
            const __mmask16 m = lanes(nv - j);
            __m512 dp = dots16(doi, a->v, a->ldv, j, nv, hd);
            if (j < npe)
                dp = _mm512_add_ps(dp,
                                   _mm512_maskz_loadu_ps(lanes(npe - j), pe + j));
            dp = _mm512_maskz_mov_ps(m, dp);
            _mm512_mask_storeu_ps(ds + j, m, dp);
            pdp = jq_add_ps_as_pd(
                pdp, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, pi + j), dp));
        }
        const __m512 dsum = _mm512_set1_ps((float)hsum_pd(pdp));
        for (int64_t j = 0; j < nv; j += 16) {
            const __mmask16 m = lanes(nv - j);
            const __m512 pv = _mm512_maskz_loadu_ps(m, pi + j);
            const __m512 dp = _mm512_maskz_loadu_ps(m, ds + j);
            _mm512_mask_storeu_ps(ds + j, m,
                                  _mm512_mul_ps(pv, _mm512_sub_ps(dp, dsum)));
        }
        for (int d0 = 0; d0 < hd; d0 += 64)
            dq_block(ds, a->k, a->ldk, nv, d0, hd, a->scale, dqi);
        const int64_t j0 = a->kgrad0 > 0 ? a->kgrad0 : 0;
        for (int64_t j = j0; j < nv; j++) {
            if (a->dk)
                axpy(a->dk + (j - a->kgrad0) * a->lddk, a->scale * ds[j], qi,
                     hd);
            if (a->dv)
                axpy(a->dv + (j - a->kgrad0) * a->lddv, pi[j], doi, hd);
        }
    }
}
