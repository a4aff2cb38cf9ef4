/* test_cli.c — the `judgeq` command line as a user types it: output
 * contracts (text, --json fields), exit codes (0 ok, 1 runtime failure,
 * 2 usage), and gen-model files that the loader runs. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"

static json_t *reference_prompt(const char *name)
{
    json_error_t jerr;
    json_t *root = json_load_file(
        jqt_reference_path("stories260K-llamacpp.json"), 0, &jerr);
    assert_non_null(root);
    json_t *prompts = json_object_get(root, "prompts");
    for (size_t i = 0; i < json_array_size(prompts); i++) {
        json_t *p = json_array_get(prompts, i);
        if (!strcmp(json_string_value(json_object_get(p, "name")), name)) {
            json_incref(p);
            json_decref(root);
            return p;
        }
    }
    fail_msg("reference prompt %s not found", name);
    return NULL;
}

static void test_run_matches_reference_text(void **state)
{
    (void)state;
    const char *names[] = {"once_upon_a_time", "lily_wanted_to"};
    for (size_t i = 0; i < 2; i++) {
        json_t *p = reference_prompt(names[i]);
        char *args = jqt_fmt("run -m '%s' -p '%s' -n 48 --temp 0",
                             jqt_model_path("stories260K.gguf"),
                             json_string_value(json_object_get(p, "prompt")));
        int rc;
        char *err;
        char *out = jqt_judgeq(args, &rc, &err);
        assert_int_equal(rc, 0);
        /* the continuation as printed is the concatenation of the pieces
         * (llama.cpp's generated_text drops the first piece's leading
         * space, which a continuation must keep) */
        json_t *pieces = json_object_get(p, "generated_token_pieces");
        char *want = jqt_fmt("%s", "");
        for (size_t k = 0; k < json_array_size(pieces); k++) {
            char *next = jqt_fmt("%s%s", want,
                                 json_string_value(json_array_get(pieces, k)));
            free(want);
            want = next;
        }
        char *nl = jqt_fmt("%s\n", want);
        free(want);
        want = nl;
        assert_string_equal(out, want);
        free(want);
        free(out);
        free(err);
        free(args);
        json_decref(p);
    }
}

static void test_run_json_fields(void **state)
{
    (void)state;
    json_t *p = reference_prompt("once_upon_a_time");
    char *args = jqt_fmt("run -m '%s' -p 'Once upon a time' -n 48 --temp 0 "
                         "--threads 2 --json",
                         jqt_model_path("stories260K.gguf"));
    int rc;
    char *out = jqt_judgeq(args, &rc, NULL);
    assert_int_equal(rc, 0);
    json_error_t jerr;
    json_t *j = json_loads(out, 0, &jerr);
    if (!j)
        fail_msg("--json output is not JSON: %s: %s", jerr.text, out);
    assert_true(json_equal(json_object_get(j, "prompt_tokens"),
                           json_object_get(p, "prompt_token_ids")));
    assert_true(json_equal(json_object_get(j, "tokens"),
                           json_object_get(p, "generated_token_ids")));
    assert_string_equal(json_string_value(json_object_get(j, "text")),
                        json_string_value(json_object_get(p, "generated_text")));
    assert_true(json_number_value(json_object_get(j, "prefill_tokens_per_s")) > 0);
    assert_true(json_number_value(json_object_get(j, "decode_tokens_per_s")) > 0);
    json_decref(j);
    json_decref(p);
    free(out);
    free(args);
}

static void test_run_n0_and_seeded_sampling(void **state)
{
    (void)state;
    const char *model = jqt_model_path("stories260K.gguf");
    int rc;
    char *args = jqt_fmt("run -m '%s' -p 'Once' -n 0 --json", model);
    char *out = jqt_judgeq(args, &rc, NULL);
    assert_int_equal(rc, 0);
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "tokens")), 0);
    json_decref(j);
    free(out);
    free(args);

    /* the same seed gives the same sample; another seed another one */
    char *outs[3];
    const unsigned seeds[3] = {7, 7, 8};
    for (int i = 0; i < 3; i++) {
        args = jqt_fmt("run -m '%s' -p 'Once upon a time' -n 40 --temp 1.5 "
                       "--top-k 0 --top-p 1 --seed %u --json",
                       model, seeds[i]);
        out = jqt_judgeq(args, &rc, NULL);
        assert_int_equal(rc, 0);
        j = json_loads(out, 0, NULL);
        assert_non_null(j);
        outs[i] = json_dumps(json_object_get(j, "tokens"), JSON_COMPACT);
        json_decref(j);
        free(out);
        free(args);
    }
    assert_string_equal(outs[0], outs[1]);
    assert_string_not_equal(outs[0], outs[2]);
    for (int i = 0; i < 3; i++)
        free(outs[i]);
}

