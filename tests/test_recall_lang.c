/* test_recall_lang.c — the synthetic recall language: its vocabulary and
 * tokenizer (every generated text tokenizes back to the generator's ids
 * with judgeq's SPM tokenizer), determinism, lengths, and that the answers
 * are right (found in the context, accepted by the scorer). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "recall_lang.h"
#include "recall_vocab.h"
#include "tasks.h"
#include "tokenizer.h"

/* ------------------------------------------------------------ helpers */

/* The language's tokenizer, as judgeq loads it from a GGUF file that
 * jq_recall_write_tokenizer filled. Loaded once for the whole run. */
static jq_vocab *loaded_vocab;

static jq_vocab *recall_vocab(void)
{
    if (loaded_vocab)
        return loaded_vocab;
    char err[512] = "";
    char *path = jqt_fmt("%s/recall_vocab.gguf", jqt_tmpdir());
    jq_gguf_writer *w = jq_gguf_writer_new();
    assert_non_null(w);
    if (jq_recall_write_tokenizer(w, err, sizeof err) != 0)
        fail_msg("jq_recall_write_tokenizer: %s", err);
    assert_int_equal(jq_gguf_writer_begin(w, path), 0);
    assert_int_equal(jq_gguf_writer_finish(w), 0);
    jq_gguf_writer_free(w);
    jq_gguf *g = jq_gguf_open(path, err, sizeof err);
    if (!g)
        fail_msg("opening %s: %s", path, err);
    loaded_vocab = jq_vocab_load(g, err, sizeof err);
    if (!loaded_vocab)
        fail_msg("loading the recall vocabulary: %s", err);
    jq_gguf_close(g);
    free(path);
    return loaded_vocab;
}

static jq_recall_example gen(jq_recall_task t, int32_t length,
                             int32_t difficulty, bool qf, uint64_t seed,
                             uint64_t index)
{
    jq_recall_opts o = {.task = t, .length = length, .difficulty = difficulty,
                        .question_first = qf, .seed = seed};
    jq_recall_example e;
    char err[256] = "";
    if (jq_recall_generate(&o, index, &e, err, sizeof err) != 0)
        fail_msg("%s length %d difficulty %d: %s", jq_recall_task_name(t),
                 length, difficulty, err);
    return e;
}

/* tokens[1, n_prompt) from the prompt text and tokens[n_prompt, n - 1)
 * from the answer text, as judgeq's tokenizer cuts "prompt answer" */
static void check_round_trip(const jq_vocab *v, const jq_recall_example *e)
{
    char *text = jqt_fmt("%s %s", e->prompt, e->answer);
    int32_t *ids = NULL;
    size_t n = 0;
    char err[256] = "";
    if (jq_tokenize(v, text, strlen(text), true, &ids, &n, err, sizeof err))
        fail_msg("tokenize: %s", err);
    if (n != (size_t)e->n_tokens - 1)
        fail_msg("'%s' tokenizes to %zu ids, the generator made %d (+EOS)",
                 text, n, e->n_tokens - 1);
    for (size_t i = 0; i < n; i++)
        if (ids[i] != e->tokens[i])
            fail_msg("token %zu of '%s': tokenizer %d ('%s'), generator %d "
                     "('%s')", i, text, ids[i], jq_vocab_token_text(v, ids[i]),
                     e->tokens[i], jq_vocab_token_text(v, e->tokens[i]));
    assert_int_equal(e->tokens[0], jq_vocab_bos(v));
    assert_int_equal(e->tokens[e->n_tokens - 1], jq_vocab_eos(v));
    /* the prompt alone gives the prompt ids (what eval and the daemon
     * feed the model) */
    free(ids);
    ids = NULL;
    if (jq_tokenize(v, e->prompt, strlen(e->prompt), true, &ids, &n, err,
                    sizeof err))
        fail_msg("tokenize: %s", err);
    assert_int_equal(n, e->n_prompt);
    assert_memory_equal(ids, e->tokens, n * sizeof *ids);
    free(ids);
    free(text);
}

/* ------------------------------------------------------------ tests */

