/* test_daemon_plan.c — the NUMA placement plan on synthetic topologies:
 * pools per locality domain, disjoint cpusets, thread splitting, the
 * least-loaded choice, and binding that is a no-op off this system. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "plan.h"

static jq_plan *plan_for(const char *desc, unsigned threads, bool numa,
                         hwloc_topology_t *topo)
{
    char err[256];
    *topo = jq_topology_load(desc, err, sizeof err);
    if (!*topo)
        fail_msg("%s", err);
    jq_plan *p = jq_plan_build(*topo, threads, numa, err, sizeof err);
    if (!p)
        fail_msg("%s", err);
    return p;
}

static void done(jq_plan *p, hwloc_topology_t topo)
{
    jq_plan_free(p);
    hwloc_topology_destroy(topo);
}

static void assert_disjoint(const jq_plan *p)
{
    for (unsigned i = 0; i < p->n_pools; i++)
        for (unsigned j = i + 1; j < p->n_pools; j++)
            for (unsigned a = 0; a < p->pools[i].n_threads; a++)
                for (unsigned b = 0; b < p->pools[j].n_threads; b++)
                    assert_false(hwloc_bitmap_intersects(
                        p->pools[i].thread_cpus[a],
                        p->pools[j].thread_cpus[b]));
}

static void test_two_packages_two_pools(void **state)
{
    (void)state;
    hwloc_topology_t topo;
    jq_plan *p = plan_for("pack:2 core:1 pu:1", 0, true, &topo);
    assert_false(p->this_system);
    assert_int_equal(p->n_pools, 2);
    assert_true(p->by_package);
    assert_int_equal(p->pools[0].n_threads, 1);
    assert_int_equal(p->pools[1].n_threads, 1);
    assert_string_equal(p->pools[0].cpuset, "0");
    assert_string_equal(p->pools[1].cpuset, "1");
    assert_disjoint(p);
    /* binding does nothing on a synthetic topology, and says so by
     * succeeding */
    char err[128];
    assert_int_equal(jq_plan_bind_thread(topo, p, 1, 0, err, sizeof err), 0);
    char mem[4096];
    assert_int_equal(
        jq_plan_bind_memory(topo, p, 1, mem, sizeof mem, err, sizeof err), 0);
    done(p, topo);
}

static void test_two_numa_nodes(void **state)
{
    (void)state;
    hwloc_topology_t topo;
    jq_plan *p = plan_for("pack:2 [numa] core:2 pu:2", 0, true, &topo);
    assert_int_equal(p->n_pools, 2);
    assert_false(p->by_package);
    assert_int_equal(p->pools[0].numa_os_index, 0);
    assert_int_equal(p->pools[1].numa_os_index, 1);
    /* one thread per core, bound to the core's two PUs */
    assert_int_equal(p->pools[0].n_threads, 2);
    assert_int_equal(p->pools[1].n_threads, 2);
    assert_string_equal(p->pools[0].cpuset, "0-3");
    assert_string_equal(p->pools[1].cpuset, "4-7");
    assert_int_equal(hwloc_bitmap_weight(p->pools[0].thread_cpus[0]), 2);
    assert_disjoint(p);
    done(p, topo);
}

static void test_one_node_one_pool(void **state)
{
    (void)state;
    hwloc_topology_t topo;
    jq_plan *p = plan_for("pack:1 core:4 pu:1", 0, true, &topo);
    assert_int_equal(p->n_pools, 1);
    assert_int_equal(p->pools[0].n_threads, 4);
    assert_string_equal(p->pools[0].cpuset, "0-3");
    done(p, topo);
    /* --numa off folds two nodes into one pool */
    p = plan_for("pack:2 [numa] core:2 pu:1", 0, false, &topo);
    assert_int_equal(p->n_pools, 1);
    assert_int_equal(p->pools[0].n_threads, 4);
    assert_string_equal(p->pools[0].cpuset, "0-3");
    done(p, topo);
}

static void test_thread_split(void **state)
{
    (void)state;
    hwloc_topology_t topo;
    /* fewer threads than domains: still one per domain */
    jq_plan *p = plan_for("pack:2 [numa] core:2 pu:1", 1, true, &topo);
    assert_int_equal(p->n_pools, 2);
    assert_int_equal(p->pools[0].n_threads, 1);
    assert_int_equal(p->pools[1].n_threads, 1);
    done(p, topo);
    /* proportional to cores */
    p = plan_for("pack:2 [numa] core:2 pu:1", 2, true, &topo);
    assert_int_equal(p->pools[0].n_threads + p->pools[1].n_threads, 2);
    done(p, topo);
    /* more threads than cores: cores are shared round robin, the cpuset
     * stays the domain's */
    p = plan_for("pack:2 [numa] core:2 pu:1", 6, true, &topo);
    assert_int_equal(p->pools[0].n_threads, 3);
    assert_int_equal(p->pools[1].n_threads, 3);
    assert_string_equal(p->pools[0].cpuset, "0-1");
    assert_true(hwloc_bitmap_isequal(p->pools[0].thread_cpus[0],
                                     p->pools[0].thread_cpus[2]));
    assert_disjoint(p);
    done(p, topo);
}

static void test_this_machine(void **state)
{
    (void)state;
    hwloc_topology_t topo;
    jq_plan *p = plan_for(NULL, 0, true, &topo);
    assert_true(p->this_system);
    assert_true(p->n_pools >= 1);
    unsigned threads = 0;
    for (unsigned i = 0; i < p->n_pools; i++)
        threads += p->pools[i].n_threads;
    assert_true(threads >= 1);
    assert_disjoint(p);
    done(p, topo);
}

static void test_errors_and_least_loaded(void **state)
{
    (void)state;
    char err[256];
    hwloc_topology_t topo = jq_topology_load("bogus:zz", err, sizeof err);
    assert_null(topo);
    assert_non_null(strstr(err, "--topology-synthetic"));
    unsigned load[4] = {3, 1, 1, 2};
    assert_int_equal(jq_plan_least_loaded(load, 4), 1);
    assert_int_equal(jq_plan_least_loaded(load, 1), 0);
    unsigned even[2] = {0, 0};
    assert_int_equal(jq_plan_least_loaded(even, 2), 0);
    topo = jq_topology_load("pack:1 core:1 pu:1", err, sizeof err);
    assert_non_null(topo);
    assert_null(jq_plan_build(topo, 5000, true, err, sizeof err));
    assert_non_null(strstr(err, "--threads 5000"));
    hwloc_topology_destroy(topo);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_packages_two_pools),
        cmocka_unit_test(test_two_numa_nodes),
        cmocka_unit_test(test_one_node_one_pool),
        cmocka_unit_test(test_thread_split),
        cmocka_unit_test(test_this_machine),
        cmocka_unit_test(test_errors_and_least_loaded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
