/* test_evict.c — eviction policies on hand-made score patterns: what each
 * policy keeps, pooling, GQA reduction, PyramidKV and AdaKV budgets, spec
 * validation, the hit-rate and mass-recall metrics, and a randomized
 * property test over all policies and shapes. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "evict.h"

/* ---------------------------------------------------------- helpers */

/* Runs a selection that must succeed. */
static jq_kept *select_ok(const jq_evict_spec *spec, int32_t n_layer,
                          int32_t n_head, int32_t n_head_kv, int32_t L,
                          const float *raw)
{
    jq_kept *k = jq_kept_new(n_layer, n_head_kv, L);
    assert_non_null(k);
    char err[256] = "";
    int rc = jq_evict_select(spec, n_layer, n_head, n_head_kv, L, raw, k, err,
                             sizeof err);
    if (rc != 0)
        fail_msg("jq_evict_select failed: %s", err);
    return k;
}

/* Asserts head h of k keeps exactly want[0..n). */
static void assert_kept(const jq_kept *k, int32_t h, const int32_t *want,
                        int32_t n)
{
    const int32_t *pos = k->positions + (size_t)h * (size_t)k->L;
    if (k->counts[h] != n) {
        char got[1024] = "";
        for (int32_t i = 0; i < k->counts[h] && strlen(got) < 1000; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), " %d",
                     pos[i]);
        fail_msg("head %d keeps %d entries, expected %d; got:%s", h,
                 k->counts[h], n, got);
    }
    for (int32_t i = 0; i < n; i++)
        if (pos[i] != want[i])
            fail_msg("head %d entry %d is %d, expected %d", h, i, pos[i],
                     want[i]);
}

static bool head_has(const jq_kept *k, int32_t h, int32_t j)
{
    const int32_t *pos = k->positions + (size_t)h * (size_t)k->L;
    for (int32_t i = 0; i < k->counts[h]; i++)
        if (pos[i] == j)
            return true;
    return false;
}

static jq_evict_spec spec_of(jq_evict_policy p, int32_t B, int32_t w,
                             int32_t kernel)
{
    jq_evict_spec s = jq_evict_spec_default(p, B);
    s.window = w;
    s.pool_kernel = kernel;
    return s;
}

/* ---------------------------------------------------------- specs */

static void test_defaults_and_names(void **state)
{
    (void)state;
    jq_evict_spec s = jq_evict_spec_default(JQ_EVICT_SNAPKV, 256);
    assert_int_equal(s.policy, JQ_EVICT_SNAPKV);
    assert_int_equal(s.budget, 256);
    assert_int_equal(s.window, 32);
    assert_int_equal(s.pool_kernel, 7);
    assert_int_equal(s.gqa_reduce, JQ_GQA_MEAN);
    assert_float_equal(s.adakv_alpha, 0.2f, 1e-7);
    assert_float_equal(s.pyramid_beta, 20.0f, 1e-7);
    s = jq_evict_spec_default(JQ_EVICT_STREAMING, 64);
    assert_int_equal(s.sink, 4);
    assert_int_equal(jq_evict_spec_check(&s, NULL, 0), 0);
    /* a streaming budget below the default window is still valid */
    s = jq_evict_spec_default(JQ_EVICT_STREAMING, 8);
    assert_int_equal(jq_evict_spec_check(&s, NULL, 0), 0);
    for (int p = 0; p < JQ_EVICT_COUNT_; p++) {
        const char *n = jq_evict_policy_name((jq_evict_policy)p);
        assert_int_equal(jq_evict_policy_from_name(n), p);
        jq_evict_spec d = jq_evict_spec_default((jq_evict_policy)p, 128);
        char err[200];
        if (jq_evict_spec_check(&d, err, sizeof err) != 0)
            fail_msg("default spec of %s rejected: %s", n, err);
    }
    assert_string_equal(jq_evict_policy_name(JQ_EVICT_PYRAMIDKV),
                        "pyramidkv");
    assert_int_equal(jq_evict_policy_from_name("snapkv2"), -1);
    assert_int_equal(jq_evict_policy_from_name(""), -1);
    assert_int_equal(jq_evict_policy_from_name(NULL), -1);
    assert_false(jq_evict_needs_scores(JQ_EVICT_FULL));
    assert_false(jq_evict_needs_scores(JQ_EVICT_STREAMING));
    assert_true(jq_evict_needs_scores(JQ_EVICT_H2O));
    assert_true(jq_evict_needs_scores(JQ_EVICT_JUDGEQ));
    assert_true(jq_evict_needs_scores(JQ_EVICT_ORACLE));
}

static void expect_error(const jq_evict_spec *s, const char *needle)
{
    char err[256] = "";
    assert_int_equal(jq_evict_spec_check(s, err, sizeof err), -1);
    if (!strstr(err, needle))
        fail_msg("error \"%s\" does not contain \"%s\"", err, needle);
}

