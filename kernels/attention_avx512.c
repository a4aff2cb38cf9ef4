/* attention_avx512.c — AVX-512 two-pass attention over F32 or F16 K/V (see
 * attention.c for the algorithm and the scoring contract).
 *
 * Per query row:
 *   - scores of four keys at a time: four independent FMA chains over
 *     head_dim (hiding the FMA latency even when head_dim is one vector),
 *     reduced together by one hadd tree instead of four full horizontal
 *     sums, which is most of the per-key cost at head_dim 64;
 *   - a vectorised max / exp / double sum over the scores, and the
 *     observer rows' probabilities added into score[];
 *   - the weighted value sum over blocks of up to four 16-float strips of
 *     head_dim, keys outer, with two sets of accumulators (even and odd
 *     keys) so eight FMA chains are in flight; each V row is read once per
 *     64-float block, i.e. once in all for head_dim <= 64.
 * F16 rows are widened in registers by VCVTPH2PS right after the load, so
 * the cache is streamed once at half the bytes and never copied. head_dim
 * may be any size >= 1: the last strip is masked, and masked loads never
 * touch memory past a row.
 *
 * Everything is written once as always-inline templates over the K/V type
 * and a compile-time head_dim (64 and 128, the common sizes, get fully
 * unrolled code; 0 means "read it at run time").
 *
 * Two K/V segments (a shared prefix k0/v0, then k/v): each pass walks the
 * segments one after the other with the same fast loops, and never copies
 * the cache. A split must not change a single bit, so the arithmetic each
 * key gets depends only on its global index, never on where the segment
 * boundary falls:
 *   - a key's score is reduced by the 4-key hadd tree when it lies below
 *     the last multiple of 4 of the visible keys, else by a full
 *     horizontal sum (as in one segment). The hadd tree's lane k depends
 *     only on key k, so a segment's last few tree keys form a padded
 *     block (the last key repeated, the extra lanes not stored);
 *   - in the value sum, key j goes to the even or odd accumulator by the
 *     parity of its global index, and the accumulators live across the
 *     boundary, so each accumulator sees the same keys in the same order.
 *
 * Differences from the reference: the dot products sum in float lanes
 * instead of double, exp is jq_exp512 (<= 1 ulp) instead of expf, and the
 * value sum uses FMA in another order; the F16 -> F32 conversion itself is
 * exact on both paths. tests/test_kernels_ops.c bounds the effect.
 */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "kernels.h"
#include "ops_internal.h"

#define JQ_INLINE static inline __attribute__((always_inline))

JQ_INLINE __mmask16 tail_mask(int64_t left)
{
    return left >= 16 ? (__mmask16)0xFFFF
                      : (__mmask16)((1u << (unsigned)left) - 1u);
}

static int64_t kv_visible(int64_t n_kv, int64_t causal_base, int64_t i)
{
    const int64_t v = causal_base + i + 1;
    return v < 0 ? 0 : v > n_kv ? n_kv : v;
}

/* Lanes m of elements [d, d+16) of row j of a K/V array of `type` (a
 * compile-time constant at every call site), as F32. */
JQ_INLINE __m512 load_kv(uint32_t type, const void *base, int64_t ld,
                         int64_t j, int d, __mmask16 m)
{
    if (type == JQ_TYPE_F16)
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(
            m, (const uint16_t *)base + j * ld + d));
    return _mm512_maskz_loadu_ps(m, (const float *)base + j * ld + d);
}

/* The four horizontal sums of a0..a3, in lanes 0..3. */
JQ_INLINE __m128 hsum4(__m512 a0, __m512 a1, __m512 a2, __m512 a3)
{
    const __m256 b0 = _mm256_add_ps(_mm512_castps512_ps256(a0),
                                    _mm512_extractf32x8_ps(a0, 1));
    const __m256 b1 = _mm256_add_ps(_mm512_castps512_ps256(a1),
                                    _mm512_extractf32x8_ps(a1, 1));
    const __m256 b2 = _mm256_add_ps(_mm512_castps512_ps256(a2),
                                    _mm512_extractf32x8_ps(a2, 1));
    const __m256 b3 = _mm256_add_ps(_mm512_castps512_ps256(a3),
                                    _mm512_extractf32x8_ps(a3, 1));
    /* hadd(x, y) pairs neighbours within each 128-bit half: after two
     * rounds, half h of the result holds the sums of lanes 4h..4h+3 of
     * b0..b3, and adding the halves finishes all four at once */
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(b0, b1),
                                    _mm256_hadd_ps(b2, b3));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* The four dots q . K_j for keys j0..j3 (rows of K), unscaled, in lanes
 * 0..3: four independent FMA chains over head_dim, then one hadd tree.
 * Lane k depends on key jk alone. HD: head_dim when it is a compile-time
 * constant, else 0 (hd is used). */
