/* model.h — a Llama-architecture model loaded from GGUF, and its forward
 * pass.
 *
 * Three plain structs, as in llama2.c: hyperparameters (jq_hparams),
 * weights (jq_model: pointers into the memory-mapped file), and run state
 * (jq_ctx: activations and the KV cache of one sequence). Objects come in
 * pairs: jq_model_load / jq_model_free, jq_ctx_new / jq_ctx_free.
 */
#ifndef JQ_MODEL_H
#define JQ_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "pool.h"
#include "tokenizer.h"

typedef struct {
    char arch[32];       /* general.architecture ("llama" or "qwen2") */
    int32_t n_vocab;     /* rows of token_embd */
    int32_t n_ctx_train; /* {arch}.context_length */
    int32_t n_embd;      /* {arch}.embedding_length */
    int32_t n_layer;     /* {arch}.block_count */
    int32_t n_head;      /* {arch}.attention.head_count */
    int32_t n_head_kv;   /* {arch}.attention.head_count_kv (GQA) */
    int32_t head_dim;    /* n_embd / n_head (or {arch}.attention.key_length) */
    int32_t n_ff;        /* {arch}.feed_forward_length */
    int32_t rope_dim;    /* {arch}.rope.dimension_count (default head_dim) */
    float rope_base;     /* {arch}.rope.freq_base (default 10000) */
    float rms_eps;       /* {arch}.attention.layer_norm_rms_epsilon */
    bool rope_neox;      /* pair layout: false = adjacent pairs (llama),
                          * true = halves (qwen2, llama.cpp's NEOX) */
    float rope_linear;   /* {arch}.rope.scaling.factor with type linear
                          * (positions divided by it), else 1 */
} jq_hparams;

/* A weight matrix: `rows` rows of `cols` elements of `type`, row major
 * (GGUF shape [ne0 = cols, ne1 = rows]). */
typedef struct {
    const void *data;
    uint32_t type;
    int64_t rows, cols;
    size_t row_bytes;
} jq_matrix;

typedef struct {
    const float *attn_norm; /* (n_embd) */
    const float *bq, *bk, *bv; /* q/k/v biases (qwen2), or NULL */
    jq_matrix wq;           /* (n_head * head_dim, n_embd) */
    jq_matrix wk;           /* (n_head_kv * head_dim, n_embd) */
    jq_matrix wv;           /* (n_head_kv * head_dim, n_embd) */
    jq_matrix wo;           /* (n_embd, n_head * head_dim) */
    const float *ffn_norm;  /* (n_embd) */
    jq_matrix w_gate;       /* (n_ff, n_embd) */
    jq_matrix w_up;         /* (n_ff, n_embd) */
    jq_matrix w_down;       /* (n_embd, n_ff) */
} jq_layer;

typedef struct jq_model {
    jq_hparams hp;
    jq_gguf *gguf;        /* owns the mapping the matrices point into */
    jq_vocab *vocab;
    jq_matrix tok_embd;   /* (n_vocab, n_embd) */
    const float *output_norm; /* (n_embd) */
    jq_matrix output;     /* (n_vocab, n_embd); tok_embd when tied */
    bool output_tied;
    jq_layer *layers;     /* (n_layer) */
    float *norms;         /* owned F32 copies of norms and biases */
    /* RoPE frequency divisors (rope_dim / 2): rope_freqs.weight (Llama 3
     * scaling) times the linear factor; NULL when neither applies */
    float *rope_factors;
    char *path;
} jq_model;

/* Loads a llama-architecture GGUF. NULL with a message in err on failure:
 * unsupported architecture, a missing or misshapen tensor, a tensor type
 * judgeq cannot compute with, inconsistent hyperparameters. */
jq_model *jq_model_load(const char *path, char *err, size_t errlen);
void jq_model_free(jq_model *m);
/* Bytes of weights (sum of tensor sizes). */
uint64_t jq_model_weight_bytes(const jq_model *m);

