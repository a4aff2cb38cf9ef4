/* thread_pool.c — see thread_pool.h.
 *
 * Workers wait on a generation counter: run() publishes (fn, arg), bumps the
 * generation and wakes them; each worker runs its share and the last one to
 * finish wakes the caller. Workers spin briefly before sleeping because a
 * decode step issues a parallel region every few microseconds, and a futex
 * wake-up costs more than that.
 */
#include "thread_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#define SPIN_ITERS 20000

typedef struct worker worker;
typedef struct {
    jq_pool base;
    pthread_t *threads;
    worker *workers;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    _Atomic unsigned long generation;
    _Atomic int pending;
    jq_pool_fn fn;
    void *arg;
    _Atomic bool stop;
    int n_started;
} thread_pool;

struct worker {
    thread_pool *tp;
    int index;
};

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker_main(void *p)
{
    worker *w = p;
    thread_pool *tp = w->tp;
    unsigned long seen = 0;
    for (;;) {
        unsigned long gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&tp->generation,
                                           memory_order_acquire)) == seen &&
               !atomic_load(&tp->stop) && spins < SPIN_ITERS) {
            cpu_relax();
            spins++;
        }
        if (gen == seen && !atomic_load(&tp->stop)) {
            pthread_mutex_lock(&tp->mu);
            while ((gen = atomic_load(&tp->generation)) == seen &&
                   !atomic_load(&tp->stop))
                pthread_cond_wait(&tp->wake, &tp->mu);
            pthread_mutex_unlock(&tp->mu);
        }
        if (atomic_load(&tp->stop))
            return NULL;
        seen = gen;
        tp->fn(tp->arg, w->index, tp->base.n_threads);
        if (atomic_fetch_sub_explicit(&tp->pending, 1, memory_order_acq_rel) ==
            1) {
            pthread_mutex_lock(&tp->mu);
            pthread_cond_signal(&tp->done);
            pthread_mutex_unlock(&tp->mu);
        }
    }
}

static void pool_run(jq_pool *self, jq_pool_fn fn, void *arg)
{
    thread_pool *tp = (thread_pool *)self;
    int n = tp->base.n_threads;
    tp->fn = fn;
    tp->arg = arg;
    atomic_store(&tp->pending, n - 1);
    pthread_mutex_lock(&tp->mu);
    atomic_fetch_add_explicit(&tp->generation, 1, memory_order_release);
    pthread_cond_broadcast(&tp->wake);
    pthread_mutex_unlock(&tp->mu);

    fn(arg, 0, n);

    int spins = 0;
    while (atomic_load_explicit(&tp->pending, memory_order_acquire) > 0 &&
           spins < SPIN_ITERS) {
        cpu_relax();
        spins++;
    }
    if (atomic_load(&tp->pending) > 0) {
        pthread_mutex_lock(&tp->mu);
        while (atomic_load(&tp->pending) > 0)
            pthread_cond_wait(&tp->done, &tp->mu);
        pthread_mutex_unlock(&tp->mu);
    }
}

jq_pool *jq_thread_pool_new(int n_threads)
{
    if (n_threads < 1)
        n_threads = 1;
    thread_pool *tp = calloc(1, sizeof *tp);
    if (!tp)
        return NULL;
    tp->base.n_threads = n_threads;
    tp->base.run = pool_run;
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->wake, NULL);
    pthread_cond_init(&tp->done, NULL);
    tp->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    tp->workers = calloc((size_t)n_threads, sizeof(worker));
    if (!tp->threads || !tp->workers) {
        jq_thread_pool_free(&tp->base);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        tp->workers[i].tp = tp;
        tp->workers[i].index = i;
        if (pthread_create(&tp->threads[i], NULL, worker_main,
                           &tp->workers[i]) != 0) {
            jq_thread_pool_free(&tp->base);
            return NULL;
        }
        tp->n_started = i;
    }
    return &tp->base;
}

void jq_thread_pool_free(jq_pool *pool)
{
    if (!pool)
        return;
    thread_pool *tp = (thread_pool *)pool;
    pthread_mutex_lock(&tp->mu);
    atomic_store(&tp->stop, true);
    pthread_cond_broadcast(&tp->wake);
    pthread_mutex_unlock(&tp->mu);
    for (int i = 1; i <= tp->n_started; i++)
        pthread_join(tp->threads[i], NULL);
    pthread_mutex_destroy(&tp->mu);
    pthread_cond_destroy(&tp->wake);
    pthread_cond_destroy(&tp->done);
    free(tp->threads);
    free(tp->workers);
    free(tp);
}

int jq_available_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
    return 1;
}