static void test_spec_check_errors(void **state)
{
    (void)state;
    jq_evict_spec s = jq_evict_spec_default(JQ_EVICT_SNAPKV, 0);
    expect_error(&s, "--budget 0 must be at least 1");
    s = jq_evict_spec_default(JQ_EVICT_SNAPKV, 16);
    expect_error(&s, "--window 32 must be smaller than --budget 16");
    s = jq_evict_spec_default(JQ_EVICT_H2O, 32);
    expect_error(&s, "--window 32 must be smaller than --budget 32");
    s = jq_evict_spec_default(JQ_EVICT_SNAPKV, 64);
    s.pool_kernel = 6;
    expect_error(&s, "--pool-kernel 6");
    s.pool_kernel = 0;
    expect_error(&s, "--pool-kernel 0");
    s = jq_evict_spec_default(JQ_EVICT_SNAPKV, 64);
    s.window = -1;
    expect_error(&s, "--window -1");
    s.window = 0; /* snapkv has no observers without a window */
    expect_error(&s, "--window 0 must be at least 1");
    s = jq_evict_spec_default(JQ_EVICT_JUDGEQ, 64);
    s.window = 0; /* judgeq's observers are the soft tokens */
    assert_int_equal(jq_evict_spec_check(&s, NULL, 0), 0);
    s = jq_evict_spec_default(JQ_EVICT_STREAMING, 4);
    s.sink = 5;
    expect_error(&s, "--sink 5");
    s = jq_evict_spec_default(JQ_EVICT_ADAKV, 64);
    s.adakv_alpha = 1.5f;
    expect_error(&s, "--adakv-alpha");
    s.adakv_alpha = NAN;
    expect_error(&s, "--adakv-alpha");
    s = jq_evict_spec_default(JQ_EVICT_PYRAMIDKV, 64);
    s.pyramid_beta = 0.5f;
    expect_error(&s, "--pyramid-beta");
    s = jq_evict_spec_default(JQ_EVICT_SNAPKV, 64);
    s.policy = JQ_EVICT_COUNT_; /* what an unknown name must never become */
    expect_error(&s, "--policy");
    s = jq_evict_spec_default(JQ_EVICT_SNAPKV, 64);
    s.gqa_reduce = (jq_gqa_reduce)7;
    expect_error(&s, "--gqa-reduce");

    /* jq_evict_select refuses a bad spec with the same message */
    s = jq_evict_spec_default(JQ_EVICT_SNAPKV, 0);
    jq_kept *k = jq_kept_new(1, 1, 10);
    float raw[10] = {0};
    char err[256] = "";
    assert_int_equal(jq_evict_select(&s, 1, 1, 1, 10, raw, k, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "--budget 0"));
    /* and a shape that does not match the output */
    s = jq_evict_spec_default(JQ_EVICT_SNAPKV, 4);
    s.window = 1;
    assert_int_equal(jq_evict_select(&s, 1, 1, 1, 9, raw, k, err, sizeof err),
                     -1);
    assert_int_equal(jq_evict_select(&s, 1, 3, 2, 10, raw, k, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "multiple"));
    assert_int_equal(
        jq_evict_select(&s, 1, 1, 1, 10, NULL, k, err, sizeof err), -1);
    jq_kept_free(k);
}

static void test_observer_rows(void **state)
{
    (void)state;
    int32_t a, b;
    jq_evict_spec s = jq_evict_spec_default(JQ_EVICT_SNAPKV, 64);
    jq_evict_observer_rows(&s, 100, &a, &b);
    assert_int_equal(a, 68);
    assert_int_equal(b, 100);
    jq_evict_observer_rows(&s, 20, &a, &b); /* shorter than the window */
    assert_int_equal(a, 0);
    assert_int_equal(b, 20);
    s.policy = JQ_EVICT_H2O;
    jq_evict_observer_rows(&s, 100, &a, &b);
    assert_int_equal(a, 0);
    assert_int_equal(b, 100);
    jq_evict_policy none[] = {JQ_EVICT_FULL, JQ_EVICT_STREAMING,
                              JQ_EVICT_JUDGEQ, JQ_EVICT_ORACLE};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
        s.policy = none[i];
        jq_evict_observer_rows(&s, 100, &a, &b);
        assert_int_equal(a, b);
    }
}

/* ---------------------------------------------------------- policies */

