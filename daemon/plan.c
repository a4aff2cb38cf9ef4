/* plan.c — see plan.h. */
#include "plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

hwloc_topology_t jq_topology_load(const char *desc, char *err, size_t errlen)
{
    hwloc_topology_t topo;
    if (hwloc_topology_init(&topo) != 0) {
        snprintf(err, errlen, "hwloc_topology_init failed");
        return NULL;
    }
    if (desc && hwloc_topology_set_synthetic(topo, desc) != 0) {
        snprintf(err, errlen,
                 "--topology-synthetic '%s' is not an hwloc synthetic "
                 "description (e.g. \"pack:2 core:1 pu:1\")",
                 desc);
        hwloc_topology_destroy(topo);
        return NULL;
    }
    if (hwloc_topology_load(topo) != 0) {
        snprintf(err, errlen, "hwloc_topology_load failed");
        hwloc_topology_destroy(topo);
        return NULL;
    }
    return topo;
}

void jq_plan_free(jq_plan *p)
{
    if (!p)
        return;
    for (unsigned i = 0; i < p->n_pools; i++) {
        jq_plan_pool *pp = &p->pools[i];
        if (pp->thread_cpus)
            for (unsigned t = 0; t < pp->n_threads; t++)
                hwloc_bitmap_free(pp->thread_cpus[t]);
        free(pp->thread_cpus);
        hwloc_bitmap_free(pp->nodeset);
    }
    free(p->pools);
    free(p);
}

/* The cores of one domain, in logical order: every core whose cpuset lies
 * inside the domain's (a topology without CORE objects, as some VMs report,
 * falls back to PUs). */
static unsigned domain_cores(hwloc_topology_t topo, hwloc_const_cpuset_t set,
                             hwloc_obj_t *out, unsigned max)
{
    hwloc_obj_type_t type =
        hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE
                                                           : HWLOC_OBJ_PU;
    unsigned n = 0;
    hwloc_obj_t o = NULL;
    while ((o = hwloc_get_next_obj_inside_cpuset_by_type(topo, set, type,
                                                         o)) != NULL)
        if (n < max)
            out[n++] = o;
    return n;
}

/* Splits `threads` over domains in proportion to their cores (largest
 * remainder), at least one thread each. */
static void split_threads(const unsigned *cores, unsigned n, unsigned threads,
                          unsigned *out)
{
    unsigned total = 0;
    for (unsigned i = 0; i < n; i++)
        total += cores[i];
    if (threads == 0) {
        memcpy(out, cores, n * sizeof *out);
        return;
    }
    if (threads < n)
        threads = n;
    unsigned given = 0;
    for (unsigned i = 0; i < n; i++) {
        out[i] = (unsigned)((unsigned long long)threads * cores[i] / total);
        if (out[i] == 0)
            out[i] = 1;
        given += out[i];
    }
    /* leftovers one each, first to the domains with the most cores */
    while (given < threads) {
        unsigned best = 0;
        for (unsigned i = 1; i < n; i++)
            if (cores[i] * out[best] > cores[best] * out[i])
                best = i;
        out[best]++;
        given++;
    }
    while (given > threads) { /* the at-least-one rule overshot */
        unsigned best = 0;
        for (unsigned i = 1; i < n; i++)
            if (out[i] > out[best])
                best = i;
        out[best]--;
        given--;
    }
}

