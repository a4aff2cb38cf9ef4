/* evict.c — eviction specs (defaults, names, validation), the observer
 * rows each policy needs, and the jq_kept container. The selection itself
 * is in evict_select.c. See evict.h and ../shared/EVICTION.md. */
#include "errors.h"
#include "evict.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const policy_names[JQ_EVICT_COUNT_] = {
    [JQ_EVICT_FULL] = "full",           [JQ_EVICT_STREAMING] = "streaming",
    [JQ_EVICT_H2O] = "h2o",             [JQ_EVICT_SNAPKV] = "snapkv",
    [JQ_EVICT_PYRAMIDKV] = "pyramidkv", [JQ_EVICT_ADAKV] = "adakv",
    [JQ_EVICT_JUDGEQ] = "judgeq",       [JQ_EVICT_ORACLE] = "oracle",
};

/* Policies that always keep the last `window` prompt positions. */
static bool forces_window(jq_evict_policy p)
{
    return p == JQ_EVICT_H2O || p == JQ_EVICT_SNAPKV ||
           p == JQ_EVICT_PYRAMIDKV || p == JQ_EVICT_ADAKV ||
           p == JQ_EVICT_JUDGEQ;
}

/* Policies whose observers are the window itself. */
static bool window_observes(jq_evict_policy p)
{
    return p == JQ_EVICT_SNAPKV || p == JQ_EVICT_PYRAMIDKV ||
           p == JQ_EVICT_ADAKV;
}

jq_evict_spec jq_evict_spec_default(jq_evict_policy p, int32_t budget)
{
    jq_evict_spec s = {
        .policy = p,
        .budget = budget,
        /* the window only means something where it is forced; elsewhere 0
         * so that a small --budget is not rejected for an unused value */
        .window = forces_window(p) ? 32 : 0,
        .sink = p == JQ_EVICT_STREAMING ? 4 : 0,
        .pool_kernel = 7,
        .gqa_reduce = JQ_GQA_MEAN,
        .adakv_alpha = 0.2f,
        .pyramid_beta = 20.0f,
    };
    return s;
}

const char *jq_evict_policy_name(jq_evict_policy p)
{
    if ((int)p < 0 || p >= JQ_EVICT_COUNT_)
        return "unknown";
    return policy_names[p];
}

int jq_evict_policy_from_name(const char *name)
{
    if (!name)
        return -1;
    for (int p = 0; p < JQ_EVICT_COUNT_; p++)
        if (strcmp(name, policy_names[p]) == 0)
            return p;
    return -1;
}

int jq_evict_spec_check(const jq_evict_spec *spec, char *err, size_t errlen)
{
    if (!spec)
        return jq_fail(err, errlen, "no eviction spec");
    jq_evict_policy p = spec->policy;
    if ((int)p < 0 || p >= JQ_EVICT_COUNT_)
        return jq_fail(err, errlen,
                    "--policy %d is unknown (full streaming h2o snapkv "
                    "pyramidkv adakv judgeq oracle)",
                    (int)p);
    const char *name = policy_names[p];
    if (spec->budget < 1)
        return jq_fail(err, errlen, "--budget %d must be at least 1",
                    (int)spec->budget);
    if (spec->window < 0)
        return jq_fail(err, errlen, "--window %d must not be negative",
                    (int)spec->window);
    if (spec->pool_kernel < 1 || spec->pool_kernel % 2 == 0)
        return jq_fail(err, errlen,
                    "--pool-kernel %d must be odd and at least 1 (1 turns "
                    "pooling off)",
                    (int)spec->pool_kernel);
    if (spec->gqa_reduce != JQ_GQA_MEAN && spec->gqa_reduce != JQ_GQA_MAX)
        return jq_fail(err, errlen, "--gqa-reduce %d is unknown (mean or max)",
                    (int)spec->gqa_reduce);
    /* written as !(in range) so that NaN fails too */
    if (!(spec->adakv_alpha >= 0.0f && spec->adakv_alpha <= 1.0f))
        return jq_fail(err, errlen, "--adakv-alpha %g must be in [0, 1]",
                    (double)spec->adakv_alpha);
    if (!(spec->pyramid_beta >= 1.0f) || isinf(spec->pyramid_beta))
        return jq_fail(err, errlen,
                    "--pyramid-beta %g must be finite and at least 1",
                    (double)spec->pyramid_beta);
    if (forces_window(p) && spec->window >= spec->budget)
        return jq_fail(err, errlen,
                    "--window %d must be smaller than --budget %d (%s keeps "
                    "the window inside the budget)",
                    (int)spec->window, (int)spec->budget, name);
    if (window_observes(p) && spec->window < 1)
        return jq_fail(err, errlen,
                    "--window %d must be at least 1 for %s (the window's "
                    "queries are its observers)",
                    (int)spec->window, name);
    if (p == JQ_EVICT_STREAMING &&
        (spec->sink < 0 || spec->sink > spec->budget))
        return jq_fail(err, errlen, "--sink %d must be in [0, --budget %d]",
                    (int)spec->sink, (int)spec->budget);
    return 0;
}

void jq_evict_observer_rows(const jq_evict_spec *spec, int32_t L,
                            int32_t *row0, int32_t *row1)
{
    int32_t a = 0, b = 0;
    if (spec && L > 0) {
        switch (spec->policy) {
        case JQ_EVICT_H2O:
            a = 0;
            b = L;
            break;
        case JQ_EVICT_SNAPKV:
        case JQ_EVICT_PYRAMIDKV:
        case JQ_EVICT_ADAKV:
            a = spec->window < L ? L - spec->window : 0;
            if (a < 0)
                a = 0;
            b = L;
            break;
        default: /* no prompt row observes */
            break;
        }
    }
    *row0 = a;
    *row1 = b;
}

bool jq_evict_needs_scores(const jq_evict_policy p)
{
    return p != JQ_EVICT_FULL && p != JQ_EVICT_STREAMING &&
           (int)p >= 0 && p < JQ_EVICT_COUNT_;
}

jq_kept *jq_kept_new(int32_t n_layer, int32_t n_head_kv, int32_t L)
{
    if (n_layer < 0 || n_head_kv < 0 || L < 0)
        return NULL;
    size_t heads = (size_t)n_layer * (size_t)n_head_kv;
    if (L > 0 && heads > SIZE_MAX / sizeof(int32_t) / (size_t)L)
        return NULL;
    jq_kept *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->n_layer = n_layer;
    k->n_head_kv = n_head_kv;
    k->L = L;
    /* at least one element each, so a zero-sized shape is not confused
     * with an allocation failure */
    k->counts = calloc(heads ? heads : 1, sizeof(int32_t));
    size_t npos = heads * (size_t)L;
    k->positions = malloc((npos ? npos : 1) * sizeof(int32_t));
    if (!k->counts || !k->positions) {
        jq_kept_free(k);
        return NULL;
    }
    return k;
}

void jq_kept_free(jq_kept *k)
{
    if (!k)
        return;
    free(k->counts);
    free(k->positions);
    free(k);
}

int64_t jq_kept_total(const jq_kept *k)
{
    if (!k)
        return 0;
    int64_t t = 0;
    size_t heads = (size_t)k->n_layer * (size_t)k->n_head_kv;
    for (size_t i = 0; i < heads; i++)
        t += k->counts[i];
    return t;
}
