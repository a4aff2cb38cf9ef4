/* train.h — training Judge Q soft tokens (`judgeq train`).
 *
 * Data (train_data.c): prompts from a JSONL file or sampled from the model
 * itself, each with the model's own greedy response (or the dataset's), and
 * the target A* = the response tokens' mean attention over the prompt for
 * every layer and query head, computed once with the full cache and cached
 * on disk keyed by the model, the example and the settings.
 *
 * Optimisation (train.c): Adam on the n x n_embd soft embeddings only, the
 * loss and gradient of soft_train.h averaged over a batch of examples that
 * the pool's threads share, a held-out split scored by loss and critical-KV
 * hit rate against SnapKV and streaming, and checkpoints (soft-token GGUF +
 * optimiser sidecar) from which --resume continues bit for bit.
 *
 * Determinism: every random choice (self-generated prompts, the held-out
 * split, the order of examples) derives from the seed and an index, every
 * example runs single-threaded and batch gradients are summed in batch
 * order, so results do not depend on the thread count or on which thread
 * ran what.
 */
#ifndef JQ_TRAIN_H
#define JQ_TRAIN_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "evict.h"
#include "model.h"
#include "pool.h"
#include "soft_tokens.h"

/* ------------------------------------------------------------- data */

typedef struct {
    int32_t L, m;     /* prompt and response tokens */
    int32_t *tokens;  /* (L + m): the prompt, then the response */
    float *raw;       /* (n_layer, n_head, L) Σ over response tokens of
                       * their attention on prompt key j (oracle scores) */
    float *target;    /* (n_layer, n_head, L) A* = raw / m */
    int64_t source;   /* 1-based line of the data file, or the index of a
                       * self-generated prompt */
    uint64_t key;     /* cache key */
} jq_train_example;

typedef struct {
    jq_train_example *ex;
    int32_t n;
    int32_t max_L, max_m;
    uint64_t key;     /* identity of the whole set (its examples' keys) */
    int32_t n_cached; /* examples whose targets came from the cache */
    int32_t n_bad;    /* lines skipped (--skip-bad-lines) */
} jq_train_set;

/* Reports a skipped line or a step of preparation (may be NULL). */
typedef void (*jq_train_log_fn)(void *ud, const char *msg);

typedef struct {
    const char *data_path;   /* JSONL: {"prompt": ..., "response": ...} */
    int32_t self_generate;   /* or N prompts sampled from the model */
    int32_t prompt_len;      /* self-generated prompt length (BOS included) */
    int32_t response_len;    /* greedy response tokens (default 64) */
    bool use_dataset_responses;
    bool skip_bad_lines;
    bool no_bos;
    uint64_t seed;
    const char *cache_dir;   /* NULL: no cache */
    int32_t n_soft;          /* the prompt needs n_soft positions after it */
    int32_t n_ctx;           /* context limit (the model's) */
    const volatile sig_atomic_t *stop; /* set asynchronously: give up */
    jq_train_log_fn log;
    void *log_ud;
} jq_train_data_opts;

/* Reads or generates the examples and their targets (from the cache when
 * it holds them, else computed with the pool's threads, one example per
 * thread, and written to the cache). Returns 0; -1 with a message naming
 * the file and line (malformed JSON, no "prompt", a prompt too long for
 * the context) or the failure; 1 when *stop was set. */
int jq_train_data_load(const jq_model *m, jq_pool *pool,
                       const jq_train_data_opts *o, jq_train_set *set,
                       char *err, size_t errlen);
void jq_train_set_free(jq_train_set *set);

/* A model identity for cache keys: the token-embedding hash, the
 * hyperparameters, every norm vector and the first and last 4 KiB of every
 * weight matrix (cheap even for GB-sized models, and a fine-tune of any
 * layer changes it). */
uint64_t jq_train_model_key(const jq_model *m);

/* --------------------------------------------------------- training */

typedef struct {
    int64_t step, total;      /* steps done / planned */
    double loss;              /* the last step's batch loss */
    double examples_per_s, eta_s;
    bool eval;                /* an evaluation just finished */
    double eval_loss, eval_hit; /* held-out loss and judgeq hit rate */
} jq_train_progress;

typedef struct {
    float lr, beta1, beta2, eps;
    int64_t steps;            /* total optimiser steps (incl. resumed ones) */
    int32_t batch;
    uint64_t seed;
    float loss_scale;         /* <= 0: each example's L */
    double eval_frac;
    int32_t eval_every;       /* 0: only at the start and the end */
    int32_t save_every;       /* 0: only at the end */
    jq_evict_spec judgeq;     /* the eval's judgeq spec (budget, window) */
    jq_evict_spec snapkv, streaming; /* the baselines, same budget */
    const char *out_path;     /* soft-token GGUF; PATH.adam the optimiser */
    size_t kv_mem_bytes;      /* prompt K/V kept in memory between steps */
    const volatile sig_atomic_t *stop; /* set: save and return */
    void (*progress)(void *ud, const jq_train_progress *p);
    void *progress_ud;
} jq_train_opts;

typedef struct {
    int32_t n_train, n_eval;
    int64_t start_step, steps_done;
    double train_loss_first, train_loss_last; /* batch losses */
    double eval_loss_start, eval_loss_final;
    double hit_start, hit_final, hit_snapkv, hit_streaming;
    double mass_start, mass_final, mass_snapkv, mass_streaming;
    double train_seconds, examples_per_s;
    int64_t examples_seen;
    size_t kv_cached_bytes;
    bool interrupted;
} jq_train_summary;

/* The optimiser state that travels beside a checkpoint. */
typedef struct {
    int32_t n, n_embd;
    uint64_t step;
    float *m, *v; /* (n, n_embd) Adam moments */
} jq_adam_state;

/* Trains soft (updated in place; n rows from its file or init) on set.
 * adam: the state to continue from (resume) or NULL (fresh). Writes
 * checkpoints to o->out_path. Returns 0 (also when interrupted: summary
 * says so), or -1 with a message. */
int jq_train(const jq_model *m, jq_pool *pool, const jq_train_set *set,
             jq_soft_tokens *soft, const jq_adam_state *adam,
             const jq_train_opts *o, jq_train_summary *summary, char *err,
             size_t errlen);

/* Loads the checkpoint at path (soft tokens for m) and its sidecar
 * PATH.adam, checking that they belong together and that the settings
 * that shape the trajectory (lr, betas, eps, batch, seed, loss scale,
 * held-out fraction, data) are the ones of o and set. 0, or -1 with a
 * message naming the file and the mismatch. */
int jq_train_resume_load(const char *path, const jq_model *m,
                         const jq_train_opts *o, const jq_train_set *set,
                         jq_soft_tokens **soft, jq_adam_state *adam,
                         char *err, size_t errlen);
void jq_adam_state_free(jq_adam_state *a);

#endif
