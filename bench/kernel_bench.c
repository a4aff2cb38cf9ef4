/* kernel_bench.c — decode GEMV bandwidth and prefill GEMM throughput of the
 * kernels, per weight type (`make bench-kernels` builds and runs it).
 *
 *   build/bench/kernel_bench [--threads N] [--gib G] [--reps R] [--quick]
 *                            [--hot] [--gemm] [--type T] [--mnk M,N,K]
 *
 * GEMV: a 2048 x 8192 matrix (2048 rows of 8192 weights: the shape of
 * Llama-3.2-1B's ffn_down) per type and path, timed over enough copies
 * that the weights never come from cache (at least G GiB of copies,
 * default 1: this machine's L3 is 260 MiB), the rows split across the
 * threads as the engine splits them, threads meeting at a spin barrier
 * after every product as the engine's pool does. Reports GB/s of weights
 * streamed (1e9 bytes; the time per product is in the line too). Paths:
 *   ref       scalar reference (JUDGEQ_ISA=scalar's path)
 *   avx512    jq_avx512_matvec, F32 activation
 *   vnni      jq_avx512_matvec_q, int8 activation (quantized once per
 *             product, by thread 0, included in the time)
 *   bf16dp    jq_avx512_matvec_bf16_dp (activation rounded to BF16)
 * --quick skips the (slow) scalar references; --gemm runs only the GEMMs;
 * --type T only weight type T (f32, f16, bf16, q8_0, ...).
 * --hot: 128 rows and a single copy (1 MB for Q8_0, in L2): what the
 * kernels can compute when memory is not the limit.
 * GEMM: M = 512 prompt rows, K = 2048, N = 2048 (the q projection; --mnk
 * sets others, K a multiple of 256), the output columns split across
 * threads in panels of 64 as engine/forward.c does; GFLOP/s = 2 M N K /
 * time. Paths: sgemm (jq_gemm_blas: F32 weights directly, others
 * dequantized to F32 per 64-row panel, then OpenBLAS), half
 * (jq_avx512_gemm_half: F32/F16/BF16 weights packed as F32, FMA
 * micro-kernel; what jq_gemm uses for F16 and BF16) and vnni
 * (jq_avx512_gemm_q; activation quantization included).
 *
 * Compare GEMV GB/s with bench/stream_read.c's read bandwidth at the same
 * thread count. The machine is shared and virtualised: run it twice and
 * look at the best; the numbers are medians over --reps passes.
 *
 * One run (2 vCPUs, load average 6 from other jobs; stream_read 6.0-6.5
 * GB/s in the same minutes, 15.8 / 33.1 GB/s for 1 / 2 threads when the
 * host was quieter), one thread, GB/s from memory, ref / avx512 / vnni:
 *   f32 2.1 / 7.7   f16 0.4 / 5.2   bf16 0.3 / 5.0 (bf16dp 5.6)
 *   q8_0 0.4 / 4.3 / 4.6   q4_0 0.2 / 1.3 / 4.2   q4_K 0.2 / 1.9 / 5.2
 *   q6_K 0.1 / 2.4 / 5.9
 * GEMM, one thread, GFLOP/s: f32 sgemm 81; dequantize + sgemm f16 63,
 * bf16 60, q8_0 62, q4_0 60, q4_K 64, q6_K 49; vnni q8_0 133, q4_0 185,
 * q4_K 128, q6_K 117. Two threads were slower than one in that run (the
 * second vCPU was busy with other jobs), so they say nothing there.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"

#define COLS 8192
static int64_t ROWS = 2048; /* 128 with --hot */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ------------------------------------------------------- thread team */

/* A sense-reversing spin barrier: the engine's pool spins too, and a
 * futex wake per product would add tens of microseconds to a 0.3 ms
 * product. */
typedef struct {
    atomic_int count;
    atomic_int sense;
    int n;
} spin_barrier;

