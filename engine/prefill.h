/* prefill.h — prefill with KV eviction: evaluate the prompt (with the
 * policy's observers scoring it), select what to keep, and compact the
 * kept entries into a store sized for the budget plus the tokens still to
 * generate. */
#ifndef JQ_PREFILL_H
#define JQ_PREFILL_H

#include <stdbool.h>
#include <stdint.h>

#include "evict.h"
#include "model.h"

typedef struct {
    jq_evict_spec spec;
    /* judgeq: the soft tokens (n_soft rows of n_embd floats), appended
     * after the prompt at positions L .. L + n_soft - 1 */
    const float *soft_embd;
    int32_t n_soft;
    /* oracle: the tokens the model generated after this prompt with the
     * full cache; their queries (teacher-forced, same causal view as when
     * they were generated) observe the prompt */
    const int32_t *oracle_tokens;
    int32_t n_oracle;
    uint32_t kv_type;  /* element type of the compacted store */
    int32_t reserve;   /* room per head for tokens still to generate */
    /* Always move the result into a new store, even when nothing is
     * evicted (a daemon's session owns its store; the context's own store
     * is the worker's scratch). */
    bool detach;
    /* Allocator of that store (NULL: the heap). */
    jq_kv_alloc_fn alloc;
    void *alloc_ud;
} jq_prefill_params;

typedef struct {
    double prefill_ms; /* the forward pass over the prompt and observers */
    double score_ms;   /* GQA reduction, pooling and selection */
    double evict_ms;   /* gathering the kept entries into the new store */
    uint64_t kv_bytes_full; /* K+V of all L prompt entries, kv_type */
    uint64_t kv_bytes_kept; /* K+V of the kept prompt entries, kv_type */
    jq_kept *kept;     /* what each (layer, KV head) kept; caller frees */
} jq_prefill_result;

/* Resets c, evaluates tokens[0..L) and applies spec. Afterwards the
 * context's active store holds only the kept entries (plus `reserve` room
 * per head) and the next token takes position L; logits (n_vocab, may be
 * NULL) are those of position L - 1, which observers cannot change. The
 * context's own store must hold L + max(n_soft, n_oracle) + (policy full:
 * reserve) entries and its batch that many rows.
 * Returns 0, or -1 with a message. */
int jq_prefill(jq_ctx *c, const int32_t *tokens, int32_t L,
               const jq_prefill_params *p, float *logits,
               jq_prefill_result *r, char *err, size_t errlen);
void jq_prefill_result_free(jq_prefill_result *r);

/* Raw observer scores for the policy over tokens[0..L), into
 * raw[(l * n_head + h) * L + j] (zeroed first): the forward pass is the
 * same as jq_prefill's, but nothing is evicted (the context keeps the full
 * prompt). For the hit-rate metric and tests. */
int jq_prefill_scores(jq_ctx *c, const int32_t *tokens, int32_t L,
                      const jq_prefill_params *p, float *raw, float *logits,
                      char *err, size_t errlen);

#endif
