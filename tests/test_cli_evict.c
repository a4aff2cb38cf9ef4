/* test_cli_evict.c — `judgeq run --evict ...` and `judgeq hitrate` as a
 * user runs them on stories260K: the --json fields, resident bytes equal
 * to the budget's formula, B >= L changing nothing, and clear errors for
 * bad eviction input. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* stories260K: 5 layers, 4 KV heads, head_dim 8 */
#define N_LAYER 5
#define N_KV 4
#define HEAD_DIM 8

static const char *story =
    "Once upon a time, there was a little girl named Lily. She loved to "
    "play outside in the park with her friends. One day, she saw a big red "
    "ball near the tree. She ran to the ball and kicked it very high. The "
    "ball flew over the fence and landed in the garden of an old man. Lily "
    "was sad because she wanted her ball back. She went to the old man and "
    "asked him nicely. The old man smiled and gave her the ball. Lily said "
    "thank you and went back to play with her friends.";

static char *judgeq(const char *args, int *rc, char **err)
{
    char *cmd = jqt_fmt("'%s' %s", jqt_judgeq_bin(), args);
    char *out = jqt_run(cmd, rc, err);
    free(cmd);
    return out;
}

static json_t *run_json(const char *extra)
{
    char *args = jqt_fmt("run -m '%s' -p '%s' -n 16 --temp 0 --ignore-eos "
                         "--json %s",
                         jqt_model_path("stories260K.gguf"), story, extra);
    int rc;
    char *err;
    char *out = judgeq(args, &rc, &err);
    if (rc != 0)
        fail_msg("judgeq %s: exit %d: %s", args, rc, err);
    json_error_t jerr;
    json_t *j = json_loads(out, 0, &jerr);
    if (!j)
        fail_msg("not JSON: %s", out);
    free(out);
    free(err);
    free(args);
    return j;
}

static const char *soft_file(void)
{
    static char *path;
    if (!path) {
        path = jqt_fmt("%s/stories.soft.gguf", jqt_tmpdir());
        char *a = jqt_fmt("soft-init -m '%s' -o '%s' --n 8 --seed 3",
                          jqt_model_path("stories260K.gguf"), path);
        int rc;
        char *err;
        free(judgeq(a, &rc, &err));
        if (rc != 0)
            fail_msg("soft-init: %s", err);
        free(err);
        free(a);
    }
    return path;
}

static void test_every_policy_json(void **state)
{
    (void)state;
    const char *policies[] = {"streaming", "h2o", "snapkv", "pyramidkv",
                              "adakv", "judgeq", "oracle"};
    json_t *full = run_json("");
    json_int_t L = (json_int_t)json_array_size(json_object_get(full, "prompt_tokens"));
    assert_true(L > 64);
    assert_int_equal(json_integer_value(json_object_get(full, "kv_bytes_full")),
                     2 * N_LAYER * N_KV * HEAD_DIM * 4 * L);
    assert_int_equal(json_integer_value(json_object_get(full, "kv_bytes_kept")),
                     2 * N_LAYER * N_KV * HEAD_DIM * 4 * L);
    for (size_t i = 0; i < sizeof policies / sizeof *policies; i++) {
        char *extra = !strcmp(policies[i], "judgeq")
                          ? jqt_fmt("--evict judgeq --budget 40 --window 8 --soft '%s'",
                                    soft_file())
                          : jqt_fmt("--evict %s --budget 40 --window 8", policies[i]);
        json_t *j = run_json(extra);
        assert_string_equal(json_string_value(json_object_get(j, "policy")),
                            policies[i]);
        assert_int_equal(json_array_size(json_object_get(j, "tokens")), 16);
        json_t *kept = json_object_get(j, "kept");
        assert_int_equal(json_array_size(kept), N_LAYER);
        json_int_t total = 0;
        for (size_t l = 0; l < N_LAYER; l++) {
            json_t *row = json_array_get(kept, l);
            assert_int_equal(json_array_size(row), N_KV);
            for (size_t g = 0; g < N_KV; g++) {
                json_int_t c = json_integer_value(json_array_get(row, g));
                assert_true(c >= 0 && c <= L);
                /* the uniform policies keep exactly B per head */
                if (strcmp(policies[i], "pyramidkv") && strcmp(policies[i], "adakv"))
                    assert_int_equal(c, 40);
                total += c;
            }
        }
        /* same total for every policy: the mean budget is B */
        assert_int_equal(total, 40 * N_LAYER * N_KV);
        assert_int_equal(json_integer_value(json_object_get(j, "kv_bytes_kept")),
                         2 * total * HEAD_DIM * 4);
        assert_true(json_number_value(json_object_get(j, "evict_ms")) >= 0);
        assert_true(json_number_value(json_object_get(j, "score_ms")) >= 0);
        json_decref(j);
        free(extra);
    }
    json_decref(full);
}