static void barrier_wait(spin_barrier *b, int *local_sense)
{
    *local_sense = !*local_sense;
    if (atomic_fetch_add(&b->count, 1) == b->n - 1) {
        atomic_store(&b->count, 0);
        atomic_store(&b->sense, *local_sense);
    } else {
        /* spin, but yield when the other threads are not running (a
         * shared machine): pure spinning then costs whole time slices */
        for (int spins = 0; atomic_load(&b->sense) != *local_sense; spins++)
            if (spins > 2000)
                sched_yield();
    }
}

typedef enum { P_REF, P_AVX512, P_VNNI, P_BF16DP, P_GEMM_SGEMM, P_GEMM_VNNI, P_GEMM_HALF } path;

typedef struct {
    path p;
    uint32_t type;
    unsigned char **copies; /* GEMV: n_copies matrices of ROWS x COLS */
    int n_copies;
    size_t mat_bytes;
    float *x;
    void *xq;
    float *y;
    /* GEMM */
    const unsigned char *gw;
    const float *gx;
    void *gxq;
    float *gy;
    int64_t gm, gn, gk;
    int passes;
    spin_barrier bar;
    int nth;
} job;

typedef struct {
    job *j;
    int ith;
    void *scratch;
} worker;

static void split(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi)
{
    int64_t per = n / nth, extra = n % nth;
    *lo = ith * per + (ith < extra ? ith : extra);
    *hi = *lo + per + (ith < extra ? 1 : 0);
}

static void run_gemv(worker *wk, int *sense)
{
    job *j = wk->j;
    int64_t r0, r1;
    split(ROWS, wk->ith, j->nth, &r0, &r1);
    for (int c = 0; c < j->n_copies; c++) {
        const unsigned char *W = j->copies[c];
        switch (j->p) {
        case P_REF:
            jq_ref_matvec(j->type, W, COLS, j->x, j->y, r0, r1);
            break;
        case P_AVX512:
            jq_avx512_matvec(j->type, W, COLS, j->x, j->y, r0, r1);
            break;
        case P_VNNI:
            if (wk->ith == 0)
                jq_avx512_quantize_act(j->type, j->x, COLS, j->xq);
            barrier_wait(&j->bar, sense);
            jq_avx512_matvec_q(j->type, W, COLS, j->xq, j->y, r0, r1);
            break;
        case P_BF16DP:
            jq_avx512_matvec_bf16_dp(W, COLS, j->x, j->y, r0, r1);
            break;
        default:
            break;
        }
        barrier_wait(&j->bar, sense);
    }
}

static void run_gemm(worker *wk, int *sense)
{
    job *j = wk->j;
    /* whole 64-column panels per thread, as engine/forward.c */
    int64_t panels = (j->gn + JQ_GEMM_PANEL - 1) / JQ_GEMM_PANEL, p0, p1;
    split(panels, wk->ith, j->nth, &p0, &p1);
    int64_t n0 = p0 * JQ_GEMM_PANEL, n1 = p1 * JQ_GEMM_PANEL;
    if (n1 > j->gn)
        n1 = j->gn;
    if (j->p == P_GEMM_VNNI) {
        /* each thread quantizes its share of the activation rows */
        int64_t i0, i1;
        const size_t rb = jq_act_row_bytes(j->type, j->gk);
        split(j->gm, wk->ith, j->nth, &i0, &i1);
        for (int64_t i = i0; i < i1; i++)
            jq_avx512_quantize_act(j->type, j->gx + i * j->gk, j->gk,
                                   (unsigned char *)j->gxq + i * rb);
        barrier_wait(&j->bar, sense);
        if (n1 > n0)
            jq_avx512_gemm_q(j->type, j->gw, j->gk, j->gxq, j->gm, j->gy, j->gn,
                             n0, n1, wk->scratch);
    } else if (n1 > n0 && j->p == P_GEMM_HALF) {
        jq_avx512_gemm_half(j->type, j->gw, j->gk, j->gx, j->gm, j->gy, j->gn,
                            n0, n1, wk->scratch);
    } else if (n1 > n0) {
        jq_gemm_blas(j->type, j->gw, j->gk, j->gx, j->gm, j->gy, j->gn, n0,
                     n1, wk->scratch);
    }
    barrier_wait(&j->bar, sense);
}