JQ_INLINE __m128 dots4(uint32_t type, int HD, int hd_rt, const float *qi,
                       const void *K, int64_t ldk, int64_t j0, int64_t j1,
                       int64_t j2, int64_t j3)
{
    const int hd = HD ? HD : hd_rt;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(),
           a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    _Pragma("GCC unroll 8")
    for (int d = 0; d < hd; d += 16) {
        const __mmask16 m = tail_mask(hd - d);
        const __m512 qv = _mm512_maskz_loadu_ps(m, qi + d);
        a0 = _mm512_fmadd_ps(qv, load_kv(type, K, ldk, j0, d, m), a0);
        a1 = _mm512_fmadd_ps(qv, load_kv(type, K, ldk, j1, d, m), a1);
        a2 = _mm512_fmadd_ps(qv, load_kv(type, K, ldk, j2, d, m), a2);
        a3 = _mm512_fmadd_ps(qv, load_kv(type, K, ldk, j3, d, m), a3);
    }
    return hsum4(a0, a1, a2, a3);
}

/* scores[j] = (q . K_j) * scale for the n rows j of one K segment; the
 * first nh of them (0 <= nh <= n) by the 4-key tree, the rest one by one
 * (see the header for why the split point is given by the caller). */
JQ_INLINE void scores_seg(uint32_t type, int HD, int hd_rt, const float *qi,
                          const void *K, int64_t ldk, int64_t n, int64_t nh,
                          float scale, float *scores)
{
    const int hd = HD ? HD : hd_rt;
    const __m128 vscale = _mm_set1_ps(scale);
    int64_t j = 0;
    for (; j + 4 <= nh; j += 4)
        _mm_storeu_ps(scores + j,
                      _mm_mul_ps(dots4(type, HD, hd, qi, K, ldk, j, j + 1,
                                       j + 2, j + 3),
                                 vscale));
    if (j < nh) {
        /* 1..3 tree keys left at the segment's end: repeat the last one
         * in the spare lanes (no read past the segment) and store only
         * the real lanes */
        const int64_t l = nh - 1;
        const __m128 d4 = dots4(type, HD, hd, qi, K, ldk, j,
                                j + 1 < l ? j + 1 : l, j + 2 < l ? j + 2 : l,
                                l);
        _mm_mask_storeu_ps(scores + j, (__mmask8)((1u << (nh - j)) - 1u),
                           _mm_mul_ps(d4, vscale));
        j = nh;
    }
    for (; j < n; j++) {
        __m512 a = _mm512_setzero_ps();
        for (int d = 0; d < hd; d += 16) {
            const __mmask16 m = tail_mask(hd - d);
            a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, qi + d),
                                load_kv(type, K, ldk, j, d, m), a);
        }
        scores[j] = _mm512_reduce_add_ps(a) * scale;
    }
}

/* scores[j] = (q . K_j) * scale for the nv visible keys, of which the
 * first n0 (<= nv) are rows of K0 and the rest rows of K1. */
JQ_INLINE void scores_row(uint32_t type, int HD, int hd_rt, const float *qi,
                          const void *K0, int64_t n0, const void *K1,
                          int64_t ldk, int64_t nv, float scale, float *scores)
{
    /* keys below nv4 take the 4-key tree, wherever the segments split */
    const int64_t nv4 = nv & ~(int64_t)3;
    if (n0 > 0)
        scores_seg(type, HD, hd_rt, qi, K0, ldk, n0, n0 < nv4 ? n0 : nv4,
                   scale, scores);
    scores_seg(type, HD, hd_rt, qi, K1, ldk, nv - n0,
               nv4 > n0 ? nv4 - n0 : 0, scale, scores + n0);
}