jq_plan *jq_plan_build(hwloc_topology_t topo, unsigned threads, bool numa,
                       char *err, size_t errlen)
{
    if (threads > JQ_PLAN_MAX_THREADS) {
        snprintf(err, errlen, "--threads %u exceeds %d", threads,
                 JQ_PLAN_MAX_THREADS);
        return NULL;
    }
    jq_plan *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->this_system = hwloc_topology_is_thissystem(topo) != 0;

    int n_numa = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
    int n_pkg = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE);
    hwloc_obj_type_t dom_type = HWLOC_OBJ_NUMANODE;
    unsigned n_dom = n_numa > 0 ? (unsigned)n_numa : 1;
    if (!numa) {
        n_dom = 1;
    } else if (n_numa <= 1 && n_pkg > 1) {
        dom_type = HWLOC_OBJ_PACKAGE;
        n_dom = (unsigned)n_pkg;
        p->by_package = true;
    }

    hwloc_obj_t root = hwloc_get_root_obj(topo);
    hwloc_obj_t *cores = malloc(sizeof *cores * JQ_PLAN_MAX_THREADS);
    unsigned *n_cores = calloc(n_dom, sizeof *n_cores);
    unsigned *n_threads = calloc(n_dom, sizeof *n_threads);
    hwloc_obj_t *doms = calloc(n_dom, sizeof *doms);
    p->pools = calloc(n_dom, sizeof *p->pools);
    if (!cores || !n_cores || !n_threads || !doms || !p->pools) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    p->n_pools = n_dom;
    for (unsigned d = 0; d < n_dom; d++) {
        doms[d] = n_dom == 1 ? root
                             : hwloc_get_obj_by_type(topo, dom_type, (int)d);
        if (!doms[d])
            doms[d] = root;
        n_cores[d] = domain_cores(topo, doms[d]->cpuset, cores,
                                  JQ_PLAN_MAX_THREADS);
        if (n_cores[d] == 0) {
            snprintf(err, errlen, "locality domain %u has no cores", d);
            goto fail;
        }
    }
    split_threads(n_cores, n_dom, threads, n_threads);

    for (unsigned d = 0; d < n_dom; d++) {
        jq_plan_pool *pp = &p->pools[d];
        pp->node = d;
        pp->numa_os_index =
            dom_type == HWLOC_OBJ_NUMANODE && doms[d] != root
                ? (int)doms[d]->os_index
                : -1;
        pp->nodeset = hwloc_bitmap_dup(doms[d]->nodeset
                                           ? doms[d]->nodeset
                                           : root->nodeset);
        pp->n_threads = n_threads[d];
        pp->thread_cpus = calloc(pp->n_threads, sizeof *pp->thread_cpus);
        hwloc_bitmap_t all = hwloc_bitmap_alloc();
        if (!pp->nodeset || !pp->thread_cpus || !all) {
            hwloc_bitmap_free(all);
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        unsigned nc = domain_cores(topo, doms[d]->cpuset, cores,
                                   JQ_PLAN_MAX_THREADS);
        for (unsigned t = 0; t < pp->n_threads; t++) {
            pp->thread_cpus[t] = hwloc_bitmap_dup(cores[t % nc]->cpuset);
            if (!pp->thread_cpus[t]) {
                hwloc_bitmap_free(all);
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
            hwloc_bitmap_or(all, all, pp->thread_cpus[t]);
        }
        hwloc_bitmap_list_snprintf(pp->cpuset, sizeof pp->cpuset, all);
        hwloc_bitmap_free(all);
    }
    free(cores);
    free(n_cores);
    free(n_threads);
    free(doms);
    return p;
fail:
    free(cores);
    free(n_cores);
    free(n_threads);
    free(doms);
    jq_plan_free(p);
    return NULL;
}

unsigned jq_plan_least_loaded(const unsigned *sessions_per_pool,
                              unsigned n_pools)
{
    unsigned best = 0;
    for (unsigned i = 1; i < n_pools; i++)
        if (sessions_per_pool[i] < sessions_per_pool[best])
            best = i;
    return best;
}

int jq_plan_bind_thread(hwloc_topology_t topo, const jq_plan *plan,
                        unsigned pool, unsigned i, char *err, size_t errlen)
{
    if (!plan->this_system)
        return 0;
    if (pool >= plan->n_pools || i >= plan->pools[pool].n_threads) {
        snprintf(err, errlen, "no thread %u in pool %u", i, pool);
        return -1;
    }
    if (hwloc_set_cpubind(topo, plan->pools[pool].thread_cpus[i],
                          HWLOC_CPUBIND_THREAD) != 0) {
        snprintf(err, errlen, "binding worker %u of pool %u to cpus %s: %m",
                 i, pool, plan->pools[pool].cpuset);
        return -1;
    }
    return 0;
}

int jq_plan_bind_memory(hwloc_topology_t topo, const jq_plan *plan,
                        unsigned pool, void *addr, size_t len, char *err,
                        size_t errlen)
{
    if (!plan->this_system || plan->n_pools < 2 || plan->by_package ||
        pool >= plan->n_pools || len == 0)
        return 0;
    if (hwloc_set_area_membind(topo, addr, len, plan->pools[pool].nodeset,
                               HWLOC_MEMBIND_BIND,
                               HWLOC_MEMBIND_STRICT |
                                   HWLOC_MEMBIND_BYNODESET) != 0) {
        snprintf(err, errlen, "binding %zu bytes to NUMA node %d: %m", len,
                 plan->pools[pool].numa_os_index);
        return -1;
    }
    return 0;
}
