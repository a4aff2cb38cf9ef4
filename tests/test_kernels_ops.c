/* test_kernels_ops.c — element-wise kernels, RoPE, attention (F32/F16 K/V,
 * eviction scoring, a K/V cache in two segments), top-k, max-pool and
 * F32 -> F16 rows.
 *
 * Three kinds of check, after ggml's test-backend-ops:
 *   - the scalar references against hand-computed values (they are the
 *     specification, so they are checked against arithmetic, not code);
 *   - every jq_avx512_* against its jq_ref_* on random data of awkward sizes
 *     (0, 1, 15, 17, 4097 elements: empty, scalar, one short vector, one
 *     vector plus one, many vectors plus one), with a tolerance per op that
 *     says why it is what it is: a normalised MSE
 *     sum((a-b)^2) / sum(b^2) and a max absolute error. NaN/Inf in an
 *     output fails, and guard elements after every output (and between
 *     strided rows) must be untouched, which catches vector stores that
 *     overrun a tail;
 *   - the public dispatchers against the reference, so the
 *     JUDGEQ_ISA=scalar run exercises the dispatch too.
 * AVX-512 comparisons are skipped when the CPU cannot run them.
 */
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels.h"
#include "ops_internal.h"

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

static const int64_t sizes[] = {0, 1, 15, 17, 4097};

#define REQUIRE_AVX512()                                                   \
    do {                                                                   \
        if (!jq_cpu_has_avx512())                                          \
            skip();                                                        \
    } while (0)

/* ------------------------------------------------------------ guards */

/* A quiet NaN with a payload no kernel produces: a guard overwritten by
 * anything (a result, a zero, another NaN) is detected by its bits. */
#define GUARD_BITS 0x7fc0deadu
#define GUARD_N 32 /* > one vector, so a whole stray store is caught */

static float guard_value(void)
{
    const uint32_t b = GUARD_BITS;
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* n floats followed by GUARD_N guard floats (the payload is left
 * uninitialised for the caller to fill). */
static float *alloc_guarded(int64_t n)
{
    float *p = malloc(((size_t)n + GUARD_N) * sizeof *p);
    assert_non_null(p);
    for (int i = 0; i < GUARD_N; i++)
        p[n + i] = guard_value();
    return p;
}

static bool is_guard(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b == GUARD_BITS;
}

static void check_guard(const float *p, int64_t n, const char *what)
{
    for (int i = 0; i < GUARD_N; i++)
        if (!is_guard(p[n + i]))
            fail_msg("%s: guard element %d after %lld outputs overwritten "
                     "(%g)",
                     what, i, (long long)n, (double)p[n + i]);
}

/* Fills every element of a strided [rows x ld] buffer with guards; the
 * caller then writes the used columns. */
static float *alloc_strided(int64_t rows, int64_t ld)
{
    float *p = alloc_guarded(rows * ld);
    for (int64_t i = 0; i < rows * ld; i++)
        p[i] = guard_value();
    return p;
}

/* --------------------------------------------------------- comparing */

typedef struct {
    double nmse, max_abs;
} err_stats;

/* Compares got to want (n elements); fails on NaN/Inf in got (unless want
 * has the very same non-finite value) and on exceeding either tolerance. */
static err_stats compare(const char *what, const float *got,
                         const float *want, int64_t n, double max_nmse,
                         double max_abs)
{
    double num = 0.0, den = 0.0, worst = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i]))
            fail_msg("%s: element %lld is %g (want %g)", what, (long long)i,
                     (double)got[i], (double)want[i]);
        const double d = (double)got[i] - (double)want[i];
        num += d * d;
        den += (double)want[i] * (double)want[i];
        if (fabs(d) > worst)
            worst = fabs(d);
        if (fabs(d) > max_abs)
            fail_msg("%s: element %lld is %.9g, want %.9g (|err| %.3g > "
                     "%.3g)",
                     what, (long long)i, (double)got[i], (double)want[i],
                     fabs(d), max_abs);
    }
    err_stats e = {den > 0.0 ? num / den : num, worst};
    if (e.nmse > max_nmse)
        fail_msg("%s: normalised MSE %.3g > %.3g", what, e.nmse, max_nmse);
    return e;
}

static void assert_close(double got, double want, double rel, const char *what)
{
    if (!(fabs(got - want) <= rel * fabs(want) + 1e-30))
        fail_msg("%s: %.9g, want %.9g", what, got, want);
}

/* ====================================================== vector exp */

/* Distance from y to the correctly rounded exp(x), in units of the last
 * place of the float nearest exp(x) (2^-149 in the subnormal range). */
static double ulp_error(float y, double exact)
{
    const float r = (float)exact;
    if (isinf(r)) /* beyond FLT_MAX after rounding: only inf is right */
        return y == r ? 0.0 : INFINITY;
    double ulp;
    if (r == 0.0f || fabsf(r) < FLT_MIN)
        ulp = ldexp(1.0, -149);
    else {
        int e;
        frexp((double)r, &e);
        ulp = ldexp(1.0, e - 24);
    }
    return fabs((double)y - exact) / ulp;
}

/* Measures jq_exp512 over every 61st float in [-104, 89] (~35 million
 * inputs, all binades, subnormal and overflowing results included) plus
 * the specials. Measured: max 0.918 ulp here (0.939 ulp in a one-off
 * exhaustive sweep of all floats in the range), max relative error 7.7e-8;
 * glibc expf 0.502 ulp. The assert allows 1.5 ulp, the figure the
 * softmax / silu / attention tolerances below are derived from. */
static void test_vexp_accuracy(void **state)
{
    (void)state;
    REQUIRE_AVX512();
    enum { CHUNK = 4096 };
    static float xs[CHUNK], ys[CHUNK];
    double max_ulp = 0.0, max_rel = 0.0, libm_max_ulp = 0.0;
    float worst_x = 0.0f;
    /* walk the bit patterns of [-104, 0) and [0, 89] */
    const float ends[2][2] = {{-0.0f, -104.0f}, {0.0f, 89.0f}};
    for (int side = 0; side < 2; side++) {
        uint32_t b0, b1;
        memcpy(&b0, &ends[side][0], 4);
        memcpy(&b1, &ends[side][1], 4);
        int nx = 0;
        for (uint64_t b = b0; b <= b1; b += 61) {
            const uint32_t bits = (uint32_t)b;
            memcpy(&xs[nx++], &bits, 4);
            if (nx < CHUNK && b + 61 <= b1)
                continue;
            jq_avx512_exp_row(ys, xs, nx);
            for (int i = 0; i < nx; i++) {
                const double exact = exp((double)xs[i]);
                const double u = ulp_error(ys[i], exact);
                if (u > max_ulp) {
                    max_ulp = u;
                    worst_x = xs[i];
                }
                if (exact >= FLT_MIN && exact <= FLT_MAX) {
                    const double rel = fabs(ys[i] - exact) / exact;
                    max_rel = rel > max_rel ? rel : max_rel;
                }
                const double ul = ulp_error(expf(xs[i]), exact);
                libm_max_ulp = ul > libm_max_ulp ? ul : libm_max_ulp;
            }
            nx = 0;
        }
    }
    print_message("vector exp: max %.3f ulp (at x = %.9g), max relative "
                  "error %.3g for normal results; glibc expf %.3f ulp\n",
                  max_ulp, (double)worst_x, max_rel, libm_max_ulp);
    assert_true(max_ulp <= 1.5);

    const float special[] = {-INFINITY, INFINITY, NAN, 0.0f, -0.0f,
                             88.72f,    88.73f,   -103.9f, -200.0f, 1e30f};
    float out[NELEMS(special)];
    jq_avx512_exp_row(out, special, NELEMS(special));
    assert_true(out[0] == 0.0f);
    assert_true(isinf(out[1]) && out[1] > 0);
    assert_true(isnan(out[2]));
    assert_true(out[3] == 1.0f && out[4] == 1.0f);
    assert_true(isfinite(out[5]) && out[5] == expf(88.72f));
    assert_true(isinf(out[6]));
    assert_true(out[7] > 0.0f && out[7] < FLT_MIN);
    assert_true(out[8] == 0.0f);
    assert_true(isinf(out[9]));
}

/* ============================================= references, by hand */

static void test_ref_rmsnorm_known(void **state)
{
    (void)state;
    const float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 1, 2};
    float out[4];
    /* mean(x^2) = 30/4 = 7.5 */
    jq_ref_rmsnorm(out, x, w, 4, 0.0f);
    for (int i = 0; i < 4; i++)
        assert_close(out[i], x[i] * w[i] / sqrt(7.5), 2e-7, "rmsnorm");
    jq_ref_rmsnorm(out, x, w, 4, 0.5f);
    for (int i = 0; i < 4; i++)
        assert_close(out[i], x[i] * w[i] / sqrt(8.0), 2e-7, "rmsnorm eps");
    /* in place gives the same bits */
    float y[4] = {1, 2, 3, 4};
    jq_ref_rmsnorm(y, y, w, 4, 0.5f);
    assert_memory_equal(y, out, sizeof y);
}

static void test_ref_softmax_known(void **state)
{
    (void)state;
    float a[2] = {0.0f, logf(2.0f)};
    jq_ref_softmax(a, 2);
    assert_close(a[0], 1.0 / 3.0, 2e-7, "softmax[0, ln2][0]");
    assert_close(a[1], 2.0 / 3.0, 2e-7, "softmax[0, ln2][1]");
    float one[1] = {-123.0f};
    jq_ref_softmax(one, 1);
    assert_true(one[0] == 1.0f);
    /* max subtraction: exp(1000) alone would overflow */
    float big[3] = {1000.0f, 1000.0f, 1000.0f};
    jq_ref_softmax(big, 3);
    for (int i = 0; i < 3; i++)
        assert_close(big[i], 1.0 / 3.0, 2e-7, "softmax big");
    float masked[3] = {-INFINITY, 0.0f, -INFINITY};
    jq_ref_softmax(masked, 3);
    assert_true(masked[0] == 0.0f && masked[1] == 1.0f && masked[2] == 0.0f);
    float none[1] = {42.0f};
    jq_ref_softmax(none, 0); /* no-op */
    assert_true(none[0] == 42.0f);
}

static void test_ref_silu_add_known(void **state)
{
    (void)state;
    const float g[4] = {0.0f, 1.0f, -1.0f, -200.0f};
    const float u[4] = {5.0f, 2.0f, 3.0f, 1.0f};
    float out[4];
    jq_ref_silu_mul(out, g, u, 4);
    assert_true(out[0] == 0.0f);
    assert_close(out[1], 2.0 / (1.0 + exp(-1.0)), 2e-7, "silu(1)*2");
    assert_close(out[2], -3.0 / (1.0 + exp(1.0)), 2e-7, "silu(-1)*3");
    assert_true(out[3] == 0.0f); /* -200 / inf */
    /* aliasing: out = gate, out = up */
    float ga[4], ua[4];
    memcpy(ga, g, sizeof ga);
    jq_ref_silu_mul(ga, ga, u, 4);
    assert_memory_equal(ga, out, sizeof out);
    memcpy(ua, u, sizeof ua);
    jq_ref_silu_mul(ua, g, ua, 4);
    assert_memory_equal(ua, out, sizeof out);

    float y[3] = {1.0f, -2.0f, 0.5f};
    const float x[3] = {0.25f, 2.0f, -1.0f};
    jq_ref_add(y, x, 3);
    assert_true(y[0] == 1.25f && y[1] == 0.0f && y[2] == -0.5f);
}

