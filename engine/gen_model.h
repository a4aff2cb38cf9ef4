/* gen_model.h — random-weight llama models of any shape, written as GGUF
 * with standard llama.cpp key and tensor names and a small SentencePiece
 * vocabulary (generic pieces, or the recall language's), so tests and benchmarks run at realistic sizes without
 * downloading anything. */
#ifndef JQ_GEN_MODEL_H
#define JQ_GEN_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int32_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
    uint32_t type;   /* weight type of the matrices: f32, f16, bf16, q8_0 */
    uint64_t seed;
    float rope_base;
    float rms_eps;
    const char *arch;    /* "llama" (default) or "qwen2" (q/k/v biases,
                          * NEOX RoPE) */
    bool rope_freqs;     /* write Llama 3.1-style rope_freqs.weight */
    float rope_linear;   /* > 1: rope.scaling.type linear with this factor */
    bool recall_vocab;   /* the recall language's tokenizer (recall_lang.h)
                          * instead of the pieces vocabulary; n_vocab must
                          * be jq_recall_n_vocab() */
} jq_gen_model_params;

/* Small defaults (a model that loads and runs in milliseconds). */
jq_gen_model_params jq_gen_model_defaults(void);
/* Checks the shape; 0, or -1 with a message naming the parameter. */
int jq_gen_model_check(const jq_gen_model_params *p, char *err,
                       size_t errlen);
/* Writes the model to path (atomically: temp file then rename). */
int jq_gen_model_write(const jq_gen_model_params *p, const char *path,
                       char *err, size_t errlen);

/* Smallest vocabulary: <unk> <s> </s>, 256 byte tokens, and "▁". */
#define JQ_GEN_MODEL_MIN_VOCAB 260

#endif
