/* tokenizer.h — the vocabulary of a GGUF model and its tokenizers.
 *
 * Read from GGUF metadata (tokenizer.ggml.*). Two tokenizers, each exactly
 * as llama.cpp runs it: tokenizer.ggml.model = "llama" (SentencePiece-style:
 * the leading-space rule, merges by score, byte fallback <0xNN>) and
 * "gpt2" (byte-level BPE: a pre-tokenizer chosen by tokenizer.ggml.pre,
 * GPT-2's byte alphabet, merges by rank from tokenizer.ggml.merges). A gpt2
 * vocabulary whose pre-tokenizer judgeq does not know still loads (it
 * detokenizes) but jq_tokenize() reports it as unsupported.
 */
#ifndef JQ_TOKENIZER_H
#define JQ_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef enum {
    JQ_VOCAB_SPM = 1, /* tokenizer.ggml.model = llama */
    JQ_VOCAB_BPE = 2, /* tokenizer.ggml.model = gpt2 */
} jq_vocab_kind;

/* tokenizer.ggml.token_type values (llama.cpp's llama_token_type). */
enum {
    JQ_TOKEN_UNDEFINED = 0,
    JQ_TOKEN_NORMAL = 1,
    JQ_TOKEN_UNKNOWN = 2,
    JQ_TOKEN_CONTROL = 3,
    JQ_TOKEN_USER_DEFINED = 4,
    JQ_TOKEN_UNUSED = 5,
    JQ_TOKEN_BYTE = 6,
};

typedef struct jq_vocab jq_vocab;

/* Loads the vocabulary from g's metadata. It copies what it needs, so g may
 * be closed afterwards. NULL with a message in err on failure. */
jq_vocab *jq_vocab_load(const jq_gguf *g, char *err, size_t errlen);
void jq_vocab_free(jq_vocab *v);

jq_vocab_kind jq_vocab_kind_of(const jq_vocab *v);
int32_t jq_vocab_size(const jq_vocab *v);
int32_t jq_vocab_bos(const jq_vocab *v); /* -1 when none */
int32_t jq_vocab_eos(const jq_vocab *v); /* -1 when none */
bool jq_vocab_add_bos(const jq_vocab *v); /* what llama.cpp does by default */
int32_t jq_vocab_unk(const jq_vocab *v); /* -1 when none */
int32_t jq_vocab_pad(const jq_vocab *v); /* -1 when none */
/* SPM: the text gets a leading "▁" (tokenizer.ggml.add_space_prefix,
 * default true), so detokenizing starts with a space. */
bool jq_vocab_add_space_prefix(const jq_vocab *v);
/* Id of the token whose raw text is text[0..len), or -1 (hash lookup). */
int32_t jq_vocab_find(const jq_vocab *v, const char *text, size_t len);
float jq_vocab_token_score(const jq_vocab *v, int32_t id); /* 0 if none */
/* Raw token text as stored (e.g. "▁the", "<0x0A>"); NULL when out of range. */
const char *jq_vocab_token_text(const jq_vocab *v, int32_t id);
/* tokenizer.ggml.token_type as stored (NORMAL when the file has none);
 * -1 for an id out of range. */
int32_t jq_vocab_token_type(const jq_vocab *v, int32_t id);

/* Tokenizes text[0..len). UTF-8; invalid bytes go through byte fallback
 * (SPM) or become U+FFFD (BPE, as in llama.cpp, so such text does not
 * round-trip byte for byte). Special-token text is not parsed, but
 * user-defined tokens are cut out of the text first, as llama.cpp does. add_bos prepends BOS (when the vocab
 * has one). On success returns 0 and *ids (malloc'd, caller frees) / *n.
 * On failure returns -1 with a message in err. */
int jq_tokenize(const jq_vocab *v, const char *text, size_t len, bool add_bos,
                int32_t **ids, size_t *n, char *err, size_t errlen);

/* The text of one token as it appears in output: SPM "▁" becomes a space,
 * byte tokens <0xNN> become that byte, control tokens (BOS/EOS) give "".
 * This is llama.cpp's llama_token_to_piece with special = false (what its
 * command line prints): unknown (<unk>) and unused/undefined tokens give ""
 * too; user-defined tokens give their text; GPT-2 BPE tokens are decoded
 * from the byte-level alphabet. buf may be NULL when buflen is 0.
 * Writes at most buflen bytes (no NUL added) and returns the full length,
 * or -1 for an id out of range. */
int jq_token_to_piece(const jq_vocab *v, int32_t id, char *buf,
                      size_t buflen);

/* Concatenated pieces of ids[0..n) into a malloc'd NUL-terminated string;
 * NULL on allocation failure or an id out of range. Nothing is stripped:
 * SPM output keeps the leading space that add_space_prefix put there. */
char *jq_detokenize(const jq_vocab *v, const int32_t *ids, size_t n);

/* Sets the tokenizer.ggml.* metadata of a `llama` SentencePiece
 * vocabulary of n tokens on w: the pieces, their scores and token types,
 * <unk> 0, <s> 1 (added at the start), </s> 2. 0, or -1 with a message. */
int jq_spm_vocab_write(jq_gguf_writer *w, const char *const *tokens,
                       const float *scores, const int32_t *types, int32_t n,
                       char *err, size_t errlen);

#endif
