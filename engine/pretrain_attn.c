/* pretrain_attn.c — causal self-attention of one sequence for training,
 * forward and backward, a block of query rows at a time.
 *
 * Per head and block of B = JQ_PT_ATTN_BLOCK query rows [i0, i0 + nb) the
 * block sees keys [0, i0 + nb), so its scores are one GEMM S = Q_b K^T of
 * nb x nk (nk = i0 + nb); each row is turned into probabilities over its
 * own visible keys (jq_softmax_lse, which also returns the row's
 * log-sum-exp) with the keys it must not see set to 0, and O_b = P V is a
 * second GEMM. Memory: B x L floats of scores, never L x L.
 *
 * Backward, per block, recomputes S and gets P = exp(scale S - lse) from
 * the saved log-sum-exp (flash attention's trick), then
 *   dP = dO_b V^T,  dS = P (dP - d) with d_i = dO_i . O_i,
 *   dQ_b = scale dS K,  dK += scale dS^T Q_b,  dV += P^T dO_b,
 * five GEMMs. Query heads sharing a KV head (GQA) add into the same dK and
 * dV columns. The block's masked part (above the diagonal in the last nb
 * keys) is computed by the GEMMs and zeroed; it is at most half of one
 * B x B square per block.
 */
#include "pretrain_internal.h"

#include <math.h>
#include <string.h>

#include "kernels.h"

void jq_pt_attn_forward(const jq_pt_attn_shape *a, int64_t L,
                        const float *q, const float *k, const float *v,
                        float *out, float *lse, float *S)
{
    const int hd = a->head_dim, nh = a->n_head;
    const int64_t QD = (int64_t)nh * hd, KD = (int64_t)a->n_head_kv * hd;
    const int group = nh / a->n_head_kv;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int h = 0; h < nh; h++) {
        const int g = h / group;
        for (int64_t i0 = 0; i0 < L; i0 += JQ_PT_ATTN_BLOCK) {
            const int64_t nb = L - i0 < JQ_PT_ATTN_BLOCK ? L - i0
                                                         : JQ_PT_ATTN_BLOCK;
            const int64_t nk = i0 + nb;
            jq_sgemm(false, true, nb, nk, hd, 1.0f, q + i0 * QD + h * hd, QD,
                     k + g * hd, KD, 0.0f, S, nk);
            for (int64_t r = 0; r < nb; r++) {
                float *s = S + r * nk;
                const int64_t vis = i0 + r + 1;
                lse[(i0 + r) * nh + h] = jq_softmax_lse(s, vis, scale);
                memset(s + vis, 0, (size_t)(nk - vis) * sizeof *s);
            }
            jq_sgemm(false, false, nb, hd, nk, 1.0f, S, nk, v + g * hd, KD,
                     0.0f, out + i0 * QD + h * hd, QD);
        }
    }
}

void jq_pt_attn_backward(const jq_pt_attn_shape *a, int64_t L,
                         const float *q, const float *k, const float *v,
                         const float *out, const float *lse,
                         const float *dout, float *dq, float *dk, float *dv,
                         float *S, float *dP, float *D)
{
    const int hd = a->head_dim, nh = a->n_head;
    const int64_t QD = (int64_t)nh * hd, KD = (int64_t)a->n_head_kv * hd;
    const int group = nh / a->n_head_kv;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int64_t t = 0; t < L; t++) {
        memset(dk + t * KD, 0, (size_t)KD * sizeof *dk);
        memset(dv + t * KD, 0, (size_t)KD * sizeof *dv);
    }
    for (int h = 0; h < nh; h++) {
        const int g = h / group;
        /* d_i = dO_i . O_i = sum_j p_ij dp_ij, the softmax backward's
         * inner product, once per row instead of over every key */
        for (int64_t t = 0; t < L; t++)
            D[t] = jq_dot_f32(dout + t * QD + h * hd, out + t * QD + h * hd,
                              hd);
        for (int64_t i0 = 0; i0 < L; i0 += JQ_PT_ATTN_BLOCK) {
            const int64_t nb = L - i0 < JQ_PT_ATTN_BLOCK ? L - i0
                                                         : JQ_PT_ATTN_BLOCK;
            const int64_t nk = i0 + nb;
            const float *qb = q + i0 * QD + h * hd;
            const float *dob = dout + i0 * QD + h * hd;
            jq_sgemm(false, true, nb, nk, hd, 1.0f, qb, QD, k + g * hd, KD,
                     0.0f, S, nk);
            jq_sgemm(false, true, nb, nk, hd, 1.0f, dob, QD, v + g * hd, KD,
                     0.0f, dP, nk);
            for (int64_t r = 0; r < nb; r++) {
                const int64_t vis = i0 + r + 1;
                float *s = S + r * nk, *dp = dP + r * nk;
                jq_softmax_lse_backward(s, dp, vis, scale,
                                        lse[(i0 + r) * nh + h], D[i0 + r]);
                memset(s + vis, 0, (size_t)(nk - vis) * sizeof *s);
                memset(dp + vis, 0, (size_t)(nk - vis) * sizeof *dp);
            }
            /* S now holds P, dP holds dS */
            jq_sgemm(false, false, nb, hd, nk, scale, dP, nk, k + g * hd, KD,
                     0.0f, dq + i0 * QD + h * hd, QD);
            jq_sgemm(true, false, nk, hd, nb, scale, dP, nk, qb, QD, 1.0f,
                     dk + g * hd, KD);
            jq_sgemm(true, false, nk, hd, nb, 1.0f, S, nk, dob, QD, 1.0f,
                     dv + g * hd, KD);
        }
    }
}