static void test_ref_rope_known(void **state)
{
    (void)state;
    const float v[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    float x[4];
    /* pos 1, base 10000, rope_dim 4: theta_0 = 1, theta_1 = 10000^-0.5 */
    const double t0 = 1.0, t1 = 0.01;
    memcpy(x, v, sizeof x);
    jq_ref_rope(x, 1, 4, 4, 1, 10000.0f, NULL, false);
    /* NORM: (x0, x1) by t0, (x2, x3) by t1 */
    assert_close(x[0], 1 * cos(t0) - 2 * sin(t0), 1e-6, "norm x0");
    assert_close(x[1], 1 * sin(t0) + 2 * cos(t0), 1e-6, "norm x1");
    assert_close(x[2], 3 * cos(t1) - 4 * sin(t1), 1e-6, "norm x2");
    assert_close(x[3], 3 * sin(t1) + 4 * cos(t1), 1e-6, "norm x3");
    memcpy(x, v, sizeof x);
    jq_ref_rope(x, 1, 4, 4, 1, 10000.0f, NULL, true);
    /* NEOX: (x0, x2) by t0, (x1, x3) by t1 */
    assert_close(x[0], 1 * cos(t0) - 3 * sin(t0), 1e-6, "neox x0");
    assert_close(x[2], 1 * sin(t0) + 3 * cos(t0), 1e-6, "neox x2");
    assert_close(x[1], 2 * cos(t1) - 4 * sin(t1), 1e-6, "neox x1");
    assert_close(x[3], 2 * sin(t1) + 4 * cos(t1), 1e-6, "neox x3");
    /* freq_factors divide theta: ff = {2, 1} -> theta_0 = 0.5 */
    const float ff[2] = {2.0f, 1.0f};
    memcpy(x, v, sizeof x);
    jq_ref_rope(x, 1, 4, 4, 1, 10000.0f, ff, false);
    assert_close(x[0], 1 * cos(0.5) - 2 * sin(0.5), 1e-6, "ff x0");
    assert_close(x[2], 3 * cos(t1) - 4 * sin(t1), 1e-6, "ff x2");
    /* rope_dim < head_dim: the tail passes through; two heads */
    float h2[12], h2v[12];
    for (int i = 0; i < 12; i++)
        h2[i] = h2v[i] = (float)(i + 1);
    jq_ref_rope(h2, 2, 6, 4, 7, 500000.0f, NULL, true);
    assert_true(h2[4] == h2v[4] && h2[5] == h2v[5]);
    assert_true(h2[10] == h2v[10] && h2[11] == h2v[11]);
    assert_true(h2[0] != h2v[0] && h2[6] != h2v[6]);
    /* both heads got the same rotation: (1,3)->h2[0], (7,9)->h2[6] */
    assert_close(h2[6], 7 * cos(7.0) - 9 * sin(7.0), 1e-6, "head 1");
}

/* pos 0 rotates by 0: cos 1, sin 0, the input comes back bit for bit */
static void test_rope_pos0_identity(void **state)
{
    (void)state;
    jqt_rng rng;
    jqt_rng_seed(&rng, 7);
    float v[3 * 128], x[3 * 128];
    jqt_fill_uniform(&rng, v, NELEMS(v), -1.0f, 1.0f);
    float ff[64];
    jqt_fill_uniform(&rng, ff, 64, 0.5f, 8.0f);
    for (int neox = 0; neox < 2; neox++)
        for (int path = 0; path < 2; path++) {
            if (path == 1 && !jq_cpu_has_avx512())
                continue;
            memcpy(x, v, sizeof x);
            (path ? jq_avx512_rope : jq_ref_rope)(x, 3, 128, 128, 0,
                                                  10000.0f, ff, neox);
            assert_memory_equal(x, v, sizeof x);
        }
}

/* The angles follow llama.cpp's float recurrence (theta *= theta_scale),
 * not the exact pos * base^(-2i/d): recomputed here independently. */
static void test_rope_matches_llama_recurrence(void **state)
{
    (void)state;
    enum { D = 128 };
    float x[D], want[D];
    jqt_rng rng;
    jqt_rng_seed(&rng, 11);
    jqt_fill_uniform(&rng, x, D, -1.0f, 1.0f);
    const int32_t pos = 4321;
    const float base = 500000.0f;
    const float theta_scale = powf(base, -2.0f / D);
    float theta = (float)pos;
    for (int i = 0; i < D / 2; i++) {
        const float c = cosf(theta), s = sinf(theta);
        const float x0 = x[2 * i], x1 = x[2 * i + 1];
        want[2 * i] = x0 * c - x1 * s;
        want[2 * i + 1] = x0 * s + x1 * c;
        theta *= theta_scale;
    }
    jq_ref_rope(x, 1, D, D, pos, base, NULL, false);
    assert_memory_equal(x, want, sizeof x);
}

/* ======================================================= attention */

/* Double-precision attention of one query row over nv keys: the oracle
 * the reference is checked against on random data. */
static void attention_oracle(const float *q, const float *K, int64_t ldk,
                             const float *V, int64_t ldv, int64_t nv, int hd,
                             float scale, double *out, double *p_out)
{
    double *s = malloc((size_t)nv * sizeof *s);
    assert_non_null(s);
    double max = -INFINITY, sum = 0.0;
    for (int64_t j = 0; j < nv; j++) {
        double d = 0.0;
        for (int t = 0; t < hd; t++)
            d += (double)q[t] * K[j * ldk + t];
        s[j] = d * scale;
        max = s[j] > max ? s[j] : max;
    }
    for (int64_t j = 0; j < nv; j++)
        sum += (s[j] = exp(s[j] - max));
    if (p_out)
        for (int64_t j = 0; j < nv; j++)
            p_out[j] = s[j] / sum;
    for (int t = 0; t < hd; t++) {
        double acc = 0.0;
        for (int64_t j = 0; j < nv; j++)
            acc += s[j] * V[j * ldv + t];
        out[t] = acc / sum;
    }
    free(s);
}

typedef void (*attention_fn)(const float *, int64_t, int64_t, const float *,
                             int64_t, const float *, int64_t, int64_t, int,
                             float, int64_t, float *, int64_t, float *);

static void test_attention_one_key(void **state)
{
    (void)state;
    const float q[8] = {1, -2, 3, 0.5f, 9, 1, 1, 1};
    const float k[8] = {0.3f, 1, -1, 2, 0, 0, 5, 1};
    const float v[8] = {1.5f, -2.25f, 3, 4, 5, 6, 7, -8};
    for (int path = 0; path < 2; path++) {
        if (path == 1 && !jq_cpu_has_avx512())
            continue;
        attention_fn fn = path ? jq_avx512_attention : jq_ref_attention;
        float out[8], scratch[1];
        fn(q, 8, 1, k, 8, v, 8, 1, 8, 0.125f, 0, out, 8, scratch);
        assert_memory_equal(out, v, sizeof out); /* weight exactly 1 */
    }
}

static void test_attention_two_keys_known(void **state)
{
    (void)state;
    /* head_dim 2: q = (1, 0), k0 = (0, 1), k1 = (ln 3, 0), scale 1:
     * scores 0 and ln 3 -> weights 1/4, 3/4 */
    const float q[2] = {1, 0}, K[4] = {0, 1, logf(3.0f), 0};
    const float V[4] = {4, -8, 8, 4};
    float out[2], scratch[2];
    jq_ref_attention(q, 2, 1, K, 2, V, 2, 2, 2, 1.0f, 1, out, 2, scratch);
    assert_close(out[0], 0.25 * 4 + 0.75 * 8, 1e-6, "attn[0]");
    assert_close(out[1], 0.25 * -8 + 0.75 * 4, 1e-6, "attn[1]");
}

/* Row i must ignore keys at and beyond its limit: perturbing them leaves
 * its output bit-identical; a row that sees no key returns zeros. */
static void test_attention_causal_mask(void **state)
{
    (void)state;
    enum { NQ = 4, NKV = 9, HD = 17 };
    jqt_rng rng;
    jqt_rng_seed(&rng, 3);
    float q[NQ * HD], K[NKV * HD], V[NKV * HD], K2[NKV * HD], V2[NKV * HD];
    jqt_fill_uniform(&rng, q, NELEMS(q), -1, 1);
    jqt_fill_uniform(&rng, K, NELEMS(K), -1, 1);
    jqt_fill_uniform(&rng, V, NELEMS(V), -1, 1);
    const int64_t bases[] = {-1, 0, 2, NKV - NQ, NKV + 5};
    for (int path = 0; path < 2; path++) {
        if (path == 1 && !jq_cpu_has_avx512())
            continue;
        attention_fn fn = path ? jq_avx512_attention : jq_ref_attention;
        for (size_t b = 0; b < NELEMS(bases); b++) {
            const int64_t cb = bases[b];
            float out[NQ * HD], out2[HD], scratch[NKV];
            fn(q, HD, NQ, K, HD, V, HD, NKV, HD, 0.3f, cb, out, HD, scratch);
            for (int i = 0; i < NQ; i++) {
                int64_t vis = cb + i + 1;
                vis = vis < 0 ? 0 : vis > NKV ? NKV : vis;
                if (vis == 0) {
                    for (int t = 0; t < HD; t++)
                        assert_true(out[i * HD + t] == 0.0f);
                    continue;
                }
                memcpy(K2, K, sizeof K);
                memcpy(V2, V, sizeof V);
                for (int64_t j = vis; j < NKV; j++)
                    for (int t = 0; t < HD; t++) {
                        K2[j * HD + t] = 100.0f;
                        V2[j * HD + t] = -1e6f;
                    }
                fn(q + i * HD, HD, 1, K2, HD, V2, HD, NKV, HD, 0.3f,
                   cb + i, out2, HD, scratch);
                assert_memory_equal(out2, out + i * HD, sizeof out2);
            }
        }
    }
}

/* One attention case: strided q/K/V/out (ld = head_dim + 3, the gaps
 * filled with guards), run through fn and compared. */
typedef struct {
    int64_t n_q, n_kv, causal_base;
    int hd;
} attn_case;

static void run_attention(attention_fn fn, const attn_case *c, jqt_rng *rng,
                          float *out_ref, bool oracle_check,
                          const float *want, err_stats *worst)
{
    const int64_t ld = c->hd + 3;
    float *q = alloc_strided(c->n_q, ld), *K = alloc_strided(c->n_kv, ld),
          *V = alloc_strided(c->n_kv, ld), *out = alloc_strided(c->n_q, ld),
          *scratch = alloc_guarded(c->n_kv);
    for (int64_t i = 0; i < c->n_q; i++)
        jqt_fill_uniform(rng, q + i * ld, (size_t)c->hd, -1, 1);
    for (int64_t j = 0; j < c->n_kv; j++) {
        jqt_fill_uniform(rng, K + j * ld, (size_t)c->hd, -1, 1);
        jqt_fill_uniform(rng, V + j * ld, (size_t)c->hd, -1, 1);
    }
    const float scale = 1.0f / sqrtf((float)c->hd);
    fn(q, ld, c->n_q, K, ld, V, ld, c->n_kv, c->hd, scale, c->causal_base,
       out, ld, scratch);
    char *what = jqt_fmt("attention n_q %lld n_kv %lld hd %d base %lld",
                         (long long)c->n_q, (long long)c->n_kv, c->hd,
                         (long long)c->causal_base);
    check_guard(scratch, c->n_kv, what);
    check_guard(out, c->n_q * ld, what);
    for (int64_t i = 0; i < c->n_q; i++) {
        for (int64_t t = c->hd; t < ld; t++)
            if (!is_guard(out[i * ld + t]))
                fail_msg("%s: row %lld gap element %lld overwritten", what,
                         (long long)i, (long long)t);
        float *row = out + i * ld;
        if (want) {
            /* fast path vs reference. Tolerance: the dots sum in float
             * lanes (|error| ~ sqrt(hd) * 6e-8 on O(1) scores), exp differs
             * by <= 1.5 ulp, the V sum is reordered; outputs are convex
             * combinations of values in [-1, 1]. Measured worst over all
             * cases: nmse 8.3e-13, max abs 1.2e-7; limits 1e-11 and 4e-6
             * leave room for other data without hiding a wrong key or
             * lane (which gives errors of order 1e-2). */
            err_stats e = compare(what, row, want + i * c->hd, c->hd, 1e-11,
                                  4e-6);
            worst->nmse = e.nmse > worst->nmse ? e.nmse : worst->nmse;
            worst->max_abs =
                e.max_abs > worst->max_abs ? e.max_abs : worst->max_abs;
        }
        if (out_ref)
            memcpy(out_ref + i * c->hd, row, (size_t)c->hd * sizeof *row);
        if (oracle_check) {
            /* reference vs double oracle: float rounding of scores, expf,
             * float V accumulation over <= 300 keys: ~1e-6 */
            int64_t vis = c->causal_base + i + 1;
            vis = vis < 0 ? 0 : vis > c->n_kv ? c->n_kv : vis;
            double o[128];
            float of[128];
            if (vis == 0)
                for (int t = 0; t < c->hd; t++)
                    o[t] = 0.0;
            else
                attention_oracle(q + i * ld, K, ld, V, ld, vis, c->hd, scale,
                                 o, NULL);
            for (int t = 0; t < c->hd; t++)
                of[t] = (float)o[t];
            compare(what, row, of, c->hd, 1e-10, 4e-6);
        }
    }
    free(what);
    free(q);
    free(K);
    free(V);
    free(out);
    free(scratch);
}

static void attention_cases(bool avx512)
{
    const int hds[] = {1, 8, 15, 17, 64, 128};
    const int64_t nkvs[] = {1, 15, 17, 300};
    const int64_t nqs[] = {1, 5};
    err_stats worst = {0, 0};
    for (size_t a = 0; a < NELEMS(hds); a++)
        for (size_t b = 0; b < NELEMS(nkvs); b++)
            for (size_t c = 0; c < NELEMS(nqs); c++) {
                const int64_t nq = nqs[c], nkv = nkvs[b];
                /* decode-style (all visible), prefill whose last row sees
                 * all, first row sees one, first row sees none, and a base
                 * past the end (clamped) */
                const int64_t bases[] = {nkv - 1, nkv - nq, 0, -1, nkv + 4};
                for (size_t d = 0; d < NELEMS(bases); d++) {
                    attn_case ac = {nq, nkv, bases[d], hds[a]};
                    float *ref = malloc((size_t)(nq * hds[a]) * sizeof *ref);
                    assert_non_null(ref);
                    jqt_rng rng;
                    jqt_rng_seed(&rng, 1000 + a * 100 + b * 10 + c + d);
                    run_attention(jq_ref_attention, &ac, &rng, ref, !avx512,
                                  NULL, &worst);
                    jqt_rng_seed(&rng, 1000 + a * 100 + b * 10 + c + d);
                    if (avx512)
                        run_attention(jq_avx512_attention, &ac, &rng, NULL,
                                      false, ref, &worst);
                    else
                        run_attention(jq_attention, &ac, &rng, NULL, false,
                                      ref, &worst);
                    free(ref);
                }
            }
    print_message("attention %s vs reference: worst nmse %.3g, max abs %.3g\n",
                  avx512 ? "avx512" : "dispatch", worst.nmse, worst.max_abs);
}

static void test_attention_ref_vs_oracle_and_dispatch(void **state)
{
    (void)state;
    attention_cases(false);
}

static void test_attention_avx512_vs_ref(void **state)
{
    (void)state;
    REQUIRE_AVX512();
    attention_cases(true);
}

/* ================================================== attention_ex */

/* jq_attention_ex: F32 and F16 K/V, causal variants, and probability
 * scoring, each path against a double-precision oracle run on the very
 * values the kernel sees (F16 keys are dequantized exactly for it). */
typedef struct {
    int64_t n_q, n_kv, causal_base;
    int hd;
    uint32_t kv_type;
    int64_t row0, row1, n_score; /* the scoring rows and keys */
} attn_ex_case;

/* Inputs of one case: q and the K/V values as F32 (for F16 already
 * rounded to F16), the F16 encodings, and the initial score contents. */
typedef struct {
    int64_t ld;
    float *q, *kf, *vf;
    uint16_t *kh, *vh; /* NULL for F32 */
    float *score_init; /* n_score floats */
} attn_ex_data;

static int64_t visible(const attn_ex_case *c, int64_t i)
{
    const int64_t v = c->causal_base + i + 1;
    return v < 0 ? 0 : v > c->n_kv ? c->n_kv : v;
}

static void attn_ex_data_make(const attn_ex_case *c, uint64_t seed,
                              attn_ex_data *d)
{
    jqt_rng rng;
    jqt_rng_seed(&rng, seed);
    d->ld = c->hd + 3;
    d->q = alloc_strided(c->n_q, d->ld);
    d->kf = alloc_strided(c->n_kv, d->ld);
    d->vf = alloc_strided(c->n_kv, d->ld);
    /* q in [-3, 3] makes some softmax rows peaked, so the scores cover a
     * wide range of probabilities */
    for (int64_t i = 0; i < c->n_q; i++)
        jqt_fill_uniform(&rng, d->q + i * d->ld, (size_t)c->hd, -3, 3);
    for (int64_t j = 0; j < c->n_kv; j++) {
        jqt_fill_uniform(&rng, d->kf + j * d->ld, (size_t)c->hd, -1, 1);
        jqt_fill_uniform(&rng, d->vf + j * d->ld, (size_t)c->hd, -1, 1);
    }
    d->kh = d->vh = NULL;
    if (c->kv_type == JQ_TYPE_F16) {
        const size_t n = (size_t)(c->n_kv * d->ld) + 1;
        d->kh = malloc(n * sizeof *d->kh);
        d->vh = malloc(n * sizeof *d->vh);
        assert_non_null(d->kh);
        assert_non_null(d->vh);
        for (size_t i = 0; i + 1 < n; i++) {
            /* gap elements become F16 NaNs: read one, and the output is
             * NaN and fails */
            const bool gap = (int64_t)(i % (size_t)d->ld) >= c->hd;
            d->kh[i] = gap ? 0x7e01 : jq_f32_to_f16(d->kf[i]);
            d->vh[i] = gap ? 0x7e01 : jq_f32_to_f16(d->vf[i]);
            if (!gap) {
                d->kf[i] = jq_f16_to_f32(d->kh[i]);
                d->vf[i] = jq_f16_to_f32(d->vh[i]);
            }
        }
    }
    const int64_t ns = c->n_score > 0 ? c->n_score : 0;
    d->score_init = malloc(((size_t)ns + 1) * sizeof *d->score_init);
    assert_non_null(d->score_init);
    jqt_fill_uniform(&rng, d->score_init, (size_t)ns, 0, 2);
}

static void attn_ex_data_free(attn_ex_data *d)
{
    free(d->q);
    free(d->kf);
    free(d->vf);
    free(d->kh);
    free(d->vh);
    free(d->score_init);
}

/* Rows [r0, r1) of a K or V array of case c (ld elements each, gaps
 * included) copied into a fresh allocation of their own, followed by
 * GUARD_N elements of NaN (F16 0x7e01 or the F32 guard): a read past the
 * segment's last row makes the output NaN and fails, and ASan sees a read
 * past the allocation. */
static void *kv_segment_copy(const attn_ex_case *c, const attn_ex_data *d,
                             bool values, int64_t r0, int64_t r1)
{
    const bool f16 = c->kv_type == JQ_TYPE_F16;
    const size_t es = f16 ? sizeof(uint16_t) : sizeof(float);
    const size_t n = (size_t)((r1 - r0) * d->ld);
    char *p = malloc((n + GUARD_N) * es);
    assert_non_null(p);
    const char *src = f16 ? (const char *)(values ? d->vh : d->kh)
                          : (const char *)(values ? d->vf : d->kf);
    memcpy(p, src + (size_t)(r0 * d->ld) * es, n * es);
    for (size_t i = n; i < n + GUARD_N; i++) {
        if (f16) {
            const uint16_t nan16 = 0x7e01;
            memcpy(p + i * es, &nan16, es);
        } else {
            const float g = guard_value();
            memcpy(p + i * es, &g, es);
        }
    }
    return p;
}

/* Runs fn on case c into out (n_q x hd, packed) and, when score != NULL,
 * accumulates into score (n_score floats, initialised from score_init).
 * split < 0: one K/V segment, the arrays of d. split >= 0: keys [0, split)
 * and [split, n_kv) in two separate copies (k0/v0 and k/v, n_kv0 = split);
 * split_null_k0: split 0 passed as k0 = NULL instead. Checks the guards
 * after out rows, out, scratch and score. */
static void attn_ex_run_split(void (*fn)(const jq_attn_args *),
                              const attn_ex_case *c, const attn_ex_data *d,
                              bool scoring, int64_t split, bool split_null_k0,
                              float *out, float *score)
{
    const int64_t ld = d->ld;
    float *o = alloc_strided(c->n_q, ld), *scratch = alloc_guarded(c->n_kv);
    float *sc = NULL;
    if (scoring) {
        sc = alloc_guarded(c->n_score);
        memcpy(sc, d->score_init, (size_t)c->n_score * sizeof *sc);
    }
    const bool f16 = c->kv_type == JQ_TYPE_F16;
    jq_attn_args a = {
        .q = d->q, .ldq = ld, .n_q = c->n_q, .kv_type = c->kv_type,
        .k = f16 ? (const void *)d->kh : d->kf,
        .v = f16 ? (const void *)d->vh : d->vf, .ldk = ld, .ldv = ld,
        .n_kv = c->n_kv, .head_dim = c->hd,
        .scale = 1.0f / sqrtf((float)c->hd), .causal_base = c->causal_base,
        .out = o, .ldo = ld, .scratch = scratch, .score = sc,
        .score_row0 = c->row0, .score_row1 = c->row1, .n_score = c->n_score};
    void *k0 = NULL, *v0 = NULL, *k1 = NULL, *v1 = NULL;
    if (split >= 0) {
        k1 = kv_segment_copy(c, d, false, split, c->n_kv);
        v1 = kv_segment_copy(c, d, true, split, c->n_kv);
        a.k = k1;
        a.v = v1;
        a.n_kv0 = split;
        if (!(split == 0 && split_null_k0)) {
            k0 = kv_segment_copy(c, d, false, 0, split);
            v0 = kv_segment_copy(c, d, true, 0, split);
            a.k0 = k0;
            a.v0 = v0;
        }
    }
    fn(&a);
    free(k0);
    free(v0);
    free(k1);
    free(v1);
    char *what = jqt_fmt("attention_ex %s n_q %lld n_kv %lld hd %d base %lld",
                         f16 ? "f16" : "f32", (long long)c->n_q,
                         (long long)c->n_kv, c->hd, (long long)c->causal_base);
    check_guard(scratch, c->n_kv, what);
    check_guard(o, c->n_q * ld, what);
    for (int64_t i = 0; i < c->n_q; i++) {
        for (int64_t t = c->hd; t < ld; t++)
            if (!is_guard(o[i * ld + t]))
                fail_msg("%s: row %lld gap element %lld overwritten", what,
                         (long long)i, (long long)t);
        memcpy(out + i * c->hd, o + i * ld, (size_t)c->hd * sizeof *out);
    }
    if (sc) {
        check_guard(sc, c->n_score, what);
        memcpy(score, sc, (size_t)c->n_score * sizeof *score);
    }
    free(what);
    free(o);
    free(scratch);
    free(sc);
}

static void attn_ex_run(void (*fn)(const jq_attn_args *), const attn_ex_case *c,
                        const attn_ex_data *d, bool scoring, float *out,
                        float *score)
{
    attn_ex_run_split(fn, c, d, scoring, -1, false, out, score);
}

/* The oracle: outputs in double, and the scores as an explicit
 * materialised softmax matrix summed over the scoring rows. */
static void attn_ex_oracle(const attn_ex_case *c, const attn_ex_data *d,
                           double *out, double *score)
{
    const float scale = 1.0f / sqrtf((float)c->hd);
    double *p = malloc(((size_t)c->n_kv + 1) * sizeof *p);
    assert_non_null(p);
    for (int64_t j = 0; j < c->n_score; j++)
        score[j] = d->score_init[j];
    for (int64_t i = 0; i < c->n_q; i++) {
        const int64_t nv = visible(c, i);
        if (nv == 0) {
            for (int t = 0; t < c->hd; t++)
                out[i * c->hd + t] = 0.0;
            continue;
        }
        attention_oracle(d->q + i * d->ld, d->kf, d->ld, d->vf, d->ld, nv,
                         c->hd, scale, out + i * c->hd, p);
        if (i >= c->row0 && i < c->row1)
            for (int64_t j = 0; j < nv && j < c->n_score; j++)
                score[j] += p[j];
    }
    free(p);
}

/* Worst errors seen, for the report lines. */
typedef struct {
    err_stats out_ref, out_avx, score_ref, score_avx, out_vs_ref,
        score_vs_ref;
} attn_ex_worst;

static void note(err_stats *w, err_stats e)
{
    w->nmse = e.nmse > w->nmse ? e.nmse : w->nmse;
    w->max_abs = e.max_abs > w->max_abs ? e.max_abs : w->max_abs;
}

/* Max abs error of the scores against the oracle, and exact checks of the
 * keys no scoring row sees (they must keep their initial bits). Tolerance:
 * a probability is off by ~|s| * 1e-7 (float scores of magnitude <~ 5,
 * exp <= 1.5 ulp), but the error is dominated by the float sums: score[j]
 * starts in [0, 2) and gains up to one per row, and each add rounds by half
 * an ulp of the running sum, 2.4e-7 at 2 and 3.8e-6 at 32. So 2e-6 plus
 * 4e-7 per scoring row [measured worst 2.1e-6, with 40 rows; an error in
 * the causal limit or a lost row gives >= 1e-3]. */
static err_stats check_scores(const char *label, const attn_ex_case *c,
                              const attn_ex_data *d, const float *got,
                              const double *want)
{
    int64_t rows = 0, seen = 0;
    for (int64_t i = c->row0 < 0 ? 0 : c->row0; i < c->row1 && i < c->n_q;
         i++) {
        rows++;
        seen = visible(c, i) > seen ? visible(c, i) : seen;
    }
    const double tol = 2e-6 + 4e-7 * (double)rows;
    err_stats e = {0, 0};
    for (int64_t j = 0; j < c->n_score; j++) {
        if (j >= seen) {
            if (memcmp(&got[j], &d->score_init[j], sizeof got[j]) != 0)
                fail_msg("%s: score[%lld] of a key no row sees changed "
                         "(%.9g -> %.9g)",
                         label, (long long)j, (double)d->score_init[j],
                         (double)got[j]);
            continue;
        }
        const double err = fabs((double)got[j] - want[j]);
        if (!(err <= tol))
            fail_msg("%s: score[%lld] = %.9g, want %.9g (|err| %.3g > %.3g)",
                     label, (long long)j, (double)got[j], want[j], err, tol);
        e.max_abs = err > e.max_abs ? err : e.max_abs;
    }
    return e;
}

static void attn_ex_case_check(const attn_ex_case *c, uint64_t seed,
                               bool avx512, attn_ex_worst *w)
{
    attn_ex_data d;
    attn_ex_data_make(c, seed, &d);
    const size_t no = (size_t)(c->n_q * c->hd) + 1,
                 ns = (size_t)c->n_score + 1;
    float *out = malloc(no * sizeof *out), *out2 = malloc(no * sizeof *out2);
    float *score = malloc(ns * sizeof *score);
    double *want = malloc(no * sizeof *want), *wsc = malloc(ns * sizeof *wsc);
    float *wantf = malloc(no * sizeof *wantf);
    assert_true(out && out2 && score && want && wsc && wantf);
    attn_ex_oracle(c, &d, want, wsc);
    for (size_t i = 0; i + 1 < no; i++)
        wantf[i] = (float)want[i];
    char *label = jqt_fmt("%s %s n_q %lld n_kv %lld hd %d base %lld rows "
                          "[%lld,%lld) n_score %lld",
                          avx512 ? "avx512" : "ref",
                          c->kv_type == JQ_TYPE_F16 ? "f16" : "f32",
                          (long long)c->n_q, (long long)c->n_kv, c->hd,
                          (long long)c->causal_base, (long long)c->row0,
                          (long long)c->row1, (long long)c->n_score);
    void (*fn)(const jq_attn_args *) =
        avx512 ? jq_avx512_attention_ex : jq_ref_attention_ex;
    attn_ex_run(fn, c, &d, true, out, score);
    /* output vs oracle. The reference's tolerance is the jq_attention one
     * (1e-10 nmse, 4e-6 abs). The fast path's dots sum in float lanes and
     * exp differs by <= 1.5 ulp; with q up to 3 the scores reach ~10, so
     * probabilities move by ~|s| * 1e-7: 1e-10 nmse, 1e-5 abs. */
    err_stats e = compare(label, out, wantf, c->n_q * c->hd, 1e-10,
                          avx512 ? 1e-5 : 4e-6);
    note(avx512 ? &w->out_avx : &w->out_ref, e);
    note(avx512 ? &w->score_avx : &w->score_ref,
         check_scores(label, c, &d, score, wsc));
    /* scoring must not change the output, bit for bit */
    attn_ex_run(fn, c, &d, false, out2, NULL);
    if (memcmp(out, out2, (no - 1) * sizeof *out) != 0)
        fail_msg("%s: output differs with and without scoring", label);
    /* reproducible: the same call again gives the same scores */
    float *score2 = malloc(ns * sizeof *score2);
    assert_non_null(score2);
    attn_ex_run(fn, c, &d, true, out2, score2);
    assert_memory_equal(score, score2, (ns - 1) * sizeof *score);
    free(score2);
    if (avx512) {
        /* and the fast path against the reference directly */
        float *rout = malloc(no * sizeof *rout), *rsc = malloc(ns * sizeof *rsc);
        assert_true(rout && rsc);
        attn_ex_run(jq_ref_attention_ex, c, &d, true, rout, rsc);
        note(&w->out_vs_ref,
             compare(label, out, rout, c->n_q * c->hd, 1e-10, 1e-5));
        /* the same float sums of probabilities that differ by ~1e-7
         * relative: a few ulps of the score */
        for (int64_t j = 0; j < c->n_score; j++) {
            const double err = fabs((double)score[j] - rsc[j]);
            if (!(err <= 1e-6 + 4e-7 * fabs((double)rsc[j])))
                fail_msg("%s: score[%lld] %.9g vs reference %.9g", label,
                         (long long)j, (double)score[j], (double)rsc[j]);
            w->score_vs_ref.max_abs = err > w->score_vs_ref.max_abs
                                          ? err
                                          : w->score_vs_ref.max_abs;
        }
        free(rout);
        free(rsc);
    } else {
        /* the dispatcher, whichever ISA is active */
        attn_ex_run(jq_attention_ex, c, &d, true, out2, score);
        compare(label, out2, wantf, c->n_q * c->hd, 1e-10, 1e-5);
        check_scores(label, c, &d, score, wsc);
    }
    free(label);
    free(out);
    free(out2);
    free(score);
    free(want);
    free(wsc);
    free(wantf);
    attn_ex_data_free(&d);
}

static void attention_ex_cases(bool avx512)
{
    const int hds[] = {1, 8, 15, 17, 64, 128};
    const int64_t nkvs[] = {1, 17, 300};
    const int64_t nqs[] = {1, 5, 40};
    const uint32_t types[] = {JQ_TYPE_F32, JQ_TYPE_F16};
    attn_ex_worst w;
    memset(&w, 0, sizeof w);
    uint64_t seed = 5000;
    for (size_t t = 0; t < NELEMS(types); t++)
        for (size_t a = 0; a < NELEMS(hds); a++)
            for (size_t b = 0; b < NELEMS(nkvs); b++)
                for (size_t q = 0; q < NELEMS(nqs); q++) {
                    const int64_t nq = nqs[q], nkv = nkvs[b];
                    /* decode (all visible), prefill ending at the last key,
                     * first row sees one key, first row sees none, a base
                     * past the end (clamped) */
                    const int64_t bases[] = {nkv - 1, nkv - nq, 0, -1,
                                             nkv + 4};
                    for (size_t bi = 0; bi < NELEMS(bases); bi++) {
                        /* scoring rows: all, a middle range (an SnapKV
                         * window), the last row; keys: all, a prefix,
                         * more than exist */
                        const int64_t rows[3][2] = {
                            {0, nq}, {nq / 3, nq - nq / 4}, {nq - 1, nq + 7}};
                        const int64_t nss[3] = {nkv, nkv / 2 + 1, nkv + 9};
                        const size_t v = bi % 3;
                        attn_ex_case c = {nq,       nkv,         bases[bi],
                                          hds[a],   types[t],    rows[v][0],
                                          rows[v][1], nss[(bi + q) % 3]};
                        attn_ex_case_check(&c, seed++, avx512, &w);
                    }
                }
    print_message("attention_ex %s: output vs oracle worst nmse %.3g, max abs "
                  "%.3g; scores vs oracle max abs %.3g\n",
                  avx512 ? "avx512" : "ref",
                  avx512 ? w.out_avx.nmse : w.out_ref.nmse,
                  avx512 ? w.out_avx.max_abs : w.out_ref.max_abs,
                  avx512 ? w.score_avx.max_abs : w.score_ref.max_abs);
    if (avx512)
        print_message("attention_ex avx512 vs ref: output worst nmse %.3g, "
                      "max abs %.3g; scores max abs %.3g\n",
                      w.out_vs_ref.nmse, w.out_vs_ref.max_abs,
                      w.score_vs_ref.max_abs);
}

static void test_attention_ex_ref_vs_oracle_and_dispatch(void **state)
{
    (void)state;
    attention_ex_cases(false);
}

static void test_attention_ex_avx512_vs_oracle_and_ref(void **state)
{
    (void)state;
    REQUIRE_AVX512();
    attention_ex_cases(true);
}

/* jq_attention is jq_attention_ex with F32 and no scoring: bit-identical
 * on each path. */
static void test_attention_is_ex_f32(void **state)
{
    (void)state;
    const attn_ex_case c = {5, 17, 14, 17, JQ_TYPE_F32, 0, 0, 0};
    attn_ex_data d;
    attn_ex_data_make(&c, 11, &d);
    float out[5 * 17], want[5 * 17], scratch[17];
    for (int path = 0; path < 2; path++) {
        if (path == 1 && !jq_cpu_has_avx512())
            continue;
        attn_ex_run(path ? jq_avx512_attention_ex : jq_ref_attention_ex, &c,
                    &d, false, want, NULL);
        float o[5 * 20];
        (path ? jq_avx512_attention : jq_ref_attention)(
            d.q, d.ld, c.n_q, d.kf, d.ld, d.vf, d.ld, c.n_kv, c.hd,
            1.0f / sqrtf(17.0f), c.causal_base, o, 20, scratch);
        for (int i = 0; i < 5; i++)
            memcpy(out + i * 17, o + i * 20, 17 * sizeof *out);
        assert_memory_equal(out, want, sizeof out);
    }
    attn_ex_data_free(&d);
}

/* Each row alone: its scores sum to 1 when n_score covers every key it
 * sees (0 when it sees none), keys it cannot see get exactly +0 added
 * (they stay +0), and all rows together sum to the number of rows that see
 * at least one key. */
static void test_attention_ex_score_sums(void **state)
{
    (void)state;
    const int64_t nq = 12, nkv = 40;
    const int64_t bases[] = {nkv - 1, nkv - nq, 3, -4};
    const uint32_t types[] = {JQ_TYPE_F32, JQ_TYPE_F16};
    for (int path = 0; path < 3; path++) {
        if (path == 1 && !jq_cpu_has_avx512())
            continue;
        void (*fn)(const jq_attn_args *) =
            path == 0 ? jq_ref_attention_ex
                      : path == 1 ? jq_avx512_attention_ex : jq_attention_ex;
        for (size_t t = 0; t < NELEMS(types); t++)
            for (size_t b = 0; b < NELEMS(bases); b++) {
                attn_ex_case c = {nq, nkv, bases[b], 24, types[t], 0, nq,
                                  nkv + 5};
                attn_ex_data d;
                attn_ex_data_make(&c, 300 + b, &d);
                memset(d.score_init, 0, (size_t)c.n_score * sizeof(float));
                float out[12 * 24], score[45];
                attn_ex_run(fn, &c, &d, true, out, score);
                double total = 0.0;
                int64_t seeing = 0;
                for (int64_t j = 0; j < c.n_score; j++)
                    total += score[j];
                for (int64_t i = 0; i < nq; i++)
                    seeing += visible(&c, i) > 0;
                assert_close(total, (double)seeing, 1e-5, "sum of scores");
                for (int64_t i = 0; i < nq; i++) {
                    attn_ex_case ci = c;
                    ci.row0 = i;
                    ci.row1 = i + 1;
                    attn_ex_run(fn, &ci, &d, true, out, score);
                    const int64_t nv = visible(&c, i);
                    double s = 0.0;
                    for (int64_t j = 0; j < ci.n_score; j++) {
                        if (j >= nv && memcmp(&score[j], &(float){0.0f},
                                              sizeof(float)) != 0)
                            fail_msg("row %lld adds %g to unseen key %lld",
                                     (long long)i, (double)score[j],
                                     (long long)j);
                        s += score[j];
                    }
                    if (nv == 0)
                        assert_true(s == 0.0);
                    else
                        assert_close(s, 1.0, 2e-6, "one row's scores");
                }
                /* an empty or inverted row range scores nothing */
                attn_ex_case ce = c;
                ce.row0 = 7;
                ce.row1 = 3;
                attn_ex_run(fn, &ce, &d, true, out, score);
                for (int64_t j = 0; j < ce.n_score; j++)
                    assert_true(score[j] == 0.0f);
                attn_ex_data_free(&d);
            }
    }
}

/* out may alias q, row by row, as with jq_attention; F16 K/V. */
static void test_attention_ex_out_aliases_q(void **state)
{
    (void)state;
    const attn_ex_case c = {6, 33, 30, 64, JQ_TYPE_F16, 0, 0, 0};
    for (int path = 0; path < 2; path++) {
        if (path == 1 && !jq_cpu_has_avx512())
            continue;
        void (*fn)(const jq_attn_args *) =
            path ? jq_avx512_attention_ex : jq_ref_attention_ex;
        attn_ex_data d;
        attn_ex_data_make(&c, 21, &d);
        float want[6 * 64], scratch[33];
        attn_ex_run(fn, &c, &d, false, want, NULL);
        const jq_attn_args a = {
            .q = d.q, .ldq = d.ld, .n_q = c.n_q, .kv_type = c.kv_type,
            .k = d.kh, .v = d.vh, .ldk = d.ld, .ldv = d.ld, .n_kv = c.n_kv,
            .head_dim = c.hd, .scale = 1.0f / sqrtf(64.0f),
            .causal_base = c.causal_base, .out = d.q, .ldo = d.ld,
            .scratch = scratch};
        fn(&a);
        for (int64_t i = 0; i < c.n_q; i++)
            assert_memory_equal(d.q + i * d.ld, want + i * c.hd,
                                (size_t)c.hd * sizeof(float));
        attn_ex_data_free(&d);
    }
}

/* =========================================== attention_ex, two segments */

/* A K/V cache split into a shared prefix (k0/v0, n_kv0 keys) and the rest
 * (k/v) must give exactly what the same keys in one array give: outputs
 * and scores bit for bit, on the reference and on the AVX-512 path alike
 * (the fast path makes each key's arithmetic depend on its global index
 * only, see attention_avx512.c). The split points cover an empty and a
 * full prefix, splits inside and at the end of a 4-key block and at odd and
 * even keys (the value sum's two accumulators), and causal rows that see
 * only part of the prefix. Also, the fast path on two segments against the
 * reference on two segments, with the single-segment tolerances. */
static void attn_split_case(const attn_ex_case *c, uint64_t seed,
                            int64_t *checked)
{
    attn_ex_data d;
    attn_ex_data_make(c, seed, &d);
    const size_t no = (size_t)(c->n_q * c->hd) + 1,
                 ns = (size_t)c->n_score + 1;
    float *want = malloc(no * sizeof *want), *got = malloc(no * sizeof *got);
    float *rout = malloc(no * sizeof *rout);
    float *wsc = malloc(ns * sizeof *wsc), *gsc = malloc(ns * sizeof *gsc);
    float *rsc = malloc(ns * sizeof *rsc);
    assert_true(want && got && rout && wsc && gsc && rsc);
    const int64_t nkv = c->n_kv;
    const int64_t splits[] = {0, 1, 2, 3, 4, 5, 7, nkv / 2, nkv - 1, nkv};
    for (int path = 0; path < 2; path++) {
        if (path == 1 && !jq_cpu_has_avx512())
            continue;
        void (*fn)(const jq_attn_args *) =
            path ? jq_avx512_attention_ex : jq_ref_attention_ex;
        for (int scoring = 0; scoring < 2; scoring++) {
            attn_ex_run(fn, c, &d, scoring, want, scoring ? wsc : NULL);
            for (size_t si = 0; si < NELEMS(splits); si++) {
                const int64_t sp = splits[si];
                if (sp < 0 || sp > nkv)
                    continue;
                for (int null_k0 = 0; null_k0 < (sp == 0 ? 2 : 1);
                     null_k0++) {
                    char *label = jqt_fmt(
                        "%s %s split %lld%s n_q %lld n_kv %lld hd %d base "
                        "%lld rows [%lld,%lld) n_score %lld%s",
                        path ? "avx512" : "ref",
                        c->kv_type == JQ_TYPE_F16 ? "f16" : "f32",
                        (long long)sp, null_k0 ? " (k0 NULL)" : "",
                        (long long)c->n_q, (long long)nkv, c->hd,
                        (long long)c->causal_base, (long long)c->row0,
                        (long long)c->row1, (long long)c->n_score,
                        scoring ? " scoring" : "");
                    attn_ex_run_split(fn, c, &d, scoring, sp, null_k0, got,
                                      scoring ? gsc : NULL);
                    if (memcmp(got, want, (no - 1) * sizeof *got) != 0)
                        fail_msg("%s: output differs from one segment",
                                 label);
                    if (scoring &&
                        memcmp(gsc, wsc, (ns - 1) * sizeof *gsc) != 0)
                        fail_msg("%s: scores differ from one segment",
                                 label);
                    if (path == 1) {
                        /* fast path vs reference, both split */
                        attn_ex_run_split(jq_ref_attention_ex, c, &d,
                                          scoring, sp, null_k0, rout,
                                          scoring ? rsc : NULL);
                        compare(label, got, rout, c->n_q * c->hd, 1e-10,
                                1e-5);
                        for (int64_t j = 0; scoring && j < c->n_score; j++)
                            if (!(fabs((double)gsc[j] - rsc[j]) <=
                                  1e-6 + 4e-7 * fabs((double)rsc[j])))
                                fail_msg("%s: score[%lld] %.9g vs reference "
                                         "%.9g",
                                         label, (long long)j, (double)gsc[j],
                                         (double)rsc[j]);
                    }
                    free(label);
                    (*checked)++;
                }
            }
        }
    }
    free(want);
    free(got);
    free(rout);
    free(wsc);
    free(gsc);
    free(rsc);
    attn_ex_data_free(&d);
}

static void test_attention_ex_two_segments(void **state)
{
    (void)state;
    const int hds[] = {1, 17, 64, 128};
    const int64_t nkvs[] = {1, 2, 9, 40, 301};
    const int64_t nqs[] = {1, 6};
    const uint32_t types[] = {JQ_TYPE_F32, JQ_TYPE_F16};
    uint64_t seed = 9000;
    int64_t checked = 0;
    for (size_t t = 0; t < NELEMS(types); t++)
        for (size_t a = 0; a < NELEMS(hds); a++)
            for (size_t b = 0; b < NELEMS(nkvs); b++)
                for (size_t q = 0; q < NELEMS(nqs); q++) {
                    const int64_t nq = nqs[q], nkv = nkvs[b];
                    /* decode, prefill ending at the last key, rows seeing
                     * 1.. keys (less than most prefixes), rows seeing 0.. */
                    const int64_t bases[] = {nkv - 1, nkv - nq, 0, -1};
                    for (size_t bi = 0; bi < NELEMS(bases); bi++) {
                        /* scoring: every key, or a prefix of them */
                        const int64_t nsc = bi % 2 ? nkv / 2 + 1 : nkv;
                        const attn_ex_case c = {nq,     nkv,     bases[bi],
                                                hds[a], types[t], 0,
                                                nq,     nsc};
                        attn_split_case(&c, seed++, &checked);
                    }
                }
    print_message("attention_ex two segments: %lld split runs identical to "
                  "one segment\n",
                  (long long)checked);
}

/* n_kv0 outside [0, n_kv] with k0 set is a caller bug: both paths abort
 * (checked in a child process) instead of reading past a segment. */
static void test_attention_ex_bad_split_aborts(void **state)
{
    (void)state;
    const attn_ex_case c = {1, 8, 7, 16, JQ_TYPE_F32, 0, 0, 0};
    attn_ex_data d;
    attn_ex_data_make(&c, 77, &d);
    float out[16], scratch[8];
    const int64_t bad[] = {9, -1};
    for (int path = 0; path < 2; path++) {
        if (path == 1 && !jq_cpu_has_avx512())
            continue;
        for (size_t b = 0; b < NELEMS(bad); b++) {
            const jq_attn_args a = {
                .q = d.q, .ldq = d.ld, .n_q = 1, .kv_type = JQ_TYPE_F32,
                .k = d.kf, .v = d.vf, .ldk = d.ld, .ldv = d.ld, .n_kv = 8,
                .head_dim = 16, .scale = 0.25f, .causal_base = 7,
                .out = out, .ldo = 16, .scratch = scratch, .k0 = d.kf,
                .v0 = d.vf, .n_kv0 = bad[b]};
            fflush(NULL);
            const pid_t pid = fork();
            assert_true(pid >= 0);
            if (pid == 0) {
                (path ? jq_avx512_attention_ex : jq_ref_attention_ex)(&a);
                _exit(0); /* returned: not caught */
            }
            int st = 0;
            assert_int_equal(waitpid(pid, &st, 0), pid);
            if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT))
                fail_msg("%s n_kv0 %lld: did not abort (status %d)",
                         path ? "avx512" : "ref", (long long)bad[b], st);
        }
    }
    attn_ex_data_free(&d);
}

