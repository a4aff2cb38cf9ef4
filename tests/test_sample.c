/* test_sample.c — token sampling: greedy ties, truncations, determinism
 * and the distribution it draws from. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "sample.h"

static void test_greedy(void **state)
{
    (void)state;
    float l[6] = {0.5f, 2.0f, -1.0f, 2.0f, 1.9f, -INFINITY};
    assert_int_equal(jq_argmax(l, 6), 1); /* tie → lowest id */
    jq_sampling p = {.temp = 0, .top_k = 40, .top_p = 0.9f, .seed = 1};
    jq_sampler *s = jq_sampler_new(&p, 6);
    assert_non_null(s);
    for (int i = 0; i < 10; i++)
        assert_int_equal(jq_sampler_sample(s, l), 1);
    jq_sampler_free(s);
}

static void test_top_k_1_and_tiny_top_p_are_greedy(void **state)
{
    (void)state;
    jqt_rng r;
    jqt_rng_seed(&r, 11);
    float l[100];
    jqt_fill_uniform(&r, l, 100, -3, 3);
    int32_t best = jq_argmax(l, 100);
    jq_sampling p1 = {.temp = 1.0f, .top_k = 1, .top_p = 1.0f, .seed = 3};
    jq_sampling p2 = {.temp = 1.0f, .top_k = 0, .top_p = 1e-6f, .seed = 3};
    jq_sampler *a = jq_sampler_new(&p1, 100), *b = jq_sampler_new(&p2, 100);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(jq_sampler_sample(a, l), best);
        assert_int_equal(jq_sampler_sample(b, l), best);
    }
    jq_sampler_free(a);
    jq_sampler_free(b);
}

static void test_top_k_limits_support(void **state)
{
    (void)state;
    float l[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    jq_sampling p = {.temp = 100.0f, .top_k = 3, .top_p = 1.0f, .seed = 9};
    jq_sampler *s = jq_sampler_new(&p, 10);
    int seen[10] = {0};
    for (int i = 0; i < 3000; i++)
        seen[jq_sampler_sample(s, l)]++;
    for (int i = 0; i < 7; i++)
        assert_int_equal(seen[i], 0);
    for (int i = 7; i < 10; i++)
        assert_true(seen[i] > 800); /* nearly uniform at high temperature */
    jq_sampler_free(s);
}

/* Frequencies follow softmax(l / T): with 20000 draws each frequency is
 * within 4.5 standard errors of its probability (fixed seed, so the test is
 * deterministic; the bound is loose enough for any seed). */
static void test_distribution(void **state)
{
    (void)state;
    float l[4] = {1.0f, 2.0f, 0.0f, 1.5f};
    float T = 0.7f;
    double p[4], z = 0;
    for (int i = 0; i < 4; i++)
        z += p[i] = exp(l[i] / T);
    jq_sampling sp = {.temp = T, .top_k = 0, .top_p = 1.0f, .seed = 42};
    jq_sampler *s = jq_sampler_new(&sp, 4);
    const int N = 20000;
    int cnt[4] = {0};
    for (int i = 0; i < N; i++)
        cnt[jq_sampler_sample(s, l)]++;
    for (int i = 0; i < 4; i++) {
        double pi = p[i] / z, se = sqrt(pi * (1 - pi) / N);
        assert_true(fabs((double)cnt[i] / N - pi) < 4.5 * se);
    }
    jq_sampler_free(s);
}

static void test_top_p_cut(void **state)
{
    (void)state;
    /* probabilities 0.5, 0.25, 0.125, 0.125 at T = 1 */
    float l[4] = {logf(4), logf(2), 0, 0};
    jq_sampling sp = {.temp = 1.0f, .top_k = 0, .top_p = 0.7f, .seed = 5};
    jq_sampler *s = jq_sampler_new(&sp, 4);
    int cnt[4] = {0};
    for (int i = 0; i < 6000; i++)
        cnt[jq_sampler_sample(s, l)]++;
    assert_int_equal(cnt[2] + cnt[3], 0); /* 0.5 + 0.25 reaches 0.7 */
    assert_true(cnt[0] > 3600 && cnt[0] < 4400); /* renormalised: 2/3 */
    jq_sampler_free(s);
}

static void test_seed_determinism(void **state)
{
    (void)state;
    jqt_rng r;
    jqt_rng_seed(&r, 5);
    float l[64];
    jqt_fill_uniform(&r, l, 64, -1, 1);
    jq_sampling sp = {.temp = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 77};
    jq_sampler *a = jq_sampler_new(&sp, 64), *b = jq_sampler_new(&sp, 64);
    sp.seed = 78;
    jq_sampler *c = jq_sampler_new(&sp, 64);
    int same_ab = 0, same_ac = 0;
    for (int i = 0; i < 200; i++) {
        int32_t x = jq_sampler_sample(a, l), y = jq_sampler_sample(b, l),
                z = jq_sampler_sample(c, l);
        same_ab += x == y;
        same_ac += x == z;
    }
    assert_int_equal(same_ab, 200);
    assert_true(same_ac < 100);
    jq_sampler_free(a);
    jq_sampler_free(b);
    jq_sampler_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_top_k_1_and_tiny_top_p_are_greedy),
        cmocka_unit_test(test_top_k_limits_support),
        cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_top_p_cut),
        cmocka_unit_test(test_seed_determinism),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
