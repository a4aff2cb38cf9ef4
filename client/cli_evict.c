/* cli_evict.c — see cli_evict.h. */
#include "cli_evict.h"

#include <stdlib.h>
#include <string.h>

#include "kernels.h"

void jq_cli_evict_init(jq_cli_evict *e)
{
    jq_evict_spec d = jq_evict_spec_default(JQ_EVICT_SNAPKV, 1);
    *e = (jq_cli_evict){
        .policy = JQ_EVICT_FULL,
        .window = d.window,
        .sink = d.sink,
        .pool_kernel = d.pool_kernel,
        .gqa_reduce = d.gqa_reduce,
        .kv_type = JQ_TYPE_F32,
    };
}

bool jq_cli_evict_opt(const jq_cmd_info *I, int opt, const char *arg,
                      jq_cli_evict *e)
{
    switch (opt) {
    case JQ_OPT_EVICT: {
        int p = jq_evict_policy_from_name(arg);
        if (p < 0)
            jq_cli_usage_error(I,
                               "unknown eviction policy '%s' (full, "
                               "streaming, h2o, snapkv, pyramidkv, adakv, "
                               "judgeq, oracle)",
                               arg);
        e->policy = (jq_evict_policy)p;
        return true;
    }
    case JQ_OPT_BUDGET:
        e->budget = (int32_t)jq_cli_int(I, "--budget", arg, 1, 1 << 24);
        e->budget_set = true;
        return true;
    case JQ_OPT_WINDOW:
        e->window = (int32_t)jq_cli_int(I, "--window", arg, 0, 1 << 24);
        e->window_set = true;
        return true;
    case JQ_OPT_SINK:
        e->sink = (int32_t)jq_cli_int(I, "--sink", arg, 0, 1 << 24);
        e->sink_set = true;
        return true;
    case JQ_OPT_POOL_KERNEL:
        e->pool_kernel = (int32_t)jq_cli_int(I, "--pool-kernel", arg, 1, 1023);
        if (e->pool_kernel % 2 == 0)
            jq_cli_usage_error(I, "--pool-kernel must be odd, got %d",
                               e->pool_kernel);
        e->pool_set = true;
        return true;
    case JQ_OPT_GQA_REDUCE:
        if (!strcmp(arg, "mean"))
            e->gqa_reduce = JQ_GQA_MEAN;
        else if (!strcmp(arg, "max"))
            e->gqa_reduce = JQ_GQA_MAX;
        else
            jq_cli_usage_error(I, "--gqa-reduce must be mean or max, got '%s'",
                               arg);
        e->gqa_set = true;
        return true;
    case JQ_OPT_SOFT:
        e->soft_path = arg;
        return true;
    case JQ_OPT_KV_TYPE:
        if (!strcmp(arg, "f32"))
            e->kv_type = JQ_TYPE_F32;
        else if (!strcmp(arg, "f16"))
            e->kv_type = JQ_TYPE_F16;
        else
            jq_cli_usage_error(I, "--kv-type must be f32 or f16, got '%s'",
                               arg);
        return true;
    default:
        return false;
    }
}

jq_evict_spec jq_cli_evict_spec_for(const jq_cli_evict *e,
                                    jq_evict_policy policy)
{
    jq_evict_spec s = jq_evict_spec_default(policy, e->budget);
    if (e->window_set)
        s.window = e->window;
    if (e->sink_set)
        s.sink = e->sink;
    if (e->pool_set)
        s.pool_kernel = e->pool_kernel;
    if (e->gqa_set)
        s.gqa_reduce = e->gqa_reduce;
    return s;
}

jq_evict_spec jq_cli_evict_spec(const jq_cmd_info *I, const jq_cli_evict *e)
{
    return jq_cli_evict_spec_soft(I, e, true);
}

jq_evict_spec jq_cli_evict_spec_soft(const jq_cmd_info *I,
                                     const jq_cli_evict *e, bool need_soft)
{
    if (e->policy != JQ_EVICT_FULL && !e->budget_set)
        jq_cli_usage_error(I, "--evict %s needs --budget B",
                           jq_evict_policy_name(e->policy));
    if (need_soft && e->policy == JQ_EVICT_JUDGEQ && !e->soft_path)
        jq_cli_usage_error(I, "--evict judgeq needs --soft FILE (make one "
                              "with `judgeq soft-init` or `judgeq train`)");
    if (e->policy != JQ_EVICT_JUDGEQ && e->soft_path)
        jq_cli_usage_error(I, "--soft is only used with --evict judgeq");
    jq_evict_spec s = jq_cli_evict_spec_for(e, e->policy);
    if (e->policy == JQ_EVICT_FULL)
        s.budget = e->budget_set ? e->budget : 0;
    char err[256];
    if (e->policy != JQ_EVICT_FULL && jq_evict_spec_check(&s, err, sizeof err) != 0)
        jq_cli_usage_error(I, "%s", err);
    return s;
}

int jq_cli_parse_policies(const jq_cmd_info *I, const char *list,
                          jq_evict_policy *out)
{
    char *copy = strdup(list), *save = NULL;
    if (!copy)
        jq_cli_fail(I, "out of memory");
    int n = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int p = jq_evict_policy_from_name(t);
        if (p < 0)
            jq_cli_usage_error(I, "unknown policy '%s' in --policies (full, "
                                  "streaming, h2o, snapkv, pyramidkv, adakv, "
                                  "judgeq, oracle)", t);
        for (int i = 0; i < n; i++)
            if (out[i] == (jq_evict_policy)p)
                jq_cli_usage_error(I, "policy '%s' is listed twice", t);
        out[n++] = (jq_evict_policy)p;
    }
    free(copy);
    if (n == 0)
        jq_cli_usage_error(I, "--policies is empty");
    return n;
}
