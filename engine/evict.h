/* evict.h — prefill-time KV eviction: policies, their parameters, and the
 * selection of the entries to keep from observer attention scores.
 *
 * The algorithms and defaults are those of ../shared/EVICTION.md. Scores
 * come in as raw sums of attention probabilities per (layer, query head,
 * prompt position); jq_evict_select reduces them over each GQA group, pools
 * them, and picks the kept positions per (layer, KV head). Selection is a
 * pure function of its inputs, so it is tested on hand-made patterns.
 */
#ifndef JQ_EVICT_H
#define JQ_EVICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    JQ_EVICT_FULL = 0,  /* keep everything (reference) */
    JQ_EVICT_STREAMING, /* first `sink` + most recent B - sink */
    JQ_EVICT_H2O,       /* all prompt queries observe, per-key normalised */
    JQ_EVICT_SNAPKV,    /* last `window` prompt queries observe */
    JQ_EVICT_PYRAMIDKV, /* snapkv scores, per-layer budgets shrinking */
    JQ_EVICT_ADAKV,     /* snapkv scores, per-head budgets in a layer */
    JQ_EVICT_JUDGEQ,    /* n soft tokens appended after the prompt observe */
    JQ_EVICT_ORACLE,    /* the generated tokens observe (evaluation only) */
    JQ_EVICT_COUNT_
} jq_evict_policy;

typedef enum { JQ_GQA_MEAN = 0, JQ_GQA_MAX = 1 } jq_gqa_reduce;

typedef struct {
    jq_evict_policy policy;
    int32_t budget;      /* B: prompt entries kept per (layer, KV head),
                          * window included (the mean for pyramid/adakv) */
    int32_t window;      /* w: recent prompt tokens always kept (and, for
                          * snapkv-family, the observers); default 32 */
    int32_t sink;        /* streaming: first tokens kept; default 4 */
    int32_t pool_kernel; /* odd max-pool width over positions; 1 = off; 7 */
    jq_gqa_reduce gqa_reduce; /* default mean */
    float adakv_alpha;   /* adakv floor share of B - w; default 0.2 */
    float pyramid_beta;  /* pyramidkv; default 20 */
} jq_evict_spec;

/* The defaults of EVICTION.md for policy p with budget B. */
jq_evict_spec jq_evict_spec_default(jq_evict_policy p, int32_t budget);
const char *jq_evict_policy_name(jq_evict_policy p);
/* -1 when unknown. Names: full streaming h2o snapkv pyramidkv adakv judgeq
 * oracle. */
int jq_evict_policy_from_name(const char *name);
/* Checks a spec before any work: budget >= 1, window >= 0, window <
 * budget for policies that force a window (window <= budget - 1), sink in
 * [0, budget], pool kernel odd and >= 1, alpha in [0, 1], beta >= 1.
 * 0, or -1 with a message naming the parameter. */
int jq_evict_spec_check(const jq_evict_spec *spec, char *err, size_t errlen);

/* Which prompt rows observe for the policy (so the forward pass knows what
 * to score): rows [*row0, *row1) of a prompt of length L. For judgeq the
 * observers are the soft rows after the prompt and oracle's are generated
 * tokens: both return an empty range here. full/streaming: empty. */
void jq_evict_observer_rows(const jq_evict_spec *spec, int32_t L,
                            int32_t *row0, int32_t *row1);
/* True when the policy needs attention scores at all. */
bool jq_evict_needs_scores(const jq_evict_policy p);

/* The kept entries per (layer, KV head). positions has room for L entries
 * per head: head (l, g) keeps positions[(l * n_head_kv + g) * L + i] for
 * i < counts[l * n_head_kv + g], ascending. */
typedef struct {
    int32_t n_layer, n_head_kv, L;
    int32_t *counts;    /* (n_layer, n_head_kv) */
    int32_t *positions; /* (n_layer, n_head_kv, L) */
} jq_kept;

/* Allocates a jq_kept for the shape (NULL on allocation failure). */
jq_kept *jq_kept_new(int32_t n_layer, int32_t n_head_kv, int32_t L);
void jq_kept_free(jq_kept *k);
/* Sum of counts. */
int64_t jq_kept_total(const jq_kept *k);

/* Selects what to keep.
 * raw: (n_layer, n_head, L) sums over the observers of their attention
 * probabilities on prompt position j (softmax over everything the observer
 * sees, sliced to j < L, not renormalised). For h2o the sums are over all
 * prompt queries and this function divides by L - j, the number of queries
 * that see j. Ignored (may be NULL) for full and streaming.
 * When L <= budget everything is kept. Returns 0, or -1 with a message. */
int jq_evict_select(const jq_evict_spec *spec, int32_t n_layer,
                    int32_t n_head, int32_t n_head_kv, int32_t L,
                    const float *raw, jq_kept *out, char *err, size_t errlen);

/* ---- the pieces of the pipeline, exposed for tests and for the oracle
 * set of the hit-rate metric */

/* s[j] = mean or max over the G = n_head / n_head_kv query heads of KV
 * head g: reads raw rows (h = g*G .. g*G+G-1) of one layer. */
void jq_evict_gqa_reduce(const float *raw_layer, int32_t n_head,
                         int32_t n_head_kv, int32_t g, int32_t L,
                         jq_gqa_reduce how, float *s);
/* Per-layer capacities (window excluded) of PyramidKV, summing to
 * n_layer * (B - w) up to integer rounding; writes n_layer values. */
void jq_evict_pyramid_caps(int32_t n_layer, int32_t L, int32_t budget,
                           int32_t window, float beta, int32_t *caps);

#endif