static void test_vocabulary(void **state)
{
    (void)state;
    int32_t n = jq_recall_n_vocab();
    assert_true(n > JQ_RL_FIRST_WORD);
    assert_true(n <= 1024);
    const jq_vocab *v = recall_vocab();
    assert_int_equal(jq_vocab_size(v), n);
    assert_int_equal(jq_vocab_bos(v), 1);
    assert_int_equal(jq_vocab_eos(v), 2);
    assert_int_equal(jq_vocab_unk(v), 0);
    assert_true(jq_vocab_add_bos(v));
    assert_string_equal(jq_vocab_token_text(v, JQ_RL_BYTE0 + 0x41), "<0x41>");
    /* every emitted id reads as its vocabulary piece ("▁" = space) */
    for (int32_t id = JQ_RL_SPACE; id < jq_rl_n_emitted(); id++) {
        bool space;
        const char *t = jq_rl_piece_text(id, &space);
        assert_non_null(t);
        char *piece = jqt_fmt("%s%s", space ? "\xE2\x96\x81" : "", t);
        assert_string_equal(jq_vocab_token_text(v, id), piece);
        free(piece);
        /* every word alone is exactly its one token */
        if (id >= JQ_RL_FIRST_WORD) {
            int32_t *ids = NULL;
            size_t k = 0;
            char err[128];
            assert_int_equal(jq_tokenize(v, t, strlen(t), false, &ids, &k,
                                         err, sizeof err), 0);
            assert_int_equal(k, 1);
            assert_int_equal(ids[0], id);
            free(ids);
        }
    }
    bool space;
    assert_null(jq_rl_piece_text(jq_rl_n_emitted(), &space));
    assert_null(jq_rl_piece_text(JQ_RL_EOS, &space));
    /* the generator's plan holds a permutation of the keys */
    assert_true(jq_rl_class_size(JQ_RL_KEY) <= 256);
}

/* No key occurs inside another word, so a string-match scorer never takes
 * one for another (e.g. "pear" in "pearl"). */
static void test_keys_are_not_substrings(void **state)
{
    (void)state;
    int32_t nk = jq_rl_class_size(JQ_RL_KEY);
    for (int32_t k = 0; k < nk; k++) {
        bool sp;
        int32_t kid = jq_rl_word(JQ_RL_KEY, k);
        const char *key = jq_rl_piece_text(kid, &sp);
        for (int32_t id = JQ_RL_FIRST_WORD; id < jq_rl_n_emitted(); id++) {
            const char *w = jq_rl_piece_text(id, &sp);
            if (id != kid && strstr(w, key))
                fail_msg("key '%s' is inside '%s'", key, w);
            if (id != kid && !strcmp(w, key))
                fail_msg("'%s' is in two word classes", key);
        }
    }
}

static void test_task_names(void **state)
{
    (void)state;
    for (int t = 0; t < JQ_RECALL_COUNT_; t++)
        assert_int_equal(jq_recall_task_from_name(jq_recall_task_name(t)), t);
    assert_int_equal(jq_recall_task_from_name("ruler"), -1);
    assert_string_equal(jq_recall_task_name(JQ_RECALL_MQAR), "mqar");
}

static void test_deterministic(void **state)
{
    (void)state;
    for (int t = 0; t < JQ_RECALL_COUNT_; t++) {
        jq_recall_example a = gen(t, 300, 0, false, 7, 3);
        jq_recall_example b = gen(t, 300, 0, false, 7, 3);
        assert_int_equal(a.n_tokens, b.n_tokens);
        assert_int_equal(a.n_prompt, b.n_prompt);
        assert_memory_equal(a.tokens, b.tokens, sizeof(int32_t) * (size_t)a.n_tokens);
        assert_string_equal(a.prompt, b.prompt);
        assert_string_equal(a.answer, b.answer);
        jq_recall_example c = gen(t, 300, 0, false, 7, 4);
        jq_recall_example d = gen(t, 300, 0, false, 8, 3);
        assert_string_not_equal(a.prompt, c.prompt);
        assert_string_not_equal(a.prompt, d.prompt);
        jq_recall_example_free(&a);
        jq_recall_example_free(&b);
        jq_recall_example_free(&c);
        jq_recall_example_free(&d);
    }
}

