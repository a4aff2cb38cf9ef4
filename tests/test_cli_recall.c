/* test_cli_recall.c — the recall language from the command line:
 * `gen-model --vocab recall` files that load, tokenize like the generator
 * and run; `recall-data` JSONL that `train --data` reads; `eval --task
 * recall-*`; and clear errors for bad options. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "recall_lang.h"
#include "testutil.h"

/* a small random model speaking the recall language (made once) */
static const char *recall_model(void)
{
    static char *path;
    if (!path) {
        path = jqt_fmt("%s/recall.gguf", jqt_tmpdir());
        char *a = jqt_fmt("gen-model -o '%s' --vocab recall --ctx 1024 --seed 4",
                          path);
        free(jqt_judgeq_ok(a));
        free(a);
    }
    return path;
}

static void test_gen_model_recall_tokenizes_like_the_generator(void **state)
{
    (void)state;
    for (int t = 0; t < JQ_RECALL_COUNT_; t++) {
        jq_recall_opts o = {.task = t, .length = 200, .seed = 21,
                            .question_first = t & 1};
        jq_recall_example e;
        char err[256];
        assert_int_equal(jq_recall_generate(&o, 2, &e, err, sizeof err), 0);
        char *a = jqt_fmt("tokenize -m '%s' -p '%s'", recall_model(), e.prompt);
        char *out = jqt_judgeq_ok(a);
        json_t *ids = json_loads(out, 0, NULL);
        assert_non_null(ids);
        assert_int_equal(json_array_size(ids), e.n_prompt);
        for (int32_t i = 0; i < e.n_prompt; i++)
            assert_int_equal(json_integer_value(json_array_get(ids, (size_t)i)),
                             e.tokens[i]);
        json_decref(ids);
        free(out);
        free(a);
        jq_recall_example_free(&e);
    }
    /* and the model runs */
    char *a = jqt_fmt("run -m '%s' -p 'the number of apple is 123. question: "
                      "what is the number of apple? answer:' -n 4 --temp 0 "
                      "--ignore-eos --json", recall_model());
    char *out = jqt_judgeq_ok(a);
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "tokens")), 4);
    json_decref(j);
    free(out);
    free(a);
}

/* the lines of a recall-data file, parsed */
static json_t **read_lines(const char *text, size_t *n)
{
    json_t **v = NULL;
    *n = 0;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl); /* every line ends with a newline */
        json_error_t jerr;
        json_t *j = json_loadb(p, (size_t)(nl - p), 0, &jerr);
        if (!j)
            fail_msg("not JSON: %.*s", (int)(nl - p), p);
        v = realloc(v, sizeof *v * (*n + 1));
        v[(*n)++] = j;
        p = nl + 1;
    }
    return v;
}