static spin_barrier start_bar;
static double *pass_times;

static void *worker_main(void *arg)
{
    worker *wk = arg;
    job *j = wk->j;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(wk->ith % CPU_SETSIZE, &set);
    sched_setaffinity(0, sizeof set, &set); /* best effort */
    int sense = 0, ssense = 0;
    for (int pass = 0; pass <= j->passes; pass++) { /* pass 0: warm-up */
        barrier_wait(&start_bar, &ssense);
        double t0 = now_s();
        if (j->p >= P_GEMM_SGEMM)
            run_gemm(wk, &sense);
        else
            run_gemv(wk, &sense);
        if (wk->ith == 0 && pass > 0)
            pass_times[pass - 1] = now_s() - t0;
    }
    return NULL;
}

/* Runs the job on nth threads; returns the median seconds per pass. */
static double run_job(job *j, int nth)
{
    j->nth = nth;
    j->bar = (spin_barrier){.n = nth};
    start_bar = (spin_barrier){.n = nth};
    pass_times = calloc((size_t)j->passes, sizeof *pass_times);
    worker wk[8];
    pthread_t th[8];
    size_t sbytes = (size_t)JQ_GEMM_PANEL * (size_t)(j->gk > 0 ? j->gk : 1) * sizeof(float);
    for (int t = 0; t < nth; t++) {
        wk[t] = (worker){.j = j, .ith = t, .scratch = aligned_alloc(64, sbytes)};
        pthread_create(&th[t], NULL, worker_main, &wk[t]);
    }
    for (int t = 0; t < nth; t++) {
        pthread_join(th[t], NULL);
        free(wk[t].scratch);
    }
    qsort(pass_times, (size_t)j->passes, sizeof(double), cmp_double);
    double med = pass_times[j->passes / 2];
    free(pass_times);
    return med;
}

/* ------------------------------------------------------------- data */

static unsigned long long rng_state = 88172645463325252ull;
static float frand(void) /* uniform [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * 0x1p-24) * 2.0f - 1.0f;
}

static unsigned char *quantized_matrix(uint32_t type, int64_t rows, int64_t cols)
{
    const size_t rb = jq_row_bytes(type, cols);
    unsigned char *w = aligned_alloc(64, (rb * (size_t)rows + 63) / 64 * 64);
    float *src = malloc((size_t)cols * sizeof(float));
    if (!w || !src) {
        fprintf(stderr, "kernel_bench: out of memory\n");
        exit(1);
    }
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t k = 0; k < cols; k++)
            src[k] = frand();
        jq_quantize_row(type, src, w + (size_t)r * rb, cols);
    }
    free(src);
    return w;
}

static const char *path_name(path p)
{
    static const char *n[] = {"ref", "avx512", "vnni", "bf16dp", "sgemm", "vnni", "half"};
    return n[p];
}

static int hot;

static void bench_gemv(uint32_t type, path p, double gib, int passes,
                       const int *threads, int nthreads)
{
    job j = {.p = p, .type = type, .passes = passes};
    j.mat_bytes = jq_row_bytes(type, COLS) * ROWS;
    j.n_copies = hot ? 1 : (int)((gib * (1 << 30)) / (double)j.mat_bytes + 0.999);
    if (p == P_REF && j.n_copies > 4)
        j.n_copies = 4; /* the reference is compute bound: cache cannot help it */
    j.copies = calloc((size_t)j.n_copies, sizeof *j.copies);
    unsigned char *first = quantized_matrix(type, ROWS, COLS);
    for (int c = 0; c < j.n_copies; c++) {
        if (c == 0) {
            j.copies[0] = first;
            continue;
        }
        j.copies[c] = aligned_alloc(64, (j.mat_bytes + 63) / 64 * 64);
        if (!j.copies[c]) {
            fprintf(stderr, "kernel_bench: out of memory\n");
            exit(1);
        }
        memcpy(j.copies[c], first, j.mat_bytes);
    }
    j.x = malloc(COLS * sizeof(float));
    j.xq = aligned_alloc(64, jq_act_row_bytes(JQ_TYPE_Q8_0, COLS) + 64);
    j.y = malloc(ROWS * sizeof(float));
    for (int k = 0; k < COLS; k++)
        j.x[k] = frand();
    for (int t = 0; t < nthreads; t++) {
        const double s = run_job(&j, threads[t]) / j.n_copies;
        printf("gemv %-5s %-7s threads %d  %7.2f GB/s  %8.1f us/product  (%d copies, %.1f MB each)\n",
               jq_type_traits_get(type)->name, path_name(p), threads[t],
               (double)j.mat_bytes / s / 1e9, s * 1e6, j.n_copies,
               (double)j.mat_bytes / 1e6);
        fflush(stdout);
    }
    for (int c = 0; c < j.n_copies; c++)
        free(j.copies[c]);
    free(j.copies);
    free(j.x);
    free(j.xq);
    free(j.y);
}

