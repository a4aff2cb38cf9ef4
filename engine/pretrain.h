/* pretrain.h — training a small llama model from random initialisation
 * (`judgeq pretrain`, issue 9).
 *
 * The model is the llama architecture judgeq runs (engine/model.c): token
 * embeddings, n_layer blocks of RMSNorm -> GQA attention with RoPE (llama's
 * adjacent-pair layout) -> residual -> RMSNorm -> SwiGLU -> residual, a
 * final RMSNorm and an untied output matrix, all F32, rms eps and RoPE base
 * as in the exported GGUF. Training data are whole sequences (one example
 * each) with loss only on tokens[n_prompt, n_tokens): the answer and its
 * EOS.
 *
 * Pieces (one file each):
 *   pretrain_model.c   parameters, seeded initialisation, the forward and
 *                      backward pass over a group of sequences
 *   pretrain_attn.c    causal attention forward/backward a block of query
 *                      rows at a time (no L x L matrix)
 *   adamw.c            AdamW, the learning-rate schedule, clipping
 *   pretrain.c         the trainer: a step over a batch on a thread pool
 *   pretrain_ckpt.c    checkpoints (resumable bit for bit) and the final
 *                      llama GGUF
 */
#ifndef JQ_PRETRAIN_H
#define JQ_PRETRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "pool.h"

typedef struct {
    int32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff;
    int32_t n_ctx;   /* longest sequence (tokens) trained and exported */
    float rope_base; /* 10000 */
    float rms_eps;   /* 1e-5 */
    bool tie_embd;   /* the classifier is the token embedding (no
                      * output.weight), as Llama-3.2-1B; copying a token
                      * out of the context then needs no per-token map */
} jq_pt_hparams;

/* Per-layer tensors, in the order they are laid out and exported. */
enum {
    JQ_PT_ATTN_NORM = 0,
    JQ_PT_WQ,
    JQ_PT_WK,
    JQ_PT_WV,
    JQ_PT_WO,
    JQ_PT_FFN_NORM,
    JQ_PT_W_GATE,
    JQ_PT_W_UP,
    JQ_PT_W_DOWN,
    JQ_PT_LAYER_TENSORS
};

typedef struct {
    char name[48];      /* llama.cpp's name: "blk.0.attn_q.weight" */
    size_t offset;      /* first float in the parameter array */
    int64_t rows, cols; /* row major; a 1-D tensor has rows == 1 */
    bool decay;         /* AdamW applies weight decay (matrices except the
                         * token embedding) */
} jq_pt_tensor;

/* All parameters live in one array (so gradients, AdamW moments and the
 * checkpoint are flat arrays with the same layout). Tensor order: token_embd,
 * then per layer the JQ_PT_LAYER_TENSORS kinds, then output_norm, output. */
typedef struct {
    jq_pt_hparams hp;
    int32_t head_dim;       /* n_embd / n_head */
    int n_tensors;
    jq_pt_tensor *tensors;
    size_t n_params;
    float *params;          /* (n_params) */
} jq_pt_model;

/* Checks a shape; 0, or -1 with a message naming the parameter. */
int jq_pt_hparams_check(const jq_pt_hparams *hp, char *err, size_t errlen);
/* A model with the parameter layout of hp, every parameter 0 (NULL with a
 * message on a bad shape or out of memory). */
jq_pt_model *jq_pt_model_new(const jq_pt_hparams *hp, char *err,
                             size_t errlen);
void jq_pt_model_free(jq_pt_model *m);
/* Seeded initialisation: matrices normal with std 0.02 (the attention and
 * FFN output projections 0.02 / sqrt(2 n_layer), GPT-2's residual
 * scaling), norms 1; the same seed gives the same bits. */
void jq_pt_model_init(jq_pt_model *m, uint64_t seed);
/* Index of the tensor of kind `kind` in layer `layer`. */
int jq_pt_layer_tensor(const jq_pt_model *m, int layer, int kind);
#define JQ_PT_TOK_EMBD 0
int jq_pt_output_norm(const jq_pt_model *m);
int jq_pt_output(const jq_pt_model *m);

/* One training example: the model reads tokens[0, n_tokens - 1) and is
 * scored on predicting tokens[n_prompt, n_tokens) (1 <= n_prompt <
 * n_tokens <= n_ctx + 1). */
typedef struct {
    const int32_t *tokens;
    int32_t n_tokens;
    int32_t n_prompt;
} jq_pt_seq;

/* Sums over the scored tokens of some sequences. */
typedef struct {
    double loss_sum;        /* sum of -log p(target) */
    int64_t n_tokens;       /* scored tokens */
    int64_t n_correct;      /* of which argmax == target */
    int64_t n_seq;          /* sequences */
    int64_t n_seq_correct;  /* sequences whose every scored token is the
                             * argmax (greedy decoding reproduces the
                             * answer and its EOS) */
    int64_t n_positions;    /* positions computed (tokens read) */
    double ctx_loss_sum;    /* the prompt's next-token loss, when it is
                             * trained (context_loss > 0) */
    int64_t n_ctx_tokens;   /* prompt tokens it is summed over */
} jq_pt_stats;

/* ---------------------------------------------------------- the trainer */

