/* workers.c — one worker pool per locality domain of the plan.
 *
 * A pool has a leader thread, which pops jobs from the pool's queue and
 * runs them one at a time (a session's KV memory is bound to this node, so
 * its work stays here), and n_threads - 1 helpers that take shares of the
 * leader's parallel regions through the jq_pool interface the engine
 * computes with. Every thread binds itself to its core of the plan before
 * it does anything else (a no-op on synthetic topologies).
 *
 * Helpers spin briefly before sleeping: a decode step opens a parallel
 * region every few microseconds, which is less than a futex wake-up.
 *
 * Results go back to the loop thread through one locked list and
 * uv_async_send, which coalesces wake-ups: the loop drains the whole list
 * each time (server.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "log.h"

#define SPIN_ITERS 20000

typedef struct {
    jq_node_pool *p;
    unsigned index;
} thread_arg;

static void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void bind_self(jq_node_pool *p, unsigned i)
{
    char err[256];
    if (jq_plan_bind_thread(p->d->topo, p->d->plan, p->index, i, err,
                            sizeof err) != 0)
        jq_log(JQ_LOG_WARNING, "%s (continuing unbound)", err);
}

/* ---- fork-join: the leader runs share 0, helpers the others */

static void *helper_main(void *argp)
{
    thread_arg *a = argp;
    jq_node_pool *p = a->p;
    unsigned index = a->index;
    free(a);
    bind_self(p, index);
    unsigned long seen = 0;
    for (;;) {
        unsigned long gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&p->generation,
                                           memory_order_acquire)) == seen &&
               !atomic_load(&p->helpers_stop) && spins++ < SPIN_ITERS)
            relax();
        if (gen == seen && !atomic_load(&p->helpers_stop)) {
            pthread_mutex_lock(&p->mu);
            while ((gen = atomic_load(&p->generation)) == seen &&
                   !atomic_load(&p->helpers_stop))
                pthread_cond_wait(&p->wake, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->helpers_stop))
            return NULL;
        seen = gen;
        p->fn(p->arg, (int)index, (int)p->n_threads);
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) ==
            1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

static void pool_run(jq_pool *self, jq_pool_fn fn, void *arg)
{
    jq_node_pool *p = (jq_node_pool *)self;
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->pending, (int)p->n_threads - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, (int)p->n_threads);
    int spins = 0;
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0 &&
           spins++ < SPIN_ITERS)
        relax();
    if (atomic_load(&p->pending) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->pending) > 0)
            pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

/* ---- the leader: the pool's job loop */

static void *leader_main(void *argp)
{
    thread_arg *a = argp;
    jq_node_pool *p = a->p;
    free(a);
    bind_self(p, 0);
    atomic_store(&p->alive, true);
    for (;;) {
        pthread_mutex_lock(&p->qmu);
        while (!p->qhead && !p->stop)
            pthread_cond_wait(&p->qcv, &p->qmu);
        if (p->stop) {
            pthread_mutex_unlock(&p->qmu);
            break;
        }
        jq_job *job = p->qhead;
        p->qhead = job->next;
        if (!p->qhead)
            p->qtail = NULL;
        p->qlen--;
        job->next = NULL;
        pthread_mutex_unlock(&p->qmu);

        uint64_t t0 = now_ns();
        bool finished = jq_job_run(p, job);
        atomic_fetch_add(&p->busy_ns, now_ns() - t0);
        if (finished)
            jq_post_done(p->d, job);
        else
            jq_pool_submit(p, job); /* its turn is over: to the back */
    }
    atomic_store(&p->alive, false);
    return NULL;
}

void jq_pool_submit(jq_node_pool *p, jq_job *job)
{
    job->pool = p;
    job->next = NULL;
    pthread_mutex_lock(&p->qmu);
    if (p->qtail)
        p->qtail->next = job;
    else
        p->qhead = job;
    p->qtail = job;
    p->qlen++;
    pthread_cond_signal(&p->qcv);
    pthread_mutex_unlock(&p->qmu);
}

/* Starts every pool of the plan. On failure the pools started so far keep
 * running; jq_pools_stop stops them. */
