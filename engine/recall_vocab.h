/* recall_vocab.h — the vocabulary of the synthetic recall language
 * (recall_lang.h), shared by its generator and tokenizer writer.
 *
 * Id layout (part of the model format: a trained model is tied to it):
 *   0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>,
 *   259.. the fixed pieces below (punctuation, digits),
 *   then the words, class by class in jq_rl_class order ("▁word"),
 *   then the prefix-only pieces ("▁ta", "▁tab" for "▁table"), sorted
 *   bytewise: the generator never emits them, they exist so that
 *   SentencePiece's merges can reach every word (recall_vocab.c).
 */
#ifndef JQ_RECALL_VOCAB_H
#define JQ_RECALL_VOCAB_H

#include <stdbool.h>
#include <stdint.h>

enum {
    JQ_RL_UNK = 0,
    JQ_RL_BOS = 1,
    JQ_RL_EOS = 2,
    JQ_RL_BYTE0 = 3, /* <0x00>; <0xNN> is JQ_RL_BYTE0 + NN */
    JQ_RL_SPACE = 259, /* "▁" */
    JQ_RL_DOT,
    JQ_RL_COMMA,
    JQ_RL_COLON,
    JQ_RL_QMARK,
    JQ_RL_EQUALS,               /* "▁=" */
    JQ_RL_DIGIT0,               /* "0".."9": a digit inside a number */
    JQ_RL_SDIGIT0 = JQ_RL_DIGIT0 + 10, /* "▁0".."▁9": a number's first digit */
    JQ_RL_FIRST_WORD = JQ_RL_SDIGIT0 + 10
};

/* Word classes, in id order. Keys are the needles' names, the variables
 * of vt and the words of cwe; the filler never uses them, and no key is a
 * substring of another word (so string-match scoring cannot mistake one
 * for another; tested). */
typedef enum {
    JQ_RL_FUNCTION = 0, /* the template words, jq_rl_fn order */
    JQ_RL_KEY,
    JQ_RL_NOUN,
    JQ_RL_VERB, /* past tense: no agreement to get right */
    JQ_RL_ADJ,
    JQ_RL_PREP,
    JQ_RL_CLASS_COUNT_
} jq_rl_class;

typedef enum {
    JQ_RL_THE = 0,
    JQ_RL_A,
    JQ_RL_OF,
    JQ_RL_IS,
    JQ_RL_ARE,
    JQ_RL_AND,
    JQ_RL_WAS,
    JQ_RL_WHAT,
    JQ_RL_WHICH,
    JQ_RL_QUESTION,
    JQ_RL_ANSWER,
    JQ_RL_NUMBER,
    JQ_RL_NUMBERS,
    JQ_RL_VAR,
    JQ_RL_VARS,
    JQ_RL_MOST,
    JQ_RL_COMMON,
    JQ_RL_WORDS,
    JQ_RL_IN,
    JQ_RL_LIST,
    JQ_RL_FN_COUNT_
} jq_rl_fn;

int32_t jq_rl_class_size(jq_rl_class c);
/* Token id of word i (0 <= i < jq_rl_class_size(c)) of class c. */
int32_t jq_rl_word(jq_rl_class c, int32_t i);
static inline int32_t jq_rl_fn_id(jq_rl_fn w)
{
    return JQ_RL_FIRST_WORD + (int32_t)w; /* JQ_RL_FUNCTION comes first */
}

/* How an emitted token reads: its text without the "▁" and whether a
 * space goes before it. NULL for ids the generator never emits (special,
 * byte and prefix-only pieces, out of range). */
const char *jq_rl_piece_text(int32_t id, bool *space);

/* Ids below this are emitted pieces (fixed pieces and words). */
int32_t jq_rl_n_emitted(void);

#endif
