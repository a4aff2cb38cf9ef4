/* gemm.c — batched products (prompt processing) through OpenBLAS sgemm.
 *
 * Y[:, n0:n1] = X . W[n0:n1, :]^T. F32 weights are passed to sgemm in place;
 * other types are dequantized JQ_GEMM_PANEL rows at a time into the caller's
 * scratch, so the F32 copy stays small (64 x K floats: in L2 for K up to a
 * few thousand) and each panel is reused across all M rows of X.
 *
 * Threading: judgeq runs its own worker threads and each calls jq_gemm on a
 * disjoint column range, possibly at the same moment. OpenBLAS's pthread
 * build would otherwise start its own pool of nproc threads inside every
 * call, oversubscribing the cores (our workers x its workers) and
 * serialising our callers on its shared pool. So OpenBLAS is told once,
 * before the first sgemm, to run each call on the calling thread only;
 * pthread_once makes that safe when the first calls race. (The setting is
 * process-wide, which is what we want: judgeq is the only BLAS user.)
 */
#include "kernels.h"

#include <cblas.h>
#include <pthread.h>
#include <string.h>

/* Declared by OpenBLAS's cblas.h; repeated so a cblas.h without the OpenBLAS
 * extensions still compiles (a compatible redeclaration is harmless). */
void openblas_set_num_threads(int num_threads);

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

static void blas_single_thread(void)
{
    openblas_set_num_threads(1);
}

void jq_gemm(uint32_t type, const void *W, int64_t K, const float *X,
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
    pthread_once(&blas_once, blas_single_thread);

    /* blasint is 32-bit in Debian's OpenBLAS; dimensions of one model's
     * tensors fit easily, and the engine never batches past 2^31 rows. */
    if (type == JQ_TYPE_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)M,
                    (blasint)(n1 - n0), (blasint)K, 1.0f, X, (blasint)K,
                    (const float *)W + n0 * K, (blasint)K, 0.0f, Y + n0,
                    (blasint)ldy);
        return;
    }

    const unsigned char *w = W;
    size_t stride = jq_row_bytes(type, K);
    for (int64_t p = n0; p < n1; p += JQ_GEMM_PANEL) {
        int64_t rows = n1 - p < JQ_GEMM_PANEL ? n1 - p : JQ_GEMM_PANEL;
        for (int64_t r = 0; r < rows; r++)
            jq_dequantize_row(type, w + (size_t)(p + r) * stride,
                              scratch + r * K, K);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)M,
                    (blasint)rows, (blasint)K, 1.0f, X, (blasint)K, scratch,
                    (blasint)K, 0.0f, Y + p, (blasint)ldy);
    }
}
