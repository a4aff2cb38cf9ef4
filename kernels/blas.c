/* blas.c — OpenBLAS loaded with dlopen, so judgeq can choose its kernels.
 *
 * Why not link it: Debian 12's OpenBLAS 0.3.21 (DYNAMIC_ARCH) picks its
 * kernels in a library constructor from CPUID, and it does not know AMD
 * Zen 4: it falls back to "Prescott" (SSE3). Measured here, prefill of a
 * 512-token prompt on a Llama-3.2-1B-shaped F32 model, 2 threads: 31 tok/s
 * with Prescott, 74 with OPENBLAS_CORETYPE=Haswell, 123-132 with SkylakeX.
 * The variable is read when the library loads, before main() of a program
 * linked against it, so judgeq loads the library itself after choosing:
 * SkylakeX when the CPU and the OS support AVX-512 F/BW/VL/DQ, unless the
 * user set OPENBLAS_CORETYPE (then theirs wins). The GEMM tests compare
 * every shape against a double-precision reference with the kernels chosen
 * this way, so a wrong kernel cannot pass unnoticed.
 *
 * Threading: judgeq runs its own worker threads and each calls sgemm on a
 * disjoint column range, possibly at the same moment. OpenBLAS's pthread
 * build would otherwise start its own pool of nproc threads inside every
 * call, oversubscribing the cores and serialising our callers on its pool,
 * so it is told once, at load, to run each call on the calling thread.
 */
#include "blas.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels.h"

#ifndef JQ_OPENBLAS_PATH
#define JQ_OPENBLAS_PATH "libopenblas.so.0"
#endif

/* cblas enums (values fixed by the CBLAS standard) */
enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };

typedef void (*sgemm_fn)(int order, int ta, int tb, int m, int n, int k,
                         float alpha, const float *a, int lda, const float *b,
                         int ldb, float beta, float *c, int ldc);
typedef void (*set_threads_fn)(int);
typedef char *(*get_core_fn)(void);

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static sgemm_fn sgemm;
static const char *core_name;

static void *open_blas(void)
{
    const char *paths[] = {JQ_OPENBLAS_PATH, "libopenblas.so.0",
                           "libopenblas.so"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        void *h = dlopen(paths[i], RTLD_NOW | RTLD_LOCAL);
        if (h)
            return h;
    }
    return NULL;
}

/* Whether we set OPENBLAS_CORETYPE ourselves (then it is removed again
 * once the library has read it, so child processes — a daemon started by
 * a test, a program under valgrind, which hides AVX-512 — choose for
 * themselves). */
static bool core_set_here;

void jq_blas_choose_core(bool avx512)
{
    if (avx512 && !getenv("OPENBLAS_CORETYPE")) {
        setenv("OPENBLAS_CORETYPE", "SkylakeX", 0);
        core_set_here = true;
    }
}

static void load_blas(void)
{
    jq_kernels_init(); /* chooses the core, if nobody did yet */
    void *h = open_blas();
    if (core_set_here)
        unsetenv("OPENBLAS_CORETYPE");
    if (!h) {
        /* judgeq cannot compute a prompt without it; make the cause plain */
        fprintf(stderr, "judgeq: cannot load OpenBLAS (%s): %s\n",
                JQ_OPENBLAS_PATH, dlerror());
        abort();
    }
    sgemm = (sgemm_fn)dlsym(h, "cblas_sgemm");
    set_threads_fn set_threads = (set_threads_fn)dlsym(h, "openblas_set_num_threads");
    get_core_fn get_core = (get_core_fn)dlsym(h, "openblas_get_corename");
    if (!sgemm) {
        fprintf(stderr, "judgeq: %s has no cblas_sgemm\n", JQ_OPENBLAS_PATH);
        abort();
    }
    if (set_threads)
        set_threads(1);
    core_name = get_core ? get_core() : "unknown";
    /* the handle stays open for the life of the process */
}

void jq_blas_sgemm_nt(int m, int n, int k, const float *a, int lda,
                      const float *b, int ldb, float *c, int ldc)
{
    pthread_once(&blas_once, load_blas);
    sgemm(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_TRANS, m, n, k, 1.0f, a, lda,
          b, ldb, 0.0f, c, ldc);
}

void jq_blas_sgemm(bool trans_a, bool trans_b, int m, int n, int k,
                   float alpha, const float *a, int lda, const float *b,
                   int ldb, float beta, float *c, int ldc)
{
    pthread_once(&blas_once, load_blas);
    sgemm(CBLAS_ROW_MAJOR, trans_a ? CBLAS_TRANS : CBLAS_NO_TRANS,
          trans_b ? CBLAS_TRANS : CBLAS_NO_TRANS, m, n, k, alpha, a, lda, b,
          ldb, beta, c, ldc);
}

const char *jq_blas_core(void)
{
    return core_name;
}