static void test_tokenize(void **state)
{
    (void)state;
    int rc;
    char *args = jqt_fmt("tokenize -m '%s' -p 'Once upon a time'",
                         jqt_model_path("stories260K.gguf"));
    char *out = jqt_judgeq(args, &rc, NULL);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "[1,403,407,261,378]\n");
    free(out);
    free(args);
    args = jqt_fmt("tokenize -m '%s' -p 'Once upon a time' --no-bos",
                   jqt_model_path("stories260K.gguf"));
    out = jqt_judgeq(args, &rc, NULL);
    assert_string_equal(out, "[403,407,261,378]\n");
    free(out);
    free(args);
    /* a vocabulary-only file (no tensors) */
    args = jqt_fmt("tokenize -m '%s' -p 'Hello world' --no-bos",
                   jqt_reference_path("tokenizers/ggml-vocab-llama-spm.gguf"));
    out = jqt_judgeq(args, &rc, NULL);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "[15043,3186]\n");
    free(out);
    free(args);
}

static void test_logits_match_reference(void **state)
{
    (void)state;
    json_t *p = reference_prompt("little_dog_park");
    char *args = jqt_fmt("logits -m '%s' -p '%s'",
                         jqt_model_path("stories260K.gguf"),
                         json_string_value(json_object_get(p, "prompt")));
    int rc;
    char *out = jqt_judgeq(args, &rc, NULL);
    assert_int_equal(rc, 0);
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    json_t *ref = json_object_get(p, "last_prompt_logits");
    assert_int_equal(json_array_size(j), 512);
    for (size_t i = 0; i < 512; i++) {
        double d = fabs(json_number_value(json_array_get(j, i)) -
                        json_number_value(json_array_get(ref, i)));
        if (!(d < 1e-4))
            fail_msg("logit %zu differs by %g", i, d);
    }
    json_decref(j);
    json_decref(p);
    free(out);
    free(args);
}

static void test_usage_errors(void **state)
{
    (void)state;
    const char *model = jqt_model_path("stories260K.gguf");
    jqt_expect_exit("", 2, "command is required");
    jqt_expect_exit("frobnicate", 2, "unknown command");
    jqt_expect_exit("run -p x", 2, "model is required");
    char *a = jqt_fmt("run -m '%s'", model);
    jqt_expect_exit(a, 2, "exactly one of -p and -f");
    free(a);
    a = jqt_fmt("run -m '%s' -p x -n lots", model);
    jqt_expect_exit(a, 2, "-n expects an integer");
    free(a);
    a = jqt_fmt("run -m '%s' -p x --temp -1", model);
    jqt_expect_exit(a, 2, "--temp must be in");
    free(a);
    a = jqt_fmt("run -m '%s' -p x --bogus", model);
    jqt_expect_exit(a, 2, "unknown option '--bogus'");
    free(a);
    a = jqt_fmt("run -m '%s' -p x --seed", model);
    jqt_expect_exit(a, 2, "needs a value");
    free(a);
    jqt_expect_exit("gen-model --n-embd 60 --n-head 7 -o /dev/null", 2,
                "not a multiple of --n-head");
    jqt_expect_exit("gen-model -o /dev/null --type q5_k", 2, "--type must be");
    jqt_expect_exit("gen-model --type q8_0 --n-embd 48 --n-head 4 -o /dev/null", 2,
                "multiples of 32");
    /* --help of every command succeeds and prints its usage */
    const char *cmds[] = {"run", "tokenize", "logits", "gen-model"};
    for (int i = 0; i < 4; i++) {
        char *h = jqt_fmt("%s --help", cmds[i]);
        int rc;
        char *out = jqt_judgeq(h, &rc, NULL);
        assert_int_equal(rc, 0);
        assert_non_null(strstr(out, "usage: judgeq"));
        free(out);
        free(h);
    }
}