static void test_f16_halves_the_bytes(void **state)
{
    (void)state;
    json_t *a = run_json("--evict snapkv --budget 40 --window 8");
    json_t *b = run_json("--evict snapkv --budget 40 --window 8 --kv-type f16");
    assert_int_equal(json_integer_value(json_object_get(a, "kv_bytes_kept")),
                     2 * json_integer_value(json_object_get(b, "kv_bytes_kept")));
    assert_string_equal(json_string_value(json_object_get(b, "kv_type")), "f16");
    json_decref(a);
    json_decref(b);
}

static void test_budget_covering_prompt_is_full(void **state)
{
    (void)state;
    json_t *full = run_json("");
    char *want = json_dumps(json_object_get(full, "tokens"), JSON_COMPACT);
    const char *policies[] = {"streaming", "h2o", "snapkv", "pyramidkv",
                              "adakv", "judgeq", "oracle"};
    for (size_t i = 0; i < sizeof policies / sizeof *policies; i++) {
        char *extra = !strcmp(policies[i], "judgeq")
                          ? jqt_fmt("--evict judgeq --budget 500 --soft '%s'", soft_file())
                          : jqt_fmt("--evict %s --budget 500", policies[i]);
        json_t *j = run_json(extra);
        char *got = json_dumps(json_object_get(j, "tokens"), JSON_COMPACT);
        assert_string_equal(got, want);
        assert_true(json_equal(json_object_get(j, "kv_bytes_kept"),
                               json_object_get(full, "kv_bytes_full")));
        free(got);
        json_decref(j);
        free(extra);
    }
    free(want);
    json_decref(full);
}

static void expect_exit(const char *extra, int want_rc, const char *want_err)
{
    char *args = jqt_fmt("run -m '%s' -p '%s' -n 4 %s",
                         jqt_model_path("stories260K.gguf"), story, extra);
    int rc;
    char *err;
    free(judgeq(args, &rc, &err));
    if (rc != want_rc || !strstr(err, want_err))
        fail_msg("judgeq %s: exit %d (want %d), stderr: %s", args, rc,
                 want_rc, err);
    free(err);
    free(args);
}

static void test_bad_eviction_input(void **state)
{
    (void)state;
    expect_exit("--evict nonsense --budget 8", 2, "unknown eviction policy");
    expect_exit("--evict snapkv --budget 16 --window 32", 2, "--window");
    expect_exit("--evict snapkv --budget 0", 2, "--budget");
    expect_exit("--evict snapkv", 2, "needs --budget");
    expect_exit("--evict judgeq --budget 40", 2, "--soft");
    expect_exit("--evict snapkv --budget 40 --pool-kernel 4", 2, "odd");
    expect_exit("--evict snapkv --budget 40 --gqa-reduce median", 2, "mean or max");
    expect_exit("--kv-type q8_0", 2, "--kv-type");
    /* a soft file made for another model */
    char *other = jqt_fmt("%s/other.gguf", jqt_tmpdir());
    char *other_soft = jqt_fmt("%s/other.soft.gguf", jqt_tmpdir());
    char *a = jqt_fmt("gen-model -o '%s' --n-embd 128 && '%s' soft-init -m '%s' -o '%s' --n 4",
                      other, jqt_judgeq_bin(), other, other_soft);
    int rc;
    free(judgeq(a, &rc, NULL));
    assert_int_equal(rc, 0);
    free(a);
    a = jqt_fmt("--evict judgeq --budget 40 --soft '%s'", other_soft);
    expect_exit(a, 1, "n_embd");
    free(a);
    /* a truncated soft file */
    char *cut = jqt_fmt("%s/cut.soft.gguf", jqt_tmpdir());
    a = jqt_fmt("head -c 300 '%s' > '%s'", soft_file(), cut);
    free(jqt_run(a, &rc, NULL));
    free(a);
    a = jqt_fmt("--evict judgeq --budget 40 --soft '%s'", cut);
    expect_exit(a, 1, "cut.soft.gguf");
    free(a);
    free(cut);
    free(other);
    free(other_soft);
}

