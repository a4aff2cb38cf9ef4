/* judgeqd_main.c — judgeqd, judgeq's inference daemon.
 *
 * A new-style daemon (daemon(7)): no fork, no PID file, no privilege
 * changes in code (the unit file sandboxes it), logs on stderr with
 * priority prefixes, READY=1 only once it can serve. main() reads top to
 * bottom: config, logging, topology, kernels, model, worker pools,
 * listeners, READY, loop, shutdown.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "daemon.h"
#include "kernels.h"
#include "load_error.h"
#include "log.h"

int main(int argc, char **argv)
{
    static jq_daemon daemon_state;
    jq_daemon *d = &daemon_state;
    char err[1024];

    /* config */
    int rc = jq_options_parse(argc, argv, &d->cfg, stdout, err, sizeof err);
    if (rc > 0)
        return 0;
    if (rc < 0) {
        fprintf(stderr, "judgeqd: %s\n", err);
        return 2;
    }
    d->t_start = jq_now_s();
    if (jq_allow_list_init(&d->allow, &d->cfg.allow_path, err,
                           sizeof err) != 0) {
        fprintf(stderr, "judgeqd: %s\n", err);
        return 1;
    }

    /* logging */
    jq_log_set_level((int)d->cfg.log_level);
    if (jq_log_open(d->cfg.log_file, err, sizeof err) != 0) {
        fprintf(stderr, "judgeqd: %s\n", err);
        return 1;
    }
    jq_log(JQ_LOG_INFO, "judgeqd %s starting (pid %d)", jq_daemon_version(),
           (int)getpid());

    /* topology */
    d->topo = jq_topology_load(d->cfg.topology_synthetic, err, sizeof err);
    if (!d->topo)
        goto fail;
    d->plan = jq_plan_build(d->topo, (unsigned)d->cfg.threads,
                            d->cfg.numa == JQ_NUMA_AUTO, err, sizeof err);
    if (!d->plan)
        goto fail;
    for (unsigned i = 0; i < d->plan->n_pools; i++)
        jq_log(JQ_LOG_INFO, "pool %u: %u threads on cpus %s%s", i,
               d->plan->pools[i].n_threads, d->plan->pools[i].cpuset,
               d->plan->this_system ? "" : " (synthetic topology: unbound)");

    /* kernels */
    jq_log(JQ_LOG_INFO, "kernels: %s", jq_isa_name(jq_kernels_init()));

    /* model: a file that is not a whole, valid GGUF stops the start with
     * one line naming it (load_error.h) */
    char lerr[sizeof err];
    d->model = jq_model_load(d->cfg.model, lerr, sizeof lerr);
    if (!d->model) {
        jq_load_error(err, sizeof err, "model", d->cfg.model, lerr);
        goto fail;
    }
    if (d->cfg.weights == JQ_WEIGHTS_PER_NODE && d->plan->n_pools > 1)
        jq_log(JQ_LOG_WARNING, "--weights per-node: the engine maps the "
                               "model once; every node reads that mapping");
    d->max_context = d->cfg.max_context ? (int32_t)d->cfg.max_context
                                        : d->model->hp.n_ctx_train;
    if (d->max_context < 1)
        d->max_context = 2048;
    if (d->cfg.soft) {
        jq_soft_tokens *st = jq_soft_tokens_load(d->cfg.soft, d->model, lerr,
                                                 sizeof lerr);
        if (!st) {
            jq_load_error(err, sizeof err, "soft", d->cfg.soft, lerr);
            goto fail;
        }
        d->soft = calloc(1, sizeof *d->soft);
        if (!d->soft) {
            jq_soft_tokens_free(st);
            snprintf(err, sizeof err, "out of memory");
            goto fail;
        }
        atomic_store(&d->soft->refs, 1);
        d->soft->soft = st;
    }
    d->limits = (jq_request_limits){
        .n_vocab = d->model->hp.n_vocab,
        .max_context = (uint32_t)d->max_context,
        .max_text_bytes = (uint32_t)d->cfg.max_frame_bytes,
        .have_soft_tokens = d->soft != NULL,
        .client_paths = d->allow.n > 0,
    };
    for (size_t i = 0; i < d->allow.n; i++)
        jq_log(JQ_LOG_INFO, "clients may name files under %s",
               d->allow.prefix[i]);
    jq_log(JQ_LOG_INFO, "model %s: %s, %d layers, vocabulary %d, context %d",
           d->cfg.model, d->model->hp.arch, d->model->hp.n_layer,
           d->model->hp.n_vocab, d->max_context);

    /* worker pools, then listeners */
    if (jq_server_init(d, err, sizeof err) != 0)
        goto fail;
    if (jq_pools_start(d, err, sizeof err) != 0)
        goto fail;
    if (jq_server_listen(d, err, sizeof err) != 0)
        goto fail;

    /* serving */
    sd_notify(0, "READY=1\nSTATUS=serving");
    jq_server_run(d);

    /* shutdown: the loop returned with every handle closed */
    jq_server_free(d);
    jq_pools_stop(d);
    jq_soft_ref_put(d->soft);
    jq_model_free(d->model);
    jq_plan_free(d->plan);
    hwloc_topology_destroy(d->topo);
    jq_allow_list_free(&d->allow);
    jq_log(JQ_LOG_INFO, "judgeqd stopped");
    return d->exit_code;

fail:
    jq_log(JQ_LOG_ERR, "%s", err);
    /* systemctl status shows STATUS= next to the failed unit */
    sd_notifyf(0, "STATUS=failed to start: %s", err);
    if (d->loop) {
        d->draining = true;
        jq_server_free(d);
    }
    if (d->pools)
        jq_pools_stop(d);
    jq_soft_ref_put(d->soft);
    jq_model_free(d->model);
    jq_plan_free(d->plan);
    if (d->topo)
        hwloc_topology_destroy(d->topo);
    jq_allow_list_free(&d->allow);
    return 1;
}
