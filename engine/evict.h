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
/* Checks a spec before any work: a known policy and GQA reduction,
 * budget >= 1, window >= 0, pool kernel odd and >= 1, alpha in [0, 1],
 * beta >= 1 (these hold for every policy, so a bad flag is caught even
 * where it is unused). Policy-specific: window < budget (window <= budget
 * - 1) for the policies that force a window (h2o snapkv pyramidkv adakv
 * judgeq); window >= 1 for snapkv, pyramidkv and adakv, whose observers
 * are the window (w = 0 would leave them without scores); sink in [0,
 * budget] for streaming. 0, or -1 with a message naming the parameter as
 * its command-line flag, e.g. "--window 32 must be smaller than --budget
 * 16". */
int jq_evict_spec_check(const jq_evict_spec *spec, char *err, size_t errlen);

/* Which prompt rows observe for the policy (so the forward pass knows what
 * to score): rows [*row0, *row1) of a prompt of length L. h2o: [0, L);
 * snapkv, pyramidkv, adakv: [max(0, L - window), L). For judgeq the
 * observers are the soft rows after the prompt and oracle's are generated
 * tokens: both return an empty range here. full/streaming: empty. An
 * empty range is [0, 0). */
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

/* Allocates a jq_kept for the shape, counts zeroed (NULL on allocation
 * failure or a negative or overflowing shape). */
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
 * When L <= budget everything is kept. Otherwise, per (layer, KV head):
 *   full       all L
 *   streaming  [0, sink) and the last B - sink
 *   h2o        last w + top (B - w) of [0, L - w) by pooled raw/(L - j)
 *   snapkv     last w + top (B - w) of [0, L - w) by pooled score
 *   judgeq     as snapkv (w may be 0)
 *   pyramidkv  last w + top caps[l] (jq_evict_pyramid_caps) as snapkv
 *   adakv      last w + top b_g as snapkv, b_g from jq_evict_adakv_budgets
 *   oracle     top B of [0, L) by the GQA-reduced raw score, no pooling,
 *              nothing forced (the S_oracle set of the hit rate)
 * The "pooled score" is the GQA-reduced score max-pooled over the
 * candidate range [0, L - w) only (the window's own scores never leak
 * into its neighbours, as in SnapKV's reference). Ranking: descending
 * score, ties to the lower position, NaN below everything. Positions are
 * written ascending. out must have the shape (n_layer, n_head_kv, L) and
 * n_head must be a multiple of n_head_kv. Returns 0, or -1 with a
 * message. */
int jq_evict_select(const jq_evict_spec *spec, int32_t n_layer,
                    int32_t n_head, int32_t n_head_kv, int32_t L,
                    const float *raw, jq_kept *out, char *err, size_t errlen);

/* ---- the pieces of the pipeline, exposed for tests and for the oracle
 * set of the hit-rate metric */

/* s[j] = mean or max over the G = n_head / n_head_kv query heads of KV
 * head g: reads raw rows (h = g*G .. g*G+G-1) of one layer. A NaN makes
 * the mean NaN (which ranks lowest); max ignores NaNs unless all are. */
void jq_evict_gqa_reduce(const float *raw_layer, int32_t n_head,
                         int32_t n_head_kv, int32_t g, int32_t L,
                         jq_gqa_reduce how, float *s);
/* out[j] = max of in[j - r .. j + r] clipped to [0, n), r = (kernel-1)/2:
 * torch's max_pool1d(kernel, stride 1, padding r), whose padding never
 * wins. NaN inputs are skipped (NaN only when the whole window is NaN).
 * kernel 1 copies. in and out must not overlap. */
void jq_evict_max_pool(const float *in, int32_t n, int32_t kernel,
                       float *out);
/* Per-layer capacities (window excluded) of PyramidKV; writes n_layer
 * values. With C = B - w (0 if negative): min = C/beta, max = 2C - min; if
 * max >= L - w then max = L - w, min = 2C - max; x_l = max - l (max - min)
 * / (n_layer - 1) in real arithmetic (their sum is exactly n_layer C).
 * Rounding: cap_l = floor(x_l), then the n_layer C - sum floor(x_l)
 * leftover units go one each to the layers with the largest fractional
 * parts (ties to the lower layer), which keeps the caps non-increasing
 * and the total exactly n_layer C. Each cap is in [0, max(0, L - w)];
 * when L - w < C (L < B, nothing is evicted) every cap is max(0, L - w).
 * One layer gets min(C, L - w). */
void jq_evict_pyramid_caps(int32_t n_layer, int32_t L, int32_t budget,
                           int32_t window, float beta, int32_t *caps);
/* AdaKV's per-head budgets (window excluded) for one layer. pooled holds
 * n_head_kv rows of n candidate scores (the pooled scores of [0, L - w),
 * so n = L - w) and C = B - w, 0 <= C <= n. count_g = how many of head
 * g's scores are among the top n_head_kv * C of all rows flattened
 * (ties: lower head, then lower position); x_g = (1 - alpha) count_g +
 * alpha C; b_g = floor(x_g) plus one of the n_head_kv C - sum floor(x_g)
 * leftover units for the heads with the largest fractional parts (ties to
 * the lower head) — "round, then renormalise" done in one step so the sum
 * is exactly n_head_kv C. x_g <= n, so b_g <= n; a cap pass (b_g <= n,
 * excess to the heads with room, lowest head first) guards rounding.
 * Returns 0, or -1 on bad arguments or allocation failure. */
int jq_evict_adakv_budgets(const float *pooled, int32_t n_head_kv,
                           int32_t n, int32_t C, float alpha, int32_t *b);

/* ---- evaluation metrics (EVICTION.md, "Critical-KV hit rate") */

/* Mean over (layer, KV head) of |S_policy ∩ S_oracle| / |S_oracle|; a
 * head whose oracle set is empty counts as 1. Both must have the same
 * shape and ascending positions (as jq_evict_select writes them). NaN
 * when the shapes differ or a shape has no heads. */
double jq_evict_hit_rate(const jq_kept *policy, const jq_kept *oracle);
/* Attention-mass recall. target: (n_layer, n_head, L) with the shape of
 * policy, the generated tokens' attention on the prompt (A*, or any
 * positive multiple of it: the ratio does not change). Per (layer, KV
 * head g): s = jq_evict_gqa_reduce(target layer, g, how) with values that
 * are NaN, infinite or negative counted as 0; recall = sum_{j kept} s(j) /
 * sum_j s(j), or 1 when sum_j s(j) is 0 (nothing to miss). Returns the
 * mean over (layer, KV head); NaN when n_head is not a positive multiple
 * of policy->n_head_kv, the shape has no heads, or memory runs out. */
double jq_evict_mass_recall(const jq_kept *policy, const float *target,
                            int32_t n_head, jq_gqa_reduce how);

#endif
