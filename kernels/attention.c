/* attention.c — scalar reference attention (F32 or F16 K/V, optional
 * probability scoring) and its dispatchers.
 *
 * Two passes per query row, the textbook way: scores (q . k_j * scale) for
 * the visible keys into scratch, then a max-subtracted softmax and the
 * probability-weighted sum of the value rows. The weighted sum uses the
 * unnormalised exp(s_j - max) and divides once at the end (as a flash
 * attention kernel does), which saves n_kv multiplies and is what the later
 * online-softmax version will compute too.
 *
 * jq_attention is jq_attention_ex with F32 K/V and no scoring, so there is
 * one implementation per path.
 *
 * Two-segment K/V (a shared prefix k0/v0 then the session's own k/v): the
 * only change is where key j's row lives (kv_row); keys are visited in the
 * same global order with the same arithmetic, so a split cache gives
 * bit-identical results to the same keys in one array.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "isa_internal.h"
#include "kernels.h"
#include "ops_internal.h"

/* Keys row i may look at: min(n_kv, causal_base + i + 1), never negative.
 * A row that sees no key (causal_base < -i) has no softmax; its output is
 * defined as zeros rather than NaN. */
static int64_t kv_visible(int64_t n_kv, int64_t causal_base, int64_t i)
{
    const int64_t v = causal_base + i + 1;
    return v < 0 ? 0 : v > n_kv ? n_kv : v;
}

/* Row j (a global key index) of the K or V cache: rows [0, n0) are in the
 * shared first segment seg0, the rest in seg1 starting at its row 0. n0 is
 * 0 for a single segment, so seg0 is then never read. */
static inline const void *kv_row(const void *seg0, const void *seg1,
                                 int64_t n0, uint32_t type, int64_t ld,
                                 int64_t j)
{
    const size_t es = type == JQ_TYPE_F16 ? sizeof(uint16_t) : sizeof(float);
    return j < n0 ? (const char *)seg0 + (size_t)(j * ld) * es
                  : (const char *)seg1 + (size_t)((j - n0) * ld) * es;
}

/* Element d of a K/V row as F32. The type test is loop-invariant, and the
 * F16 half goes through the exact scalar conversion the AVX-512 path's
 * VCVTPH2PS agrees with bit for bit, so both paths see the same keys. */
static inline float kv_at(const void *row, uint32_t type, int d)
{
    if (type == JQ_TYPE_F16) {
        uint16_t h;
        memcpy(&h, (const uint16_t *)row + d, sizeof h);
        return jq_f16_to_f32(h);
    }
    return ((const float *)row)[d];
}

/* All scores of a row are computed before its output is written, so out
 * row i may alias q row i. */
void jq_ref_attention_ex(const jq_attn_args *a)
{
    if (a->kv_type != JQ_TYPE_F32 && a->kv_type != JQ_TYPE_F16)
        abort(); /* caller bug: the KV store only holds F32 or F16 */
    const int64_t n0 = jq_attn_first_segment(a);
    float *scratch = a->scratch;
    const int hd = a->head_dim;
    for (int64_t i = 0; i < a->n_q; i++) {
        const float *qi = a->q + i * a->ldq;
        float *oi = a->out + i * a->ldo;
        const int64_t nv = kv_visible(a->n_kv, a->causal_base, i);
        if (nv == 0) {
            memset(oi, 0, (size_t)hd * sizeof *oi);
            continue;
        }
        /* scores: float products summed in double, like ggml's scalar
         * ggml_vec_dot_f32, so the reference is order-independent to well
         * below float precision */
        float max = -INFINITY;
        for (int64_t j = 0; j < nv; j++) {
            const void *kj = kv_row(a->k0, a->k, n0, a->kv_type, a->ldk, j);
            double dot = 0.0;
            for (int d = 0; d < hd; d++)
                dot += (double)(qi[d] * kv_at(kj, a->kv_type, d));
            scratch[j] = (float)dot * a->scale;
            max = scratch[j] > max ? scratch[j] : max;
        }
        /* softmax numerators; the denominator in double as jq_ref_softmax */
        double sum = 0.0;
        for (int64_t j = 0; j < nv; j++) {
            scratch[j] = expf(scratch[j] - max);
            sum += (double)scratch[j];
        }
        const float inv = (float)(1.0 / sum);
        /* observer rows: the probability p_j = e_j * inv, rounded exactly
         * as jq_ref_softmax rounds it, added key by key (so each score[j]
         * is a sum over rows in ascending row order) */
        if (a->score && i >= a->score_row0 && i < a->score_row1) {
            const int64_t ns = a->n_score < nv ? a->n_score : nv;
            for (int64_t j = 0; j < ns; j++)
                a->score[j] += scratch[j] * inv;
        }
        /* weighted sum of value rows, then one normalisation */
        for (int d = 0; d < hd; d++)
            oi[d] = 0.0f;
        for (int64_t j = 0; j < nv; j++) {
            const float p = scratch[j];
            const void *vj = kv_row(a->v0, a->v, n0, a->kv_type, a->ldv, j);
            for (int d = 0; d < hd; d++)
                oi[d] += p * kv_at(vj, a->kv_type, d);
        }
        for (int d = 0; d < hd; d++)
            oi[d] *= inv;
    }
}

