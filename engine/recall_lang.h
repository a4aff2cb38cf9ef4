/* recall_lang.h — judgeq's synthetic recall language (issue 9).
 *
 * A small language with its own vocabulary (at most 1024 tokens: whole
 * words, digits, punctuation, SentencePiece byte fallback) in which
 * judgeq's own recall model (models/judgeq-recall.gguf) is pretrained and
 * evaluated: filler made of simple sentences, and RULER-style tasks whose
 * answer is a few words hidden in that filler.
 *
 * The generator works on words, so it produces the token ids and the text
 * together; tokenizing the text with the language's tokenizer (the `llama`
 * SentencePiece vocabulary written by jq_recall_write_tokenizer) gives
 * exactly those ids (tested). Everything is a pure function of
 * (options, seed, index): the same example on every run and platform.
 *
 * Special ids follow llama: 0 <unk>, 1 <s> (BOS), 2 </s> (EOS).
 */
#ifndef JQ_RECALL_LANG_H
#define JQ_RECALL_LANG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef enum {
    JQ_RECALL_NIAH = 0, /* one key-value needle in filler, asked back */
    JQ_RECALL_MULTIKEY, /* several needles with different keys, one asked */
    JQ_RECALL_MQAR,     /* many key-value pairs, several keys asked */
    JQ_RECALL_VT,       /* variable tracking through 2-4 hops */
    JQ_RECALL_CWE,      /* most common word(s) of a word list */
    JQ_RECALL_COUNT_
} jq_recall_task;

/* "niah", "multikey", "mqar", "vt", "cwe"; from_name gives -1 if unknown. */
const char *jq_recall_task_name(jq_recall_task t);
int jq_recall_task_from_name(const char *name);

/* Vocabulary size (the model's n_vocab). */
int32_t jq_recall_n_vocab(void);

/* Sets the tokenizer.ggml.* metadata of a `llama` SentencePiece
 * vocabulary (model "llama", tokens, scores, token_type, bos/eos/unk ids,
 * add_bos_token) on w, so that judgeq, judgeqd and llama.cpp load the
 * model with this tokenizer. 0, or -1 with a message. */
int jq_recall_write_tokenizer(jq_gguf_writer *w, char *err, size_t errlen);

typedef struct {
    jq_recall_task task;
    int32_t length;      /* target example tokens, BOS, answer and EOS
                          * included: n_tokens <= length, and the
                          * context grows to the longest that fits
                          * (within 4 tokens of it; cwe within one word
                          * frequency step) */
    int32_t difficulty;  /* needles / pairs / hops / distinct words;
                          * 0: the task's default */
    bool question_first; /* the question before the context */
    uint64_t seed;
    int32_t digits;      /* digits of every number value, 1-6; 0: 3 */
} jq_recall_opts;

/* Difficulty per task (0 in the options means the default):
 *   niah      1 needle (only 1)
 *   multikey  needles, 2-32, default 4 (one asked)
 *   mqar      key-value pairs, 2-64, default 8 (min(4, ceil(pairs/2))
 *             asked; the answer lists "key value" in the asked order)
 *   vt        hops, 1-16, default 4: a chain of hops+1 variables holding
 *             the asked value and a distractor chain as long holding
 *             another; the answer is every variable of the asked chain,
 *             in chain order
 *   cwe       most common words asked, 1-10, default 3 (each 4x as frequent
 *             as the others; answer in order of first occurrence) */
int32_t jq_recall_default_difficulty(jq_recall_task t);
int32_t jq_recall_max_difficulty(jq_recall_task t);

/* The shortest length the options allow (the same for every index: the
 * needles, question and answer with no filler; for cwe, a list of five
 * words per common word). 0 < length; -1 with a message naming the bad
 * option. */
int32_t jq_recall_min_length(const jq_recall_opts *o, char *err,
                             size_t errlen);

typedef struct {
    int32_t *tokens;    /* BOS, prompt, then answer and EOS */
    int32_t n_tokens;
    int32_t n_prompt;   /* tokens[0, n_prompt) is the prompt (BOS incl.);
                         * tokens[n_prompt, n_tokens) the answer + EOS,
                         * the only tokens pretraining puts loss on */
    char *prompt;       /* the prompt as text (no BOS) */
    char *answer;       /* the answer as text (no EOS) */
    char **answers;     /* the strings a correct output contains */
    int32_t n_answers;
} jq_recall_example;

/* Example `index` of the task for o->seed. 0, or -1 with a message (e.g.
 * a length too short for the task's minimal context, naming the minimum). */
int jq_recall_generate(const jq_recall_opts *o, uint64_t index,
                       jq_recall_example *out, char *err, size_t errlen);
void jq_recall_example_free(jq_recall_example *e);

#endif
