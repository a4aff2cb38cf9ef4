/* metrics.h — how far an evicted KV cache is from the full one, for one
 * prompt: the measures of ../shared/EVICTION.md that `judgeq hitrate` and
 * `judgeq eval` report, and the statistics eval aggregates them with.
 *
 * The reference of a prompt (jq_metrics_reference) is computed once with
 * the full cache: the greedy continuation, the full cache's next-token
 * logits along it, and the continuation's attention over the prompt (the
 * oracle scores, A* times its length). Each policy is then measured
 * against it (jq_metrics_evicted): the kept set's critical-KV hit rate and
 * attention-mass recall, greedy agreement, and KL along the reference.
 */
#ifndef JQ_METRICS_H
#define JQ_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "evict.h"
#include "model.h"
#include "prefill.h"

typedef struct {
    int32_t L, n;       /* prompt tokens, reference tokens */
    int32_t n_layer, n_head, n_vocab;
    int32_t *gen;       /* (n) greedy continuation with the full cache */
    /* (n, n_vocab) full-cache logits after each reference token: row k is
     * the distribution at position L + k, predicting what follows gen[k];
     * NULL unless asked for */
    float *logits;
    /* (n_layer, n_head, L) Σ over the n reference tokens (teacher-forced,
     * the causal view they had when generated) of their attention
     * probability on prompt position j: the oracle policy's raw scores */
    float *target;
} jq_metrics_ref;

/* Computes the reference of tokens[0..L) on c (reset first): n greedy
 * tokens, the logits along them when with_logits, and the target scores.
 * c's own store must hold L + n entries and its batch L + n rows. After
 * the call c holds the prompt only (the oracle pass leaves no K/V). 0, or
 * -1 with a message. */
int jq_metrics_reference(jq_ctx *c, const int32_t *tokens, int32_t L,
                         int32_t n, bool with_logits, jq_metrics_ref *ref,
                         char *err, size_t errlen);
void jq_metrics_ref_free(jq_metrics_ref *ref);

/* What policy p->spec keeps of the prompt, without evicting anything:
 * the policy's observer scores (jq_prefill_scores; the oracle reuses
 * ref->target) and jq_evict_select. kept has the shape (n_layer,
 * n_head_kv, L). The full policy keeps everything. 0, or -1. */
int jq_metrics_policy_kept(jq_ctx *c, const int32_t *tokens,
                           const jq_metrics_ref *ref,
                           const jq_prefill_params *p, jq_kept *kept,
                           char *err, size_t errlen);

/* Critical-KV hit rate and attention-mass recall of kept (EVICTION.md):
 * against the oracle set of `budget` (top-budget prompt positions per
 * (layer, KV head) by ref->target reduced with gqa; no pooling, nothing
 * forced) and the mass of ref->target reduced the same way. 0, or -1. */
int jq_metrics_coverage(const jq_metrics_ref *ref, const jq_kept *kept,
                        int32_t budget, jq_gqa_reduce gqa, double *hit_rate,
                        double *mass_recall, char *err, size_t errlen);

/* One policy at one budget on one prompt. */
typedef struct {
    double hit_rate;    /* [0, 1] */
    double mass_recall; /* [0, 1] */
    /* greedy decoding from the evicted cache vs ref->gen: the fraction of
     * the n tokens that equal the reference token at the same index, and
     * the first index where they differ (n when none does). Token 0 comes
     * from the prefill's last logits, which eviction cannot change, so it
     * always agrees. */
    double agreement;
    int32_t first_diff;
    /* mean over k < n of KL(full || evicted) in nats of the next-token
     * distributions at position L + k, both caches fed the reference
     * tokens (teacher forcing). Position L - 1 is left out: its
     * distribution comes from the prefill and is identical by
     * construction. */
    double kl;
    uint64_t kv_bytes;  /* K+V bytes of the kept prompt entries */
    double prefill_ms;  /* forward pass + scoring + compaction */
} jq_metrics_result;

/* Prefills tokens with p (its reserve is set to ref->n here), measures
 * everything in jq_metrics_result against ref (ref->logits required), with
 * hit rate and mass recall against the oracle set of `budget`. When out_gen
 * is non-NULL it receives the n greedy tokens of the evicted cache. c's own
 * store must hold L + max(n, n_soft) entries. 0, or -1 with a message. */
int jq_metrics_evicted(jq_ctx *c, const int32_t *tokens,
                       const jq_metrics_ref *ref, const jq_prefill_params *p,
                       int32_t budget, jq_metrics_result *out,
                       int32_t *out_gen, char *err, size_t errlen);

/* KL(P || Q) in nats of the softmaxes of logits p and q (n entries),
 * computed in double; 0 when p and q are equal, never negative. */
double jq_kl_logits(const float *p, const float *q, int32_t n);

/* ---- aggregation over prompts */

/* The two-sided 95 % quantile of Student's t with df degrees of freedom
 * (exact to 7 digits for df <= 30, a Cornish-Fisher expansion beyond;
 * 1.959964 as df grows). NaN for df < 1. */
double jq_t975(int32_t df);
/* Mean of x[0..n) and the half-width of its 95 % confidence interval,
 * t(n - 1) * sd / sqrt(n) with the sample standard deviation: NaN half-width
 * for n < 2, NaN mean for n < 1. NaN entries are skipped (and not counted). */
void jq_mean_ci95(const double *x, int32_t n, double *mean, double *half);

#endif
