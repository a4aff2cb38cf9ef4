/* gemm_half_avx512.c — prefill products of BF16 and F16 weights (and F32,
 * with the same code) with F32 activations. Compiled with the AVX-512
 * flags; called only after jq_cpu_has_avx512().
 *
 * Y[i][n] = sum_k X[i][k] W[n][k] for the output columns n in [n0, n1).
 *
 * The weights are converted exactly to F32 while they are packed (a 16-bit
 * shift for BF16, vcvtph2ps for F16), and an F32 FMA micro-kernel does the
 * products, so the result is the reference's up to summation order: no
 * rounding of the activations, no lost mantissa bits.
 *
 * Why not vdpbf16ps on BF16 pairs: on this machine's cores (Xeon, family 6
 * model 207) it issues once per ~2 cycles (bench/insn_throughput: 0.78 ns
 * against 0.19 ns for vfmadd231ps, two FMA ports), so its 32 products per
 * instruction are half of what two FMAs of 16 do in the same time: a
 * 12 x 32 micro-kernel with its data in L1 ran at 87 GFLOP/s with
 * vdpbf16ps and 170 with FMAs (PERFORMANCE.md). It would also round the
 * activations to BF16 (2^-9 relative per product).
 *
 * Blocking (per call, that is per chunk of columns a thread takes):
 *   for each block of NC = 512 columns (weight rows; fewer when the
 *   caller's scratch, JQ_GEMM_PANEL x K floats, is smaller):
 *     for each KC = 256 slice of k:
 *       pack the NC x KC weights into F32 micro-panels [k][NR], NR = 32
 *       columns (two vectors) each: 512 KB, in L2; meanwhile the next
 *       slice's weights are prefetched into L2, a few lines per micro-kernel
 *       call;
 *       for each tile of MR = 12 activation rows, copied to a stride of
 *       KC + 16 floats (13 KB, stays in L1 while it meets every micro-panel
 *       of the block):
 *         for each micro-panel (32 KB, streamed from L2):
 *           the micro-kernel: 12 x 2 accumulators (24 zmm) start at the
 *           output tile (zero for the first slice), each k loads two
 *           weight vectors and broadcasts 12 activations: 24 FMAs on 14
 *           loads, so the FMA ports, not the loads, set the pace.
 * The output tile is read and written once per KC slice: one load and one
 * store per 256 FMAs. Packing (a transpose of 16 x 16 blocks) costs a few
 * vector ops per 16 weights, spread over the M rows. Measured (one thread,
 * 512 x 2048 x 2048): 145 GFLOP/s, 0.80-0.87 of the micro-kernel's in-L1
 * speed; dequantize + sgemm 112.
 *
 * Every output element is one FMA chain over k in index order, stored and
 * reloaded exactly between slices, so its value does not depend on M, on
 * the column range or on how the columns are blocked: threads splitting the columns give
 * the single-threaded result bit for bit.
 */
#include "kernels.h"
#include "transpose_avx512.h"

#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#define JQ_INLINE static inline __attribute__((always_inline))

#define NR 32  /* output columns per micro-panel: two vectors */
#define MR 12  /* activation rows per micro-tile */
#define KC 256 /* k per packed slice */
#define NC 512 /* columns per packed block */

JQ_INLINE __mmask16 lanes(int64_t n) /* the first n (<= 16, >= 0) lanes */
{
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n < 0 ? 0 : n)) - 1u);
}

/* Elements k .. k + 15 of a weight row as F32 (lanes outside m zero).
 * `type` is a constant at every call site. */
JQ_INLINE __m512i load16(uint32_t type, const unsigned char *row, int64_t k,
                         __mmask16 m)
{
    switch (type) {
    case JQ_TYPE_F32:
        return _mm512_castps_si512(_mm512_maskz_loadu_ps(m, row + 4 * k));
    case JQ_TYPE_F16:
        return _mm512_castps_si512(
            _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + 2 * k)));
    default: /* BF16: the upper half of an F32 */
        return _mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row + 2 * k)), 16);
    }
}

/* Packs weight rows [0, nc) of w (row stride `stride` bytes), elements
 * [k0, k0 + kc), into micro-panels: panel p holds rows 32 p .. 32 p + 31
 * as pw[p * kc * NR + k * NR + c]; rows past nc are zeros. */
