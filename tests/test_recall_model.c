/* test_recall_model.c — the shipped artefacts in models/: judgeq's own
 * recall model and its Judge Q soft tokens (issue 9). A quality check on
 * files in the repository, not a timing:
 *   - both files are within the 16 MiB that models/ allows;
 *   - with the full cache the model answers a fixed set of held-out needle
 *     prompts (seed 9000: no training command draws it) correctly, with
 *     the question at the end and with the question first;
 *   - the soft tokens belong to the model and Judge Q eviction at a quarter
 *     of the context still finds the needle in most of them.
 * The prompts come from the recall language's generator through
 * `judgeq eval --task recall-niah`, whose string match is the scorer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"

static const char *root(void)
{
    const char *v = getenv("JUDGEQ_ROOT");
    if (!v || !*v)
        fail_msg("JUDGEQ_ROOT is not set (tests/run.sh sets it)");
    return v;
}

static char *model_file(const char *name)
{
    char *p = jqt_fmt("%s/models/%s", root(), name);
    struct stat st;
    if (stat(p, &st) != 0)
        fail_msg("%s is missing: it is committed; `make models` rebuilds it",
                 p);
    return p;
}

/* The accuracy (0-100) results.csv of a `judgeq eval` run reports for
 * (policy, budget). */
static double csv_accuracy(const char *dir, const char *policy, int budget)
{
    char *path = jqt_fmt("%s/results.csv", dir);
    char *csv = jqt_read_file(path, NULL);
    if (!csv)
        fail_msg("cannot read %s", path);
    char *want = jqt_fmt("\n%s,%d,", policy, budget);
    const char *row = strstr(csv, want);
    if (!row)
        fail_msg("%s has no row for %s at %d:\n%s", path, policy, budget, csv);
    /* policy,budget,prompts,accuracy,... */
    row += strlen(want);
    row = strchr(row, ',');
    assert_non_null(row);
    const double acc = strtod(row + 1, NULL);
    free(want);
    free(csv);
    free(path);
    return acc;
}

static void test_files_fit_in_models_dir(void **state)
{
    (void)state;
    const char *names[] = {"judgeq-recall.gguf", "judgeq-recall.soft.gguf"};
    for (size_t i = 0; i < 2; i++) {
        char *p = model_file(names[i]);
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        if (st.st_size > 16 * 1024 * 1024)
            fail_msg("%s has %lld bytes, more than 16 MiB", p,
                     (long long)st.st_size);
        free(p);
    }
}

/* Every held-out needle prompt answered with the full cache. */
static void full_cache_answers(const char *extra, const char *tag)
{
    char *model = model_file("judgeq-recall.gguf");
    char *dir = jqt_fmt("%s/niah-%s", jqt_tmpdir(), tag);
    char *args = jqt_fmt("eval -m '%s' --task recall-niah --length 1024 "
                         "--samples 8 --seed 9000 --policies full "
                         "--budgets 256 --threads 2 --out '%s' %s",
                         model, dir, extra);
    free(jqt_judgeq_ok(args));
    const double acc = csv_accuracy(dir, "full", 256);
    if (acc != 100.0)
        fail_msg("full cache, %s: accuracy %.1f%% on 8 held-out needle "
                 "prompts of 1024 tokens, want all correct (%s/per_prompt.csv)",
                 tag, acc, dir);
    free(args);
    free(dir);
    free(model);
}

static void test_full_cache_question_last(void **state)
{
    (void)state;
    full_cache_answers("", "last");
}

static void test_full_cache_question_first(void **state)
{
    (void)state;
    full_cache_answers("--question-first", "first");
}

/* The soft tokens load with the model (their file names its embedding's
 * hash) and Judge Q at a budget of a quarter of the prompt keeps what the
 * answer needs in most prompts. */
static void test_soft_tokens_evict(void **state)
{
    (void)state;
    char *model = model_file("judgeq-recall.gguf");
    char *soft = model_file("judgeq-recall.soft.gguf");
    char *dir = jqt_fmt("%s/judgeq", jqt_tmpdir());
    char *args = jqt_fmt("eval -m '%s' --soft '%s' --task recall-niah "
                         "--length 1024 --samples 8 --seed 9100 "
                         "--policies judgeq --budgets 256 --threads 2 "
                         "--out '%s'",
                         model, soft, dir);
    free(jqt_judgeq_ok(args));
    const double acc = csv_accuracy(dir, "judgeq", 256);
    if (acc < 75.0)
        fail_msg("judgeq at budget 256 of 1024: accuracy %.1f%%, want at "
                 "least 75%% (%s/per_prompt.csv)",
                 acc, dir);
    free(args);
    free(dir);
    free(soft);
    free(model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_files_fit_in_models_dir),
        cmocka_unit_test(test_full_cache_question_last),
        cmocka_unit_test(test_full_cache_question_first),
        cmocka_unit_test(test_soft_tokens_evict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
