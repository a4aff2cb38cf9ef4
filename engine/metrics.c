/* metrics.c — see metrics.h.
 *
 * Greedy agreement and teacher-forced KL share their decode steps: while
 * the evicted cache's greedy tokens equal the reference, the greedy run
 * and the teacher-forced run feed the same tokens, so one pass serves
 * both. At the first difference d the store is rolled back to d reference
 * tokens (decode steps only append one entry per head, so truncating each
 * head's length undoes them exactly) and the greedy run continues alone.
 */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "sample.h"

void jq_metrics_ref_free(jq_metrics_ref *ref)
{
    if (!ref)
        return;
    free(ref->gen);
    free(ref->logits);
    free(ref->target);
    memset(ref, 0, sizeof *ref);
}

int jq_metrics_reference(jq_ctx *c, const int32_t *tokens, int32_t L,
                         int32_t n, bool with_logits, jq_metrics_ref *ref,
                         char *err, size_t errlen)
{
    memset(ref, 0, sizeof *ref);
    const jq_hparams *hp = &jq_ctx_model(c)->hp;
    if (L < 1 || n < 1)
        return jq_fail(err, errlen, "reference: prompt of %d tokens, %d to "
                       "generate (both must be at least 1)", L, n);
    size_t V = (size_t)hp->n_vocab;
    *ref = (jq_metrics_ref){.L = L, .n = n, .n_layer = hp->n_layer,
                            .n_head = hp->n_head, .n_vocab = hp->n_vocab};
    ref->gen = malloc(sizeof(int32_t) * (size_t)n);
    ref->target = malloc(sizeof(float) * (size_t)hp->n_layer * hp->n_head * L);
    ref->logits = with_logits ? malloc(sizeof(float) * V * (size_t)n) : NULL;
    float *cur = malloc(sizeof(float) * V);
    if (!ref->gen || !ref->target || (with_logits && !ref->logits) || !cur) {
        free(cur);
        jq_metrics_ref_free(ref);
        return jq_fail(err, errlen, "out of memory for the reference of a "
                       "prompt of %d tokens", L);
    }

    /* the continuation: greedy, full cache */
    jq_ctx_reset(c);
    int rc = jq_ctx_eval(c, tokens, L, cur, err, errlen);
    for (int32_t k = 0; rc == 0 && k < n; k++) {
        ref->gen[k] = jq_argmax(cur, hp->n_vocab);
        if (with_logits) {
            float *row = ref->logits + (size_t)k * V;
            rc = jq_ctx_eval(c, &ref->gen[k], 1, row, err, errlen);
            if (rc == 0)
                memcpy(cur, row, sizeof(float) * V);
        } else if (k + 1 < n) {
            rc = jq_ctx_eval(c, &ref->gen[k], 1, cur, err, errlen);
        }
    }
    free(cur);

    /* its attention over the prompt: the oracle's observers */
    if (rc == 0) {
        jq_prefill_params pp = {
            .spec = jq_evict_spec_default(JQ_EVICT_ORACLE, L),
            .oracle_tokens = ref->gen,
            .n_oracle = n,
            .kv_type = jq_ctx_own_kv(c)->type,
        };
        rc = jq_prefill_scores(c, tokens, L, &pp, ref->target, NULL, err,
                               errlen);
    }
    if (rc != 0)
        jq_metrics_ref_free(ref);
    return rc;
}

