/* attention_train.c — the per-row softmax pieces of blockwise causal
 * attention for training (scalar references and dispatchers).
 *
 * The pretrainer (engine/pretrain_attn.c) computes attention a block of
 * query rows at a time with GEMMs: scores S = Q K^T, probabilities P, the
 * output P V; backward recomputes P from the saved log-sum-exp of each row
 * instead of keeping an L x L matrix, as flash attention does. Everything
 * between the GEMMs is one row at a time and is here:
 *   forward:  p = softmax(scale * s), returning lse = log sum exp(scale * s)
 *   backward: p = exp(scale * s - lse), ds = p * (dp - d)
 * with d = dout . out of the row (= sum_j p_j dp_j, the softmax backward's
 * inner product, computed once from the row's output instead of over all
 * keys). Sums are in double as in jq_ref_softmax.
 */
#include <math.h>
#include <stdint.h>

#include "isa_internal.h"
#include "kernels.h"

float jq_ref_softmax_lse(float *s, int64_t n, float scale)
{
    if (n <= 0)
        return -INFINITY;
    float max = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        s[j] *= scale;
        max = s[j] > max ? s[j] : max;
    }
    double sum = 0.0;
    for (int64_t j = 0; j < n; j++) {
        s[j] = expf(s[j] - max);
        sum += (double)s[j];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t j = 0; j < n; j++)
        s[j] *= inv;
    return max + (float)log(sum);
}

void jq_ref_softmax_lse_backward(float *s, float *dp, int64_t n, float scale,
                                 float lse, float d)
{
    for (int64_t j = 0; j < n; j++) {
        const float p = expf(s[j] * scale - lse);
        s[j] = p;
        dp[j] = p * (dp[j] - d);
    }
}

float jq_softmax_lse(float *s, int64_t n, float scale)
{
    if (JQ_USE_AVX512())
        return jq_avx512_softmax_lse(s, n, scale);
    return jq_ref_softmax_lse(s, n, scale);
}

void jq_softmax_lse_backward(float *s, float *dp, int64_t n, float scale,
                             float lse, float d)
{
    if (JQ_USE_AVX512())
        jq_avx512_softmax_lse_backward(s, dp, n, scale, lse, d);
    else
        jq_ref_softmax_lse_backward(s, dp, n, scale, lse, d);
}