/* ============================================ element-wise, random */

/* Per-op tolerances for fast path (or dispatcher) vs reference. */
typedef struct {
    const char *name;
    double nmse, max_abs;
} tolerance;

/* Measured worst (nmse, max abs) over all sizes and aliasings are in
 * brackets; every limit sits well above them and far below what one wrong
 * element (>= 1e-3 abs) or lane would give.
 * add: one IEEE add per element on both paths: bit-identical [0, 0].
 * rmsnorm: same float products and double sum, reordered; the float mean
 *   can differ by 1 ulp, which moves outputs (|x| <= 1, |w| <= 2, n >= 15
 *   so |out| <~ 2 * sqrt(3) ~ 3.5) by about 1 ulp: 1e-13 nmse, 1e-6 abs
 *   [0, 0: the means came out identical].
 * softmax: exp <= 1.5 ulp vs expf <= 0.5 ulp, the double sum is
 *   order-independent, one final multiply: <= ~3 ulp per element of values
 *   <= 1: 1e-13 nmse, 4e-7 abs [3.9e-16, 4.7e-10].
 * silu_mul: exp error (<= 2 ulp) reaches silu through 1/(1+e) damped, plus
 *   the divide and multiply; |out| <= 10 * 2 = 20: 1e-13, 8e-6 abs
 *   [1.4e-17, 9.5e-7].
 * rope: same angles, same products and sums: bit-identical in practice;
 *   allow 1 ulp of |out| <= sqrt(2): 1e-14 nmse, 2.5e-7 abs [0, 0]. */
