/* prefill.c — see prefill.h.
 *
 * The observers score in the same forward pass as the prompt: SnapKV's
 * window and H2O's rows are prompt rows; Judge Q's soft tokens and the
 * oracle's generated tokens are extra rows after the prompt whose K/V are
 * dropped after the pass. No L x L attention matrix is ever materialised:
 * each observer row adds its probabilities into an (n_layer, n_head, L)
 * array inside the attention kernel.
 */
#include "errors.h"
#include "prefill.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* The forward pass over the prompt with the policy's observers scoring
 * into raw (when raw != NULL). */
static int scored_pass(jq_ctx *c, const int32_t *tokens, int32_t L,
                       const jq_prefill_params *p, float *raw, float *logits,
                       char *err, size_t errlen)
{
    const jq_hparams *hp = &jq_ctx_model(c)->hp;
    jq_eval_opts o = {.logits_row = L - 1};
    if (raw) {
        memset(raw, 0, sizeof(float) * (size_t)hp->n_layer * hp->n_head * L);
        o.scores = raw;
        o.n_score = L;
        switch (p->spec.policy) {
        case JQ_EVICT_JUDGEQ:
            if (!p->soft_embd || p->n_soft < 1) {
                jq_set_err(err, errlen, "the judgeq policy needs soft tokens");
                return -1;
            }
            o.extra_embd = p->soft_embd;
            o.n_extra = p->n_soft;
            o.score_row0 = L;
            o.score_row1 = L + p->n_soft;
            break;
        case JQ_EVICT_ORACLE:
            if (!p->oracle_tokens || p->n_oracle < 1) {
                jq_set_err(err, errlen,
                        "the oracle policy needs the generated tokens");
                return -1;
            }
            o.extra_tokens = p->oracle_tokens;
            o.n_extra = p->n_oracle;
            o.score_row0 = L;
            o.score_row1 = L + p->n_oracle;
            break;
        default:
            jq_evict_observer_rows(&p->spec, L, &o.score_row0, &o.score_row1);
            break;
        }
    }
    return jq_ctx_eval_ex(c, tokens, L, &o, logits, err, errlen);
}

int jq_prefill_scores(jq_ctx *c, const int32_t *tokens, int32_t L,
                      const jq_prefill_params *p, float *raw, float *logits,
                      char *err, size_t errlen)
{
    jq_ctx_reset(c);
    return scored_pass(c, tokens, L, p, raw, logits, err, errlen);
}

int jq_prefill(jq_ctx *c, const int32_t *tokens, int32_t L,
               const jq_prefill_params *p, float *logits,
               jq_prefill_result *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    const jq_hparams *hp = &jq_ctx_model(c)->hp;
    if (L < 1) {
        jq_set_err(err, errlen, "empty prompt");
        return -1;
    }
    /* the full cache has no budget to check */
    if (p->spec.policy != JQ_EVICT_FULL &&
        jq_evict_spec_check(&p->spec, err, errlen) != 0)
        return -1;
    if (p->kv_type != JQ_TYPE_F32 && p->kv_type != JQ_TYPE_F16) {
        jq_set_err(err, errlen, "KV type must be f32 or f16");
        return -1;
    }
    bool evicting = p->spec.policy != JQ_EVICT_FULL && L > p->spec.budget;
    bool scoring = evicting && jq_evict_needs_scores(p->spec.policy);
    float *raw = NULL;
    if (scoring) {
        raw = malloc(sizeof(float) * (size_t)hp->n_layer * hp->n_head * L);
        if (!raw) {
            jq_set_err(err, errlen, "out of memory for scores of %d positions",
                    L);
            return -1;
        }
    }
    r->kept = jq_kept_new(hp->n_layer, hp->n_head_kv, L);
    if (!r->kept) {
        free(raw);
        jq_set_err(err, errlen, "out of memory");
        return -1;
    }

    jq_ctx_reset(c);
    double t0 = now_ms();
    if (scored_pass(c, tokens, L, p, raw, logits, err, errlen) != 0) {
        free(raw);
        jq_prefill_result_free(r);
        return -1;
    }
    double t1 = now_ms();
    r->prefill_ms = t1 - t0;

    jq_evict_spec spec = p->spec;
    if (spec.policy == JQ_EVICT_FULL)
        spec.budget = L; /* keep everything; the spec's budget is unused */
    if (jq_evict_select(&spec, hp->n_layer, hp->n_head, hp->n_head_kv, L,
                        raw, r->kept, err, errlen) != 0) {
        free(raw);
        jq_prefill_result_free(r);
        return -1;
    }
    free(raw);
    double t2 = now_ms();
    r->score_ms = scoring ? t2 - t1 : 0;

    r->kv_bytes_full = jq_kv_bytes_for(hp->n_layer, hp->n_head_kv,
                                       hp->head_dim, p->kv_type, L);
    r->kv_bytes_kept = 2ull * (uint64_t)jq_kept_total(r->kept) *
                       (uint64_t)hp->head_dim *
                       (p->kv_type == JQ_TYPE_F32 ? 4u : 2u);
    if (!evicting && !p->detach && jq_ctx_kv(c)->type == p->kv_type &&
        jq_kv_store_room(jq_ctx_kv(c)) >= p->reserve) {
        /* everything stays: keep decoding in the prefill store */
        return 0;
    }
    jq_kv_store *compact = jq_kv_store_gather_with(
        jq_ctx_kv(c), r->kept->counts, r->kept->positions, L, p->reserve,
        p->kv_type, p->alloc, p->alloc_ud);
    if (!compact) {
        jq_prefill_result_free(r);
        jq_set_err(err, errlen, "out of memory for the compacted KV store");
        return -1;
    }
    jq_ctx_set_kv(c, compact, true);
    r->evict_ms = now_ms() - t2;
    return 0;
}

void jq_prefill_result_free(jq_prefill_result *r)
{
    if (!r)
        return;
    jq_kept_free(r->kept);
    r->kept = NULL;
}
