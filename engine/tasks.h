/* tasks.h — RULER-style synthetic tasks (../shared/EVICTION.md): prompts
 * whose answer is a few exact strings hidden in a long context, and their
 * string-match scorer. For instruction models: `judgeq eval --task`
 * measures how often each eviction policy still lets the model find them.
 *
 * Everything here is a pure function of its arguments: sample i of a task
 * with seed S is the same text on every run and platform (the prompt
 * length is matched with the caller's token counter, so it depends on the
 * tokenizer, never on anything else).
 */
#ifndef JQ_TASKS_H
#define JQ_TASKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    JQ_TASK_NIAH = 0, /* one needle in the repeated haystack */
    JQ_TASK_MULTIKEY, /* four needles with different keys, one asked */
    JQ_TASK_VT,       /* variable tracking: a 4-hop assignment chain */
    JQ_TASK_CWE,      /* common words extraction */
    JQ_TASK_COUNT_
} jq_task_kind;

/* "niah", "multikey", "vt", "cwe"; -1 when unknown. */
const char *jq_task_name(jq_task_kind k);
int jq_task_from_name(const char *name);

/* Number of tokens of text as the model will see it (e.g. the model's
 * tokenizer with BOS); negative on failure. */
typedef int64_t (*jq_task_len_fn)(void *ud, const char *text);

typedef struct {
    jq_task_kind kind;
    int64_t length;      /* target prompt tokens (the longest fitting) */
    bool question_first; /* the question before the context */
    uint64_t seed;
} jq_task_opts;

typedef struct {
    /* the model input: instructions, context, question, then the answer
     * prefix (the model continues it) */
    char *prompt;
    int64_t tokens;      /* its length by the caller's counter */
    char **answers;      /* the strings a correct output contains */
    int32_t n_answers;
    /* niah/multikey: relative position of the asked needle among the
     * haystack lines, in [0, 1]; -1 for vt and cwe */
    double depth;
} jq_task_sample;

/* The longest prompt of sample `index` whose length (by count) is at most
 * o->length: the context grows by whole haystack lines (niah, multikey,
 * vt) or whole words (cwe, three copies per extra word). Error when even
 * the minimal context does not fit (the message gives the length needed).
 * 0, or -1 with a message. */
int jq_task_generate(const jq_task_opts *o, uint64_t index,
                     jq_task_len_fn count, void *count_ud,
                     jq_task_sample *out, char *err, size_t errlen);
void jq_task_sample_free(jq_task_sample *s);

/* RULER's string_match_all: 100 times the fraction of answers that occur
 * in output as case-insensitive (ASCII) substrings. n == 0 scores 100. */
double jq_task_score(const char *output, const char *const *answers,
                     int32_t n);

#endif
