/* blas.h — OpenBLAS, loaded at run time (internal to kernels/). */
#ifndef JQ_BLAS_H
#define JQ_BLAS_H

#include <stdbool.h>

/* Row-major C = A . B^T (no scaling, beta 0): cblas_sgemm(RowMajor,
 * NoTrans, Trans, m, n, k, 1, a, lda, b, ldb, 0, c, ldc). */
void jq_blas_sgemm_nt(int m, int n, int k, const float *a, int lda,
                      const float *b, int ldb, float *c, int ldc);
/* The general row-major product C = alpha op(A) op(B) + beta C, op the
 * transpose when trans_a / trans_b (cblas_sgemm with CblasRowMajor). */
void jq_blas_sgemm(bool trans_a, bool trans_b, int m, int n, int k,
                   float alpha, const float *a, int lda, const float *b,
                   int ldb, float beta, float *c, int ldc);
/* Sets OPENBLAS_CORETYPE=SkylakeX for a CPU with AVX-512 unless the user
 * set it. Called once from jq_kernels_init (setenv is not thread-safe, so
 * it runs at start-up, before the library is loaded and before any worker
 * thread exists). */
void jq_blas_choose_core(bool avx512);
/* The OpenBLAS core the library runs ("SkylakeX", "Haswell", ...), or
 * NULL before the first call. */
const char *jq_blas_core(void);

#endif
