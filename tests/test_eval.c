/* test_eval.c — `judgeq eval` and its engine pieces: SHA-256 known
 * vectors, the confidence-interval and KL arithmetic, the metrics on
 * stories260K (the full cache measures as perfect, the oracle hits its own
 * set, the rolled-back greedy run equals a fresh one), self-generated
 * prompts, the synthetic task generator and scorer, and the command as a
 * user runs it: columns, ranges, determinism for a seed, and errors
 * before any work. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#include "kernels.h"
#include "metrics.h"
#include "model.h"
#include "prefill.h"
#include "sample.h"
#include "selfgen.h"
#include "sha256.h"
#include "tasks.h"

#define RESULTS_HEADER                                                       \
    "policy,budget,prompts,hit_rate,hit_rate_ci,mass_recall,mass_recall_ci," \
    "agreement,agreement_ci,first_diff,kl,kl_ci,kv_bytes,prefill_ms"
#define PER_PROMPT_HEADER                                                    \
    "prompt,source,tokens,policy,budget,hit_rate,mass_recall,agreement,"     \
    "first_diff,kl,kv_bytes,prefill_ms"

static const char *ALL_POLICIES =
    "full,streaming,h2o,snapkv,pyramidkv,adakv,judgeq,oracle";

/* ------------------------------------------------------------ SHA-256 */