typedef struct {
    int64_t steps;        /* total optimizer steps (the schedule's length) */
    float lr, min_lr;     /* peak and final learning rate */
    int64_t warmup;       /* linear warm-up steps, then cosine to min_lr */
    float weight_decay;   /* decoupled (AdamW), on matrices only */
    float beta1, beta2, eps;
    float clip;           /* global gradient-norm clip (0: none) */
    float context_loss;   /* weight of the mean next-token loss over the
                           * prompt beside the mean answer loss (0: the
                           * answer alone). Why: with the answer alone
                           * nothing rewards the previous-token heads that
                           * binding a key to its value is built from
                           * until binding already half works */
    int32_t group_tokens; /* tokens one thread processes at once (memory of
                           * the saved activations; at least n_ctx) */
    int32_t slots;        /* gradient slots, 1..JQ_PT_MAX_SLOTS: the batch
                           * is cut into this many parts, at most one
                           * thread each (pretrain.c) */
} jq_pt_opts;

jq_pt_opts jq_pt_opts_defaults(void);

typedef struct jq_pt_trainer jq_pt_trainer;

/* A trainer of m (which it uses, not owns) computing through pool (NULL:
 * the calling thread). Moments start at zero and step at 0. */
jq_pt_trainer *jq_pt_trainer_new(jq_pt_model *m, const jq_pt_opts *o,
                                 jq_pool *pool, char *err, size_t errlen);
void jq_pt_trainer_free(jq_pt_trainer *t);

typedef struct {
    jq_pt_stats stats;   /* of the batch, before the update */
    double grad_norm;    /* global L2 norm before clipping */
    float lr;            /* the learning rate used */
} jq_pt_step_info;

/* One optimizer step on a batch of sequences: loss = mean over all scored
 * tokens of the batch; gradients, clipping, AdamW. The result does not
 * depend on the pool's thread count (at most o->slots threads are used;
 * pretrain.c says how). 0, or -1 with a message (a sequence out of range:
 * token id, length, n_prompt). */
int jq_pt_trainer_step(jq_pt_trainer *t, const jq_pt_seq *seqs, int n,
                       jq_pt_step_info *info, char *err, size_t errlen);
/* Forward only over seqs: loss and accuracy on their scored tokens. */
int jq_pt_trainer_eval(jq_pt_trainer *t, const jq_pt_seq *seqs, int n,
                       jq_pt_stats *st, char *err, size_t errlen);
/* Completed optimizer steps. */
int64_t jq_pt_trainer_steps_done(const jq_pt_trainer *t);
/* The learning rate of step `step` (0-based) under o. */
float jq_pt_lr_at(const jq_pt_opts *o, int64_t step);

/* The most gradient slots a trainer may have (pretrain.c). */
#define JQ_PT_MAX_SLOTS 16

/* The logits of every position of one sequence tokens[0, n) (n x n_vocab,
 * row i predicting token i + 1), single-threaded: what judgeq's own
 * forward pass must reproduce from the exported GGUF. */
int jq_pt_logits(const jq_pt_model *m, const int32_t *tokens, int32_t n,
                 float *logits, char *err, size_t errlen);

/* ------------------------------------------------------ files (ckpt.c) */

/* Writes a checkpoint (atomically: PATH.tmp, fsync, rename): the
 * parameters and AdamW moments as F32 tensors, the step, the shape, and
 * `config`, a caller's text describing everything else the run depends
 * on (data seed, schedule), which resuming compares. */
int jq_pt_checkpoint_save(const jq_pt_trainer *t, const char *config,
                          const char *path, char *err, size_t errlen);
/* Reads a checkpoint: a new model (*model) and its config text (*config,
 * malloc'd). The trainer is made by jq_pt_trainer_resume from them. */
int jq_pt_checkpoint_load(const char *path, jq_pt_model **model,
                          char **config, char *err, size_t errlen);
/* Restores t's moments and step from the checkpoint at path (the one its
 * model was loaded from). */
int jq_pt_trainer_resume(jq_pt_trainer *t, const char *path, char *err,
                         size_t errlen);

/* Overwrites m's parameters with the tensors of an exported model (a
 * GGUF from jq_pt_export_gguf, matrices F32, F16 or BF16): how a recipe
 * trains in stages, each starting from the weights of the one before.
 * Every tensor of m must be there with m's shape; the context length may
 * differ (nothing in the weights depends on it). */
int jq_pt_model_load_weights(jq_pt_model *m, const char *path, char *err,
                             size_t errlen);

/* Sets the tokenizer.ggml.* keys of the exported model. */
typedef int (*jq_pt_tokenizer_fn)(void *ud, jq_gguf_writer *w, char *err,
                                  size_t errlen);

/* Writes the model as a llama GGUF (atomically) that judgeq, judgeqd and
 * llama.cpp load: general.architecture "llama", the llama.* keys, tensors
 * named as llama.cpp names them, the matrices in out_type (JQ_TYPE_F32 or
 * JQ_TYPE_F16; norms stay F32), the tokenizer from tok(ud, ...). */
int jq_pt_export_gguf(const jq_pt_model *m, uint32_t out_type,
                      const char *name, jq_pt_tokenizer_fn tok, void *ud,
                      const char *path, char *err, size_t errlen);

#endif
