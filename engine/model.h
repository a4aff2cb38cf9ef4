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
    char arch[32];       /* general.architecture ("llama") */
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
    bool rope_neox;      /* pair layout: false = adjacent pairs (llama) */
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
    float *norms;         /* owned F32 copies of every norm vector */
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

typedef struct jq_ctx jq_ctx;

/* A sequence of up to n_ctx positions on model m, computing through pool
 * (NULL: the calling thread only). max_batch bounds the tokens of one
 * jq_ctx_eval call (it sizes the activations; 0 = n_ctx). */
jq_ctx *jq_ctx_new(const jq_model *m, int32_t n_ctx, int32_t max_batch,
                   jq_pool *pool, char *err, size_t errlen);
void jq_ctx_free(jq_ctx *c);
int32_t jq_ctx_n_past(const jq_ctx *c);
int32_t jq_ctx_n_ctx(const jq_ctx *c);
/* Forgets the sequence (n_past = 0); buffers are kept. */
void jq_ctx_reset(jq_ctx *c);
/* KV cache bytes this context holds for n positions. */
uint64_t jq_ctx_kv_bytes(const jq_ctx *c, int32_t n_positions);

/* Evaluates tokens[0..n) at positions n_past.. n_past+n-1 in one batch and
 * appends their K/V. When logits is non-NULL it receives the n_vocab logits
 * of the last token. Returns 0, or -1 with a message (token id out of the
 * vocabulary, context full, n > max_batch). */
int jq_ctx_eval(jq_ctx *c, const int32_t *tokens, int32_t n, float *logits,
                char *err, size_t errlen);

#endif
