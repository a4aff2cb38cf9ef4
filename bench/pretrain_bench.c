/* pretrain_bench.c — pretraining throughput (tokens/s) of `judgeq
 * pretrain`'s step at several sequence lengths, on random tokens (the
 * cost of a step does not depend on what the tokens are).
 *
 *   make bench-pretrain [PRETRAIN_BENCH_ARGS="--threads 2 --steps 3"]
 *
 * Options: --n-embd --n-layer --n-head --n-head-kv --n-ff --n-vocab
 * --batch --threads --steps --answer (scored tokens per sequence)
 * --group-tokens --slots, then the sequence lengths (default 128 512 1024).
 * Prints per length: seconds per step, positions per second, and the
 * model's parameter count. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "pretrain.h"
#include "thread_pool.h"

/* CPU seconds of the whole process (all threads): on a shared machine
 * tokens per CPU-second is steadier than per wall second. */
static double cpu_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    jq_pt_hparams hp = {1024, 256, 4, 8, 4, 768, 1024, 10000.0f, 1e-5f, false};
    int batch = 32, threads = 2, steps = 3, answer = 8, group = 4096, slots = 2;
    int lens[16], n_lens = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int *dst = NULL;
        if (!strcmp(a, "--n-embd")) dst = &hp.n_embd;
        else if (!strcmp(a, "--n-layer")) dst = &hp.n_layer;
        else if (!strcmp(a, "--n-head")) dst = &hp.n_head;
        else if (!strcmp(a, "--n-head-kv")) dst = &hp.n_head_kv;
        else if (!strcmp(a, "--n-ff")) dst = &hp.n_ff;
        else if (!strcmp(a, "--n-vocab")) dst = &hp.n_vocab;
        else if (!strcmp(a, "--batch")) dst = &batch;
        else if (!strcmp(a, "--threads")) dst = &threads;
        else if (!strcmp(a, "--steps")) dst = &steps;
        else if (!strcmp(a, "--answer")) dst = &answer;
        else if (!strcmp(a, "--group-tokens")) dst = &group;
        else if (!strcmp(a, "--slots")) dst = &slots;
        if (dst) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s needs a value\n", a);
                return 2;
            }
            *dst = atoi(argv[++i]);
        } else if (n_lens < 16 && atoi(a) > answer + 1) {
            lens[n_lens++] = atoi(a);
        } else {
            fprintf(stderr, "unknown argument %s\n", a);
            return 2;
        }
    }
    if (n_lens == 0) {
        lens[0] = 128;
        lens[1] = 512;
        lens[2] = 1024;
        n_lens = 3;
    }
    for (int i = 0; i < n_lens; i++)
        hp.n_ctx = lens[i] > hp.n_ctx ? lens[i] : hp.n_ctx;
    char err[512];
    jq_pt_model *m = jq_pt_model_new(&hp, err, sizeof err);
    if (!m) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    jq_pt_model_init(m, 1);
    jq_pool *pool = threads > 1 ? jq_thread_pool_new(threads) : NULL;
    jq_pt_opts o = jq_pt_opts_defaults();
    o.group_tokens = group;
    o.slots = slots;
    jq_pt_trainer *t = jq_pt_trainer_new(m, &o, pool, err, sizeof err);
    if (!t) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("model: %zu parameters, n_embd %d, %d layers, %d/%d heads, n_ff "
           "%d, vocab %d; batch %d, %d threads, group %d tokens\n",
           m->n_params, hp.n_embd, hp.n_layer, hp.n_head, hp.n_head_kv,
           hp.n_ff, hp.n_vocab, batch, threads, group);
    uint64_t s = 12345;
    for (int li = 0; li < n_lens; li++) {
        const int L = lens[li];
        int32_t *tok = malloc((size_t)batch * (size_t)(L + 1) * sizeof *tok);
        jq_pt_seq *seqs = malloc((size_t)batch * sizeof *seqs);
        for (int b = 0; b < batch; b++) {
            int32_t *x = tok + (size_t)b * (size_t)(L + 1);
            for (int i = 0; i <= L; i++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                x[i] = 3 + (int32_t)((s >> 33) % (uint64_t)(hp.n_vocab - 3));
            }
            /* L positions read: L + 1 tokens */
            seqs[b] = (jq_pt_seq){x, L + 1, L + 1 - answer};
        }
        jq_pt_step_info info;
        /* one warm-up step (page faults, OpenBLAS buffers) */
        if (jq_pt_trainer_step(t, seqs, batch, &info, err, sizeof err) != 0) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        const double t0 = now(), c0 = cpu_now();
        for (int i = 0; i < steps; i++)
            jq_pt_trainer_step(t, seqs, batch, &info, err, sizeof err);
        const double dt = (now() - t0) / steps, dc = (cpu_now() - c0) / steps;
        printf("seq %5d: %.3f s/step, %8.0f tokens/s, %8.0f tokens per "
               "CPU-second\n",
               L, dt, (double)batch * L / dt, (double)batch * L / dc);
        fflush(stdout);
        free(tok);
        free(seqs);
    }
    jq_pt_trainer_free(t);
    if (pool)
        jq_thread_pool_free(pool);
    jq_pt_model_free(m);
    return 0;
}