static const tolerance tol_add = {"add", 0.0, 0.0};
static const tolerance tol_rmsnorm = {"rmsnorm", 1e-13, 1e-6};
static const tolerance tol_softmax = {"softmax", 1e-13, 4e-7};
static const tolerance tol_silu = {"silu_mul", 1e-13, 8e-6};
static const tolerance tol_rope = {"rope", 1e-14, 2.5e-7};

typedef enum { OP_RMSNORM, OP_SOFTMAX, OP_SILU, OP_ADD, OP_COUNT } eltwise_op;

typedef struct {
    void (*rmsnorm)(float *, const float *, const float *, int64_t, float);
    void (*softmax)(float *, int64_t);
    void (*silu_mul)(float *, const float *, const float *, int64_t);
    void (*add)(float *, const float *, int64_t);
} eltwise_impl;

static const eltwise_impl ref_impl = {jq_ref_rmsnorm, jq_ref_softmax,
                                      jq_ref_silu_mul, jq_ref_add};
static const eltwise_impl avx_impl = {jq_avx512_rmsnorm, jq_avx512_softmax,
                                      jq_avx512_silu_mul, jq_avx512_add};
static const eltwise_impl dispatch_impl = {jq_rmsnorm, jq_softmax,
                                           jq_silu_mul, jq_add};