/* In place p_j = exp(s_j - max); returns sum p_j (in double). */
static double exp_scores(float *s, int64_t nv)
{
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < nv; j += 16) {
        const __mmask16 m = tail_mask(nv - j);
        vmax = _mm512_mask_max_ps(vmax, m, vmax, _mm512_maskz_loadu_ps(m, s + j));
    }
    const __m512 max = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
    __m512d sum = _mm512_setzero_pd();
    for (int64_t j = 0; j < nv; j += 16) {
        const __mmask16 m = tail_mask(nv - j);
        const __m512 e =
            jq_exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + j), max));
        _mm512_mask_storeu_ps(s + j, m, e);
        sum = jq_add_ps_as_pd(sum, _mm512_maskz_mov_ps(m, e));
    }
    return _mm512_reduce_add_pd(sum);
}

/* score[j] += p[j] * inv for j < n: a multiply then an add (not an FMA),
 * the two roundings of the reference. */
static void add_scores(float *score, const float *p, int64_t n, float inv)
{
    const __m512 vinv = _mm512_set1_ps(inv);
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 m = tail_mask(n - j);
        const __m512 pr = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p + j), vinv);
        _mm512_mask_storeu_ps(
            score + j, m,
            _mm512_add_ps(_mm512_maskz_loadu_ps(m, score + j), pr));
    }
}

/* Adds p[j] * V_j (the NS strips at d0, masks m) for the n rows of one V
 * segment into the even (a) and odd (b) accumulators. odd: the segment's
 * first key has an odd global index, so it goes to b and the pairs after
 * it keep the global parity. Always inlined, so a and b stay registers. */
JQ_INLINE void values_seg(uint32_t type, int NS, int d0,
                          const __mmask16 *m, __m512 *a, __m512 *b,
                          const float *p, const void *V, int64_t ldv,
                          int64_t n, bool odd)
{
    int64_t j = 0;
    if (odd && n > 0) {
        const __m512 p0 = _mm512_set1_ps(p[0]);
        _Pragma("GCC unroll 4")
        for (int s = 0; s < NS; s++)
            b[s] = _mm512_fmadd_ps(p0, load_kv(type, V, ldv, 0, d0 + 16 * s, m[s]),
                                   b[s]);
        j = 1;
    }
    for (; j + 2 <= n; j += 2) {
        const __m512 p0 = _mm512_set1_ps(p[j]), p1 = _mm512_set1_ps(p[j + 1]);
        _Pragma("GCC unroll 4")
        for (int s = 0; s < NS; s++) {
            a[s] = _mm512_fmadd_ps(p0, load_kv(type, V, ldv, j, d0 + 16 * s, m[s]),
                                   a[s]);
            b[s] = _mm512_fmadd_ps(
                p1, load_kv(type, V, ldv, j + 1, d0 + 16 * s, m[s]), b[s]);
        }
    }
    if (j < n) {
        const __m512 p0 = _mm512_set1_ps(p[j]);
        _Pragma("GCC unroll 4")
        for (int s = 0; s < NS; s++)
            a[s] = _mm512_fmadd_ps(p0, load_kv(type, V, ldv, j, d0 + 16 * s, m[s]),
                                   a[s]);
    }
}

/* oi[d0 + 16s + l] = inv * sum_j p[j] V_j[d0 + 16s + l] for the NS (1..4,
 * constant) strips starting at d0, over the nv keys of which the first n0
 * are rows of V0 and the rest rows of V1. Keys outer: each V row
 * contributes its NS strips in one visit; even and odd keys go to separate
 * accumulators. */
JQ_INLINE void values_block(uint32_t type, int NS, int hd, int d0,
                            const float *p, const void *V0, int64_t n0,
                            const void *V1, int64_t ldv, int64_t nv,
                            float inv, float *oi)
{
    __mmask16 m[4];
    __m512 a[4], b[4];
    _Pragma("GCC unroll 4")
    for (int s = 0; s < NS; s++) {
        m[s] = tail_mask(hd - d0 - 16 * s);
        a[s] = b[s] = _mm512_setzero_ps();
    }
    if (n0 > 0)
        values_seg(type, NS, d0, m, a, b, p, V0, ldv, n0, false);
    values_seg(type, NS, d0, m, a, b, p + n0, V1, ldv, nv - n0, n0 & 1);
    const __m512 vinv = _mm512_set1_ps(inv);
    _Pragma("GCC unroll 4")
    for (int s = 0; s < NS; s++)
        _mm512_mask_storeu_ps(oi + d0 + 16 * s, m[s],
                              _mm512_mul_ps(_mm512_add_ps(a[s], b[s]), vinv));
}