static void test_short_prompt_keeps_all(void **state)
{
    (void)state;
    float raw[2 * 10];
    for (int i = 0; i < 20; i++)
        raw[i] = (float)(i % 7);
    int32_t all[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    for (int p = 0; p < JQ_EVICT_COUNT_; p++) {
        jq_evict_spec s = jq_evict_spec_default((jq_evict_policy)p, 10);
        s.window = p == JQ_EVICT_STREAMING || p == JQ_EVICT_FULL ||
                           p == JQ_EVICT_ORACLE
                       ? 0
                       : 3;
        jq_kept *k = select_ok(&s, 2, 1, 1, 10, raw); /* L == B */
        assert_kept(k, 0, all, 10);
        assert_kept(k, 1, all, 10);
        jq_kept_free(k);
    }
    /* full keeps everything whatever the budget, without scores */
    jq_evict_spec s = jq_evict_spec_default(JQ_EVICT_FULL, 2);
    jq_kept *k = select_ok(&s, 2, 1, 1, 10, NULL);
    assert_kept(k, 0, all, 10);
    assert_kept(k, 1, all, 10);
    assert_int_equal(jq_kept_total(k), 20);
    jq_kept_free(k);
}

static void test_streaming(void **state)
{
    (void)state;
    jq_evict_spec s = jq_evict_spec_default(JQ_EVICT_STREAMING, 8);
    jq_kept *k = select_ok(&s, 2, 4, 2, 20, NULL);
    int32_t want[8] = {0, 1, 2, 3, 16, 17, 18, 19};
    for (int h = 0; h < 4; h++)
        assert_kept(k, h, want, 8);
    jq_kept_free(k);
    s.sink = 0;
    k = select_ok(&s, 1, 1, 1, 20, NULL);
    int32_t recent[8] = {12, 13, 14, 15, 16, 17, 18, 19};
    assert_kept(k, 0, recent, 8);
    jq_kept_free(k);
}

static void test_snapkv_window_always_kept(void **state)
{
    (void)state;
    /* the window's own scores are zero, older positions score high: the
     * window is still kept, and the rest is the top of [0, L - w) */
    float raw[20] = {0};
    raw[3] = 5;
    raw[10] = 3;
    raw[11] = 4;
    raw[5] = 2;
    raw[6] = 1;
    jq_evict_spec s = spec_of(JQ_EVICT_SNAPKV, 6, 2, 1);
    jq_kept *k = select_ok(&s, 1, 1, 1, 20, raw);
    int32_t want[6] = {3, 5, 10, 11, 18, 19};
    assert_kept(k, 0, want, 6);
    jq_kept_free(k);
    /* h2o and judgeq force their window the same way */
    s.policy = JQ_EVICT_JUDGEQ;
    k = select_ok(&s, 1, 1, 1, 20, raw);
    assert_kept(k, 0, want, 6);
    jq_kept_free(k);
    s.policy = JQ_EVICT_H2O;
    k = select_ok(&s, 1, 1, 1, 20, raw);
    assert_true(head_has(k, 0, 18) && head_has(k, 0, 19));
    assert_int_equal(k->counts[0], 6);
    jq_kept_free(k);
    /* judgeq without a window: top B of everything */
    s = spec_of(JQ_EVICT_JUDGEQ, 4, 0, 1);
    k = select_ok(&s, 1, 1, 1, 20, raw);
    int32_t top4[4] = {3, 5, 10, 11};
    assert_kept(k, 0, top4, 4);
    jq_kept_free(k);
}

static void test_pooling(void **state)
{
    (void)state;
    /* a single peak spreads to its ±3 neighbours with kernel 7 */
    float raw[30] = {0};
    raw[10] = 1.0f;
    jq_evict_spec s = spec_of(JQ_EVICT_SNAPKV, 9, 2, 7);
    jq_kept *k = select_ok(&s, 1, 1, 1, 30, raw);
    int32_t pooled[9] = {7, 8, 9, 10, 11, 12, 13, 28, 29};
    assert_kept(k, 0, pooled, 9);
    jq_kept_free(k);
    /* kernel 1 disables it: the peak, then ties go to the lowest */
    s.pool_kernel = 1;
    k = select_ok(&s, 1, 1, 1, 30, raw);
    int32_t plain[9] = {0, 1, 2, 3, 4, 5, 10, 28, 29};
    assert_kept(k, 0, plain, 9);
    jq_kept_free(k);

    /* padding is never a value: a peak at the edge spreads inward only */
    float in[8] = {0, 5, 0, 0, 0, 0, 0, -1}, out[8];
    jq_evict_max_pool(in, 8, 7, out);
    float want[8] = {5, 5, 5, 5, 5, 0, 0, 0};
    for (int i = 0; i < 8; i++)
        assert_float_equal(out[i], want[i], 0);
    float neg[3] = {-3, -2, -1}, negout[3];
    jq_evict_max_pool(neg, 3, 7, negout); /* -inf padding never wins */
    for (int i = 0; i < 3; i++)
        assert_float_equal(negout[i], -1, 0);
    float nan_in[3] = {NAN, 2, NAN}, nan_out[3];
    jq_evict_max_pool(nan_in, 3, 3, nan_out);
    for (int i = 0; i < 3; i++)
        assert_float_equal(nan_out[i], 2, 0);

    /* the window's scores do not leak into the candidates: a huge score
     * at L-1 (inside the window) must not pull L-2-3.. into the top */
    float r2[30];
    for (int j = 0; j < 30; j++)
        r2[j] = (float)(30 - j) * 1e-3f; /* older slightly higher */
    r2[29] = 100.0f;
    s = spec_of(JQ_EVICT_SNAPKV, 5, 2, 7);
    k = select_ok(&s, 1, 1, 1, 30, r2);
    int32_t w2[5] = {0, 1, 2, 28, 29};
    assert_kept(k, 0, w2, 5);
    jq_kept_free(k);
}

static void test_h2o_normalisation(void **state)
{
    (void)state;
    /* L = 10: key j is seen by 10 - j prompt queries. Raw sums favour the
     * old keys 0 and 1; per-query averages favour 7 and 8. */
    float raw[10] = {0};
    raw[0] = 6.0f;  /* 6.0 / 10 = 0.60 */
    raw[1] = 5.0f;  /* 5.0 / 9  = 0.56 */
    raw[7] = 2.4f;  /* 2.4 / 3  = 0.80 */
    raw[8] = 1.8f;  /* 1.8 / 2  = 0.90 */
    jq_evict_spec s = spec_of(JQ_EVICT_H2O, 3, 1, 1);
    jq_kept *k = select_ok(&s, 1, 1, 1, 10, raw);
    int32_t h2o[3] = {7, 8, 9};
    assert_kept(k, 0, h2o, 3);
    jq_kept_free(k);
    /* the same scores without the normalisation (snapkv) */
    s.policy = JQ_EVICT_SNAPKV;
    k = select_ok(&s, 1, 1, 1, 10, raw);
    int32_t snap[3] = {0, 1, 9};
    assert_kept(k, 0, snap, 3);
    jq_kept_free(k);
}

static void test_gqa_mean_vs_max(void **state)
{
    (void)state;
    /* 4 query heads, 2 KV heads (G = 2), L = 6. KV head 0: position 1 is
     * one head's spike (mean 0.5, max 1.0), position 3 is shared (mean 0.6,
     * max 0.6). KV head 1 scores nothing: ties go to position 0. */
    enum { L = 6 };
    float raw[4 * L] = {0};
    raw[0 * L + 1] = 1.0f;
    raw[1 * L + 1] = 0.0f;
    raw[0 * L + 3] = 0.6f;
    raw[1 * L + 3] = 0.6f;
    float s[L];
    jq_evict_gqa_reduce(raw, 4, 2, 0, L, JQ_GQA_MEAN, s);
    assert_float_equal(s[1], 0.5f, 1e-7);
    assert_float_equal(s[3], 0.6f, 1e-7);
    jq_evict_gqa_reduce(raw, 4, 2, 0, L, JQ_GQA_MAX, s);
    assert_float_equal(s[1], 1.0f, 0);
    assert_float_equal(s[3], 0.6f, 1e-7);

    jq_evict_spec sp = spec_of(JQ_EVICT_SNAPKV, 2, 1, 1);
    jq_kept *k = select_ok(&sp, 1, 4, 2, L, raw);
    int32_t mean0[2] = {3, 5}, none[2] = {0, 5};
    assert_kept(k, 0, mean0, 2);
    assert_kept(k, 1, none, 2);
    jq_kept_free(k);
    sp.gqa_reduce = JQ_GQA_MAX;
    k = select_ok(&sp, 1, 4, 2, L, raw);
    int32_t max0[2] = {1, 5};
    assert_kept(k, 0, max0, 2);
    assert_kept(k, 1, none, 2);
    jq_kept_free(k);

    /* NaN: the mean becomes NaN (ranks last), max skips it */
    float rn[2 * 3] = {NAN, 0.1f, 0.2f, 0.9f, 0.1f, 0.1f};
    float sn[3];
    jq_evict_gqa_reduce(rn, 2, 1, 0, 3, JQ_GQA_MEAN, sn);
    assert_true(isnan(sn[0]));
    jq_evict_gqa_reduce(rn, 2, 1, 0, 3, JQ_GQA_MAX, sn);
    assert_float_equal(sn[0], 0.9f, 0);
}

static void test_nan_ranks_lowest(void **state)
{
    (void)state;
    float raw[8] = {NAN, NAN, 0.0f, NAN, -1.0f, NAN, NAN, NAN};
    jq_evict_spec s = spec_of(JQ_EVICT_SNAPKV, 3, 1, 1);
    jq_kept *k = select_ok(&s, 1, 1, 1, 8, raw);
    int32_t want[3] = {2, 4, 7};
    assert_kept(k, 0, want, 3);
    jq_kept_free(k);
    s.policy = JQ_EVICT_ORACLE;
    k = select_ok(&s, 1, 1, 1, 8, raw);
    int32_t o[3] = {0, 2, 4}; /* then NaNs, lowest position first */
    assert_kept(k, 0, o, 3);
    jq_kept_free(k);
}

static void test_oracle(void **state)
{
    (void)state;
    /* top B by raw score: no pooling (a neighbour of the peak stays out)
     * and no window (the recent positions score nothing) */
    float raw[12] = {0};
    raw[2] = 1.0f;
    raw[7] = 0.9f;
    raw[4] = 0.8f;
    raw[3] = 0.1f;
    jq_evict_spec s = jq_evict_spec_default(JQ_EVICT_ORACLE, 3);
    s.window = 5; /* ignored: the oracle forces nothing */
    s.pool_kernel = 7;
    jq_kept *k = select_ok(&s, 1, 1, 1, 12, raw);
    int32_t want[3] = {2, 4, 7};
    assert_kept(k, 0, want, 3);
    /* the oracle's own hit rate is 1 by construction */
    assert_float_equal(jq_evict_hit_rate(k, k), 1.0, 0);
    jq_kept_free(k);
}

/* ---------------------------------------------------------- pyramidkv */

static void test_pyramid_caps(void **state)
{
    (void)state;
    /* C = 100, min = 5, max = 195, step 190/3: 195, 131.67, 68.33, 5 →
     * floors sum 399; the one leftover goes to the largest fraction */
    int32_t caps[4];
    jq_evict_pyramid_caps(4, 1000, 132, 32, 20.0f, caps);
    int32_t want[4] = {195, 132, 68, 5};
    for (int l = 0; l < 4; l++)
        assert_int_equal(caps[l], want[l]);
    /* max clipped to L - w: room 60, C 40 → max 60, min 20 */
    int32_t c3[3];
    jq_evict_pyramid_caps(3, 62, 42, 2, 20.0f, c3);
    assert_int_equal(c3[0], 60);
    assert_int_equal(c3[1], 40);
    assert_int_equal(c3[2], 20);
    /* one layer: B - w */
    int32_t c1;
    jq_evict_pyramid_caps(1, 1000, 132, 32, 20.0f, &c1);
    assert_int_equal(c1, 100);
    /* L < B: everything, i.e. L - w */
    jq_evict_pyramid_caps(3, 50, 132, 32, 20.0f, c3);
    for (int l = 0; l < 3; l++)
        assert_int_equal(c3[l], 18);

    /* sums, monotonicity and bounds over many shapes */
    jqt_rng r;
    jqt_rng_seed(&r, 5);
    for (int it = 0; it < 2000; it++) {
        int32_t n = 1 + (int32_t)(jqt_rng_u64(&r) % 40);
        int32_t w = (int32_t)(jqt_rng_u64(&r) % 40);
        int32_t B = w + 1 + (int32_t)(jqt_rng_u64(&r) % 300);
        int32_t L = B + 1 + (int32_t)(jqt_rng_u64(&r) % 1000);
        float beta = jqt_rng_uniform(&r, 1.0f, 40.0f);
        int32_t c[40];
        jq_evict_pyramid_caps(n, L, B, w, beta, c);
        int64_t sum = 0;
        for (int32_t l = 0; l < n; l++) {
            assert_true(c[l] >= 0 && c[l] <= L - w);
            if (l > 0)
                assert_true(c[l] <= c[l - 1]);
            sum += c[l];
        }
        assert_int_equal(sum, (int64_t)n * (B - w));
    }
}

static void test_pyramid_select(void **state)
{
    (void)state;
    enum { NL = 4, H = 2, HKV = 1, L = 400 };
    float *raw = malloc(sizeof(float) * NL * H * L);
    jqt_rng r;
    jqt_rng_seed(&r, 9);
    jqt_fill_uniform(&r, raw, (size_t)NL * H * L, 0, 1);
    jq_evict_spec s = spec_of(JQ_EVICT_PYRAMIDKV, 132, 32, 7);
    jq_kept *k = select_ok(&s, NL, H, HKV, L, raw);
    int32_t want[NL] = {195, 132, 68, 5}; /* see test_pyramid_caps */
    for (int l = 0; l < NL; l++) {
        assert_int_equal(k->counts[l], want[l] + 32);
        for (int32_t j = L - 32; j < L; j++)
            assert_true(head_has(k, l, j));
    }
    assert_int_equal(jq_kept_total(k), (int64_t)NL * 132);
    /* layer 0 keeps the same as snapkv with budget 195 + 32 */
    jq_evict_spec sn = spec_of(JQ_EVICT_SNAPKV, 227, 32, 7);
    jq_kept *k2 = select_ok(&sn, 1, H, HKV, L, raw);
    assert_kept(k, 0, k2->positions, k2->counts[0]);
    jq_kept_free(k2);
    jq_kept_free(k);
    free(raw);
}

/* ---------------------------------------------------------- adakv */

static void test_adakv(void **state)
{
    (void)state;
    /* 2 KV heads, L = 40, w = 4 → 36 candidates, C = 8, 16 in all.
     * Head 0 is peaky: 12 positions at 0.05, the rest 0.001. Head 1 is
     * flat at 0.01. Global top 16: head 0's 12 peaks + 4 of head 1, so
     * x = (0.8*12 + 1.6, 0.8*4 + 1.6) = (11.2, 4.8) → (11, 5). */
    enum { L = 40, W = 4, B = 12 };
    float raw[2 * L];
    for (int j = 0; j < L; j++) {
        raw[j] = 0.001f;
        raw[L + j] = 0.01f;
    }
    for (int i = 0; i < 12; i++)
        raw[3 * i] = 0.05f; /* 0, 3, ..., 33 */
    jq_evict_spec s = spec_of(JQ_EVICT_ADAKV, B, W, 1);
    jq_kept *k = select_ok(&s, 1, 2, 2, L, raw);
    assert_int_equal(k->counts[0], 11 + W);
    assert_int_equal(k->counts[1], 5 + W);
    assert_int_equal(jq_kept_total(k), 2 * B);
    for (int i = 0; i < 11; i++) /* head 0: its 11 best peaks */
        assert_true(head_has(k, 0, 3 * i));
    int32_t flat[5 + W] = {0, 1, 2, 3, 4, 36, 37, 38, 39};
    assert_kept(k, 1, flat, 5 + W);
    jq_kept_free(k);

    /* the α floor: head 0 wins every global slot (counts 16, 0), yet
     * x = (14.4, 1.6) → (14, 2): head 1 keeps at least α C = 1.6 */
    for (int i = 0; i < 36; i++)
        raw[i] = i < 16 ? 0.5f : 0.001f;
    k = select_ok(&s, 1, 2, 2, L, raw);
    assert_int_equal(k->counts[0], 14 + W);
    assert_int_equal(k->counts[1], 2 + W);
    jq_kept_free(k);
    s.adakv_alpha = 0.0f; /* no floor: all to head 0 */
    k = select_ok(&s, 1, 2, 2, L, raw);
    assert_int_equal(k->counts[0], 16 + W);
    assert_int_equal(k->counts[1], 0 + W);
    jq_kept_free(k);
    s.adakv_alpha = 1.0f; /* all floor: uniform, i.e. snapkv */
    k = select_ok(&s, 1, 2, 2, L, raw);
    assert_int_equal(k->counts[0], 8 + W);
    assert_int_equal(k->counts[1], 8 + W);
    jq_kept_free(k);

    /* budgets directly: 3 heads, C = 4, n = 5 — the caps pass keeps each
     * head within n; the sum is exact */
    float p3[3 * 5] = {9, 9, 9, 9, 9, 8, 8, 8, 8, 8, 0, 0, 0, 0, 0};
    int32_t b[3];
    assert_int_equal(jq_evict_adakv_budgets(p3, 3, 5, 4, 0.2f, b), 0);
    /* counts (5, 5, 2): x = (4.8, 4.8, 2.4) → floors (4, 4, 2) + 2 */
    assert_int_equal(b[0], 5);
    assert_int_equal(b[1], 5);
    assert_int_equal(b[2], 2);
}

static void test_adakv_budget_sums(void **state)
{
    (void)state;
    jqt_rng r;
    jqt_rng_seed(&r, 77);
    for (int it = 0; it < 500; it++) {
        int32_t H = 1 + (int32_t)(jqt_rng_u64(&r) % 8);
        int32_t n = 1 + (int32_t)(jqt_rng_u64(&r) % 60);
        int32_t C = (int32_t)(jqt_rng_u64(&r) % (uint64_t)(n + 1));
        float alpha = jqt_rng_uniform(&r, 0, 1);
        float *p = malloc(sizeof(float) * (size_t)(H * n));
        for (int32_t i = 0; i < H * n; i++) /* some heads much peakier */
            p[i] = powf(jqt_rng_uniform(&r, 0, 1), 1.0f + (float)(i / n));
        int32_t b[8];
        assert_int_equal(jq_evict_adakv_budgets(p, H, n, C, alpha, b), 0);
        int64_t sum = 0;
        for (int32_t g = 0; g < H; g++) {
            assert_true(b[g] >= 0 && b[g] <= n);
            /* the α floor: x_g >= α C and rounding only adds to floors */
            assert_true(b[g] >= (int32_t)floor((double)alpha * C));
            sum += b[g];
        }
        assert_int_equal(sum, (int64_t)H * C);
        free(p);
    }
}

/* ---------------------------------------------------------- metrics */

static void set_head(jq_kept *k, int32_t h, const int32_t *pos, int32_t n)
{
    memcpy(k->positions + (size_t)h * (size_t)k->L, pos, sizeof(int32_t) * n);
    k->counts[h] = n;
}

static void test_hit_rate(void **state)
{
    (void)state;
    jq_kept *a = jq_kept_new(1, 2, 10), *o = jq_kept_new(1, 2, 10);
    int32_t x[3] = {1, 2, 3}, y[3] = {4, 5, 6}, z[4] = {2, 3, 4, 5};
    set_head(a, 0, x, 3);
    set_head(a, 1, y, 3);
    set_head(o, 0, x, 3);
    set_head(o, 1, y, 3);
    assert_float_equal(jq_evict_hit_rate(a, o), 1.0, 0);
    set_head(o, 0, y, 3);
    set_head(o, 1, x, 3);
    assert_float_equal(jq_evict_hit_rate(a, o), 0.0, 0);
    /* head 0: {2,3} of {2,3,4,5} → 0.5; head 1: {4,5} of {2,3,4,5} →
     * 0.5; then an empty oracle head counts 1 → (0.5 + 1) / 2 */
    set_head(o, 0, z, 4);
    set_head(o, 1, z, 4);
    assert_float_equal(jq_evict_hit_rate(a, o), 0.5, 1e-12);
    set_head(o, 1, z, 0);
    assert_float_equal(jq_evict_hit_rate(a, o), 0.75, 1e-12);
    jq_kept *other = jq_kept_new(2, 2, 10);
    assert_true(isnan(jq_evict_hit_rate(a, other)));
    jq_kept_free(other);
    jq_kept_free(a);
    jq_kept_free(o);
}

static void test_mass_recall(void **state)
{
    (void)state;
    /* 1 layer, 2 query heads on 1 KV head, L = 4 */
    float t[2 * 4] = {0.1f, 0.2f, 0.3f, 0.4f, 0.3f, 0.3f, 0.2f, 0.2f};
    jq_kept *k = jq_kept_new(1, 1, 4);
    int32_t kept[2] = {1, 3};
    set_head(k, 0, kept, 2);
    /* mean (0.2, 0.25, 0.25, 0.3): (0.25 + 0.3) / 1.0 */
    assert_float_equal(jq_evict_mass_recall(k, t, 2, JQ_GQA_MEAN), 0.55,
                       1e-6);
    /* max (0.3, 0.3, 0.3, 0.4): 0.7 / 1.3 */
    assert_float_equal(jq_evict_mass_recall(k, t, 2, JQ_GQA_MAX), 0.7 / 1.3,
                       1e-6);
    set_head(k, 0, kept, 0);
    assert_float_equal(jq_evict_mass_recall(k, t, 2, JQ_GQA_MEAN), 0.0, 0);
    float zero[8] = {0};
    assert_float_equal(jq_evict_mass_recall(k, zero, 2, JQ_GQA_MEAN), 1.0, 0);
    assert_true(isnan(jq_evict_mass_recall(k, t, 0, JQ_GQA_MEAN)));
    jq_kept_free(k);

    /* two layers, two KV heads: the mean over the four heads */
    float t2[2 * 2 * 4] = {
        1, 1, 1, 1, /* l0 g0: keep {0} → 0.25 */
        0, 0, 0, 2, /* l0 g1: keep {3} → 1 */
        1, 0, 0, 0, /* l1 g0: keep {1} → 0 */
        0, 0, 0, 0, /* l1 g1: no mass → 1 */
    };
    jq_kept *k2 = jq_kept_new(2, 2, 4);
    int32_t p0[1] = {0}, p3[1] = {3}, p1[1] = {1};
    set_head(k2, 0, p0, 1);
    set_head(k2, 1, p3, 1);
    set_head(k2, 2, p1, 1);
    set_head(k2, 3, p1, 1);
    assert_float_equal(jq_evict_mass_recall(k2, t2, 2, JQ_GQA_MEAN),
                       (0.25 + 1 + 0 + 1) / 4, 1e-9);
    jq_kept_free(k2);
}

/* ---------------------------------------------------------- properties */

static void test_random_properties(void **state)
{
    (void)state;
    jqt_rng r;
    jqt_rng_seed(&r, 2024);
    for (int it = 0; it < 400; it++) {
        for (int p = 0; p < JQ_EVICT_COUNT_; p++) {
            int32_t NL = 1 + (int32_t)(jqt_rng_u64(&r) % 4);
            int32_t HKV = 1 + (int32_t)(jqt_rng_u64(&r) % 3);
            int32_t H = HKV * (1 + (int32_t)(jqt_rng_u64(&r) % 3));
            int32_t L = 1 + (int32_t)(jqt_rng_u64(&r) % 200);
            int32_t B = 1 + (int32_t)(jqt_rng_u64(&r) % (uint64_t)(L + 10));
            jq_evict_spec s =
                jq_evict_spec_default((jq_evict_policy)p, B);
            bool needs_w = p == JQ_EVICT_SNAPKV || p == JQ_EVICT_PYRAMIDKV ||
                           p == JQ_EVICT_ADAKV;
            bool forces_w = needs_w || p == JQ_EVICT_H2O ||
                            p == JQ_EVICT_JUDGEQ;
            if (needs_w && B < 2)
                s.budget = B = 2;
            s.window = forces_w ? (int32_t)(jqt_rng_u64(&r) % (uint64_t)B)
                                : (int32_t)(jqt_rng_u64(&r) % 40);
            if (needs_w && s.window == 0)
                s.window = 1;
            s.sink = (int32_t)(jqt_rng_u64(&r) % (uint64_t)(B + 1));
            s.pool_kernel = 1 + 2 * (int32_t)(jqt_rng_u64(&r) % 5);
            s.gqa_reduce = (jq_gqa_reduce)(jqt_rng_u64(&r) % 2);
            s.adakv_alpha = jqt_rng_uniform(&r, 0, 1);
            s.pyramid_beta = jqt_rng_uniform(&r, 1, 30);
            size_t nraw = (size_t)NL * (size_t)H * (size_t)L;
            float *raw = malloc(sizeof(float) * nraw);
            jqt_fill_uniform(&r, raw, nraw, 0, 1);
            for (size_t i = 0; i < nraw; i++)
                if (jqt_rng_u64(&r) % 50 == 0)
                    raw[i] = NAN;
                else if (jqt_rng_u64(&r) % 7 == 0)
                    raw[i] = 0.25f; /* ties */
            jq_kept *k = select_ok(&s, NL, H, HKV, L, raw);
            int32_t w = s.window;
            int32_t caps[4];
            jq_evict_pyramid_caps(NL, L, B, w, s.pyramid_beta, caps);
            int64_t all = 0;
            for (int32_t l = 0; l < NL; l++) {
                int64_t layer = 0;
                for (int32_t g = 0; g < HKV; g++) {
                    int32_t h = l * HKV + g, c = k->counts[h];
                    const int32_t *pos = k->positions + (size_t)h * L;
                    assert_true(c >= 0 && c <= L);
                    for (int32_t i = 0; i < c; i++) {
                        assert_true(pos[i] >= 0 && pos[i] < L);
                        if (i > 0)
                            assert_true(pos[i] > pos[i - 1]);
                    }
                    if (forces_w && L > B)
                        for (int32_t j = L - w; j < L; j++)
                            assert_true(head_has(k, h, j));
                    if (p == JQ_EVICT_STREAMING && L > B)
                        for (int32_t i = 0; i < c; i++)
                            assert_true(pos[i] < s.sink ||
                                        pos[i] >= L - (B - s.sink));
                    layer += c;
                }
                int64_t want;
                if (p == JQ_EVICT_FULL || L <= B)
                    want = (int64_t)HKV * L;
                else if (p == JQ_EVICT_PYRAMIDKV)
                    want = (int64_t)HKV * (caps[l] + w);
                else
                    want = (int64_t)HKV * B; /* adakv: shared, same sum */
                if (layer != want)
                    fail_msg("%s: layer %d keeps %lld, expected %lld (L %d "
                             "B %d w %d)",
                             jq_evict_policy_name((jq_evict_policy)p), l,
                             (long long)layer, (long long)want, L, B, w);
                all += layer;
            }
            if (p != JQ_EVICT_FULL && L > B)
                assert_int_equal(all, (int64_t)NL * HKV * B);
            jq_kept_free(k);
            free(raw);
        }
    }
}

/* The oracle equals a brute-force top-B by GQA-reduced raw score. */
static void test_oracle_brute_force(void **state)
{
    (void)state;
    jqt_rng r;
    jqt_rng_seed(&r, 31);
    for (int it = 0; it < 200; it++) {
        int32_t L = 2 + (int32_t)(jqt_rng_u64(&r) % 99);
        int32_t B = 1 + (int32_t)(jqt_rng_u64(&r) % (uint64_t)(L - 1));
        float raw[2 * 100], s[100];
        for (int32_t i = 0; i < 2 * L; i++) /* coarse values: many ties */
            raw[i] = (float)(jqt_rng_u64(&r) % 5);
        jq_evict_spec sp = jq_evict_spec_default(JQ_EVICT_ORACLE, B);
        jq_kept *k = select_ok(&sp, 1, 2, 1, L, raw);
        jq_evict_gqa_reduce(raw, 2, 1, 0, L, JQ_GQA_MEAN, s);
        /* j is kept iff fewer than B positions rank above it */
        for (int32_t j = 0; j < L; j++) {
            int32_t above = 0;
            for (int32_t i = 0; i < L; i++)
                if (s[i] > s[j] || (s[i] == s[j] && i < j))
                    above++;
            assert_int_equal(head_has(k, 0, j), above < B);
        }
        jq_kept_free(k);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_names),
        cmocka_unit_test(test_spec_check_errors),
        cmocka_unit_test(test_observer_rows),
        cmocka_unit_test(test_short_prompt_keeps_all),
        cmocka_unit_test(test_streaming),
        cmocka_unit_test(test_snapkv_window_always_kept),
        cmocka_unit_test(test_pooling),
        cmocka_unit_test(test_h2o_normalisation),
        cmocka_unit_test(test_gqa_mean_vs_max),
        cmocka_unit_test(test_nan_ranks_lowest),
        cmocka_unit_test(test_oracle),
        cmocka_unit_test(test_pyramid_caps),
        cmocka_unit_test(test_pyramid_select),
        cmocka_unit_test(test_adakv),
        cmocka_unit_test(test_adakv_budget_sums),
        cmocka_unit_test(test_hit_rate),
        cmocka_unit_test(test_mass_recall),
        cmocka_unit_test(test_random_properties),
        cmocka_unit_test(test_oracle_brute_force),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