JQ_INLINE void pack_block(uint32_t type, const unsigned char *w, size_t stride,
                          int64_t k0, int kc, int nc, float *pw)
{
    for (int p = 0; p * NR < nc; p++)
        for (int c0 = 0; c0 < NR; c0 += 16) {
            const int rows = nc - p * NR - c0; /* valid rows in this 16 */
            const unsigned char *base = w + (size_t)(p * NR + c0) * stride;
            float *dst = pw + (size_t)p * kc * NR + c0;
            for (int k = 0; k < kc; k += 16) {
                const __mmask16 m = lanes(kc - k);
                __m512i r[16];
                _Pragma("GCC unroll 16")
                for (int j = 0; j < 16; j++)
                    r[j] = j < rows ? load16(type, base + (size_t)j * stride, k0 + k, m)
                                    : _mm512_setzero_si512();
                jq_transpose16x16(r);
                const int kk = kc - k < 16 ? kc - k : 16;
                for (int t = 0; t < kk; t++)
                    _mm512_store_si512(dst + (size_t)(k + t) * NR, r[t]);
            }
        }
}

/* Rows of a packed activation tile are XS floats apart: KC plus one cache
 * line, so the MR rows' lines for the same k fall into different L1 sets
 * (X's own row stride, a multiple of 4 KB for every model dimension, puts
 * them all in one set and evicts them), and every broadcast is the tile's
 * base plus a constant. */
#define XS (KC + 16)

/* mr (1..MR, a constant at each call) packed activation rows x one
 * micro-panel: y[r][0..ncols) (+)= sum over the slice's kc k of
 * xt[r * XS + k] * panel[k][c]. */
JQ_INLINE void micro(int mr, const float *xt, const float *pw, int kc,
                     float *y, int64_t ldy, bool accumulate, __mmask16 m0,
                     __mmask16 m1)
{
    __m512 c0[MR], c1[MR];
    _Pragma("GCC unroll 12")
    for (int r = 0; r < mr; r++) {
        if (accumulate) {
            c0[r] = _mm512_maskz_loadu_ps(m0, y + r * ldy);
            c1[r] = _mm512_maskz_loadu_ps(m1, y + r * ldy + 16);
        } else {
            c0[r] = c1[r] = _mm512_setzero_ps();
        }
    }
    _Pragma("GCC unroll 2")
    for (int k = 0; k < kc; k++) {
        const __m512 w0 = _mm512_load_ps(pw + (size_t)k * NR);
        const __m512 w1 = _mm512_load_ps(pw + (size_t)k * NR + 16);
        _Pragma("GCC unroll 12")
        for (int r = 0; r < mr; r++) {
            const __m512 b = _mm512_set1_ps(xt[r * XS + k]);
            c0[r] = _mm512_fmadd_ps(w0, b, c0[r]);
            c1[r] = _mm512_fmadd_ps(w1, b, c1[r]);
        }
    }
    _Pragma("GCC unroll 12")
    for (int r = 0; r < mr; r++) {
        _mm512_mask_storeu_ps(y + r * ldy, m0, c0[r]);
        _mm512_mask_storeu_ps(y + r * ldy + 16, m1, c1[r]);
    }
}

/* The weights the next pack will read (`rows` rows of `lines` cache lines
 * from `row0`, `stride` bytes apart), fetched into L2 a few lines before
 * each micro-kernel call while the current block is multiplied. Read on
 * demand they came from memory a few rows at a time, at its latency: the
 * pack took 5-7% of the time (perf), and a burst of prefetches per tile
 * row stalled on the fill buffers (1.7%). */
typedef struct {
    const unsigned char *row0;
    size_t stride;
    int rows, lines;
    int row, line; /* the next line to fetch */
    int per_call;  /* lines per micro-kernel call */
} prefetch_plan;

JQ_INLINE void prefetch_some(prefetch_plan *pf)
{
    for (int i = 0; i < pf->per_call && pf->row < pf->rows; i++) {
        _mm_prefetch((const char *)(pf->row0 + (size_t)pf->row * pf->stride +
                                    (size_t)pf->line * 64),
                     _MM_HINT_T1);
        if (++pf->line == pf->lines)
            pf->line = 0, pf->row++;
    }
}

/* Rows [i, i + mr) of X (copied into xt first) against every micro-panel
 * of a packed block. */
JQ_INLINE void tile_row(int mr, const float *x, int64_t ldx, float *xt,
                        const float *pw, int kc, int nc, float *y,
                        int64_t ldy, bool accumulate, prefetch_plan *pf)
{
    for (int r = 0; r < mr; r++) {
        int k = 0;
        for (; k + 16 <= kc; k += 16)
            _mm512_store_ps(xt + r * XS + k, _mm512_loadu_ps(x + r * ldx + k));
        if (k < kc)
            _mm512_store_ps(xt + r * XS + k,
                            _mm512_maskz_loadu_ps(lanes(kc - k), x + r * ldx + k));
    }
    for (int p = 0; p * NR < nc; p++) {
        const int left = nc - p * NR;
        prefetch_some(pf);
        micro(mr, xt, pw + (size_t)p * kc * NR, kc, y + p * NR, ldy,
              accumulate, lanes(left), lanes(left - 16));
    }
}

