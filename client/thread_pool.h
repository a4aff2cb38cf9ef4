/* thread_pool.h — a plain pthread implementation of jq_pool for the
 * offline commands (the daemon has its own, NUMA-pinned pools). */
#ifndef JQ_THREAD_POOL_H
#define JQ_THREAD_POOL_H

#include "pool.h"

/* A pool of n_threads shares: the caller's thread runs share 0 and
 * n_threads - 1 workers run the others. NULL on failure. */
jq_pool *jq_thread_pool_new(int n_threads);
void jq_thread_pool_free(jq_pool *pool);
/* The number of CPUs this process may run on (sched_getaffinity). */
int jq_available_cpus(void);

#endif
