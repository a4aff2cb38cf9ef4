/* fuzz_train_jsonl.c — any bytes as the trainer's JSONL data file
 * (`judgeq train --data FILE`).
 *
 * The reader (parse_jsonl in engine/train_data.c) is static, so the bytes
 * go through jq_train_data_load, which reads the file from a path (a
 * memory file here), tokenizes each line's prompt and response, and then
 * computes every example's attention targets with stories260K. The
 * settings keep that last part cheap and bounded: a 48-position context,
 * one soft token, two greedy response tokens, no cache, the calling
 * thread only. Dataset responses are used, so a "response" field reaches
 * the tokenizer and the teacher-forced scoring too.
 *
 * Invariants: with --skip-bad-lines the load succeeds or fails with a
 * message (it fails only when no line is usable); each example it returns
 * fits the context with its soft token, has 1..n_ctx - L response tokens,
 * token ids of the vocabulary and finite, non-negative targets; when lines
 * were skipped, the strict load fails naming a line.
 */
#include <math.h>
#include <string.h>

#include "fuzz.h"
#include "model.h"
#include "train.h"

#define N_CTX 48
#define N_SOFT 1

static jq_model *model;

int jq_fuzz_train_jsonl_init(void)
{
    if (model)
        return 0;
    char err[512];
    model = jq_model_load(jq_fuzz_model_path("stories260K.gguf"), err,
                          sizeof err);
    jq_fuzz_check(model != NULL, "cannot load the model (set "
                  "JUDGEQ_TEST_MODELS): %s", err);
    return 0;
}

static void check_set(const jq_train_set *set)
{
    int32_t n_vocab = model->hp.n_vocab;
    size_t heads = (size_t)model->hp.n_layer * (size_t)model->hp.n_head;
    jq_fuzz_check(set->n >= 1 && set->ex != NULL, "a set of %d examples",
                  set->n);
    for (int32_t i = 0; i < set->n; i++) {
        const jq_train_example *ex = &set->ex[i];
        jq_fuzz_check(ex->L >= 1 && ex->L + N_SOFT <= N_CTX,
                      "example %d: L = %d", i, ex->L);
        jq_fuzz_check(ex->m >= 1 && ex->m <= N_CTX - ex->L,
                      "example %d: m = %d with L = %d", i, ex->m, ex->L);
        jq_fuzz_check(ex->source >= 1, "example %d from line %lld", i,
                      (long long)ex->source);
        for (int32_t k = 0; k < ex->L + ex->m; k++)
            jq_fuzz_check(ex->tokens[k] >= 0 && ex->tokens[k] < n_vocab,
                          "example %d token %d = %d", i, k, ex->tokens[k]);
        for (size_t c = 0; c < heads * (size_t)ex->L; c++)
            jq_fuzz_check(isfinite(ex->target[c]) && ex->target[c] >= 0,
                          "example %d target %zu = %g", i, c,
                          (double)ex->target[c]);
    }
}

int jq_fuzz_train_jsonl(const uint8_t *data, size_t size)
{
    jq_fuzz_train_jsonl_init();
    jq_train_data_opts o = {
        .data_path = jq_fuzz_memfile(data, size),
        .response_len = 2,
        .use_dataset_responses = true,
        .skip_bad_lines = true,
        .seed = 1,
        .n_soft = N_SOFT,
        .n_ctx = N_CTX,
    };
    jq_train_set set;
    char err[512] = "";
    int rc = jq_train_data_load(model, NULL, &o, &set, err, sizeof err);
    jq_fuzz_check(rc == 0 || rc == -1, "load returned %d", rc);
    if (rc != 0) {
        jq_fuzz_check(err[0] != 0, "a failure without a message");
        return 0;
    }
    check_set(&set);
    int32_t n_bad = set.n_bad;
    jq_train_set_free(&set);

    if (n_bad > 0) {
        o.skip_bad_lines = false;
        err[0] = 0;
        rc = jq_train_data_load(model, NULL, &o, &set, err, sizeof err);
        jq_fuzz_check(rc == -1 && strstr(err, o.data_path) != NULL,
                      "%d bad lines, but the strict load gave %d (%s)", n_bad,
                      rc, err);
    }
    return 0;
}
