/* plan.h — where the daemon computes: one worker pool per locality domain
 * of an hwloc topology, each thread on its own core.
 *
 * The plan is a pure function of the topology (and two options), so a
 * synthetic topology ("pack:2 core:1 pu:1") shows the multi-node plan on any
 * machine and the tests can check it. Domains are the NUMA nodes; when the
 * topology has a single NUMA node but several packages (as hwloc builds
 * "pack:2 core:1 pu:1"), the packages are the domains, which keeps a pool's
 * threads on one socket's caches. Binding (jq_plan_bind_thread) is the only
 * part that acts on the machine, and it does nothing on a topology that is
 * not this system's.
 */
#ifndef JQ_DAEMON_PLAN_H
#define JQ_DAEMON_PLAN_H

#include <hwloc.h>
#include <stdbool.h>
#include <stddef.h>

#define JQ_PLAN_MAX_THREADS 1024

typedef struct {
    unsigned node;        /* pool index = the domain's logical index */
    int numa_os_index;    /* the NUMA node's OS index; -1 when the domain
                           * is a package sharing the one node */
    unsigned n_threads;
    char cpuset[128];     /* hwloc list syntax of the threads' cpus, "0-1" */
    hwloc_bitmap_t *thread_cpus; /* (n_threads) the core each binds to */
    hwloc_bitmap_t nodeset;      /* memory of the domain */
} jq_plan_pool;

typedef struct {
    unsigned n_pools;
    jq_plan_pool *pools;
    bool this_system; /* false: synthetic (binding is a no-op) */
    bool by_package;  /* domains are packages, not NUMA nodes */
} jq_plan;

/* Builds the plan. threads = total worker threads (0 = one per core),
 * spread over the domains in proportion to their cores, at least one each
 * and never more than a domain's cores... unless threads asks for more
 * than the machine has cores, in which case cores are shared round robin.
 * numa = false puts everything in one pool. NULL with a message on
 * failure (a topology without cores). */
jq_plan *jq_plan_build(hwloc_topology_t topo, unsigned threads, bool numa,
                       char *err, size_t errlen);
void jq_plan_free(jq_plan *p);

/* Loads this machine's topology, or the synthetic one described by desc
 * (hwloc synthetic syntax) when desc is non-NULL. NULL with a message. */
hwloc_topology_t jq_topology_load(const char *desc, char *err, size_t errlen);

/* The pool with the fewest sessions (ties: the lowest index). */
unsigned jq_plan_least_loaded(const unsigned *sessions_per_pool,
                              unsigned n_pools);

/* Binds the calling thread to thread i of pool p. 0 on success or when the
 * topology is synthetic; -1 with a message otherwise. */
int jq_plan_bind_thread(hwloc_topology_t topo, const jq_plan *plan,
                        unsigned pool, unsigned i, char *err, size_t errlen);

/* Binds [addr, addr+len) to pool p's memory (strict, before first touch)
 * when the plan has several NUMA domains on this system; no-op otherwise.
 * 0, or -1 with a message. */
int jq_plan_bind_memory(hwloc_topology_t topo, const jq_plan *plan,
                        unsigned pool, void *addr, size_t len, char *err,
                        size_t errlen);

#endif
