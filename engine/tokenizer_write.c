/* tokenizer_write.c — the tokenizer.ggml.* metadata of a `llama`
 * SentencePiece vocabulary, as judgeq's own model writers produce it
 * (gen-model's random models, the recall language). */
#include "tokenizer.h"

#include "errors.h"

int jq_spm_vocab_write(jq_gguf_writer *w, const char *const *tokens,
                       const float *scores, const int32_t *types, int32_t n,
                       char *err, size_t errlen)
{
    int bad = 0;
    bad |= jq_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    bad |= jq_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tokens,
                                      (uint64_t)n);
    bad |= jq_gguf_writer_set_arr_f32(w, "tokenizer.ggml.scores", scores,
                                      (uint64_t)n);
    bad |= jq_gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", types,
                                      (uint64_t)n);
    bad |= jq_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    bad |= jq_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    bad |= jq_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    bad |= jq_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    bad |= jq_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false);
    if (bad)
        return jq_fail(err, errlen, "%s", jq_gguf_writer_error(w));
    return 0;
}