static void test_bad_model_files(void **state)
{
    (void)state;
    jqt_expect_exit("run -m /nonexistent/model.gguf -p hi", 1,
                "/nonexistent/model.gguf");
    /* a truncated copy of a real model */
    char *trunc = jqt_fmt("%s/trunc.gguf", jqt_tmpdir());
    char *cmd = jqt_fmt("head -c 100000 '%s' > '%s'",
                        jqt_model_path("stories260K.gguf"), trunc);
    int rc;
    free(jqt_run(cmd, &rc, NULL));
    assert_int_equal(rc, 0);
    char *a = jqt_fmt("run -m '%s' -p hi", trunc);
    jqt_expect_exit(a, 1, trunc);
    free(a);
    /* not a GGUF at all */
    a = jqt_fmt("run -m '%s' -p hi", jqt_reference_path("README.md"));
    jqt_expect_exit(a, 1, "README.md");
    free(a);
    /* a vocabulary-only file is not a model */
    a = jqt_fmt("run -m '%s' -p hi",
                jqt_reference_path("tokenizers/ggml-vocab-llama-spm.gguf"));
    jqt_expect_exit(a, 1, "token_embd.weight");
    free(a);
    free(cmd);
    free(trunc);
}

/* gen-model files of several shapes and types load and generate, and the
 * same seed writes the same bytes. */
static void test_gen_model_runs(void **state)
{
    (void)state;
    const char *types[] = {"f32", "f16", "bf16", "q8_0"};
    const char *shapes[] = {
        "--n-embd 64 --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff 96",
        "--n-embd 96 --n-layer 1 --n-head 3 --n-head-kv 1 --n-ff 160 --n-vocab 300",
        "--n-embd 128 --n-layer 3 --n-head 8 --n-head-kv 8 --n-ff 256 --n-vocab 1000",
    };
    for (int s = 0; s < 3; s++) {
        for (int t = 0; t < 4; t++) {
            char *path = jqt_fmt("%s/gen-%d-%s.gguf", jqt_tmpdir(), s, types[t]);
            char *a = jqt_fmt("gen-model -o '%s' %s --type %s --seed 3", path,
                              shapes[s], types[t]);
            int rc;
            char *err;
            free(jqt_judgeq(a, &rc, &err));
            if (rc != 0)
                fail_msg("judgeq %s: exit %d: %s", a, rc, err);
            free(err);
            free(a);
            a = jqt_fmt("run -m '%s' -p 'the cat sat' -n 6 --temp 0 "
                        "--ignore-eos --json",
                        path);
            char *out = jqt_judgeq(a, &rc, &err);
            if (rc != 0)
                fail_msg("judgeq %s: exit %d: %s", a, rc, err);
            json_t *j = json_loads(out, 0, NULL);
            assert_non_null(j);
            assert_int_equal(json_array_size(json_object_get(j, "tokens")), 6);
            json_decref(j);
            free(out);
            free(err);
            free(a);
            free(path);
        }
    }
    /* determinism of the file */
    char *p1 = jqt_fmt("%s/det1.gguf", jqt_tmpdir());
    char *p2 = jqt_fmt("%s/det2.gguf", jqt_tmpdir());
    char *p3 = jqt_fmt("%s/det3.gguf", jqt_tmpdir());
    int rc;
    char *a = jqt_fmt("gen-model -o '%s' --seed 5 --type q8_0 && "
                      "'%s' gen-model -o '%s' --seed 5 --type q8_0 && "
                      "'%s' gen-model -o '%s' --seed 6 --type q8_0",
                      p1, jqt_judgeq_bin(), p2, jqt_judgeq_bin(), p3);
    free(jqt_judgeq(a, &rc, NULL));
    assert_int_equal(rc, 0);
    free(a);
    a = jqt_fmt("cmp -s '%s' '%s'", p1, p2);
    free(jqt_run(a, &rc, NULL));
    assert_int_equal(rc, 0);
    free(a);
    a = jqt_fmt("cmp -s '%s' '%s'", p1, p3);
    free(jqt_run(a, &rc, NULL));
    assert_int_equal(rc, 1);
    free(a);
    free(p1);
    free(p2);
    free(p3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_matches_reference_text),
        cmocka_unit_test(test_run_json_fields),
        cmocka_unit_test(test_run_n0_and_seeded_sampling),
        cmocka_unit_test(test_tokenize),
        cmocka_unit_test(test_logits_match_reference),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_bad_model_files),
        cmocka_unit_test(test_gen_model_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