/* Pinned output: the generator is a pure function of (options, index) on
 * every platform, and the shipped model was trained on exactly this. A
 * change here is a change of the language (retrain, or keep it). */
static void test_pinned_example(void **state)
{
    (void)state;
    jq_recall_example e = gen(JQ_RECALL_NIAH, 40, 0, false, 1, 0);
    assert_string_equal(e.prompt,
                        "the number of paddle is 396. a road was hard. the "
                        "green hill made the wind. question: what is the "
                        "number of paddle? answer:");
    assert_string_equal(e.answer, "396");
    assert_int_equal(e.n_prompt, 33);
    assert_int_equal(e.n_tokens, 37); /* + 3 digits and </s> */
    jq_recall_example_free(&e);
}

/* For every task, length, difficulty and question position: the text
 * tokenizes to the ids, the length is at most the target and within one
 * filler sentence (cwe: one word frequency step) of it, and every answer
 * string is in the context and accepted by the scorer. */
static void test_examples_are_right(void **state)
{
    (void)state;
    const jq_vocab *vocab = recall_vocab();
    static const int32_t lengths[] = {96, 128, 257, 512, 1024, 2048};
    for (int t = 0; t < JQ_RECALL_COUNT_; t++) {
        int32_t dmax = jq_recall_max_difficulty(t);
        int32_t diffs[] = {0, 1, 2, dmax};
        for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++)
            for (int di = 0; di < 4; di++)
                for (int qf = 0; qf < 2; qf++) {
                    int32_t d = diffs[di], L = lengths[li];
                    jq_recall_opts o = {.task = t, .length = L, .difficulty = d,
                                        .question_first = qf, .seed = 11};
                    char err[256] = "";
                    int32_t min = jq_recall_min_length(&o, err, sizeof err);
                    if (min < 0) { /* a difficulty the task refuses */
                        assert_true(d != 0 && d != dmax);
                        assert_non_null(strstr(err, "difficulty"));
                        continue;
                    }
                    if (min > L)
                        continue;
                    for (uint64_t idx = 0; idx < 3; idx++) {
                        jq_recall_example e = gen(t, L, d, qf, 11, idx);
                        check_round_trip(vocab, &e);
                        assert_true(e.n_tokens <= L);
                        int32_t slack = t == JQ_RECALL_CWE ? 1 + L / 40 : 5;
                        if (e.n_tokens < L - slack)
                            fail_msg("%s L=%d d=%d: %d tokens",
                                     jq_recall_task_name(t), L, d, e.n_tokens);
                        assert_true(e.n_answers >= 1);
                        for (int32_t a = 0; a < e.n_answers; a++) {
                            /* mqar answers are "key value": both parts */
                            char *ans = strdup(e.answers[a]);
                            for (char *w = strtok(ans, " "); w; w = strtok(NULL, " "))
                                if (!strstr(e.prompt, w))
                                    fail_msg("answer part '%s' not in '%s'", w, e.prompt);
                            free(ans);
                            assert_non_null(strstr(e.answer, e.answers[a]));
                        }
                        const char *const *ans = (const char *const *)e.answers;
                        assert_true(jq_task_score(e.answer, ans, e.n_answers) == 100.0);
                        assert_true(jq_task_score("the number of", ans, e.n_answers) == 0.0);
                        jq_recall_example_free(&e);
                    }
                }
    }
}

/* The needle is the value of the asked key; vt's answer is the asked
 * chain; cwe's answer words are the most frequent. */
static int count_word(const char *text, const char *w)
{
    int n = 0;
    size_t len = strlen(w);
    for (const char *p = text; (p = strstr(p, w)); p += len)
        n += (p == text || p[-1] == ' ') && (p[len] == ' ' || p[len] == '.' ||
                                             p[len] == ',' || p[len] == '?');
    return n;
}

