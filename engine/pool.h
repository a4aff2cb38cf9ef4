/* pool.h — the thread pool interface the engine computes through.
 *
 * The engine never creates threads: its callers (the judgeq command line,
 * the daemon's per-NUMA-node pools) hand it an implementation. run() calls
 * fn(arg, ith, nth) once for every ith in [0, nth) with nth = n_threads,
 * concurrently, and returns when all calls have returned. fn must split its
 * work by (ith, nth) only. The caller's thread may run one of the shares.
 */
#ifndef JQ_POOL_H
#define JQ_POOL_H

typedef void (*jq_pool_fn)(void *arg, int ith, int nth);

typedef struct jq_pool jq_pool;
struct jq_pool {
    int n_threads;
    void (*run)(jq_pool *self, jq_pool_fn fn, void *arg);
};

/* Runs fn on pool, or inline as a single share when pool is NULL. */
static inline void jq_pool_run(jq_pool *pool, jq_pool_fn fn, void *arg)
{
    if (pool == 0 || pool->n_threads <= 1 || pool->run == 0)
        fn(arg, 0, 1);
    else
        pool->run(pool, fn, arg);
}

#endif