/* alias: 0 none, 1 out = first input, 2 out = second input */
static void run_eltwise(const eltwise_impl *impl, eltwise_op op, int alias,
                        int64_t n, uint64_t seed, float *out)
{
    jqt_rng rng;
    jqt_rng_seed(&rng, seed);
    float *a = alloc_guarded(n), *b = alloc_guarded(n), *o = alloc_guarded(n);
    switch (op) {
    case OP_RMSNORM:
        jqt_fill_uniform(&rng, a, (size_t)n, -1, 1);
        jqt_fill_uniform(&rng, b, (size_t)n, -2, 2);
        break;
    case OP_SOFTMAX:
        jqt_fill_uniform(&rng, a, (size_t)n, -10, 10);
        break;
    case OP_SILU:
        jqt_fill_uniform(&rng, a, (size_t)n, -10, 10);
        jqt_fill_uniform(&rng, b, (size_t)n, -2, 2);
        break;
    default:
        jqt_fill_uniform(&rng, a, (size_t)n, -1, 1);
        jqt_fill_uniform(&rng, b, (size_t)n, -1, 1);
        break;
    }
    float *dst = alias == 1 ? a : alias == 2 ? b : o;
    switch (op) {
    case OP_RMSNORM:
        impl->rmsnorm(dst, a, b, n, 1e-5f);
        break;
    case OP_SOFTMAX:
        impl->softmax(a, n);
        dst = a;
        break;
    case OP_SILU:
        impl->silu_mul(dst, a, b, n);
        break;
    default:
        impl->add(a, b, n);
        dst = a;
        break;
    }
    check_guard(a, n, "input a");
    check_guard(b, n, "input b");
    check_guard(o, n, "output");
    memcpy(out, dst, (size_t)n * sizeof *out);
    free(a);
    free(b);
    free(o);
}