static void bench_gemm(uint32_t type, path p, int64_t M, int64_t N, int64_t K,
                       int passes, const int *threads, int nthreads)
{
    job j = {.p = p, .type = type, .passes = passes, .gm = M, .gn = N, .gk = K};
    unsigned char *w = quantized_matrix(type, N, K);
    float *x = malloc((size_t)(M * K) * sizeof(float));
    for (int64_t i = 0; i < M * K; i++)
        x[i] = frand();
    j.gw = w;
    j.gx = x;
    j.gxq = aligned_alloc(64, jq_act_row_bytes(JQ_TYPE_Q8_0, K) * (size_t)M + 64);
    j.gy = malloc((size_t)(M * N) * sizeof(float));
    for (int t = 0; t < nthreads; t++) {
        const double s = run_job(&j, threads[t]);
        printf("gemm %-5s %-7s threads %d  %7.1f GFLOP/s  %8.2f ms  (M %lld N %lld K %lld)\n",
               jq_type_traits_get(type)->name, path_name(p), threads[t],
               2.0 * (double)M * (double)N * (double)K / s / 1e9, s * 1e3,
               (long long)M, (long long)N, (long long)K);
        fflush(stdout);
    }
    free(w);
    free(x);
    free(j.gxq);
    free(j.gy);
}

