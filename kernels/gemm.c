/* gemm.c — batched products (prompt processing) with F32 activations.
 *
 * Y[:, n0:n1] = X . W[n0:n1, :]^T. On the AVX-512 path, F16 and BF16
 * weights go to gemm_half_avx512.c (their own packing + FMA micro-kernel).
 * Everything else goes through OpenBLAS sgemm: F32 weights in place, other
 * types dequantized JQ_GEMM_PANEL rows at a time into the caller's
 * scratch, so the F32 copy stays small (64 x K floats: in L2 for K up to a
 * few thousand) and each panel is reused across all M rows of X. How
 * OpenBLAS is loaded and kept single-threaded per call: blas.c.
 */
#include "kernels.h"
#include "isa_internal.h"

#include <string.h>

#include "blas.h"

void jq_ref_gemm(uint32_t type, const void *W, int64_t K, const float *X,
                 int64_t M, float *Y, int64_t ldy, int64_t n0, int64_t n1)
{
    for (int64_t i = 0; i < M; i++)
        jq_ref_matvec(type, W, K, X + i * K, Y + i * ldy, n0, n1);
}

/* Fewer rows than this go through the GEMV, row by row: packing weights
 * from memory costs about three passes of the GEMV over them, so the GEMM
 * wins from 4 rows (2048 x 8192 BF16, PERFORMANCE.md). */
#define HALF_GEMM_MIN_ROWS 4

void jq_gemm_blas(uint32_t type, const void *W, int64_t K, const float *X,
                  int64_t M, float *Y, int64_t ldy, int64_t n0, int64_t n1,
                  float *scratch)
{
    if (M <= 0 || n1 <= n0)
        return;
    if (K <= 0) {
        /* An empty sum; BLAS would reject lda = 0 rather than write zeros. */
        for (int64_t i = 0; i < M; i++)
            memset(Y + i * ldy + n0, 0, (size_t)(n1 - n0) * sizeof(float));
        return;
    }
    /* OpenBLAS's ints are 32-bit in Debian's build; dimensions of one model's
     * tensors fit easily, and the engine never batches past 2^31 rows. */
    if (type == JQ_TYPE_F32) {
        jq_blas_sgemm_nt((int)M, (int)(n1 - n0), (int)K, X, (int)K,
                         (const float *)W + n0 * K, (int)K, Y + n0, (int)ldy);
        return;
    }

    const unsigned char *w = W;
    size_t stride = jq_row_bytes(type, K);
    for (int64_t p = n0; p < n1; p += JQ_GEMM_PANEL) {
        int64_t rows = n1 - p < JQ_GEMM_PANEL ? n1 - p : JQ_GEMM_PANEL;
        for (int64_t r = 0; r < rows; r++)
            jq_dequantize_row(type, w + (size_t)(p + r) * stride,
                              scratch + r * K, K);
        jq_blas_sgemm_nt((int)M, (int)rows, (int)K, X, (int)K, scratch,
                         (int)K, Y + p, (int)ldy);
    }
}

void jq_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
              float alpha, const float *A, int64_t lda, const float *B,
              int64_t ldb, float beta, float *C, int64_t ldc)
{
    if (m <= 0 || n <= 0)
        return;
    if (k <= 0) {
        /* an empty sum: C = beta C (BLAS may reject the zero strides) */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++)
                C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    jq_blas_sgemm(trans_a, trans_b, (int)m, (int)n, (int)k, alpha, A,
                  (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

void jq_gemm(uint32_t type, const void *W, int64_t K, const float *X,
             int64_t M, float *Y, int64_t ldy, int64_t n0, int64_t n1,
             float *scratch)
{
    if ((type == JQ_TYPE_F16 || type == JQ_TYPE_BF16) && JQ_USE_AVX512()) {
        if (M >= HALF_GEMM_MIN_ROWS)
            jq_avx512_gemm_half(type, W, K, X, M, Y, ldy, n0, n1, scratch);
        else
            for (int64_t i = 0; i < M; i++)
                jq_avx512_matvec(type, W, K, X + i * K, Y + i * ldy, n0, n1);
        return;
    }
    jq_gemm_blas(type, W, K, X, M, Y, ldy, n0, n1, scratch);
}