static void test_recall_data(void **state)
{
    (void)state;
    char *out = jqt_judgeq_ok("recall-data -o - --length 150 --count 10 "
                          "--question-first-share 0.3 --seed 4");
    char *again = jqt_judgeq_ok("recall-data -o - --length 150 --count 10 "
                            "--question-first-share 0.3 --seed 4");
    char *other = jqt_judgeq_ok("recall-data -o - --length 150 --count 10 "
                            "--question-first-share 0.3 --seed 5");
    assert_string_equal(out, again);
    assert_string_not_equal(out, other);
    size_t n;
    json_t **lines = read_lines(out, &n);
    assert_int_equal(n, 10);
    int qf = 0;
    for (size_t i = 0; i < n; i++) {
        const char *prompt = json_string_value(json_object_get(lines[i], "prompt"));
        const char *resp = json_string_value(json_object_get(lines[i], "response"));
        const char *task = json_string_value(json_object_get(lines[i], "task"));
        json_t *answers = json_object_get(lines[i], "answers");
        assert_non_null(prompt);
        assert_non_null(resp);
        assert_non_null(task);
        assert_true(json_array_size(answers) >= 1);
        /* the mix in turn; the same example the library makes */
        assert_int_equal(jq_recall_task_from_name(task), (int)(i % JQ_RECALL_COUNT_));
        bool first = !strncmp(prompt, "question:", 9);
        qf += first;
        jq_recall_opts o = {.task = (jq_recall_task)(i % JQ_RECALL_COUNT_),
                            .length = 150, .seed = 4, .question_first = first};
        jq_recall_example e;
        char err[256];
        assert_int_equal(jq_recall_generate(&o, i, &e, err, sizeof err), 0);
        assert_string_equal(prompt, e.prompt);
        assert_string_equal(resp, e.answer);
        assert_int_equal(json_array_size(answers), e.n_answers);
        jq_recall_example_free(&e);
        json_decref(lines[i]);
    }
    assert_int_equal(qf, 3);
    free(lines);
    free(out);
    free(again);
    free(other);

    /* a task mix with a difficulty, written to a file */
    char *path = jqt_fmt("%s/recall.jsonl", jqt_tmpdir());
    char *a = jqt_fmt("recall-data -o '%s' --length 300 --count 4 --tasks "
                      "mqar,niah --difficulty 6", path);
    free(jqt_judgeq_ok(a));
    free(a);
    char *text = jqt_read_file(path, NULL);
    assert_non_null(text);
    lines = read_lines(text, &n);
    assert_int_equal(n, 4);
    /* mqar with 6 pairs asks 3; niah keeps its one needle */
    assert_int_equal(json_array_size(json_object_get(lines[0], "answers")), 3);
    assert_int_equal(json_array_size(json_object_get(lines[1], "answers")), 1);
    assert_string_equal(json_string_value(json_object_get(lines[1], "task")), "niah");
    for (size_t i = 0; i < n; i++)
        json_decref(lines[i]);
    free(lines);
    free(text);
    free(path);
}

/* --format tsv: the same examples as the JSONL, one line each: task,
 * prompt, response, answers (what tools/demo.sh reads with `read`). */
static void test_recall_data_tsv(void **state)
{
    (void)state;
    char *jsonl = jqt_judgeq_ok("recall-data -o - --length 200 --count 10 "
                                "--seed 6");
    char *tsv = jqt_judgeq_ok("recall-data -o - --length 200 --count 10 "
                              "--seed 6 --format tsv");
    size_t n;
    json_t **lines = read_lines(jsonl, &n);
    assert_int_equal(n, 10);
    char *save = NULL;
    char *line = strtok_r(tsv, "\n", &save);
    for (size_t i = 0; i < n; i++, line = strtok_r(NULL, "\n", &save)) {
        assert_non_null(line);
        json_t *j = lines[i];
        json_t *answers = json_object_get(j, "answers");
        char *want = jqt_fmt("%s\t%s\t%s",
                             json_string_value(json_object_get(j, "task")),
                             json_string_value(json_object_get(j, "prompt")),
                             json_string_value(json_object_get(j, "response")));
        for (size_t a = 0; a < json_array_size(answers); a++) {
            char *longer = jqt_fmt("%s\t%s", want,
                                   json_string_value(json_array_get(answers, a)));
            free(want);
            want = longer;
        }
        assert_string_equal(line, want);
        free(want);
        json_decref(j);
    }
    assert_null(line);
    free(lines);
    free(tsv);
    free(jsonl);
    jqt_expect_exit("recall-data -o - --length 200 --count 1 --format csv", 2,
                    "--format must be jsonl or tsv, got 'csv'");
}

/* `judgeq train --data` takes recall-data's file (one short step). */
static void test_train_reads_recall_data(void **state)
{
    (void)state;
    char *data = jqt_fmt("%s/train.jsonl", jqt_tmpdir());
    char *soft = jqt_fmt("%s/recall.soft.gguf", jqt_tmpdir());
    char *a = jqt_fmt("recall-data -o '%s' --length 96 --count 4 --tasks niah",
                      data);
    free(jqt_judgeq_ok(a));
    free(a);
    a = jqt_fmt("train -m '%s' -o '%s' --data '%s' --use-dataset-responses "
                "--n 4 --steps 1 --batch 2 --threads 1",
                recall_model(), soft, data);
    char *out = jqt_judgeq_ok(a);
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    json_decref(j);
    free(out);
    free(a);
    free(data);
    free(soft);
}