int jq_metrics_policy_kept(jq_ctx *c, const int32_t *tokens,
                           const jq_metrics_ref *ref,
                           const jq_prefill_params *p, jq_kept *kept,
                           char *err, size_t errlen)
{
    jq_evict_spec spec = p->spec;
    if (spec.policy == JQ_EVICT_FULL)
        spec.budget = ref->L; /* keeps everything; its budget is unused */
    const float *scores = NULL;
    float *raw = NULL;
    if (spec.policy == JQ_EVICT_ORACLE) {
        scores = ref->target;
    } else if (jq_evict_needs_scores(spec.policy)) {
        raw = malloc(sizeof(float) * (size_t)ref->n_layer * ref->n_head *
                     ref->L);
        if (!raw)
            return jq_fail(err, errlen, "out of memory for scores");
        jq_prefill_params pp = *p;
        pp.oracle_tokens = ref->gen;
        pp.n_oracle = ref->n;
        if (jq_prefill_scores(c, tokens, ref->L, &pp, raw, NULL, err,
                              errlen) != 0) {
            free(raw);
            return -1;
        }
        scores = raw;
    }
    const jq_hparams *hp = &jq_ctx_model(c)->hp;
    int rc = jq_evict_select(&spec, hp->n_layer, hp->n_head, hp->n_head_kv,
                             ref->L, scores, kept, err, errlen);
    free(raw);
    return rc;
}

int jq_metrics_coverage(const jq_metrics_ref *ref, const jq_kept *kept,
                        int32_t budget, jq_gqa_reduce gqa, double *hit_rate,
                        double *mass_recall, char *err, size_t errlen)
{
    jq_evict_spec os = jq_evict_spec_default(JQ_EVICT_ORACLE, budget);
    os.gqa_reduce = gqa;
    jq_kept *oracle = jq_kept_new(kept->n_layer, kept->n_head_kv, kept->L);
    if (!oracle)
        return jq_fail(err, errlen, "out of memory");
    if (jq_evict_select(&os, ref->n_layer, ref->n_head, kept->n_head_kv,
                        ref->L, ref->target, oracle, err, errlen) != 0) {
        jq_kept_free(oracle);
        return -1;
    }
    *hit_rate = jq_evict_hit_rate(kept, oracle);
    *mass_recall = jq_evict_mass_recall(kept, ref->target, ref->n_head, gqa);
    jq_kept_free(oracle);
    if (isnan(*hit_rate) || isnan(*mass_recall))
        return jq_fail(err, errlen, "hit rate or mass recall undefined (kept "
                       "set of another shape, or out of memory)");
    return 0;
}

double jq_kl_logits(const float *p, const float *q, int32_t n)
{
    double mp = -INFINITY, mq = -INFINITY;
    for (int32_t i = 0; i < n; i++) {
        mp = p[i] > mp ? p[i] : mp;
        mq = q[i] > mq ? q[i] : mq;
    }
    double sp = 0, sq = 0;
    for (int32_t i = 0; i < n; i++) {
        sp += exp(p[i] - mp);
        sq += exp(q[i] - mq);
    }
    double lzp = mp + log(sp), lzq = mq + log(sq);
    double kl = 0;
    for (int32_t i = 0; i < n; i++) {
        double lp = p[i] - lzp;
        double pi = exp(lp);
        if (pi > 0)
            kl += pi * (lp - (q[i] - lzq));
    }
    /* KL >= 0; rounding can leave -1e-17 when p and q nearly agree */
    return kl > 0 ? kl : 0;
}

/* Undo decode steps: back to base_pos + steps positions (every decode
 * step appends one entry to every head). */
static void rollback(jq_kv_store *kv, int32_t base_pos, int32_t steps)
{
    jq_kv_store_drop_last(kv, kv->next_pos - (base_pos + steps));
}