void jq_attention_ex(const jq_attn_args *a)
{
    if (JQ_USE_AVX512())
        jq_avx512_attention_ex(a);
    else
        jq_ref_attention_ex(a);
}

/* The F32, no-scoring special case, shared by the three wrappers below. */
static jq_attn_args f32_args(const float *q, int64_t ldq, int64_t n_q,
                             const float *K, int64_t ldk, const float *V,
                             int64_t ldv, int64_t n_kv, int head_dim,
                             float scale, int64_t causal_base, float *out,
                             int64_t ldo, float *scratch)
{
    return (jq_attn_args){.q = q, .ldq = ldq, .n_q = n_q,
                          .kv_type = JQ_TYPE_F32, .k = K, .v = V, .ldk = ldk,
                          .ldv = ldv, .n_kv = n_kv, .head_dim = head_dim,
                          .scale = scale, .causal_base = causal_base,
                          .out = out, .ldo = ldo, .scratch = scratch};
}

void jq_ref_attention(const float *q, int64_t ldq, int64_t n_q,
                      const float *K, int64_t ldk, const float *V,
                      int64_t ldv, int64_t n_kv, int head_dim, float scale,
                      int64_t causal_base, float *out, int64_t ldo,
                      float *scratch)
{
    const jq_attn_args a = f32_args(q, ldq, n_q, K, ldk, V, ldv, n_kv,
                                    head_dim, scale, causal_base, out, ldo,
                                    scratch);
    jq_ref_attention_ex(&a);
}

/* Defined here (portable flags) rather than in attention_avx512.c: it only
 * packs arguments, and keeping the three wrappers together keeps them in
 * step. Only called when jq_cpu_has_avx512(). */
void jq_avx512_attention(const float *q, int64_t ldq, int64_t n_q,
                         const float *K, int64_t ldk, const float *V,
                         int64_t ldv, int64_t n_kv, int head_dim, float scale,
                         int64_t causal_base, float *out, int64_t ldo,
                         float *scratch)
{
    const jq_attn_args a = f32_args(q, ldq, n_q, K, ldk, V, ldv, n_kv,
                                    head_dim, scale, causal_base, out, ldo,
                                    scratch);
    jq_avx512_attention_ex(&a);
}

void jq_attention(const float *q, int64_t ldq, int64_t n_q, const float *K,
                  int64_t ldk, const float *V, int64_t ldv, int64_t n_kv,
                  int head_dim, float scale, int64_t causal_base, float *out,
                  int64_t ldo, float *scratch)
{
    const jq_attn_args a = f32_args(q, ldq, n_q, K, ldk, V, ldv, n_kv,
                                    head_dim, scale, causal_base, out, ldo,
                                    scratch);
    jq_attention_ex(&a);
}