static void eltwise_cases(const eltwise_impl *impl, const char *label)
{
    const tolerance *tols[OP_COUNT] = {&tol_rmsnorm, &tol_softmax, &tol_silu,
                                       &tol_add};
    for (int op = 0; op < OP_COUNT; op++) {
        err_stats worst = {0, 0};
        const int max_alias = op == OP_RMSNORM ? 1 : op == OP_SILU ? 2 : 0;
        for (size_t s = 0; s < NELEMS(sizes); s++)
            for (int alias = 0; alias <= max_alias; alias++) {
                const int64_t n = sizes[s];
                float *want = malloc(((size_t)n + 1) * sizeof *want);
                float *got = malloc(((size_t)n + 1) * sizeof *got);
                assert_non_null(want);
                assert_non_null(got);
                const uint64_t seed = 77 + (uint64_t)(op * 100 + (int)s);
                run_eltwise(&ref_impl, (eltwise_op)op, 0, n, seed, want);
                run_eltwise(impl, (eltwise_op)op, alias, n, seed, got);
                char *what = jqt_fmt("%s %s n=%lld alias=%d", label,
                                     tols[op]->name, (long long)n, alias);
                err_stats e = compare(what, got, want, n, tols[op]->nmse,
                                      tols[op]->max_abs);
                worst.nmse = e.nmse > worst.nmse ? e.nmse : worst.nmse;
                worst.max_abs =
                    e.max_abs > worst.max_abs ? e.max_abs : worst.max_abs;
                free(what);
                free(want);
                free(got);
            }
        print_message("%s %s vs reference: worst nmse %.3g, max abs %.3g\n",
                      label, tols[op]->name, worst.nmse, worst.max_abs);
    }
}

static void test_eltwise_avx512_vs_ref(void **state)
{
    (void)state;
    REQUIRE_AVX512();
    eltwise_cases(&avx_impl, "avx512");
}

static void test_eltwise_dispatch_vs_ref(void **state)
{
    (void)state;
    eltwise_cases(&dispatch_impl, jq_isa_name(jq_kernels_isa()));
}

/* softmax rows as attention produces them: -inf (masked) entries and one
 * large value must give exact zeros and no NaN on both paths */