static void test_answers_semantics(void **state)
{
    (void)state;
    for (uint64_t idx = 0; idx < 20; idx++) {
        jq_recall_example e = gen(JQ_RECALL_MULTIKEY, 400, 0, idx & 1, 5, idx);
        /* "... question: what is the number of KEY? answer:" */
        const char *q = strstr(e.prompt, "what is the number of ");
        assert_non_null(q);
        char key[32];
        assert_int_equal(sscanf(q + 22, "%31[a-z]", key), 1);
        char *needle = jqt_fmt("the number of %s is %s.", key, e.answer);
        assert_non_null(strstr(e.prompt, needle));
        assert_int_equal(count_word(e.prompt, key), 2); /* needle + question */
        free(needle);
        jq_recall_example_free(&e);

        e = gen(JQ_RECALL_MQAR, 400, 0, idx & 1, 5, idx);
        assert_int_equal(e.n_answers, 4);
        for (int32_t a = 0; a < e.n_answers; a++) {
            char k[32], val[16];
            assert_int_equal(sscanf(e.answers[a], "%31s %15s", k, val), 2);
            char *n2 = jqt_fmt("the number of %s is %s.", k, val);
            assert_non_null(strstr(e.prompt, n2));
            free(n2);
        }
        jq_recall_example_free(&e);

        e = gen(JQ_RECALL_VT, 400, 3, idx & 1, 5, idx);
        assert_int_equal(e.n_answers, 4);
        const char *qv = strstr(e.prompt, "which vars are ");
        assert_non_null(qv);
        char value[16];
        assert_int_equal(sscanf(qv + 15, "%15[0-9]", value), 1);
        char *s0 = jqt_fmt("var %s = %s.", e.answers[0], value);
        const char *p0 = strstr(e.prompt, s0);
        assert_non_null(p0);
        free(s0);
        for (int32_t a = 1; a < e.n_answers; a++) {
            char *s = jqt_fmt("var %s = %s.", e.answers[a], e.answers[a - 1]);
            const char *p = strstr(e.prompt, s);
            assert_non_null(p);
            assert_true(p > p0); /* in chain order */
            p0 = p;
            free(s);
        }
        /* the distractor chain: as many statements again */
        assert_int_equal(count_word(e.prompt, "var"), 8);
        jq_recall_example_free(&e);

        e = gen(JQ_RECALL_CWE, 400, 0, idx & 1, 5, idx);
        assert_int_equal(e.n_answers, 3);
        const char *list = strstr(e.prompt, "list:");
        assert_non_null(list);
        int least = 1 << 30;
        for (int32_t a = 0; a < e.n_answers; a++) {
            int c = count_word(list, e.answers[a]);
            least = c < least ? c : least;
        }
        /* every other list word is rarer */
        char *words = strdup(list + 6);
        for (char *w = strtok(words, " ."); w; w = strtok(NULL, " .")) {
            bool asked = false;
            for (int32_t a = 0; a < e.n_answers; a++)
                asked |= !strcmp(w, e.answers[a]);
            if (!asked && count_word(list, w) >= least && strcmp(w, "answer:"))
                fail_msg("'%s' is as common as the answers", w);
        }
        free(words);
        jq_recall_example_free(&e);
    }
}

static void test_question_position(void **state)
{
    (void)state;
    for (int t = 0; t < JQ_RECALL_COUNT_; t++) {
        jq_recall_example last = gen(t, 200, 0, false, 3, 1);
        jq_recall_example first = gen(t, 200, 0, true, 3, 1);
        assert_int_equal(strncmp(first.prompt, "question:", 9), 0);
        assert_int_not_equal(strncmp(last.prompt, "question:", 9), 0);
        const char *end = ". answer:";
        size_t n = strlen(last.prompt), m = strlen(end);
        /* both end with the answer prefix (question last: after "?") */
        assert_string_equal(first.prompt + strlen(first.prompt) - m, end);
        assert_string_equal(last.prompt + n - 9, "? answer:");
        assert_string_equal(first.answer, last.answer);
        jq_recall_example_free(&last);
        jq_recall_example_free(&first);
    }
}

