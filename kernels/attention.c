/* attention.c — scalar reference attention and its dispatcher.
 *
 * Two passes per query row, the textbook way: scores (q . k_j * scale) for
 * the visible keys into scratch, then a max-subtracted softmax and the
 * probability-weighted sum of the value rows. The weighted sum uses the
 * unnormalised exp(s_j - max) and divides once at the end (as a flash
 * attention kernel does), which saves n_kv multiplies and is what the later
 * online-softmax version will compute too.
 */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "isa_internal.h"
#include "kernels.h"

/* Keys row i may look at: min(n_kv, causal_base + i + 1), never negative.
 * A row that sees no key (causal_base < -i) has no softmax; its output is
 * defined as zeros rather than NaN. */
static int64_t kv_visible(int64_t n_kv, int64_t causal_base, int64_t i)
{
    const int64_t v = causal_base + i + 1;
    return v < 0 ? 0 : v > n_kv ? n_kv : v;
}

/* All scores of a row are computed before its output is written, so out
 * row i may alias q row i. */
void jq_ref_attention(const float *q, int64_t ldq, int64_t n_q,
                      const float *K, int64_t ldk, const float *V,
                      int64_t ldv, int64_t n_kv, int head_dim, float scale,
                      int64_t causal_base, float *out, int64_t ldo,
                      float *scratch)
{
    for (int64_t i = 0; i < n_q; i++) {
        const float *qi = q + i * ldq;
        float *oi = out + i * ldo;
        const int64_t nv = kv_visible(n_kv, causal_base, i);
        if (nv == 0) {
            memset(oi, 0, (size_t)head_dim * sizeof *oi);
            continue;
        }
        /* scores: float products summed in double, like ggml's scalar
         * ggml_vec_dot_f32, so the reference is order-independent to well
         * below float precision */
        float max = -INFINITY;
        for (int64_t j = 0; j < nv; j++) {
            const float *kj = K + j * ldk;
            double dot = 0.0;
            for (int d = 0; d < head_dim; d++)
                dot += (double)(qi[d] * kj[d]);
            scratch[j] = (float)dot * scale;
            max = scratch[j] > max ? scratch[j] : max;
        }
        /* softmax numerators; the denominator in double as jq_ref_softmax */
        double sum = 0.0;
        for (int64_t j = 0; j < nv; j++) {
            scratch[j] = expf(scratch[j] - max);
            sum += (double)scratch[j];
        }
        /* weighted sum of value rows, then one normalisation */
        for (int d = 0; d < head_dim; d++)
            oi[d] = 0.0f;
        for (int64_t j = 0; j < nv; j++) {
            const float *vj = V + j * ldv;
            const float p = scratch[j];
            for (int d = 0; d < head_dim; d++)
                oi[d] += p * vj[d];
        }
        const float inv = (float)(1.0 / sum);
        for (int d = 0; d < head_dim; d++)
            oi[d] *= inv;
    }
}

void jq_attention(const float *q, int64_t ldq, int64_t n_q, const float *K,
                  int64_t ldk, const float *V, int64_t ldv, int64_t n_kv,
                  int head_dim, float scale, int64_t causal_base, float *out,
                  int64_t ldo, float *scratch)
{
    if (JQ_USE_AVX512())
        jq_avx512_attention(q, ldq, n_q, K, ldk, V, ldv, n_kv, head_dim,
                            scale, causal_base, out, ldo, scratch);
    else
        jq_ref_attention(q, ldq, n_q, K, ldk, V, ldv, n_kv, head_dim, scale,
                         causal_base, out, ldo, scratch);
}