int main(int argc, char **argv)
{
    int threads[2] = {1, 2}, nthreads = 2, reps = 7;
    double gib = 1.0;
    int quick = 0, gemm_only = 0, only_type = -1;
    long long mnk[3] = {512, 2048, 2048};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads[0] = atoi(argv[++i]);
            nthreads = 1;
        } else if (!strcmp(argv[i], "--gib") && i + 1 < argc) {
            gib = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--quick")) {
            quick = 1;
        } else if (!strcmp(argv[i], "--gemm")) {
            gemm_only = 1;
        } else if (!strcmp(argv[i], "--type") && i + 1 < argc) {
            only_type = jq_type_from_name(argv[++i]);
            if (only_type < 0) {
                fprintf(stderr, "kernel_bench: unknown type %s\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--mnk") && i + 1 < argc) {
            if (sscanf(argv[++i], "%lld,%lld,%lld", &mnk[0], &mnk[1], &mnk[2]) != 3 ||
                mnk[0] < 1 || mnk[1] < 1 || mnk[2] < 32 || mnk[2] % 256) {
                fprintf(stderr, "kernel_bench: --mnk M,N,K (K a multiple of 256)\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--hot")) {
            hot = 1;
            ROWS = 128;
        } else {
            fprintf(stderr, "usage: %s [--threads N] [--gib G] [--reps R] [--quick] [--hot] [--gemm]\n"
                            "          [--type T] [--mnk M,N,K]\n",
                    argv[0]);
            return 2;
        }
    }
    if (threads[0] < 1 || threads[0] > 8 || reps < 1 || gib <= 0) {
        fprintf(stderr, "kernel_bench: bad arguments\n");
        return 2;
    }
    jq_kernels_init();
    if (!jq_cpu_has_avx512()) {
        fprintf(stderr, "kernel_bench: needs AVX-512\n");
        return 1;
    }
    printf("# GEMV %lld x %d, %s, median of %d passes\n", (long long)ROWS, COLS,
           hot ? "one copy (in cache)" : ">= --gib GiB of copies per type", reps);
    static const struct {
        uint32_t type;
        path p;
    } gemv[] = {
        {JQ_TYPE_F32, P_REF},     {JQ_TYPE_F32, P_AVX512},  {JQ_TYPE_F16, P_REF},
        {JQ_TYPE_F16, P_AVX512},  {JQ_TYPE_BF16, P_REF},    {JQ_TYPE_BF16, P_AVX512},
        {JQ_TYPE_BF16, P_BF16DP}, {JQ_TYPE_Q8_0, P_REF},    {JQ_TYPE_Q8_0, P_AVX512},
        {JQ_TYPE_Q8_0, P_VNNI},   {JQ_TYPE_Q4_0, P_REF},    {JQ_TYPE_Q4_0, P_AVX512},
        {JQ_TYPE_Q4_0, P_VNNI},   {JQ_TYPE_Q4_K, P_REF},    {JQ_TYPE_Q4_K, P_AVX512},
        {JQ_TYPE_Q4_K, P_VNNI},   {JQ_TYPE_Q6_K, P_REF},    {JQ_TYPE_Q6_K, P_AVX512},
        {JQ_TYPE_Q6_K, P_VNNI},
    };
    for (size_t i = 0; i < sizeof gemv / sizeof gemv[0] && !gemm_only; i++) {
        if ((quick && gemv[i].p == P_REF) ||
            (only_type >= 0 && gemv[i].type != (uint32_t)only_type))
            continue;
        bench_gemv(gemv[i].type, gemv[i].p, gib, gemv[i].p == P_REF ? 3 : reps * (hot ? 20 : 1),
                   threads, nthreads);
    }
    if (hot)
        return 0;
    printf("# GEMM, median of %d passes\n", reps);
    static const struct {
        uint32_t type;
        path p;
    } gemm[] = {
        {JQ_TYPE_F32, P_GEMM_SGEMM},  {JQ_TYPE_F32, P_GEMM_HALF},
        {JQ_TYPE_F16, P_GEMM_SGEMM},  {JQ_TYPE_F16, P_GEMM_HALF},
        {JQ_TYPE_BF16, P_GEMM_SGEMM}, {JQ_TYPE_BF16, P_GEMM_HALF},
        {JQ_TYPE_Q8_0, P_GEMM_SGEMM},
        {JQ_TYPE_Q8_0, P_GEMM_VNNI},  {JQ_TYPE_Q4_0, P_GEMM_SGEMM},
        {JQ_TYPE_Q4_0, P_GEMM_VNNI},  {JQ_TYPE_Q4_K, P_GEMM_SGEMM},
        {JQ_TYPE_Q4_K, P_GEMM_VNNI},  {JQ_TYPE_Q6_K, P_GEMM_SGEMM},
        {JQ_TYPE_Q6_K, P_GEMM_VNNI},
    };
    for (size_t i = 0; i < sizeof gemm / sizeof gemm[0]; i++)
        if (only_type < 0 || gemm[i].type == (uint32_t)only_type)
            bench_gemm(gemm[i].type, gemm[i].p, mnk[0], mnk[1], mnk[2], reps,
                       threads, nthreads);
    return 0;
}