static void test_eval_recall_task(void **state)
{
    (void)state;
    char *dir = jqt_fmt("%s/eval_recall", jqt_tmpdir());
    char *a = jqt_fmt("eval -m '%s' --policies full,snapkv --budgets 16 --out "
                      "'%s' --task recall-mqar --length 200 --samples 2 "
                      "--question-first --difficulty 4 --threads 1",
                      recall_model(), dir);
    free(jqt_judgeq_ok(a));
    free(a);
    char *run = jqt_fmt("%s/run.json", dir);
    json_t *j = json_load_file(run, 0, NULL);
    assert_non_null(j);
    json_t *opt = json_object_get(j, "options");
    assert_string_equal(json_string_value(json_object_get(opt, "task")), "recall-mqar");
    assert_int_equal(json_integer_value(json_object_get(opt, "difficulty")), 4);
    /* -n: the longest answer + EOS ("k 123, k 456" + </s>: 2 x 4 + 1 + 1) */
    assert_int_equal(json_integer_value(json_object_get(opt, "n_predict")), 10);
    json_decref(j);
    char *csv_path = jqt_fmt("%s/results.csv", dir);
    char *csv = jqt_read_file(csv_path, NULL);
    assert_non_null(csv);
    assert_non_null(strstr(csv, "accuracy"));
    free(csv);
    free(csv_path);
    free(run);
    free(dir);
}

static void test_errors(void **state)
{
    (void)state;
    jqt_expect_exit("recall-data --help", 0, NULL);
    jqt_expect_exit("recall-data --length 100 --count 1", 2, "-o FILE");
    jqt_expect_exit("recall-data -o - --count 1", 2, "--length");
    jqt_expect_exit("recall-data -o - --length 100", 2, "--count");
    jqt_expect_exit("recall-data -o - --length 10 --count 1", 2,
                    "needs --length of at least");
    jqt_expect_exit("recall-data -o - --length 300 --count 1 --tasks niah,ruler",
                    2, "unknown task 'ruler'");
    jqt_expect_exit("recall-data -o - --length 300 --count 1 --tasks ,", 2,
                    "--tasks is empty");
    jqt_expect_exit("recall-data -o - --length 300 --count 1 --difficulty 99",
                    2, "out of range");
    jqt_expect_exit("recall-data -o - --length 300 --count 1 "
                    "--question-first-share 1.5", 2, "--question-first-share");
    jqt_expect_exit("recall-data -o - --length 300 --count 0", 2, "--count");
    jqt_expect_exit("recall-data -o /nonexistent/dir/x.jsonl --length 300 "
                    "--count 1", 1, "/nonexistent/dir/x.jsonl");
    jqt_expect_exit("gen-model -o /dev/null --vocab words", 2,
                    "--vocab must be pieces or recall");
    jqt_expect_exit("gen-model -o /dev/null --vocab recall --n-vocab 600", 2,
                    "leave out --n-vocab");

    char *a = jqt_fmt("eval -m '%s' --policies full --budgets 16 --out '%s/e' "
                      "--task recall-ruler --length 200", recall_model(),
                      jqt_tmpdir());
    jqt_expect_exit(a, 2, "unknown task 'recall-ruler'");
    free(a);
    a = jqt_fmt("eval -m '%s' --policies full --budgets 16 --out '%s/e' "
                "--task recall-vt --length 20", recall_model(), jqt_tmpdir());
    jqt_expect_exit(a, 2, "--task recall-vt needs --length of at least");
    free(a);
    a = jqt_fmt("eval -m '%s' --policies full --budgets 16 --out '%s/e' "
                "--task recall-niah --length 200 --difficulty 2",
                recall_model(), jqt_tmpdir());
    jqt_expect_exit(a, 2, "difficulty 2 out of range 1-1");
    free(a);
    a = jqt_fmt("eval -m '%s' --policies full --budgets 16 --out '%s/e' "
                "--task niah --length 200 --difficulty 2", recall_model(),
                jqt_tmpdir());
    jqt_expect_exit(a, 2, "--difficulty is for the recall-* tasks");
    free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gen_model_recall_tokenizes_like_the_generator),
        cmocka_unit_test(test_recall_data),
        cmocka_unit_test(test_recall_data_tsv),
        cmocka_unit_test(test_train_reads_recall_data),
        cmocka_unit_test(test_eval_recall_task),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
