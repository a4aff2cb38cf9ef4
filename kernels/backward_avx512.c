/* backward_avx512.c — placeholder: the AVX-512 twins forward to the
 * references until the vector paths land (next commit). */
#include "kernels.h"

void jq_avx512_rmsnorm_backward(float *dx, const float *x, const float *w,
                                const float *dy, int64_t n, float eps)
{
    jq_ref_rmsnorm_backward(dx, x, w, dy, n, eps);
}

void jq_avx512_rope_backward(float *dx, int n_heads, int head_dim,
                             int rope_dim, int32_t pos, float freq_base,
                             const float *freq_factors, bool neox)
{
    jq_ref_rope_backward(dx, n_heads, head_dim, rope_dim, pos, freq_base,
                         freq_factors, neox);
}

void jq_avx512_softmax_backward(float *ds, const float *p, const float *dp,
                                int64_t n)
{
    jq_ref_softmax_backward(ds, p, dp, n);
}

void jq_avx512_silu_mul_backward(float *dgate, float *dup, const float *gate,
                                 const float *up, const float *dout,
                                 int64_t n)
{
    jq_ref_silu_mul_backward(dgate, dup, gate, up, dout, n);
}

void jq_avx512_matmul_backward_x(uint32_t type, const void *W, int64_t K,
                                 const float *dY, int64_t ldy, int64_t M,
                                 float *dX, int64_t ldx, int64_t r0,
                                 int64_t r1, float *scratch)
{
    jq_ref_matmul_backward_x(type, W, K, dY, ldy, M, dX, ldx, r0, r1,
                             scratch);
}

void jq_avx512_attention_backward(const jq_attn_bwd_args *a)
{
    jq_ref_attention_backward(a);
}
