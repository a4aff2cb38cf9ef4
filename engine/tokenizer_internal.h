/* tokenizer_internal.h — the vocabulary's layout, shared by tokenizer.c
 * (loading, lookup, pieces, cutting user-defined tokens out of text),
 * tokenizer_spm.c (the SPM tokenizer), tokenizer_bpe.c (byte-level BPE) and
 * tokenizer_pretok.c (its pre-tokenizers). Not a public interface. */
#ifndef JQ_TOKENIZER_INTERNAL_H
#define JQ_TOKENIZER_INTERNAL_H

#include "tokenizer.h"

/* Token attributes as llama.cpp derives them (llama_token_attr). They start
 * from tokenizer.ggml.token_type but llama.cpp then adjusts them by token
 * text (e.g. "<|endoftext|>" always becomes control), and both tokenizing
 * and rendering pieces depend on the adjusted value, so we keep both. */
enum {
    JQ_ATTR_UNKNOWN = 1u << 0,
    JQ_ATTR_UNUSED = 1u << 1,
    JQ_ATTR_NORMAL = 1u << 2,
    JQ_ATTR_CONTROL = 1u << 3,
    JQ_ATTR_USER_DEFINED = 1u << 4,
    JQ_ATTR_BYTE = 1u << 5,
    JQ_ATTR_LSTRIP = 1u << 6, /* eat whitespace left of the token's text */
    JQ_ATTR_RSTRIP = 1u << 7, /* eat whitespace right of it */
};

struct jq_vocab {
    jq_vocab_kind kind;
    int32_t n;           /* number of tokens */
    char *arena;         /* all token texts, each NUL-terminated */
    size_t *off;         /* token i's text is arena + off[i] ... */
    uint32_t *len;       /* ... of len[i] bytes */
    float *score;        /* SPM merge priority (0 when the file has none) */
    int32_t *type;       /* tokenizer.ggml.token_type as stored */
    uint16_t *attr;      /* JQ_ATTR_* (derived, see above) */

    /* text -> id: open addressing, linear probing, power-of-two size. */
    int32_t *table;
    size_t table_mask;

    int32_t bos, eos, unk, pad; /* -1 when none */
    bool add_bos;
    bool add_space_prefix;

    /* Byte fallback token for each byte value, -1 when the vocabulary has
     * neither <0xNN> nor the bare byte (tokenizing then uses unk). */
    int32_t byte_token[256];

    /* Tokens that are matched in raw text before the SPM or BPE pass
     * (llama.cpp's user-defined tokens), longest text first. */
    int32_t *split_ids;
    size_t n_split;
    /* Hashes of every prefix of every such token (0 = empty slot), so that
     * finding which of them occur in a text is one pass over the text
     * rather than one search per token: some vocabularies have thousands
     * (deepseek-llm: 2398 [PAD...] tokens). */
    uint64_t *split_prefix;
    size_t split_prefix_mask;
    uint32_t split_max_len;

    /* Byte-level BPE state (merges, pre-tokenizer); NULL for SPM. */
    struct jq_bpe *bpe;
};

/* Id of the token whose text is s[0..len), or -1. */
int32_t jq_vocab_lookup(const jq_vocab *v, const char *s, size_t len);

/* The SPM tokenizer (tokenizer_spm.c). Appends to a growing id list. */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} jq_idvec;

int jq_idvec_push(jq_idvec *o, int32_t id);
int jq_spm_tokenize(const jq_vocab *v, const char *text, size_t len,
                    bool add_bos, jq_idvec *out, char *err, size_t errlen);

/* Raw text split around user-defined tokens (tokenizer.c): each fragment
 * is either a token (token >= 0) or the text [off, off+len). */
typedef struct {
    int32_t token; /* -1: raw text [off, off+len) */
    size_t off, len;
} jq_fragment;

typedef struct {
    jq_fragment *f;
    size_t n, cap;
} jq_fragvec;

/* Fills out (which starts empty) with text[0..len) cut around every
 * user-defined token, as llama.cpp's tokenizer_st_partition does with
 * parse_special off. len > 0. -1 on allocation failure. */
int jq_tok_partition(const jq_vocab *v, const char *text, size_t len,
                     jq_fragvec *out);

/* ---- byte-level BPE (tokenizer_bpe.c) */

typedef struct jq_bpe jq_bpe;

/* Reads tokenizer.ggml.pre and tokenizer.ggml.merges for a gpt2 vocabulary
 * and applies the pre-tokenizer's defaults to v (add_bos, bos); called
 * before the special-token keys are read, since those override. */
int jq_bpe_load(jq_vocab *v, const jq_gguf *g, char *err, size_t errlen);
void jq_bpe_free(jq_bpe *b);
int jq_bpe_tokenize(const jq_vocab *v, const char *text, size_t len,
                    bool add_bos, jq_idvec *out, char *err, size_t errlen);

/* ---- pre-tokenizers (tokenizer_pretok.c) */

/* llama.cpp's pre-tokenizer types (llama_vocab_pre_type) that judgeq
 * implements; several tokenizer.ggml.pre names share one. */
typedef enum {
    JQ_PRE_UNSUPPORTED = 0,
    JQ_PRE_DEFAULT,        /* no or "default" tokenizer.ggml.pre */
    JQ_PRE_GPT2,           /* gpt-2, phi-2, mpt, olmo, jais, ... */
    JQ_PRE_LLAMA3,         /* llama-bpe, llama3, dbrx, smaug-bpe, glm4, ... */
    JQ_PRE_QWEN2,          /* qwen2, stablelm2, deepseek-r1-qwen, ... */
    JQ_PRE_DEEPSEEK_LLM,   /* deepseek-llm */
    JQ_PRE_DEEPSEEK_CODER, /* deepseek-coder */
    JQ_PRE_FALCON,         /* falcon */
    JQ_PRE_STARCODER,      /* starcoder, refact, command-r, smollm, ... */
    JQ_PRE_BLOOM,          /* bloom, poro-chat, gpt3-finnish */
} jq_pre_kind;

typedef struct {
    size_t *v;
    size_t n, cap;
} jq_sizevec;

int jq_sizevec_push(jq_sizevec *s, size_t x);

/* Splits the code points cps[0..n) into words as llama.cpp's
 * unicode_regex_split does for kind: on success *words holds the word
 * lengths in code points, in order, summing to n. -1 on allocation
 * failure. tmp is scratch space; both vectors may be reused across calls
 * (they are emptied first). */
int jq_pretokenize(jq_pre_kind kind, const uint32_t *cps, size_t n,
                   jq_sizevec *words, jq_sizevec *tmp);

void jq_tok_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