static void test_softmax_masked_avx512(void **state)
{
    (void)state;
    REQUIRE_AVX512();
    float x[19], y[19];
    for (int i = 0; i < 19; i++)
        x[i] = y[i] = i % 3 ? -INFINITY : (float)i * 10.0f;
    jq_ref_softmax(x, 19);
    jq_avx512_softmax(y, 19);
    for (int i = 0; i < 19; i++) {
        assert_true(isfinite(y[i]));
        if (i % 3)
            assert_true(y[i] == 0.0f);
    }
    compare("softmax masked", y, x, 19, tol_softmax.nmse, tol_softmax.max_abs);
}

/* ============================================================ RoPE */

typedef void (*rope_fn)(float *, int, int, int, int32_t, float, const float *,
                        bool);

static void rope_cases(rope_fn fn, const char *label)
{
    const int hds[] = {1, 8, 15, 17, 64, 128};
    const int32_t poss[] = {0, 1, 17, 4097, 131071};
    err_stats worst = {0, 0};
    for (size_t a = 0; a < NELEMS(hds); a++) {
        const int hd = hds[a];
        /* full, partial (multiple of 16 floats or not) and zero rope_dim */
        const int rds[] = {hd & ~1, (hd / 2) & ~1, 2, 0};
        for (size_t r = 0; r < NELEMS(rds); r++)
            for (size_t p = 0; p < NELEMS(poss); p++)
                for (int neox = 0; neox < 2; neox++)
                    for (int use_ff = 0; use_ff < 2; use_ff++) {
                        const int rd = rds[r] > hd ? 0 : rds[r];
                        const int nh = 3;
                        jqt_rng rng;
                        jqt_rng_seed(&rng, 5 + a * 1000 + r * 100 + p * 10);
                        float *want = alloc_guarded(nh * hd);
                        float *got = alloc_guarded(nh * hd);
                        float ff[64];
                        jqt_fill_uniform(&rng, want, (size_t)(nh * hd), -1, 1);
                        jqt_fill_uniform(&rng, ff, NELEMS(ff), 0.5f, 8.0f);
                        memcpy(got, want, (size_t)(nh * hd) * sizeof *got);
                        const float *ffp = use_ff ? ff : NULL;
                        jq_ref_rope(want, nh, hd, rd, poss[p], 10000.0f, ffp,
                                    neox);
                        fn(got, nh, hd, rd, poss[p], 10000.0f, ffp, neox);
                        char *what = jqt_fmt(
                            "%s rope hd %d rope_dim %d pos %d %s ff %d",
                            label, hd, rd, poss[p], neox ? "neox" : "norm",
                            use_ff);
                        check_guard(got, nh * hd, what);
                        err_stats e = compare(what, got, want, nh * hd,
                                              tol_rope.nmse, tol_rope.max_abs);
                        worst.nmse = e.nmse > worst.nmse ? e.nmse : worst.nmse;
                        worst.max_abs = e.max_abs > worst.max_abs
                                            ? e.max_abs
                                            : worst.max_abs;
                        free(what);
                        free(want);
                        free(got);
                    }
    }
    print_message("%s rope vs reference: worst nmse %.3g, max abs %.3g\n",
                  label, worst.nmse, worst.max_abs);
}

static void test_rope_avx512_vs_ref(void **state)
{
    (void)state;
    REQUIRE_AVX512();
    rope_cases(jq_avx512_rope, "avx512");
}

static void test_rope_dispatch_vs_ref(void **state)
{
    (void)state;
    rope_cases(jq_rope, jq_isa_name(jq_kernels_isa()));
}

/* ============================================================ top-k */

typedef int64_t (*topk_fn)(const float *, int64_t, int64_t, int32_t *);

static const float *oracle_scores;

/* the documented order as a qsort comparator (best first) */
static int oracle_cmp(const void *pa, const void *pb)
{
    const int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    if (a == b)
        return 0;
    return jq_topk_ranks_above(oracle_scores, a, b) ? -1 : 1;
}

/* The same order written out independently of jq_topk_ranks_above, so the
 * oracle does not just agree with itself. */
static bool oracle_above(const float *s, int32_t a, int32_t b)
{
    const bool na = s[a] != s[a], nb = s[b] != s[b];
    if (na || nb)
        return na && nb ? a < b : nb;
    return s[a] > s[b] || (s[a] == s[b] && a < b);
}

static void check_topk(topk_fn fn, const float *s, int64_t n, int64_t k,
                       const char *label)
{
    int32_t *all = malloc(((size_t)n + 1) * sizeof *all);
    const int64_t want_k = k <= 0 || n <= 0 ? 0 : k > n ? n : k;
    const int64_t cap = (k > 0 ? k : 0) + 8;
    int32_t *got = malloc((size_t)cap * sizeof *got);
    assert_non_null(all);
    assert_non_null(got);
    for (int64_t i = 0; i < n; i++)
        all[i] = (int32_t)i;
    oracle_scores = s;
    qsort(all, (size_t)n, sizeof *all, oracle_cmp);
    for (int64_t i = 0; i + 1 < n; i++)
        assert_true(oracle_above(s, all[i], all[i + 1]));
    /* everything past the returned count must stay untouched, including
     * the slots between n and a clamped k */
    for (int64_t i = 0; i < cap; i++)
        got[i] = -77;
    const int64_t r = fn(s, n, k, got);
    if (r != want_k)
        fail_msg("%s: n %lld k %lld returned %lld, want %lld", label,
                 (long long)n, (long long)k, (long long)r, (long long)want_k);
    for (int64_t i = 0; i < want_k; i++)
        if (got[i] != all[i])
            fail_msg("%s: n %lld k %lld: idx[%lld] = %d, want %d", label,
                     (long long)n, (long long)k, (long long)i, got[i],
                     all[i]);
    for (int64_t i = want_k; i < cap; i++)
        assert_int_equal(got[i], -77);
    free(all);
    free(got);
}

static void topk_known(topk_fn fn)
{
    int32_t idx[8];
    /* ties: lower index first */
    const float t[5] = {1, 3, 3, 2, 3};
    assert_int_equal(fn(t, 5, 3, idx), 3);
    assert_int_equal(idx[0], 1);
    assert_int_equal(idx[1], 2);
    assert_int_equal(idx[2], 4);
    /* NaN below everything, even -inf; NaNs by index */
    const float nan_s[5] = {NAN, -INFINITY, 0.5f, NAN, -1.0f};
    assert_int_equal(fn(nan_s, 5, 5, idx), 5);
    const int32_t want_nan[5] = {2, 4, 1, 0, 3};
    assert_memory_equal(idx, want_nan, sizeof want_nan);
    /* -0 and +0 tie */
    const float z[3] = {-0.0f, 0.0f, -0.0f};
    assert_int_equal(fn(z, 3, 2, idx), 2);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);
    /* k > n clamps, k = 0 / k < 0 / n = 0 write nothing */
    const float s[3] = {0.1f, 0.3f, 0.2f};
    assert_int_equal(fn(s, 3, 7, idx), 3);
    assert_int_equal(idx[0], 1);
    assert_int_equal(idx[1], 2);
    assert_int_equal(idx[2], 0);
    idx[0] = -5;
    assert_int_equal(fn(s, 3, 0, idx), 0);
    assert_int_equal(fn(s, 3, -2, idx), 0);
    assert_int_equal(fn(s, 0, 3, idx), 0);
    assert_int_equal(idx[0], -5);
}

static void topk_random(topk_fn fn, const char *label)
{
    jqt_rng rng;
    jqt_rng_seed(&rng, 99);
    const int64_t ns[] = {1, 15, 17, 100, 4097, 50000};
    const int64_t ks[] = {0, 1, 5, 16, 40, 4097, 60000};
    for (size_t a = 0; a < NELEMS(ns); a++) {
        const int64_t n = ns[a];
        float *s = malloc((size_t)n * sizeof *s);
        assert_non_null(s);
        for (int kind = 0; kind < 4; kind++) {
            for (int64_t i = 0; i < n; i++) {
                const uint64_t u = jqt_rng_u64(&rng);
                switch (kind) {
                case 0: /* distinct-ish */
                    s[i] = jqt_rng_uniform(&rng, -10, 10);
                    break;
                case 1: /* many duplicates */
                    s[i] = (float)(u % 7) - 3.0f;
                    break;
                case 2: /* duplicates, NaN, infinities, signed zeros */
                    s[i] = (const float[]){NAN, -INFINITY, INFINITY, -0.0f,
                                           0.0f, 1.0f, 1.0f, -1.0f}[u % 8];
                    break;
                default: /* ascending: every element enters the heap */
                    s[i] = (float)i * 0.5f;
                    break;
                }
            }
            for (size_t b = 0; b < NELEMS(ks); b++)
                check_topk(fn, s, n, ks[b], label);
        }
        free(s);
    }
}

static void test_topk_ref(void **state)
{
    (void)state;
    topk_known(jq_ref_topk);
    topk_random(jq_ref_topk, "ref topk");
}

static void test_topk_avx512(void **state)
{
    (void)state;
    REQUIRE_AVX512();
    topk_known(jq_avx512_topk);
    topk_random(jq_avx512_topk, "avx512 topk");
}

static void test_topk_dispatch(void **state)
{
    (void)state;
    topk_known(jq_topk);
    topk_random(jq_topk, "dispatch topk");
}

/* ======================================================== max-pool */

typedef void (*maxpool_fn)(const float *, float *, int64_t, int);

