/* stream_read.c — the machine's read bandwidth from memory, STREAM-style.
 *
 *   build/bench/stream_read [--threads N] [--mib M] [--reps R]
 *
 * Decode streams every weight once per token, so its ceiling is how fast
 * the cores can read memory that is not in any cache. This reads a buffer
 * much larger than the last-level cache (default 1 GiB; this machine's L3 is
 * 260 MiB) with N threads, each summing its own contiguous share with
 * 64-byte vector loads (four independent accumulators so the adds never
 * limit the loop), and prints the best and median GB/s over R passes
 * (GB = 1e9 bytes, as the kernel bench reports). Each thread first-touches
 * its own share, so pages live where that thread runs.
 *
 * Built with the AVX-512 flags (`make bench-kernels`): a bench of this
 * machine, not portable code.
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const unsigned char *p;
    size_t bytes;
    pthread_barrier_t *start, *done;
    int reps;
    volatile long long sink;
} reader;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static long long read_all(const unsigned char *p, size_t bytes)
{
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 256 <= bytes; i += 256) {
        a0 = _mm512_add_epi64(a0, _mm512_load_si512(p + i));
        a1 = _mm512_add_epi64(a1, _mm512_load_si512(p + i + 64));
        a2 = _mm512_add_epi64(a2, _mm512_load_si512(p + i + 128));
        a3 = _mm512_add_epi64(a3, _mm512_load_si512(p + i + 192));
    }
    return _mm512_reduce_add_epi64(
        _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
}

static void *reader_main(void *arg)
{
    reader *r = arg;
    memset((void *)r->p, 1, r->bytes); /* first touch by the reading thread */
    for (int k = 0; k < r->reps; k++) {
        pthread_barrier_wait(r->start);
        r->sink += read_all(r->p, r->bytes);
        pthread_barrier_wait(r->done);
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int nth = 1, reps = 10;
    size_t mib = 1024;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            nth = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mib") && i + 1 < argc)
            mib = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--threads N] [--mib M] [--reps R]\n",
                    argv[0]);
            return 2;
        }
    }
    if (nth < 1 || nth > 256 || reps < 1 || mib < 1) {
        fprintf(stderr, "stream_read: bad arguments\n");
        return 2;
    }
    size_t share = (mib << 20) / (size_t)nth / 256 * 256;
    unsigned char *buf = aligned_alloc(4096, share * (size_t)nth);
    if (!buf) {
        fprintf(stderr, "stream_read: out of memory\n");
        return 1;
    }
    pthread_barrier_t start, done;
    pthread_barrier_init(&start, NULL, (unsigned)nth + 1);
    pthread_barrier_init(&done, NULL, (unsigned)nth + 1);
    reader *rd = calloc((size_t)nth, sizeof *rd);
    pthread_t *th = calloc((size_t)nth, sizeof *th);
    for (int t = 0; t < nth; t++) {
        rd[t] = (reader){.p = buf + (size_t)t * share, .bytes = share,
                         .start = &start, .done = &done, .reps = reps + 1};
        pthread_create(&th[t], NULL, reader_main, &rd[t]);
    }
    double *gbs = calloc((size_t)reps, sizeof *gbs);
    for (int k = 0; k <= reps; k++) { /* pass 0 warms up, not counted */
        pthread_barrier_wait(&start);
        double t0 = now_s();
        pthread_barrier_wait(&done);
        double dt = now_s() - t0;
        if (k > 0)
            gbs[k - 1] = (double)share * nth / dt / 1e9;
    }
    for (int t = 0; t < nth; t++)
        pthread_join(th[t], NULL);
    qsort(gbs, (size_t)reps, sizeof *gbs, cmp_double);
    printf("{\"threads\": %d, \"bytes\": %zu, \"read_gbs_best\": %.2f, "
           "\"read_gbs_median\": %.2f}\n",
           nth, share * (size_t)nth, gbs[reps - 1], gbs[reps / 2]);
    free(gbs);
    free(th);
    free(rd);
    free(buf);
    return 0;
}