JQ_INLINE void weighted_values(uint32_t type, int HD, int hd_rt,
                               const float *p, const void *V0, int64_t n0,
                               const void *V1, int64_t ldv, int64_t nv,
                               float inv, float *oi)
{
    const int hd = HD ? HD : hd_rt;
    _Pragma("GCC unroll 2")
    for (int d0 = 0; d0 < hd; d0 += 64) {
        const int strips = (hd - d0 + 15) / 16;
        if (strips >= 4)
            values_block(type, 4, hd, d0, p, V0, n0, V1, ldv, nv, inv, oi);
        else if (strips == 3)
            values_block(type, 3, hd, d0, p, V0, n0, V1, ldv, nv, inv, oi);
        else if (strips == 2)
            values_block(type, 2, hd, d0, p, V0, n0, V1, ldv, nv, inv, oi);
        else
            values_block(type, 1, hd, d0, p, V0, n0, V1, ldv, nv, inv, oi);
    }
}

/* The whole kernel for one K/V type and one head_dim specialisation. */
JQ_INLINE void attention_tmpl(uint32_t type, int HD, const jq_attn_args *a)
{
    const int hd = HD ? HD : a->head_dim;
    const int64_t n_kv0 = jq_attn_first_segment(a);
    for (int64_t i = 0; i < a->n_q; i++) {
        float *oi = a->out + i * a->ldo;
        const int64_t nv = kv_visible(a->n_kv, a->causal_base, i);
        if (nv == 0) {
            for (int d = 0; d < hd; d += 16)
                _mm512_mask_storeu_ps(oi + d, tail_mask(hd - d),
                                      _mm512_setzero_ps());
            continue;
        }
        /* the first segment's keys this row sees */
        const int64_t n0 = n_kv0 < nv ? n_kv0 : nv;
        scores_row(type, HD, hd, a->q + i * a->ldq, a->k0, n0, a->k, a->ldk,
                   nv, a->scale, a->scratch);
        const double sum = exp_scores(a->scratch, nv);
        const float inv = (float)(1.0 / sum);
        if (a->score && i >= a->score_row0 && i < a->score_row1)
            add_scores(a->score, a->scratch, a->n_score < nv ? a->n_score : nv,
                       inv);
        weighted_values(type, HD, hd, a->scratch, a->v0, n0, a->v, a->ldv,
                        nv, inv, oi);
    }
}

static void attention_f32_64(const jq_attn_args *a) { attention_tmpl(JQ_TYPE_F32, 64, a); }
static void attention_f32_128(const jq_attn_args *a) { attention_tmpl(JQ_TYPE_F32, 128, a); }
static void attention_f32_any(const jq_attn_args *a) { attention_tmpl(JQ_TYPE_F32, 0, a); }
static void attention_f16_64(const jq_attn_args *a) { attention_tmpl(JQ_TYPE_F16, 64, a); }
static void attention_f16_128(const jq_attn_args *a) { attention_tmpl(JQ_TYPE_F16, 128, a); }
static void attention_f16_any(const jq_attn_args *a) { attention_tmpl(JQ_TYPE_F16, 0, a); }

void jq_avx512_attention_ex(const jq_attn_args *a)
{
    const bool f16 = a->kv_type == JQ_TYPE_F16;
    if (!f16 && a->kv_type != JQ_TYPE_F32)
        abort(); /* caller bug: the KV store only holds F32 or F16 */
    switch (a->head_dim) {
    case 64:
        (f16 ? attention_f16_64 : attention_f32_64)(a);
        return;
    case 128:
        (f16 ? attention_f16_128 : attention_f32_128)(a);
        return;
    default:
        (f16 ? attention_f16_any : attention_f32_any)(a);
        return;
    }
}