static uint32_t bits_of(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

/* out of fn on x[0..n) (guarded), compared bit for bit with want */
static void check_pool(maxpool_fn fn, const float *x, int64_t n, int k,
                       const float *want, const char *label)
{
    float *o = alloc_guarded(n);
    fn(x, o, n, k);
    check_guard(o, n, label);
    for (int64_t j = 0; j < n; j++)
        if (bits_of(o[j]) != bits_of(want[j]))
            fail_msg("%s: n %lld k %d: out[%lld] = %g (0x%08x), want %g "
                     "(0x%08x)",
                     label, (long long)n, k, (long long)j, (double)o[j],
                     bits_of(o[j]), (double)want[j], bits_of(want[j]));
    free(o);
}

static void maxpool_known(maxpool_fn fn, const char *label)
{
    /* a single peak spreads to +-r, clipped at the edges */
    float x[40], want[40];
    for (int peak = 0; peak < 40; peak += 13) /* 0, 13, 26, 39 */
        for (int k = 1; k <= 9; k += 2) {
            const int r = (k - 1) / 2;
            for (int j = 0; j < 40; j++) {
                x[j] = j == peak ? 5.0f : -1.0f - (float)j * 0.01f;
                want[j] = 0.0f;
            }
            for (int j = 0; j < 40; j++) {
                if (j >= peak - r && j <= peak + r) {
                    want[j] = 5.0f;
                    continue;
                }
                /* otherwise the leftmost element of the clipped window,
                 * the largest of a descending ramp */
                want[j] = x[j - r < 0 ? 0 : j - r];
            }
            check_pool(fn, x, 40, k, want, label);
        }
    /* k = 1 copies */
    jqt_rng rng;
    jqt_rng_seed(&rng, 8);
    jqt_fill_uniform(&rng, x, 40, -5, 5);
    check_pool(fn, x, 40, 1, x, label);
    /* k > n: every output is the global maximum (k >= 2n - 1 needed) */
    const float y[5] = {3, -2, 7, 1, -8};
    const float ally[5] = {7, 7, 7, 7, 7};
    check_pool(fn, y, 5, 9, ally, label);
    check_pool(fn, y, 5, 63, ally, label);
    /* k = 5 on n = 5: the corners miss the far end */
    const float z[5] = {-8, 1, 3, 2, 7};
    const float z5[5] = {3, 3, 7, 7, 7};
    check_pool(fn, z, 5, 5, z5, label);
    /* signed zeros: +0 wins over -0 whichever comes first */
    const float zs[4] = {-0.0f, 0.0f, -0.0f, -0.0f};
    const float zs3[4] = {0.0f, 0.0f, 0.0f, -0.0f};
    check_pool(fn, zs, 4, 3, zs3, label);
    /* NaN is ignored unless the whole window is NaN, which gives the
     * default quiet NaN whatever the input NaNs' payloads and signs */
    float nan1, nan2, qnan;
    const uint32_t b1 = 0xffc01234u, b2 = 0x7f800001u, bq = 0x7fc00000u;
    memcpy(&nan1, &b1, 4);
    memcpy(&nan2, &b2, 4);
    memcpy(&qnan, &bq, 4);
    const float xn[6] = {nan1, 1.0f, nan2, nan1, nan2, -INFINITY};
    const float wn[6] = {1.0f, 1.0f, 1.0f, qnan, -INFINITY, -INFINITY};
    check_pool(fn, xn, 6, 3, wn, label);
    const float xn1[3] = {nan2, 2.0f, nan1};
    const float wn1[3] = {qnan, 2.0f, qnan};
    check_pool(fn, xn1, 3, 1, wn1, label);
    /* n = 0 touches nothing */
    check_pool(fn, x, 0, 7, want, label);
}

static void test_maxpool_known(void **state)
{
    (void)state;
    maxpool_known(jq_ref_maxpool1d, "ref maxpool");
    if (jq_cpu_has_avx512())
        maxpool_known(jq_avx512_maxpool1d, "avx512 maxpool");
    maxpool_known(jq_maxpool1d, "dispatch maxpool");
}

/* Random data (distinct values, heavy ties with signed zeros and
 * infinities, sprinkled NaNs) for every size and many k: the fast path and
 * the dispatcher must equal the reference bit for bit. */
static void test_maxpool_random(void **state)
{
    (void)state;
    const int64_t ns[] = {0, 1, 2, 15, 16, 17, 33, 100, 4097};
    const int ks[] = {1, 3, 5, 7, 9, 15, 17, 31, 33, 63, 8193};
    jqt_rng rng;
    jqt_rng_seed(&rng, 4242);
    for (size_t a = 0; a < NELEMS(ns); a++)
        for (int kind = 0; kind < 3; kind++) {
            const int64_t n = ns[a];
            float *x = alloc_guarded(n), *want = alloc_guarded(n);
            for (int64_t i = 0; i < n; i++) {
                const uint64_t u = jqt_rng_u64(&rng);
                if (kind == 0)
                    x[i] = jqt_rng_uniform(&rng, -100, 100);
                else if (kind == 1)
                    x[i] = (const float[]){-0.0f, 0.0f, 1.0f, -1.0f,
                                           -INFINITY, INFINITY, 2.0f,
                                           -0.0f}[u % 8];
                else
                    x[i] = u % 5 == 0 ? (u & 64 ? -NAN : NAN)
                                      : jqt_rng_uniform(&rng, -1, 1);
            }
            /* long NaN runs too, so that all-NaN windows occur */
            if (kind == 2)
                for (int64_t i = n / 3; i < n / 3 + 40 && i < n; i++)
                    x[i] = NAN;
            for (size_t b = 0; b < NELEMS(ks); b++) {
                jq_ref_maxpool1d(x, want, n, ks[b]);
                check_guard(want, n, "ref maxpool");
                if (jq_cpu_has_avx512())
                    check_pool(jq_avx512_maxpool1d, x, n, ks[b], want,
                               "avx512 maxpool");
                check_pool(jq_maxpool1d, x, n, ks[b], want,
                           "dispatch maxpool");
            }
            check_guard(x, n, "maxpool input");
            free(x);
            free(want);
        }
}

/* ================================================= F32 -> F16 rows */

/* Converts inputs[0..n) with fn in rows of awkward lengths written at a
 * 2-byte (not 4-byte) aligned address, and compares every result bit for
 * bit with jq_f32_to_f16. Returns the number of inputs checked. */
static int64_t check_f16_rows(void (*fn)(const float *, void *, int64_t),
                              const float *in, int64_t n, jqt_rng *rng,
                              const char *label)
{
    uint16_t buf[1 + 128 + 16];
    for (int64_t i = 0; i < n;) {
        int64_t len = (int64_t)(jqt_rng_u64(rng) % 100);
        len = len > n - i ? n - i : len;
        for (size_t g = 0; g < NELEMS(buf); g++)
            buf[g] = 0xabcd;
        fn(in + i, buf + 1, len);
        assert_int_equal(buf[0], 0xabcd);
        for (int64_t g = len + 1; g < (int64_t)NELEMS(buf); g++)
            if (buf[g] != 0xabcd)
                fail_msg("%s: row of %lld wrote element %lld", label,
                         (long long)len, (long long)(g - 1));
        for (int64_t t = 0; t < len; t++) {
            const uint16_t want = jq_f32_to_f16(in[i + t]);
            if (buf[1 + t] != want)
                fail_msg("%s: f32 0x%08x -> 0x%04x, want 0x%04x", label,
                         bits_of(in[i + t]), buf[1 + t], want);
        }
        i += len;
    }
    return n;
}

static void quantize_f16_dispatch(const float *src, void *dst, int64_t n)
{
    jq_quantize_row(JQ_TYPE_F16, src, dst, n);
}

/* Every F16 value h (both signs, subnormals, the largest finite, inf),
 * the floats one ulp either side of it, the midpoint between h and the
 * next larger magnitude (the rounding tie; 65520 for the largest finite,
 * where rounding reaches inf) and the floats one ulp either side of that
 * midpoint; then 10 million random bit patterns (NaNs included). */
static void f16_cases(void (*fn)(const float *, void *, int64_t),
                      const char *label)
{
    const int64_t per = 6, cap = 65536 * per;
    float *in = malloc((size_t)cap * sizeof *in);
    assert_non_null(in);
    int64_t n = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0)
            continue; /* NaN halves: covered by the random part */
        const float f = jq_f16_to_f32((uint16_t)h);
        const float dir = signbit(f) ? -INFINITY : INFINITY;
        in[n++] = f;
        in[n++] = nextafterf(f, dir);
        in[n++] = nextafterf(f, -dir);
        if ((h & 0x7fffu) >= 0x7c00u)
            continue; /* inf has no next magnitude */
        const double next = (h & 0x7fffu) == 0x7bffu
                                ? copysign(65536.0, f)
                                : (double)jq_f16_to_f32((uint16_t)(h + 1));
        const float mid = (float)(((double)f + next) / 2); /* exact */
        in[n++] = mid;
        in[n++] = nextafterf(mid, dir);
        in[n++] = nextafterf(mid, -dir);
    }
    jqt_rng rng;
    jqt_rng_seed(&rng, 16);
    int64_t checked = check_f16_rows(fn, in, n, &rng, label);
    int64_t nans = 0;
    for (int rep = 0; rep < 10000000 / 65536 + 1; rep++) {
        for (int64_t i = 0; i < 65536; i++) {
            const uint32_t b = (uint32_t)(jqt_rng_u64(&rng) >> 32);
            memcpy(&in[i], &b, sizeof b);
            nans += isnan(in[i]);
        }
        checked += check_f16_rows(fn, in, 65536, &rng, label);
    }
    /* NaN stays NaN (checked bit for bit above; restated for the
     * signalling ones, whose quieting must not make them inf) */
    const uint32_t snans[] = {0x7f800001u, 0xff800001u, 0x7f801fffu,
                              0x7fbfffffu, 0x7fc00000u};
    for (size_t i = 0; i < NELEMS(snans); i++) {
        float f;
        uint16_t h;
        memcpy(&f, &snans[i], 4);
        fn(&f, &h, 1);
        assert_true((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0);
    }
    print_message("%s: %lld inputs bit-identical to jq_f32_to_f16 (%lld "
                  "NaNs)\n",
                  label, (long long)checked, (long long)nans);
    free(in);
}

static void test_quantize_f16_avx512(void **state)
{
    (void)state;
    REQUIRE_AVX512();
    f16_cases(jq_avx512_quantize_row_f16, "avx512 f16 row");
}

static void test_quantize_f16_dispatch(void **state)
{
    (void)state;
    f16_cases(quantize_f16_dispatch, "dispatch f16 row");
}

int main(void)
{
    jq_kernels_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vexp_accuracy),
        cmocka_unit_test(test_ref_rmsnorm_known),
        cmocka_unit_test(test_ref_softmax_known),
        cmocka_unit_test(test_ref_silu_add_known),
        cmocka_unit_test(test_ref_rope_known),
        cmocka_unit_test(test_rope_pos0_identity),
        cmocka_unit_test(test_rope_matches_llama_recurrence),
        cmocka_unit_test(test_attention_one_key),
        cmocka_unit_test(test_attention_two_keys_known),
        cmocka_unit_test(test_attention_causal_mask),
        cmocka_unit_test(test_attention_ref_vs_oracle_and_dispatch),
        cmocka_unit_test(test_attention_avx512_vs_ref),
        cmocka_unit_test(test_attention_ex_ref_vs_oracle_and_dispatch),
        cmocka_unit_test(test_attention_ex_avx512_vs_oracle_and_ref),
        cmocka_unit_test(test_attention_is_ex_f32),
        cmocka_unit_test(test_attention_ex_score_sums),
        cmocka_unit_test(test_attention_ex_out_aliases_q),
        cmocka_unit_test(test_attention_ex_two_segments),
        cmocka_unit_test(test_attention_ex_bad_split_aborts),
        cmocka_unit_test(test_eltwise_avx512_vs_ref),
        cmocka_unit_test(test_eltwise_dispatch_vs_ref),
        cmocka_unit_test(test_softmax_masked_avx512),
        cmocka_unit_test(test_rope_avx512_vs_ref),
        cmocka_unit_test(test_rope_dispatch_vs_ref),
        cmocka_unit_test(test_topk_ref),
        cmocka_unit_test(test_topk_avx512),
        cmocka_unit_test(test_topk_dispatch),
        cmocka_unit_test(test_maxpool_known),
        cmocka_unit_test(test_maxpool_random),
        cmocka_unit_test(test_quantize_f16_avx512),
        cmocka_unit_test(test_quantize_f16_dispatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