static void test_hitrate(void **state)
{
    (void)state;
    char *args = jqt_fmt("hitrate -m '%s' -p '%s' --budget 32 --window 8 -n 16 "
                         "--policies full,streaming,h2o,snapkv,pyramidkv,adakv,judgeq,oracle "
                         "--soft '%s'",
                         jqt_model_path("stories260K.gguf"), story, soft_file());
    int rc;
    char *err;
    char *out = judgeq(args, &rc, &err);
    if (rc != 0)
        fail_msg("hitrate: exit %d: %s", rc, err);
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "budget")), 32);
    assert_true(json_integer_value(json_object_get(j, "prompt_tokens")) > 64);
    json_t *hit = json_object_get(j, "hit_rate"), *mass = json_object_get(j, "mass_recall");
    assert_int_equal(json_object_size(hit), 8);
    const char *name;
    json_t *v;
    json_object_foreach(hit, name, v) {
        double h = json_number_value(v);
        double r = json_number_value(json_object_get(mass, name));
        assert_true(h >= 0 && h <= 1);
        assert_true(r >= 0 && r <= 1 + 1e-9);
    }
    /* the oracle keeps its own set; full keeps everything */
    assert_true(fabs(json_number_value(json_object_get(hit, "oracle")) - 1) < 1e-12);
    assert_true(fabs(json_number_value(json_object_get(hit, "full")) - 1) < 1e-12);
    assert_true(fabs(json_number_value(json_object_get(mass, "full")) - 1) < 1e-9);
    /* a real policy lands between chance and the oracle */
    assert_true(json_number_value(json_object_get(hit, "snapkv")) > 0.2);
    json_decref(j);
    free(out);
    free(err);
    free(args);
}


/* judgeq bench: the documented JSON fields, and resident bytes of the
 * budget plus the generated tokens after eviction. */
static void test_bench_json(void **state)
{
    (void)state;
    char *args = jqt_fmt("bench -m '%s' --prompt-len 100 --gen 6 --reps 2 "
                         "--threads 1 --evict snapkv --budget 40 --window 8 "
                         "--kv-type f16",
                         jqt_model_path("stories260K.gguf"));
    int rc;
    char *err;
    char *out = judgeq(args, &rc, &err);
    if (rc != 0)
        fail_msg("bench: exit %d: %s", rc, err);
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    const char *stats[] = {"prefill_tokens_per_s", "decode_tokens_per_s"};
    for (int i = 0; i < 2; i++) {
        json_t *s = json_object_get(j, stats[i]);
        double lo = json_number_value(json_object_get(s, "min"));
        double med = json_number_value(json_object_get(s, "median"));
        double hi = json_number_value(json_object_get(s, "max"));
        assert_true(lo > 0 && lo <= med && med <= hi);
    }
    assert_true(json_number_value(json_object_get(j, "ttft_ms")) > 0);
    assert_true(json_integer_value(json_object_get(j, "peak_rss_bytes")) > 1000000);
    /* f16: 2 bytes; (40 kept + 6 generated) per head */
    assert_int_equal(json_integer_value(json_object_get(j, "kv_bytes")),
                     2 * N_LAYER * N_KV * HEAD_DIM * 2 * (40 + 6));
    assert_int_equal(json_integer_value(json_object_get(j, "kv_bytes_full")),
                     2 * N_LAYER * N_KV * HEAD_DIM * 2 * 100);
    assert_string_equal(json_string_value(json_object_get(j, "policy")), "snapkv");
    json_decref(j);
    free(out);
    free(err);
    free(args);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_policy_json),
        cmocka_unit_test(test_f16_halves_the_bytes),
        cmocka_unit_test(test_budget_covering_prompt_is_full),
        cmocka_unit_test(test_bad_eviction_input),
        cmocka_unit_test(test_hitrate),
        cmocka_unit_test(test_bench_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