/* The same index at two lengths has the same needles and answer. */
static void test_plan_independent_of_length(void **state)
{
    (void)state;
    for (int t = 0; t < JQ_RECALL_CWE; t++) {
        jq_recall_example a = gen(t, 200, 0, false, 9, 5);
        jq_recall_example b = gen(t, 1500, 0, false, 9, 5);
        assert_string_equal(a.answer, b.answer);
        jq_recall_example_free(&a);
        jq_recall_example_free(&b);
    }
}

static void test_bad_options(void **state)
{
    (void)state;
    char err[256];
    jq_recall_example e;
    jq_recall_opts o = {.task = JQ_RECALL_MQAR, .length = 20, .seed = 1};
    int32_t min = jq_recall_min_length(&o, err, sizeof err);
    assert_true(min > 20);
    assert_int_equal(jq_recall_generate(&o, 0, &e, err, sizeof err), -1);
    char *want = jqt_fmt("at least %d tokens", min);
    if (!strstr(err, want))
        fail_msg("'%s' does not say '%s'", err, want);
    free(want);
    assert_null(e.tokens);
    o.length = min; /* the minimum itself works: needles and no filler */
    assert_int_equal(jq_recall_generate(&o, 0, &e, err, sizeof err), 0);
    assert_int_equal(e.n_tokens, min);
    jq_recall_example_free(&e);

    o.difficulty = 65;
    o.length = 4096;
    assert_int_equal(jq_recall_generate(&o, 0, &e, err, sizeof err), -1);
    assert_non_null(strstr(err, "difficulty 65 out of range 2-64"));
    o.difficulty = -1;
    assert_int_equal(jq_recall_generate(&o, 0, &e, err, sizeof err), -1);
    o.difficulty = 0;
    o.task = JQ_RECALL_NIAH;
    o.difficulty = 2;
    assert_int_equal(jq_recall_generate(&o, 0, &e, err, sizeof err), -1);
    o.difficulty = 0;
    o.digits = 7;
    assert_int_equal(jq_recall_generate(&o, 0, &e, err, sizeof err), -1);
    assert_non_null(strstr(err, "digits"));
    o.digits = 0;
    o.task = (jq_recall_task)99;
    assert_int_equal(jq_recall_generate(&o, 0, &e, err, sizeof err), -1);
    o.task = JQ_RECALL_CWE;
    o.length = 0;
    assert_int_equal(jq_recall_generate(&o, 0, &e, err, sizeof err), -1);
    o.length = -5;
    assert_int_equal(jq_recall_generate(&o, 0, &e, err, sizeof err), -1);
    o.length = 1 << 30;
    assert_int_equal(jq_recall_generate(&o, 0, &e, err, sizeof err), -1);
    assert_non_null(strstr(err, "length"));
}

static void test_digits(void **state)
{
    (void)state;
    const jq_vocab *vocab = recall_vocab();
    for (int32_t digits = 1; digits <= 6; digits++) {
        jq_recall_opts o = {.task = JQ_RECALL_MQAR, .length = 300, .seed = 2,
                            .digits = digits};
        char err[256];
        jq_recall_example e;
        assert_int_equal(jq_recall_generate(&o, 1, &e, err, sizeof err), 0);
        check_round_trip(vocab, &e);
        for (int32_t a = 0; a < e.n_answers; a++) {
            const char *val = strchr(e.answers[a], ' ');
            assert_non_null(val);
            assert_int_equal(strlen(val + 1), digits);
        }
        jq_recall_example_free(&e);
    }
}

static int teardown(void **state)
{
    (void)state;
    jq_vocab_free(loaded_vocab);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vocabulary),
        cmocka_unit_test(test_keys_are_not_substrings),
        cmocka_unit_test(test_task_names),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_pinned_example),
        cmocka_unit_test(test_examples_are_right),
        cmocka_unit_test(test_answers_semantics),
        cmocka_unit_test(test_question_position),
        cmocka_unit_test(test_plan_independent_of_length),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_digits),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