static void test_sha256_vectors(void **state)
{
    (void)state;
    char hex[JQ_SHA256_HEX];
    /* FIPS 180-4 / NIST examples */
    jq_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb924"
                             "27ae41e4649b934ca495991b7852b855");
    jq_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223"
                             "b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    jq_sha256_hex(two, strlen(two), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039"
                             "a33ce45964ff2167f6ecedd419db06c1");
    /* a million 'a', fed in uneven pieces across block boundaries */
    jq_sha256_ctx c;
    jq_sha256_init(&c);
    char a[997];
    memset(a, 'a', sizeof a);
    size_t left = 1000000;
    for (size_t k = 1; left > 0; k = k % 990 + 7) { /* k <= 996 */
        size_t n = k < left ? k : left;
        jq_sha256_update(&c, a, n);
        left -= n;
    }
    uint8_t d[JQ_SHA256_BYTES];
    jq_sha256_final(&c, d);
    char got[JQ_SHA256_HEX];
    for (int i = 0; i < JQ_SHA256_BYTES; i++)
        snprintf(got + 2 * i, 3, "%02x", d[i]);
    assert_string_equal(got, "cdc76e5c9914fb9281a1c7e284d73e67"
                             "f1809a48a497200e046d39ccc7112cd0");
    /* the model file, against the checksum its README publishes */
    char err[256];
    assert_int_equal(jq_sha256_file(jqt_model_path("stories260K.gguf"), hex,
                                    err, sizeof err), 0);
    assert_string_equal(hex, "5a9d168bd9d9e29302e0d604e9a4c971"
                             "84057ad87661cd7e7cc4318fdeba6d9c");
    assert_int_equal(jq_sha256_file("/nonexistent/x", hex, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/x"));
}

/* ------------------------------------------------- statistics and KL */

static void test_ci_and_kl(void **state)
{
    (void)state;
    assert_true(fabs(jq_t975(1) - 12.7062047) < 1e-6);
    assert_true(fabs(jq_t975(30) - 2.0422725) < 1e-6);
    /* beyond the table: the expansion (reference values of the quantile) */
    assert_true(fabs(jq_t975(31) - 2.0395134) < 1e-5);
    assert_true(fabs(jq_t975(100) - 1.9839715) < 1e-6);
    assert_true(fabs(jq_t975(1000) - 1.9623391) < 1e-6);
    assert_true(isnan(jq_t975(0)));

    double x[] = {1, 2, 3, NAN}, mean, half;
    jq_mean_ci95(x, 4, &mean, &half); /* NaN skipped: n = 3, sd = 1 */
    assert_true(fabs(mean - 2) < 1e-12);
    assert_true(fabs(half - 4.3026527 / sqrt(3.0)) < 1e-6);
    jq_mean_ci95(x, 1, &mean, &half);
    assert_true(mean == 1 && isnan(half));

    float p[3] = {1.0f, 2.0f, 3.0f}, q[3] = {3.0f, 2.0f, 1.0f};
    assert_true(jq_kl_logits(p, p, 3) == 0.0);
    /* by hand: P = softmax(1,2,3), Q its reverse */
    double z = exp(1) + exp(2) + exp(3), kl = 0;
    for (int i = 0; i < 3; i++)
        kl += exp(p[i]) / z * ((p[i] - log(z)) - (q[i] - log(z)));
    assert_true(fabs(jq_kl_logits(p, q, 3) - kl) < 1e-9);
    /* invariant to a shift of either side's logits */
    float q2[3] = {103.0f, 102.0f, 101.0f};
    assert_true(fabs(jq_kl_logits(p, q2, 3) - kl) < 1e-5);
}

/* ---------------------------------------------- metrics on the model */

typedef struct {
    jq_model *m;
    jq_ctx *c;
} model_ctx;

static model_ctx open_model(int32_t n_ctx)
{
    char err[512];
    model_ctx mc;
    mc.m = jq_model_load(jqt_model_path("stories260K.gguf"), err, sizeof err);
    if (!mc.m)
        fail_msg("%s", err);
    mc.c = jq_ctx_new(mc.m, n_ctx, n_ctx, NULL, err, sizeof err);
    if (!mc.c)
        fail_msg("%s", err);
    return mc;
}

static void close_model(model_ctx *mc)
{
    jq_ctx_free(mc->c);
    jq_model_free(mc->m);
}

static void test_selfgen(void **state)
{
    (void)state;
    model_ctx mc = open_model(128);
    int32_t a[64], b[64], c[64];
    char err[256];
    assert_int_equal(jq_selfgen_prompt(mc.c, 7, 0, 64, a, err, sizeof err), 0);
    assert_int_equal(jq_selfgen_prompt(mc.c, 7, 0, 64, b, err, sizeof err), 0);
    assert_int_equal(jq_selfgen_prompt(mc.c, 7, 1, 64, c, err, sizeof err), 0);
    assert_memory_equal(a, b, sizeof a);
    assert_int_equal(a[0], jq_vocab_bos(mc.m->vocab));
    assert_true(memcmp(a, c, sizeof a) != 0);
    for (int i = 0; i < 64; i++)
        assert_true(a[i] >= 0 && a[i] < mc.m->hp.n_vocab);
    /* the seed derivation is pinned: it must stay the trainer's */
    assert_true(jq_selfgen_seed(7, 0) != jq_selfgen_seed(7, 1));
    assert_true(jq_selfgen_seed(7, 0) == jq_selfgen_seed(7, 0));
    assert_int_equal(jq_selfgen_prompt(mc.c, 7, 0, 0, a, err, sizeof err), -1);
    close_model(&mc);
}

/* The full cache is perfect by every measure; the oracle hits its own
 * set; the greedy tokens after the rollback equal a fresh greedy run from
 * the same evicted store; hit rate agrees with the non-evicting path
 * (`judgeq hitrate`'s). */
static void test_metrics_on_model(void **state)
{
    (void)state;
    const int32_t L = 120, n = 12;
    model_ctx mc = open_model(L + n);
    const jq_hparams *hp = &mc.m->hp;
    char err[512];
    int32_t prompt[120];
    assert_int_equal(jq_selfgen_prompt(mc.c, 3, 0, L, prompt, err, sizeof err), 0);
    jq_metrics_ref ref;
    if (jq_metrics_reference(mc.c, prompt, L, n, true, &ref, err, sizeof err))
        fail_msg("%s", err);
    int32_t gen[12], fresh[12];
    float *logits = malloc(sizeof(float) * (size_t)hp->n_vocab);
    jq_kept *kept = jq_kept_new(hp->n_layer, hp->n_head_kv, L);
    const jq_evict_policy pols[] = {JQ_EVICT_FULL, JQ_EVICT_STREAMING,
                                    JQ_EVICT_SNAPKV, JQ_EVICT_H2O,
                                    JQ_EVICT_ORACLE};
    for (size_t i = 0; i < sizeof pols / sizeof *pols; i++) {
        jq_prefill_params pp = {.spec = jq_evict_spec_default(pols[i], 16),
                                .kv_type = JQ_TYPE_F32};
        pp.spec.window = 4;
        jq_metrics_result r;
        if (jq_metrics_evicted(mc.c, prompt, &ref, &pp, 16, &r, gen, err,
                               sizeof err))
            fail_msg("%s: %s", jq_evict_policy_name(pols[i]), err);
        assert_true(r.hit_rate >= 0 && r.hit_rate <= 1);
        assert_true(r.mass_recall >= 0 && r.mass_recall <= 1 + 1e-9);
        assert_true(r.agreement >= 0 && r.agreement <= 1);
        assert_true(r.first_diff >= 1 && r.first_diff <= n);
        assert_true(r.kl >= 0 && isfinite(r.kl));
        if (pols[i] == JQ_EVICT_FULL) {
            assert_true(r.hit_rate == 1 && r.mass_recall == 1);
            assert_true(r.agreement == 1 && r.kl == 0);
            assert_int_equal(r.first_diff, n);
            assert_memory_equal(gen, ref.gen, sizeof gen);
        } else {
            assert_int_equal(r.kv_bytes, 16ull * 2 * hp->n_layer *
                                             hp->n_head_kv * hp->head_dim * 4);
        }
        if (pols[i] == JQ_EVICT_ORACLE)
            assert_true(r.hit_rate == 1);
        /* a fresh prefill and plain greedy decoding: the same tokens */
        jq_prefill_result pr;
        pp.reserve = n;
        pp.oracle_tokens = ref.gen;
        pp.n_oracle = n;
        assert_int_equal(jq_prefill(mc.c, prompt, L, &pp, logits, &pr, err,
                                    sizeof err), 0);
        for (int32_t k = 0; k < n; k++) {
            fresh[k] = jq_argmax(logits, hp->n_vocab);
            if (k + 1 < n)
                assert_int_equal(jq_ctx_eval(mc.c, &fresh[k], 1, logits, err,
                                             sizeof err), 0);
        }
        assert_memory_equal(gen, fresh, sizeof gen);
        /* the non-evicting path selects the same set */
        double hit, mass;
        assert_int_equal(jq_metrics_policy_kept(mc.c, prompt, &ref, &pp,
                                                kept, err, sizeof err), 0);
        assert_int_equal(jq_metrics_coverage(&ref, kept, 16, pp.spec.gqa_reduce,
                                             &hit, &mass, err, sizeof err), 0);
        assert_true(hit == r.hit_rate && mass == r.mass_recall);
        jq_prefill_result_free(&pr);
    }
    jq_kept_free(kept);
    free(logits);
    jq_metrics_ref_free(&ref);
    close_model(&mc);
}

/* ------------------------------------------------------------- tasks */

/* A stand-in tokenizer: one token per whitespace-separated word. */
static int64_t count_words(void *ud, const char *text)
{
    (void)ud;
    int64_t n = 0;
    bool in = false;
    for (const char *s = text; *s; s++) {
        bool sp = *s == ' ' || *s == '\n';
        n += !sp && !in;
        in = !sp;
    }
    return n;
}

static jq_task_sample gen_task(jq_task_kind k, int64_t length, uint64_t seed,
                               uint64_t index, bool qfirst)
{
    jq_task_opts o = {.kind = k, .length = length, .seed = seed,
                      .question_first = qfirst};
    jq_task_sample s;
    char err[256];
    if (jq_task_generate(&o, index, count_words, NULL, &s, err, sizeof err))
        fail_msg("%s: %s", jq_task_name(k), err);
    return s;
}

static int count_occurrences(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

static void test_task_generator(void **state)
{
    (void)state;
    for (int k = 0; k < JQ_TASK_COUNT_; k++) {
        int64_t length = k == JQ_TASK_CWE ? 2000 : 600;
        jq_task_sample a = gen_task(k, length, 5, 0, false);
        jq_task_sample b = gen_task(k, length, 5, 0, false);
        jq_task_sample c = gen_task(k, length, 5, 1, false);
        jq_task_sample d = gen_task(k, length, 6, 0, false);
        /* deterministic for (seed, index); another index or seed differs */
        assert_string_equal(a.prompt, b.prompt);
        assert_true(strcmp(a.prompt, c.prompt) != 0);
        assert_true(strcmp(a.prompt, d.prompt) != 0);
        assert_int_equal(a.n_answers, b.n_answers);
        /* the longest that fits: within one haystack unit of the target */
        assert_true(a.tokens <= length && a.tokens == count_words(NULL, a.prompt));
        assert_true(a.tokens > length - (k == JQ_TASK_CWE ? 10 : 20));
        /* every answer is in the prompt */
        for (int32_t i = 0; i < a.n_answers; i++)
            assert_non_null(strstr(a.prompt, a.answers[i]));
        assert_true(jq_task_score(a.prompt, (const char *const *)a.answers,
                                  a.n_answers) == 100);
        static const char *const names[] = {"niah", "multikey", "vt", "cwe"};
        assert_string_equal(jq_task_name(k), names[k]);
        assert_int_equal(jq_task_from_name(jq_task_name(k)), k);
        jq_task_sample_free(&b);
        jq_task_sample_free(&c);
        jq_task_sample_free(&d);

        char line[128];
        switch (k) {
        case JQ_TASK_NIAH:
        case JQ_TASK_MULTIKEY: {
            int needles = count_occurrences(a.prompt, "One of the special magic numbers for ");
            assert_int_equal(needles, k == JQ_TASK_NIAH ? 1 : 4);
            assert_int_equal(a.n_answers, 1);
            assert_int_equal(strlen(a.answers[0]), 7); /* 7 digits */
            assert_true(a.depth >= 0 && a.depth <= 1);
            assert_non_null(strstr(a.prompt, "The grass is green. The sky is "
                                             "blue. The sun is yellow. Here we "
                                             "go. There and back again."));
            /* the asked key's needle carries the answer; the key is an
             * adjective-noun pair */
            const char *q = strstr(a.prompt, "What is the special magic number for ");
            assert_non_null(q);
            char key[64];
            assert_int_equal(sscanf(q + strlen("What is the special magic number for "),
                                    "%63s", key), 1);
            assert_non_null(strchr(key, '-'));
            snprintf(line, sizeof line, "One of the special magic numbers for "
                     "%s is: %s.", key, a.answers[0]);
            assert_non_null(strstr(a.prompt, line));
            /* ends with the answer prefix */
            char tail[128];
            snprintf(tail, sizeof tail, "The special magic number for %s "
                     "mentioned in the provided text is", key);
            assert_string_equal(a.prompt + strlen(a.prompt) - strlen(tail), tail);
            break;
        }
        case JQ_TASK_VT: {
            assert_int_equal(a.n_answers, 5);
            const char *prev = a.prompt;
            for (int i = 0; i < 5; i++) {
                assert_int_equal(strlen(a.answers[i]), 5);
                for (int j = 0; j < 5; j++)
                    assert_true(a.answers[i][j] >= 'A' && a.answers[i][j] <= 'Z');
                if (i == 0)
                    snprintf(line, sizeof line, "VAR %s = ", a.answers[0]);
                else
                    snprintf(line, sizeof line, "VAR %s = VAR %s", a.answers[i],
                             a.answers[i - 1]);
                const char *at = strstr(a.prompt, line);
                assert_non_null(at);
                assert_true(at >= prev); /* the chain in order */
                prev = at;
            }
            assert_non_null(strstr(a.prompt, "Find all variables that are "
                                             "assigned the value"));
            break;
        }
        case JQ_TASK_CWE:
            assert_int_equal(a.n_answers, 10);
            for (int i = 0; i < 10; i++) {
                /* each common word 30 times as a list entry */
                snprintf(line, sizeof line, ". %s\n", a.answers[i]);
                int n = count_occurrences(a.prompt, line);
                assert_true(n == 30 || n == 29); /* the last entry has no \n */
            }
            assert_non_null(strstr(a.prompt, "What are the 10 most common words"));
            break;
        }
        /* question first: the question precedes the context */
        jq_task_sample f = gen_task(k, length, 5, 0, true);
        const char *qword = k == JQ_TASK_CWE ? "Question:"
                            : k == JQ_TASK_VT ? "Question:"
                                              : "What is the special";
        const char *ctx = k == JQ_TASK_CWE ? "1. " : k == JQ_TASK_VT ? "VAR " : "One of the special";
        assert_true(strstr(f.prompt, qword) < strstr(f.prompt, ctx));
        assert_true(strstr(a.prompt, qword) > strstr(a.prompt, ctx));
        for (int32_t i = 0; i < a.n_answers; i++)
            assert_string_equal(a.answers[i], f.answers[i]);
        jq_task_sample_free(&f);
        jq_task_sample_free(&a);
    }
    /* too short a target is an error naming the length needed */
    jq_task_opts o = {.kind = JQ_TASK_CWE, .length = 100, .seed = 1};
    jq_task_sample s;
    char err[256];
    assert_int_equal(jq_task_generate(&o, 0, count_words, NULL, &s, err, sizeof err), -1);
    assert_non_null(strstr(err, "at least"));
}

static void test_task_scorer(void **state)
{
    (void)state;
    const char *one[] = {"4815162"};
    assert_true(jq_task_score(" 4815162.", one, 1) == 100);
    assert_true(jq_task_score(" 4815163.", one, 1) == 0);
    assert_true(jq_task_score("", one, 1) == 0);
    const char *names[] = {"QWERT", "ASDFG", "ZXCVB", "POIUY", "LKJHG"};
    assert_true(jq_task_score("qwert, asdfg and ZXCVB", names, 5) == 60);
    assert_true(jq_task_score("QWERTASDFGZXCVBPOIUYLKJHG", names, 5) == 100);
    assert_true(jq_task_score("anything", names, 0) == 100);
}

/* ------------------------------------------------------- the command */

static char *judgeq(const char *args, int *rc, char **err)
{
    char *cmd = jqt_fmt("'%s' %s", jqt_judgeq_bin(), args);
    char *out = jqt_run(cmd, rc, err);
    free(cmd);
    return out;
}

static const char *soft_file(void)
{
    static char *path;
    if (!path) {
        path = jqt_fmt("%s/eval.soft.gguf", jqt_tmpdir());
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

static char *run_eval(const char *out, const char *extra)
{
    char *args = jqt_fmt("eval -m '%s' --policies %s --budgets 32,16 --soft '%s' "
                         "--self-generate 3 --prompt-len 96 -n 8 --seed 11 "
                         "--threads 1 --out '%s' %s",
                         jqt_model_path("stories260K.gguf"), ALL_POLICIES,
                         soft_file(), out, extra);
    int rc;
    char *err;
    char *stdout_ = judgeq(args, &rc, &err);
    if (rc != 0)
        fail_msg("judgeq %s: exit %d: %s", args, rc, err);
    free(err);
    free(args);
    return stdout_;
}

/* Splits a CSV (no quoted fields here) into rows of fields. */
typedef struct {
    int n_rows, n_cols;
    char ***f;
    char *buf;
} csv_t;

static csv_t read_csv(const char *path)
{
    csv_t c = {0};
    c.buf = jqt_read_file(path, NULL);
    if (!c.buf)
        fail_msg("cannot read %s", path);
    for (char *line = c.buf, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        char **row = NULL;
        int n = 0;
        for (char *s = line;; s++) {
            char *comma = strchr(s, ',');
            row = realloc(row, sizeof *row * (size_t)(n + 1));
            row[n++] = s;
            if (!comma)
                break;
            *comma = '\0';
            s = comma;
        }
        if (c.n_rows && n != c.n_cols)
            fail_msg("%s: row %d has %d fields, header %d", path, c.n_rows, n,
                     c.n_cols);
        c.n_cols = n;
        c.f = realloc(c.f, sizeof *c.f * (size_t)(c.n_rows + 1));
        c.f[c.n_rows++] = row;
    }
    return c;
}

static void free_csv(csv_t *c)
{
    for (int i = 0; i < c->n_rows; i++)
        free(c->f[i]);
    free(c->f);
    free(c->buf);
}

static int col(const csv_t *c, const char *name)
{
    for (int j = 0; j < c->n_cols; j++)
        if (!strcmp(c->f[0][j], name))
            return j;
    fail_msg("no column %s", name);
    return -1;
}

static double num(const csv_t *c, int row, const char *name)
{
    return strtod(c->f[row][col(c, name)], NULL);
}

/* the file without the named (timing) column, as one string */
static char *without_column(const char *path, const char *name)
{
    csv_t c = read_csv(path);
    int skip = col(&c, name);
    size_t cap = 1 << 16, len = 0;
    char *s = malloc(cap);
    for (int i = 0; i < c.n_rows; i++) {
        bool first = true;
        for (int j = 0; j < c.n_cols; j++) {
            if (j == skip)
                continue;
            size_t n = strlen(c.f[i][j]) + 2;
            if (len + n + 2 > cap)
                s = realloc(s, cap *= 2);
            len += (size_t)sprintf(s + len, "%s%s", first ? "" : ",", c.f[i][j]);
            first = false;
        }
        s[len++] = '\n';
        s[len] = '\0';
    }
    free_csv(&c);
    return s;
}

static bool in_unit(double v) { return v >= 0 && v <= 1 + 1e-9; }

static void test_eval_run(void **state)
{
    (void)state;
    char *dir = jqt_fmt("%s/eval1/nested", jqt_tmpdir());
    char *table = run_eval(dir, "");
    assert_non_null(strstr(table, "policy"));
    assert_non_null(strstr(table, "judgeq"));

    char *path = jqt_fmt("%s/results.csv", dir);
    char *text = jqt_read_file(path, NULL);
    assert_non_null(text);
    assert_memory_equal(text, RESULTS_HEADER "\n", strlen(RESULTS_HEADER) + 1);
    free(text);
    csv_t c = read_csv(path);
    assert_int_equal(c.n_rows, 1 + 8 * 2);
    const int32_t kv_per_entry = 2 * 5 * 4 * 8 * 4; /* K+V, f32, all heads */
    for (int i = 1; i < c.n_rows; i++) {
        const char *pol = c.f[i][0];
        int budget = atoi(c.f[i][1]);
        /* policy-major, budgets ascending */
        assert_int_equal(budget, i % 2 ? 16 : 32);
        assert_int_equal(atoi(c.f[i][2]), 3);
        double hit = num(&c, i, "hit_rate"), mass = num(&c, i, "mass_recall");
        double agree = num(&c, i, "agreement"), kl = num(&c, i, "kl");
        double fd = num(&c, i, "first_diff");
        assert_true(in_unit(hit) && in_unit(mass) && in_unit(agree));
        assert_true(kl >= 0 && isfinite(kl));
        assert_true(fd >= 1 && fd <= 8);
        assert_true(num(&c, i, "hit_rate_ci") >= 0);
        assert_true(num(&c, i, "mass_recall_ci") >= 0);
        assert_true(num(&c, i, "agreement_ci") >= 0);
        assert_true(num(&c, i, "kl_ci") >= 0);
        assert_true(num(&c, i, "prefill_ms") >= 0);
        double bytes = num(&c, i, "kv_bytes");
        if (!strcmp(pol, "full")) {
            assert_true(hit == 1 && mass == 1 && agree == 1 && kl == 0);
            assert_true(fd == 8);
            assert_true(num(&c, i, "kl_ci") == 0);
            assert_true(bytes == 96.0 * kv_per_entry);
        } else {
            assert_true(bytes == (double)budget * kv_per_entry);
        }
        if (!strcmp(pol, "oracle"))
            assert_true(hit == 1);
    }
    free_csv(&c);
    free(path);

    path = jqt_fmt("%s/per_prompt.csv", dir);
    text = jqt_read_file(path, NULL);
    assert_memory_equal(text, PER_PROMPT_HEADER "\n", strlen(PER_PROMPT_HEADER) + 1);
    free(text);
    c = read_csv(path);
    assert_int_equal(c.n_rows, 1 + 3 * 8 * 2);
    for (int i = 1; i < c.n_rows; i++) {
        assert_int_equal(atoi(c.f[i][2]), 96);
        assert_true(in_unit(num(&c, i, "agreement")));
        int fd = atoi(c.f[i][col(&c, "first_diff")]);
        assert_true(fd >= 1 && fd <= 8);
        /* agreement 1 exactly when nothing differs */
        assert_true((fd == 8) == (num(&c, i, "agreement") == 1));
    }
    free_csv(&c);
    free(path);

    path = jqt_fmt("%s/run.json", dir);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j)
        fail_msg("run.json: %s", je.text);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "model"), "sha256")),
                        "5a9d168bd9d9e29302e0d604e9a4c97184057ad87661cd7e7cc4318fdeba6d9c");
    char soft_sha[JQ_SHA256_HEX], err[256];
    assert_int_equal(jq_sha256_file(soft_file(), soft_sha, err, sizeof err), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "soft"), "sha256")),
                        soft_sha);
    assert_non_null(json_string_value(json_object_get(j, "judgeq_version")));
    assert_non_null(json_string_value(json_object_get(j, "date")));
    json_t *opt = json_object_get(j, "options");
    assert_int_equal(json_integer_value(json_object_get(opt, "n_predict")), 8);
    assert_int_equal(json_integer_value(json_object_get(opt, "seed")), 11);
    assert_int_equal(json_integer_value(json_object_get(opt, "self_generate")), 3);
    assert_int_equal(json_integer_value(json_object_get(opt, "prompt_len")), 96);
    assert_int_equal(json_array_size(json_object_get(opt, "policies")), 8);
    assert_int_equal(json_array_size(json_object_get(opt, "budgets")), 2);
    assert_int_equal(json_array_size(json_object_get(j, "specs")), 16);
    free(path);

    /* the plot, when gnuplot is there */
    int rc;
    free(jqt_run("command -v gnuplot", &rc, NULL));
    path = jqt_fmt("%s/results.png", dir);
    struct stat st;
    if (rc == 0) {
        assert_int_equal(stat(path, &st), 0);
        assert_true(st.st_size > 1000);
        assert_true(json_is_true(json_object_get(j, "plot")));
    }
    json_decref(j);
    free(path);

    /* the same seed: the same numbers (timing aside); another seed: other
     * prompts */
    char *dir2 = jqt_fmt("%s/eval2", jqt_tmpdir());
    free(run_eval(dir2, ""));
    const char *files[] = {"results.csv", "per_prompt.csv"};
    for (int k = 0; k < 2; k++) {
        char *p1 = jqt_fmt("%s/%s", dir, files[k]);
        char *p2 = jqt_fmt("%s/%s", dir2, files[k]);
        char *a = without_column(p1, "prefill_ms");
        char *b = without_column(p2, "prefill_ms");
        assert_string_equal(a, b);
        free(a);
        free(b);
        free(p1);
        free(p2);
    }
    free(dir2);
    free(table);
    free(dir);
}