int jq_pools_start(jq_daemon *d, char *err, size_t errlen)
{
    d->n_pools = d->plan->n_pools;
    d->pools = calloc(d->n_pools, sizeof *d->pools);
    if (!d->pools) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (unsigned i = 0; i < d->n_pools; i++) {
        jq_node_pool *p = &d->pools[i];
        p->d = d;
        p->index = i;
        p->n_threads = d->plan->pools[i].n_threads;
        p->base.n_threads = (int)p->n_threads;
        p->base.run = pool_run;
        pthread_mutex_init(&p->qmu, NULL);
        pthread_cond_init(&p->qcv, NULL);
        pthread_mutex_init(&p->mu, NULL);
        pthread_cond_init(&p->wake, NULL);
        pthread_cond_init(&p->done, NULL);
        p->logits = malloc(sizeof(float) * (size_t)d->model->hp.n_vocab);
        p->threads = calloc(p->n_threads, sizeof *p->threads);
        if (!p->logits || !p->threads) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        for (unsigned t = 0; t < p->n_threads; t++) {
            thread_arg *a = malloc(sizeof *a);
            if (!a) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            a->p = p;
            a->index = t;
            int rc = pthread_create(&p->threads[t], NULL,
                                    t == 0 ? leader_main : helper_main, a);
            if (rc != 0) {
                free(a);
                snprintf(err, errlen, "starting worker %u of pool %u: %s", t,
                         i, strerror(rc));
                return -1;
            }
            p->n_started = t + 1;
        }
    }
    return 0;
}

/* Stops and joins every thread; jobs still queued are the caller's to
 * have drained first (shutdown waits for jobs_inflight == 0). */
void jq_pools_stop(jq_daemon *d)
{
    for (unsigned i = 0; i < d->n_pools; i++) {
        jq_node_pool *p = &d->pools[i];
        pthread_mutex_lock(&p->qmu);
        p->stop = true;
        pthread_cond_broadcast(&p->qcv);
        pthread_mutex_unlock(&p->qmu);
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->helpers_stop, true);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
        for (unsigned t = 0; t < p->n_started; t++)
            pthread_join(p->threads[t], NULL);
        for (int k = 0; k < 2; k++)
            jq_ctx_free(p->ctx[k]);
        free(p->logits);
        free(p->threads);
        pthread_mutex_destroy(&p->qmu);
        pthread_cond_destroy(&p->qcv);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->wake);
        pthread_cond_destroy(&p->done);
    }
    free(d->pools);
    d->pools = NULL;
    d->n_pools = 0;
}

bool jq_pools_alive(jq_daemon *d)
{
    for (unsigned i = 0; i < d->n_pools; i++)
        if (!atomic_load(&d->pools[i].alive))
            return false;
    return true;
}

/* ---- completions */

static void post(jq_daemon *d, jq_completion *c)
{
    pthread_mutex_lock(&d->cmu);
    if (d->ctail)
        d->ctail->next = c;
    else
        d->chead = c;
    d->ctail = c;
    pthread_mutex_unlock(&d->cmu);
    uv_async_send(&d->async);
}

void jq_post_done(jq_daemon *d, jq_job *job)
{
    jq_completion *c = calloc(1, sizeof *c);
    if (!c) {
        /* Cannot happen in practice (a few dozen bytes); without the DONE
         * the session would hang forever, so fail loudly. */
        jq_log(JQ_LOG_CRIT, "out of memory posting a job completion");
        abort();
    }
    c->kind = JQ_DONE_JOB;
    c->job = job;
    post(d, c);
}

void jq_post_chunk(jq_daemon *d, jq_job *job, int32_t token, float logprob,
                   uint32_t index, const char *piece, size_t piece_len)
{
    jq_completion *c = malloc(sizeof *c + piece_len);
    if (!c)
        return; /* a lost stream token; the final reply still counts it */
    memset(c, 0, sizeof *c);
    c->kind = JQ_DONE_CHUNK;
    c->conn_id = job->conn_id;
    c->req_id = job->req_id;
    c->token = token;
    c->logprob = logprob;
    c->index = index;
    c->piece_len = (uint32_t)piece_len;
    memcpy(c->piece, piece, piece_len);
    post(d, c);
}
