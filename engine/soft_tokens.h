/* soft_tokens.h — Judge Q soft tokens: n trained input embeddings tied to
 * one model.
 *
 * Judge Q appends n "soft tokens" after the prompt as input embeddings
 * (not token ids); their attention over the prompt chooses which KV
 * entries survive eviction. They are an (n, n_embd) F32 matrix that only
 * makes sense with the model it was trained against, so the file records
 * which model that was and loading it with another one is an error.
 *
 * File format (GGUF v3):
 *   general.architecture              = "judgeq-soft-tokens" (never a model)
 *   judgeq.soft.format_version        u32 = 1
 *   judgeq.soft.n_tokens              u32 = n
 *   judgeq.soft.model_architecture    str   the model's general.architecture
 *   judgeq.soft.model_n_embd          u32
 *   judgeq.soft.model_n_layer         u32
 *   judgeq.soft.model_token_embd_hash str   16 lowercase hex digits of
 *                                           jq_model_embd_hash()
 *   optional provenance:
 *   judgeq.soft.init                  str   "random-tokens"
 *   judgeq.soft.seed                  u64
 *   judgeq.soft.init_token_ids        i32[n]
 *   judgeq.soft.trained_steps         u64
 *   tensor judgeq.soft_tokens         F32, GGUF shape [n_embd, n]
 *                                     (ne0 = n_embd: row i is soft token i)
 */
#ifndef JQ_SOFT_TOKENS_H
#define JQ_SOFT_TOKENS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

#define JQ_SOFT_ARCH "judgeq-soft-tokens"
#define JQ_SOFT_TENSOR "judgeq.soft_tokens"
#define JQ_SOFT_FORMAT_VERSION 1
#define JQ_SOFT_MAX_TOKENS 4096
#define JQ_SOFT_INIT_RANDOM_TOKENS "random-tokens"

typedef struct {
    int32_t n, n_embd;
    float *emb; /* (n, n_embd) row major, owned */

    /* the model this belongs to */
    uint64_t model_hash; /* jq_model_embd_hash() */
    char model_arch[32];
    int32_t model_n_layer;

    /* provenance (optional in files: empty / false / NULL / 0 if absent) */
    char init[32];           /* how the rows were initialised */
    bool has_seed;
    uint64_t seed;           /* the seed of that initialisation */
    int32_t *init_token_ids; /* (n) the tokens whose embeddings started it */
    uint64_t trained_steps;  /* optimiser steps since initialisation */
} jq_soft_tokens;

/* jqh64: judgeq's 64-bit non-cryptographic hash of a byte string (the
 * model-identity check needs speed and a low accidental-collision rate,
 * not resistance to attack).
 *
 * Four 64-bit lanes consume 32-byte stripes, each lane one little-endian
 * 8-byte word per stripe: lane = rotl(lane + word * K2, 31) * K1. The
 * lanes start from seed + a per-lane constant. After the stripes, the lanes
 * are merged (rotations by 1, 7, 12, 18, then each lane folded in again),
 * the length is added, the remaining whole words are folded one at a time,
 * the last 0..7 bytes as one zero-padded word, and a final xor-shift /
 * multiply avalanche spreads every input bit over the output. The exact
 * constants are in soft_tokens.c; tests pin known answers, so files
 * written by one build are accepted by the next. Words are read as
 * little-endian on any host, so the value does not depend on the CPU.
 * Throughput is memory-bound (~7 GB/s single-threaded on the development VM, about
 * what a plain XOR over the same bytes reaches there). */
uint64_t jq_hash64(const void *data, size_t len, uint64_t seed);

/* Identity of a model for soft tokens: jqh64 over all the raw bytes of
 * token_embd.weight as stored in the file, seeded with jqh64 of a 32-byte
 * descriptor (type, ne0, ne1, byte size as little-endian u64), so another
 * quantization or another shape of the same values also differs. */
uint64_t jq_model_embd_hash(const jq_model *m);

/* n (1..JQ_SOFT_MAX_TOKENS) soft tokens initialised to the F32 embeddings of
 * n ordinary tokens of m's vocabulary (token type NORMAL: no control, byte,
 * unknown, unused or user-defined tokens), chosen pseudo-randomly from seed:
 * distinct while the vocabulary has enough of them, each NORMAL token once
 * per round otherwise. The same model and seed give the same tokens on
 * every platform. NULL with a message on failure. */
jq_soft_tokens *jq_soft_tokens_init(const jq_model *m, int32_t n,
                                    uint64_t seed, char *err, size_t errlen);

/* Loads and validates a soft-token file: the tensor (F32, 2-D, 1..4096
 * rows, every value finite), the metadata (present and consistent with the
 * tensor) and, when m is non-NULL, that it was made for m (architecture,
 * n_embd, n_layer, token-embedding hash). m == NULL loads without the model
 * check (inspection tools). NULL with a message naming the file and what is
 * wrong on failure; a truncated or corrupt file is the GGUF reader's error. */
jq_soft_tokens *jq_soft_tokens_load(const char *path, const jq_model *m,
                                    char *err, size_t errlen);

/* Writes s to path atomically (the GGUF writer writes PATH.tmp, fsyncs and
 * renames). With m non-NULL the model metadata comes from m, and s must
 * have been made for it (same n_embd and hash); with m == NULL it comes
 * from s's own model_* fields. Refuses non-finite values, so every file it
 * writes loads. 0, or -1 with a message. */
int jq_soft_tokens_save(const jq_soft_tokens *s, const jq_model *m,
                        const char *path, char *err, size_t errlen);

void jq_soft_tokens_free(jq_soft_tokens *s);

#endif