int jq_metrics_evicted(jq_ctx *c, const int32_t *tokens,
                       const jq_metrics_ref *ref, const jq_prefill_params *p,
                       int32_t budget, jq_metrics_result *out,
                       int32_t *out_gen, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!ref->logits)
        return jq_fail(err, errlen, "the reference has no logits");
    const int32_t n = ref->n, V = ref->n_vocab;
    jq_prefill_params pp = *p;
    pp.reserve = n;
    pp.oracle_tokens = ref->gen;
    pp.n_oracle = n;
    float *logits = malloc(sizeof(float) * (size_t)V);
    int32_t *greedy = malloc(sizeof(int32_t) * (size_t)n);
    jq_prefill_result r = {0};
    int rc = -1;
    if (!logits || !greedy) {
        jq_set_err(err, errlen, "out of memory");
        goto done;
    }
    if (jq_prefill(c, tokens, ref->L, &pp, logits, &r, err, errlen) != 0)
        goto done;
    out->kv_bytes = r.kv_bytes_kept;
    out->prefill_ms = r.prefill_ms + r.score_ms + r.evict_ms;
    if (jq_metrics_coverage(ref, r.kept, budget, pp.spec.gqa_reduce,
                            &out->hit_rate, &out->mass_recall, err,
                            errlen) != 0)
        goto done;

    jq_kv_store *kv = jq_ctx_kv(c);
    int32_t base_pos = kv->next_pos;

    /* teacher forcing along the reference; greedy rides along while it
     * agrees */
    int32_t d = n;
    greedy[0] = jq_argmax(logits, V);
    double kl = 0;
    for (int32_t k = 0; k < n; k++) {
        if (d == n && greedy[k] != ref->gen[k])
            d = k;
        if (jq_ctx_eval(c, &ref->gen[k], 1, logits, err, errlen) != 0)
            goto done;
        kl += jq_kl_logits(ref->logits + (size_t)k * V, logits, V);
        if (d == n && k + 1 < n)
            greedy[k + 1] = jq_argmax(logits, V);
    }
    out->kl = kl / n;

    /* greedy alone from the first difference */
    if (d < n) {
        rollback(kv, base_pos, d);
        for (int32_t k = d; k + 1 < n; k++) {
            if (jq_ctx_eval(c, &greedy[k], 1, logits, err, errlen) != 0)
                goto done;
            greedy[k + 1] = jq_argmax(logits, V);
        }
    }
    int32_t same = 0;
    for (int32_t k = 0; k < n; k++)
        same += greedy[k] == ref->gen[k];
    out->agreement = (double)same / n;
    out->first_diff = d;
    if (out_gen)
        memcpy(out_gen, greedy, sizeof(int32_t) * (size_t)n);
    rc = 0;
done:
    jq_prefill_result_free(&r);
    free(greedy);
    free(logits);
    return rc;
}

/* ---- aggregation */

double jq_t975(int32_t df)
{
    /* Student's t, 0.975 quantile, df = 1..30 */
    static const double table[30] = {
        12.7062047, 4.3026527, 3.1824463, 2.7764451, 2.5705818, 2.4469119,
        2.3646243,  2.3060041, 2.2621572, 2.2281389, 2.2009852, 2.1788128,
        2.1603687,  2.1447867, 2.1314495, 2.1199053, 2.1098155, 2.1009220,
        2.0930241,  2.0859634, 2.0796138, 2.0738731, 2.0686576, 2.0638986,
        2.0595386,  2.0555294, 2.0518305, 2.0484071, 2.0452296, 2.0422725,
    };
    if (df < 1)
        return NAN;
    if (df <= 30)
        return table[df - 1];
    /* Cornish-Fisher expansion around the normal quantile (Abramowitz and
     * Stegun 26.7.5); error below 1e-6 from df = 31 on */
    const double z = 1.959963984540054, v = df;
    double z2 = z * z, z3 = z2 * z, z5 = z3 * z2, z7 = z5 * z2, z9 = z7 * z2;
    return z + (z3 + z) / (4 * v) + (5 * z5 + 16 * z3 + 3 * z) / (96 * v * v) +
           (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * v * v * v) +
           (79 * z9 + 776 * z7 + 1482 * z5 - 1920 * z3 - 945 * z) /
               (92160 * v * v * v * v);
}

void jq_mean_ci95(const double *x, int32_t n, double *mean, double *half)
{
    double sum = 0;
    int32_t k = 0;
    for (int32_t i = 0; i < n; i++)
        if (!isnan(x[i])) {
            sum += x[i];
            k++;
        }
    *mean = k > 0 ? sum / k : NAN;
    if (k < 2) {
        *half = NAN;
        return;
    }
    double ss = 0;
    for (int32_t i = 0; i < n; i++)
        if (!isnan(x[i]))
            ss += (x[i] - *mean) * (x[i] - *mean);
    *half = jq_t975(k - 1) * sqrt(ss / (k - 1)) / sqrt((double)k);
}