static char *run_json_path(const char *dir)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/run.json", dir);
    return path;
}

static void test_eval_task(void **state)
{
    (void)state;
    char *dir = jqt_fmt("%s/eval_task", jqt_tmpdir());
    /* PATH without gnuplot (the binary is named by its path) */
    char *args = jqt_fmt("eval -m '%s' --policies full,snapkv --budgets 32 "
                         "--task niah --length 300 --samples 2 -n 4 "
                         "--threads 1 --out '%s'",
                         jqt_model_path("stories260K.gguf"), dir);
    char *cmd = jqt_fmt("PATH=/nonexistent '%s' %s", jqt_judgeq_bin(), args);
    int rc;
    char *err;
    free(jqt_run(cmd, &rc, &err));
    free(cmd);
    if (rc != 0)
        fail_msg("%s: %s", args, err);
    char *path = jqt_fmt("%s/results.csv", dir);
    csv_t c = read_csv(path);
    /* no gnuplot on PATH: a warning, no PNG, everything else written */
    char *png = jqt_fmt("%s/results.png", dir);
    assert_int_not_equal(access(png, F_OK), 0);
    assert_non_null(strstr(err, "gnuplot not found"));
    assert_int_equal(access(run_json_path(dir), F_OK), 0);
    free(png);
    assert_int_equal(c.n_cols, 16);
    assert_string_equal(c.f[0][3], "accuracy");
    assert_string_equal(c.f[0][4], "accuracy_ci");
    assert_string_equal(c.f[0][5], "hit_rate");
    for (int i = 1; i < c.n_rows; i++) {
        double acc = num(&c, i, "accuracy");
        assert_true(acc >= 0 && acc <= 100);
    }
    free_csv(&c);
    free(path);
    free(err);
    free(args);
    free(dir);
}

