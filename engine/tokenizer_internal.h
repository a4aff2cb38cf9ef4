/* tokenizer_internal.h — the vocabulary's layout, shared by tokenizer.c
 * (loading, lookup, pieces) and tokenizer_spm.c (the SPM tokenizer). Not a
 * public interface. */
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

    /* Tokens that are matched in raw text before the SPM pass (llama.cpp's
     * user-defined tokens), longest text first. */
    int32_t *split_ids;
    size_t n_split;
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

void jq_tok_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