/* ------------------------------------------------------------ run state */

#include "kv_store.h"

typedef struct jq_ctx jq_ctx;

/* Activations for batches of up to max_batch rows (0 = n_ctx) on model m,
 * computing through pool (NULL: the calling thread only), plus the
 * context's own KV store of n_ctx positions per head in kv_type (F32 or
 * F16), which is the active store until jq_ctx_set_kv replaces it. */
jq_ctx *jq_ctx_new(const jq_model *m, int32_t n_ctx, int32_t max_batch,
                   jq_pool *pool, char *err, size_t errlen);
jq_ctx *jq_ctx_new_typed(const jq_model *m, int32_t n_ctx, int32_t max_batch,
                         uint32_t kv_type, jq_pool *pool, char *err,
                         size_t errlen);
void jq_ctx_free(jq_ctx *c);
const jq_model *jq_ctx_model(const jq_ctx *c);
int32_t jq_ctx_max_batch(const jq_ctx *c);
/* The position the next token takes (= tokens evaluated so far). */
int32_t jq_ctx_n_past(const jq_ctx *c);
/* Capacity of the context's own store per head. */
int32_t jq_ctx_n_ctx(const jq_ctx *c);
/* Forgets the sequence: the own store becomes the active one, emptied (a
 * store set with jq_ctx_set_kv(owned = true) is freed). */
void jq_ctx_reset(jq_ctx *c);
/* KV cache bytes (keys + values) for n positions in every head. */
uint64_t jq_ctx_kv_bytes(const jq_ctx *c, int32_t n_positions);

/* The store the next evaluation reads and appends to. */
jq_kv_store *jq_ctx_kv(jq_ctx *c);
/* The context's own (prefill scratch) store. */
jq_kv_store *jq_ctx_own_kv(jq_ctx *c);
/* Makes kv the active store (its shape must match the model). With owned,
 * the context frees it when it is replaced, on reset, or at jq_ctx_free. */
void jq_ctx_set_kv(jq_ctx *c, jq_kv_store *kv, bool owned);
/* Hands the active store to the caller (who then owns it, when the
 * context owned it) and makes the context's own store active again,
 * emptied. Returns NULL when the active store was the own one. */
jq_kv_store *jq_ctx_detach_kv(jq_ctx *c);

/* Options of one evaluation (all zero = plain evaluation). */
typedef struct {
    /* Extra rows evaluated after the n tokens, at the following positions:
     * either token ids (extra_tokens) or input embeddings (extra_embd,
     * n_extra rows of n_embd floats: Judge Q soft tokens). */
    const int32_t *extra_tokens;
    const float *extra_embd;
    int32_t n_extra;
    /* When true the extra rows' K/V are kept in the store and the position
     * advances past them; when false (observers) they are dropped after
     * the pass and the next token takes position n_past + n. */
    bool keep_extra;
    /* Scoring: batch rows [score_row0, score_row1) add their attention
     * probabilities of store entries [0, n_score) into
     * scores[(l * n_head + h) * n_score + j] (accumulated). */
    float *scores;
    int32_t score_row0, score_row1, n_score;
    /* Which batch row's logits to return (-1: the last of the n tokens). */
    int32_t logits_row;
} jq_eval_opts;

/* Evaluates tokens[0..n) (and any extra rows) in one batch at positions
 * n_past.., appending their K/V to the active store. When logits is
 * non-NULL it receives the n_vocab logits of the chosen row. Returns 0, or
 * -1 with a message (token id out of the vocabulary, store full, batch
 * larger than max_batch). */
int jq_ctx_eval(jq_ctx *c, const int32_t *tokens, int32_t n, float *logits,
                char *err, size_t errlen);
int jq_ctx_eval_ex(jq_ctx *c, const int32_t *tokens, int32_t n,
                   const jq_eval_opts *opts, float *logits, char *err,
                   size_t errlen);

#endif