/* Bad input fails with the right exit code before any work: nothing is
 * written into --out. */
static void expect_exit(const char *extra, int want_rc, const char *want_err)
{
    char *dir = jqt_fmt("%s/never", jqt_tmpdir());
    char *args = jqt_fmt("eval -m '%s' --out '%s' --threads 1 %s",
                         jqt_model_path("stories260K.gguf"), dir, extra);
    int rc;
    char *err;
    free(judgeq(args, &rc, &err));
    if (rc != want_rc || !strstr(err, want_err))
        fail_msg("judgeq %s: exit %d (want %d), stderr: %s", args, rc,
                 want_rc, err);
    char *results = jqt_fmt("%s/results.csv", dir);
    assert_int_not_equal(access(results, F_OK), 0);
    free(results);
    free(err);
    free(args);
    free(dir);
}

static void test_eval_errors(void **state)
{
    (void)state;
    const char *sg = "--self-generate 2 --prompt-len 64 -n 4";
    char *a;
    a = jqt_fmt("--policies snapkv,lru --budgets 16 %s", sg);
    expect_exit(a, 2, "unknown policy 'lru'");
    free(a);
    a = jqt_fmt("--policies snapkv,judgeq --budgets 16 %s", sg);
    expect_exit(a, 2, "--soft");
    free(a);
    a = jqt_fmt("--policies snapkv --budgets 16 --window 16 %s", sg);
    expect_exit(a, 2, "--window");
    free(a);
    a = jqt_fmt("--policies snapkv --budgets 16,16 %s", sg);
    expect_exit(a, 2, "twice");
    free(a);
    expect_exit("--policies snapkv --budgets 16", 2, "exactly one of");
    a = jqt_fmt("--policies snapkv --budgets 16 --task niah %s", sg);
    expect_exit(a, 2, "exactly one of");
    free(a);
    a = jqt_fmt("--policies snapkv --budget 16 %s", sg);
    expect_exit(a, 2, "--budget");
    free(a);
    expect_exit("--policies snapkv --budgets 16 --self-generate 2 "
                "--prompt-len 500 -n 32", 2, "context");
    expect_exit("--policies snapkv --budgets 16 --task cwe --length 400", 1,
                "at least");

    /* a JSONL prompt longer than the context: exit 1 naming the line */
    char *jsonl = jqt_fmt("%s/long.jsonl", jqt_tmpdir());
    FILE *f = fopen(jsonl, "w");
    assert_non_null(f);
    fputs("{\"prompt\": \"Once upon a time\"}\n\n{\"prompt\": \"", f);
    for (int i = 0; i < 300; i++)
        fputs("The cat sat. ", f);
    fputs("\"}\n", f);
    fclose(f);
    a = jqt_fmt("--policies snapkv --budgets 16 --prompts '%s'", jsonl);
    expect_exit(a, 1, "line 3");
    free(a);
    f = fopen(jsonl, "w");
    fputs("{\"text\": \"no prompt\"}\n", f);
    fclose(f);
    a = jqt_fmt("--policies snapkv --budgets 16 --prompts '%s'", jsonl);
    expect_exit(a, 1, ":1:");
    free(a);
    free(jsonl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_ci_and_kl),
        cmocka_unit_test(test_selfgen),
        cmocka_unit_test(test_metrics_on_model),
        cmocka_unit_test(test_task_generator),
        cmocka_unit_test(test_task_scorer),
        cmocka_unit_test(test_eval_run),
        cmocka_unit_test(test_eval_task),
        cmocka_unit_test(test_eval_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
