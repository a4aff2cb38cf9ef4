/* naive_llama.h — an independent, double-precision llama forward pass for
 * tests: whole attention matrices, no kernels, no KV store. It checks the
 * engine's scoring, eviction and decode against first principles. F32,
 * F16 and BF16 models (gen-model --type f32|f16|bf16, stories260K). */
#ifndef JQ_NAIVE_LLAMA_H
#define JQ_NAIVE_LLAMA_H

#include <stdbool.h>
#include <stdint.h>

#include "model.h"

typedef struct {
    const int32_t *tokens;   /* rows [0, n_tokens) are these tokens */
    int32_t n_tokens;
    const float *extra_embd; /* then n_extra rows of input embeddings */
    int32_t n_extra;
    /* Rows >= mask_from see key j < mask_len only when
     * keep[(l * n_head_kv + g) * mask_len + j] (NULL: no mask). */
    const bool *keep;
    int32_t mask_from, mask_len;
    /* Rows [score_row0, score_row1) add their attention probabilities of
     * keys [0, n_score) into scores[(l * n_head + h) * n_score + j]. */
    double *scores;
    int32_t score_row0, score_row1, n_score;
    int32_t logits_row;      /* row whose logits are written to logits */
    double *logits;          /* n_vocab, may be NULL */
} naive_run;

/* Runs the model over all rows; 0 or -1 (unsupported weight type). */
int naive_forward(const jq_model *m, const naive_run *r);

#endif