static void tiles(const float *X, int64_t ldx, int64_t M, const float *pw,
                  int kc, int nc, float *Y, int64_t ldy, bool accumulate,
                  prefetch_plan *pf)
{
    _Alignas(64) float xt[MR * XS];
    const int64_t calls = (M + MR - 1) / MR * ((nc + NR - 1) / NR);
    pf->per_call = (int)(((int64_t)pf->rows * pf->lines + calls - 1) / calls);
    int64_t i = 0;
    for (; i + MR <= M; i += MR)
        tile_row(MR, X + i * ldx, ldx, xt, pw, kc, nc, Y + i * ldy, ldy,
                 accumulate, pf);
    const float *x = X + i * ldx;
    float *y = Y + i * ldy;
    switch (M - i) {
#define TAIL(n)                                                                \
    case n:                                                                    \
        tile_row(n, x, ldx, xt, pw, kc, nc, y, ldy, accumulate, pf);           \
        break;
        TAIL(1) TAIL(2) TAIL(3) TAIL(4) TAIL(5) TAIL(6)
        TAIL(7) TAIL(8) TAIL(9) TAIL(10) TAIL(11)
#undef TAIL
    default:
        break;
    }
}

static void pack_f32(const unsigned char *w, size_t stride, int64_t k0,
                     int kc, int nc, float *pw)
{
    pack_block(JQ_TYPE_F32, w, stride, k0, kc, nc, pw);
}
static void pack_f16(const unsigned char *w, size_t stride, int64_t k0,
                     int kc, int nc, float *pw)
{
    pack_block(JQ_TYPE_F16, w, stride, k0, kc, nc, pw);
}
static void pack_bf16(const unsigned char *w, size_t stride, int64_t k0,
                      int kc, int nc, float *pw)
{
    pack_block(JQ_TYPE_BF16, w, stride, k0, kc, nc, pw);
}

void jq_avx512_gemm_half(uint32_t type, const void *W, int64_t K,
                         const float *X, int64_t M, float *Y, int64_t ldy,
                         int64_t n0, int64_t n1, float *scratch)
{
    void (*pack)(const unsigned char *, size_t, int64_t, int, int, float *);
    switch (type) {
    case JQ_TYPE_F32:
        pack = pack_f32;
        break;
    case JQ_TYPE_F16:
        pack = pack_f16;
        break;
    case JQ_TYPE_BF16:
        pack = pack_bf16;
        break;
    default:
        abort(); /* caller bug: only the float types come here */
    }
    if (M <= 0 || n1 <= n0)
        return;
    const unsigned char *w = W;
    const size_t stride = jq_row_bytes(type, K);
    /* The scratch holds JQ_GEMM_PANEL x K floats (jq_gemm's contract),
     * used from its first 64-byte boundary (at most 15 floats in): blocks
     * narrower than NC when K < KC, never narrower than NR (64 K - 15 >=
     * 32 min(K, KC) for every K >= 1). */
    float *pw = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    const int64_t room = (int64_t)JQ_GEMM_PANEL * (K > 0 ? K : 1) - (pw - scratch);
    const int kc_max = K < KC ? (int)(K > 0 ? K : 1) : KC;
    int nc_max = (int)(room / kc_max) / NR * NR;
    if (nc_max > NC)
        nc_max = NC;
    const size_t esize = stride / (size_t)(K > 0 ? K : 1);
    for (int64_t n = n0; n < n1; n += nc_max) {
        const int nc = n1 - n < nc_max ? (int)(n1 - n) : nc_max;
        if (K <= 0) { /* an empty sum */
            for (int64_t i = 0; i < M; i++)
                for (int c = 0; c < nc; c++)
                    Y[i * ldy + n + c] = 0;
            continue;
        }
        for (int64_t k0 = 0; k0 < K; k0 += KC) {
            const int kc = K - k0 < KC ? (int)(K - k0) : KC;
            pack(w + (size_t)n * stride, stride, k0, kc, nc, pw);
            /* the next slice of this block, or the next block's first */
            int64_t pn = n, pk = k0 + KC;
            if (pk >= K)
                pn = n + nc_max, pk = 0;
            prefetch_plan pf = {0};
            if (pn < n1) {
                const int64_t pkc = K - pk < KC ? K - pk : KC;
                pf.row0 = w + (size_t)pn * stride + (size_t)pk * esize;
                pf.stride = stride;
                pf.rows = (int)(n1 - pn < nc_max ? n1 - pn : nc_max);
                pf.lines = (int)(((size_t)pkc * esize + 63) / 64);
            }
            tiles(X + k0, K, M, pw, kc, nc, Y + n, ldy, k0 > 0, &pf);
        }
    }
}
