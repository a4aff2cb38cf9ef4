/* soft_train.h — the Judge Q soft-token loss of one example and its
 * gradient with respect to the soft embeddings.
 *
 * The model is frozen and the prompt's keys and values are constants, so
 * the forward pass runs over the n soft rows only: rows at positions
 * L .. L+n-1, each attending to all L prompt keys (read from the KV store
 * the prompt's evaluation filled) and causally to the earlier soft rows.
 * The prediction is A[l,h,j] = (1/n) Σ_s p_{s,l,h}(j), j < L: the soft
 * rows' mean attention probability on prompt key j (softmax over all the
 * keys a row sees, not renormalised to the prompt), for every layer l and
 * query head h — the observer scores of the judgeq eviction policy divided
 * by n. The loss (../shared/EVICTION.md, "Judge Q training") is
 *     loss = loss_scale * mean over (l, h, j) of (A - A*)^2
 * with the target A* = the mean attention of the model's own response
 * tokens on the prompt, and loss_scale = L by default (A ~ 1/L, so the
 * unscaled loss vanishes on long prompts).
 *
 * The backward runs through every layer (RMSNorm, the q/k/v matmuls with
 * respect to their input, RoPE, attention including the soft rows' own
 * keys and values and the direct gradient of the loss on the
 * probabilities, the output projection, the residuals, FFN RMSNorm, SwiGLU
 * and the down projection) to dE, the gradient of the loss with respect to
 * the n x n_embd soft embeddings. The top layer only matters through its
 * attention probabilities, so its output projection and FFN are skipped.
 *
 * One jq_soft_work is the scratch of one thread: the training loop gives
 * each worker its own and runs examples in parallel.
 */
#ifndef JQ_SOFT_TRAIN_H
#define JQ_SOFT_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "kv_store.h"
#include "model.h"

typedef struct jq_soft_work jq_soft_work;

/* Scratch for n_soft soft rows after prompts of up to max_L tokens on m.
 * NULL on allocation failure or a bad shape. */
jq_soft_work *jq_soft_work_new(const jq_model *m, int32_t n_soft,
                               int32_t max_L);
void jq_soft_work_free(jq_soft_work *w);
/* Bytes the workspace holds (for the memory report). */
size_t jq_soft_work_bytes(const jq_soft_work *w);

typedef struct {
    /* F32 store whose every head holds the prompt's L entries (keys after
     * RoPE) first, as jq_ctx_eval leaves them; no shared prefix. */
    const jq_kv_store *prompt_kv;
    int32_t L;
    /* A*: (n_layer, n_head, L); NULL computes no loss (scoring only). */
    const float *target;
    float loss_scale; /* <= 0: L */
} jq_soft_example;

/* Evaluates the soft rows E (n_soft x n_embd) after the example's prompt.
 * scores (may be NULL) receives the judgeq observer scores
 * Σ_s p_s(j) (n_layer, n_head, L) — the sums jq_prefill_scores produces, so
 * jq_evict_select picks what the judgeq policy would keep. With a target,
 * *loss receives the loss; with dE non-NULL too, dE (n_soft x n_embd)
 * receives its gradient (written, not accumulated). Returns 0, or -1 with a
 * message (a prompt longer than the workspace, a store of another shape or
 * type). */
int jq_soft_loss_grad(jq_soft_work *w, const float *E,
                      const jq_soft_example *ex, double *loss, float *dE,
                      float *scores, char *err, size_t errlen);

#endif
