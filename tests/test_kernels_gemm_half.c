/* test_kernels_gemm_half.c — the prefill GEMM for F16, BF16 (and F32)
 * weights, kernels/gemm_half_avx512.c, against its scalar reference
 * jq_ref_gemm.
 *
 * Tolerance, the same for every weight type: the kernel converts weights
 * exactly to F32 (BF16 is the top half of an F32; every F16 value is an
 * F32 value) and keeps the activations in F32, so both paths sum the same
 * K products x_k w_k and differ only in rounding. The reference rounds each
 * product and each partial sum in index order; the kernel does one FMA per
 * k (the product exact inside it). Each is within gamma_K * sum |x_k w_k|
 * of the exact sum (Higham, Accuracy and Stability, 3.1; gamma_K =
 * K u / (1 - K u), u = 2^-24), so they are within 2 gamma_K sum |x_k w_k|
 * of each other, element by element. A wrong or missing term moves an
 * element by about sum |x_k w_k| / K, above this bound for the K used
 * here (K <= 600: 7e-5 against 1.7e-3 of sum |x_k w_k|; the one K = 2048
 * case: 2.4e-4 against 4.9e-4), and actual differences are ~sqrt(K) u,
 * far below it. With K = 1 both compute round(x w): exactly equal.
 *
 * Also: ragged shapes (M, N, K not multiples of the 12 x 32 tile or of the
 * 256-wide K slice, odd and even K, M = 1), weights at an unaligned
 * address, guard values after Y, in Y's padding columns, outside the
 * column range and after the scratch; results that do not depend on the
 * column range or on which rows are in the batch (so threads splitting
 * the columns give the single-threaded result bit for bit).
 */
#include "kernels.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NGUARD 32 /* guard values (testutil.h) after each output */

static bool same_bits(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

static const uint32_t types[] = {JQ_TYPE_F32, JQ_TYPE_F16, JQ_TYPE_BF16};

static bool need_avx512(void)
{
    if (jq_cpu_has_avx512())
        return true;
    fprintf(stderr, "skipping: this CPU/OS has no AVX-512\n");
    return false;
}

/* N rows of K weights of `type`, 2 bytes past an allocation (unaligned),
 * exactly sized so ASan sees a read past the last row. */
typedef struct {
    unsigned char *mem, *w;
    size_t stride;
} weights;

static weights make_weights(jqt_rng *rng, uint32_t type, int64_t N, int64_t K)
{
    weights m;
    m.stride = jq_row_bytes(type, K);
    m.mem = malloc((size_t)N * m.stride + 2);
    float *tmp = malloc(((size_t)K + 1) * sizeof(float));
    assert_true(m.mem && tmp);
    m.w = m.mem + 2;
    for (int64_t r = 0; r < N; r++) {
        jqt_fill_uniform(rng, tmp, (size_t)K, -1, 1);
        jq_quantize_row(type, tmp, m.w + (size_t)r * m.stride, K);
    }
    free(tmp);
    return m;
}

/* A scratch of jq_gemm's size followed by guards, 4 bytes past a 64-byte
 * boundary (jq_gemm does not require alignment: the kernel aligns its
 * packed panels itself, within the same size). free_scratch frees it. */
static float *alloc_scratch(int64_t K)
{
    const size_t n = (size_t)JQ_GEMM_PANEL * (size_t)(K > 0 ? K : 1);
    float *s = aligned_alloc(64, ((n + NGUARD + 1) * sizeof(float) + 63) / 64 * 64);
    assert_non_null(s);
    for (size_t i = 1; i < n + NGUARD + 1; i++)
        s[i] = jqt_guard();
    return s + 1;
}

static void free_scratch(float *s)
{
    free(s - 1);
}

static void check_scratch_guard(const float *s, int64_t K, const char *what)
{
    const size_t n = (size_t)JQ_GEMM_PANEL * (size_t)(K > 0 ? K : 1);
    for (size_t i = n; i < n + NGUARD; i++)
        if (!jqt_is_guard(s[i]))
            fail_msg("%s: scratch written past JQ_GEMM_PANEL x K floats", what);
}

/* M x ldy floats of guards plus NGUARD after them. */
static float *alloc_y(int64_t M, int64_t ldy)
{
    const size_t n = (size_t)(M * ldy) + NGUARD;
    float *y = malloc(n * sizeof(float));
    assert_non_null(y);
    for (size_t i = 0; i < n; i++)
        y[i] = jqt_guard();
    return y;
}

/* Every element outside columns [n0, n1) of the M rows, and the NGUARD
 * after them, still holds the guard. */
static void check_y_guards(const float *y, int64_t M, int64_t ldy, int64_t n0,
                           int64_t n1, const char *what)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t n = 0; n < ldy; n++)
            if ((n < n0 || n >= n1) && !jqt_is_guard(y[i * ldy + n]))
                fail_msg("%s: Y[%lld][%lld] outside the columns written", what,
                         (long long)i, (long long)n);
    for (int64_t g = 0; g < NGUARD; g++)
        if (!jqt_is_guard(y[M * ldy + g]))
            fail_msg("%s: guard %lld after Y overwritten", what, (long long)g);
}

/* sum_k |x_k w_k| for row i of X and weight row n (in double). */
static double abs_sum(uint32_t type, const weights *m, int64_t K,
                      const float *x, int64_t n, float *wrow)
{
    jq_ref_dequantize_row(type, m->w + (size_t)n * m->stride, wrow, K);
    double s = 0;
    for (int64_t k = 0; k < K; k++)
        s += fabs((double)x[k] * (double)wrow[k]);
    return s;
}

/* jq_avx512_gemm_half against jq_ref_gemm for columns [n0, n1). */
static void one_case(jqt_rng *rng, uint32_t type, int64_t M, int64_t N,
                     int64_t K, int64_t n0, int64_t n1)
{
    char what[128];
    snprintf(what, sizeof what, "gemm_half %s M=%lld N=%lld K=%lld cols [%lld,%lld)",
             jq_type_traits_get(type)->name, (long long)M, (long long)N,
             (long long)K, (long long)n0, (long long)n1);
    weights m = make_weights(rng, type, N, K);
    float *X = malloc(((size_t)(M * K) + 1) * sizeof(float));
    assert_non_null(X);
    jqt_fill_uniform(rng, X, (size_t)(M * K), -1, 1);
    const int64_t ldy = N + 3; /* padding columns must stay untouched */
    float *want = alloc_y(M, ldy), *got = alloc_y(M, ldy);
    float *scratch = alloc_scratch(K);
    float *wrow = malloc(((size_t)K + 1) * sizeof(float));
    assert_non_null(wrow);

    jq_ref_gemm(type, m.w, K, X, M, want, ldy, n0, n1);
    jq_avx512_gemm_half(type, m.w, K, X, M, got, ldy, n0, n1, scratch);
    check_y_guards(got, M, ldy, n0, n1, what);
    check_scratch_guard(scratch, K, what);

    const double u = 0x1p-24, gamma = (double)K * u / (1 - (double)K * u);
    for (int64_t i = 0; i < M; i++)
        for (int64_t n = n0; n < n1; n++) {
            const float g = got[i * ldy + n], r = want[i * ldy + n];
            if (K <= 1) {
                if (!same_bits(g, r))
                    fail_msg("%s: Y[%lld][%lld] = %a, reference %a (one "
                             "product: must be equal)", what, (long long)i,
                             (long long)n, (double)g, (double)r);
                continue;
            }
            const double bound = 2 * gamma * abs_sum(type, &m, K, X + i * K, n, wrow);
            if (!isfinite(g) || !(fabs((double)g - (double)r) <= bound))
                fail_msg("%s: Y[%lld][%lld] = %.9g, reference %.9g, allowed "
                         "difference %.3g", what, (long long)i, (long long)n,
                         (double)g, (double)r, bound);
        }
    free(wrow);
    free_scratch(scratch);
    free(want);
    free(got);
    free(X);
    free(m.mem);
}

static void test_vs_reference(void **state)
{
    (void)state;
    if (!need_avx512())
        skip();
    jqt_rng rng;
    jqt_rng_seed(&rng, 2024);
    /* around the 12-row tile, the 32-column micro-panel (and its 16-lane
     * halves), the 256-wide K slice and the 16-element pack blocks */
    static const int64_t Ms[] = {1, 3, 4, 11, 12, 13, 25};
    static const int64_t Ns[] = {1, 15, 16, 17, 32, 33, 97};
    static const int64_t Ks[] = {1, 2, 15, 16, 17, 255, 256, 257, 600};
    for (size_t t = 0; t < 3; t++)
        for (size_t a = 0; a < sizeof Ms / sizeof Ms[0]; a++)
            for (size_t b = 0; b < sizeof Ns / sizeof Ns[0]; b++)
                for (size_t c = 0; c < sizeof Ks / sizeof Ks[0]; c++) {
                    const int64_t M = Ms[a], N = Ns[b], K = Ks[c];
                    one_case(&rng, types[t], M, N, K, 0, N);
                    if (N > 2 && (a + b + c) % 3 == 0) /* interior columns */
                        one_case(&rng, types[t], M, N, K, 1, N - 1);
                }
    /* several column blocks of the packing: 512 columns each when the
     * scratch (64 x K floats) holds 512 x 256 (K = 2048), fewer for
     * smaller K (K = 300: 64 columns; K = 40: 64 x 40 floats hold 64
     * columns of a 40-wide slice) */
    for (size_t t = 0; t < 3; t++) {
        one_case(&rng, types[t], 13, 1100, 2048, 0, 1100);
        one_case(&rng, types[t], 30, 600, 300, 0, 600);
        one_case(&rng, types[t], 30, 600, 300, 64, 577);
        one_case(&rng, types[t], 14, 300, 40, 0, 300);
    }
}

/* K = 0 is an empty sum: zeros in the columns asked for, nothing else. */
static void test_empty_sum(void **state)
{
    (void)state;
    if (!need_avx512())
        skip();
    float X[1] = {1}, *y = alloc_y(2, 5), *s = alloc_scratch(0);
    uint16_t w[1] = {0};
    for (size_t t = 0; t < 3; t++) {
        for (int i = 0; i < 2 * 5; i++)
            y[i] = jqt_guard();
        jq_avx512_gemm_half(types[t], w, 0, X, 2, y, 5, 1, 4, s);
        check_y_guards(y, 2, 5, 1, 4, "K = 0");
        for (int i = 0; i < 2; i++)
            for (int n = 1; n < 4; n++)
                assert_true(y[i * 5 + n] == 0.0f);
    }
    check_scratch_guard(s, 0, "K = 0");
    free(y);
    free_scratch(s);
}

/* Column splits and row subsets give the same bits: what the engine
 * relies on when its threads take different column ranges (split at
 * multiples of 64, its panels), and what makes a batch's row independent
 * of the other rows in it. (test_kernels_linalg's test_gemm_concurrent runs
 * jq_gemm, so this kernel on AVX-512, in two threads at once.) */
static void test_ranges_and_rows_agree(void **state)
{
    (void)state;
    if (!need_avx512())
        skip();
    jqt_rng rng;
    jqt_rng_seed(&rng, 77);
    const int64_t M = 29, N = 320, K = 520, half = 192;
    for (size_t t = 0; t < 3; t++) {
        const uint32_t type = types[t];
        const char *name = jq_type_traits_get(type)->name;
        weights m = make_weights(&rng, type, N, K);
        float *X = malloc((size_t)(M * K) * sizeof(float));
        float *want = malloc((size_t)(M * N) * sizeof(float));
        float *Y = malloc((size_t)(M * N) * sizeof(float));
        float *s = alloc_scratch(K);
        assert_true(X && want && Y);
        jqt_fill_uniform(&rng, X, (size_t)(M * K), -1, 1);
        jq_avx512_gemm_half(type, m.w, K, X, M, want, N, 0, N, s);

        jq_avx512_gemm_half(type, m.w, K, X, M, Y, N, half, N, s);
        jq_avx512_gemm_half(type, m.w, K, X, M, Y, N, 0, half, s);
        for (int64_t i = 0; i < M * N; i++)
            if (!same_bits(Y[i], want[i]))
                fail_msg("%s: Y[%lld][%lld] differs when the columns are split "
                         "at %lld", name, (long long)(i / N), (long long)(i % N),
                         (long long)half);
        /* rows 7.. alone (a different tiling of the rows) */
        jq_avx512_gemm_half(type, m.w, K, X + 7 * K, M - 7, Y + 7 * N, N, 0, N, s);
        for (int64_t i = 7 * N; i < M * N; i++)
            if (!same_bits(Y[i], want[i]))
                fail_msg("%s: Y[%lld][%lld] differs when rows 0-6 are not in "
                         "the batch", name, (long long)(i / N), (long long)(i % N));
        check_scratch_guard(s, K, name);
        free(X);
        free(want);
        free(Y);
        free_scratch(s);
        free(m.mem);
    }
}

/* jq_gemm dispatches F16 and BF16 to this kernel on the AVX-512 path (from
 * 4 rows; fewer rows go through the GEMV): the same bits. On the scalar
 * path it stays within the bound above of the reference (sgemm). */
static void test_dispatch(void **state)
{
    (void)state;
    jqt_rng rng;
    jqt_rng_seed(&rng, 5);
    const int64_t N = 70, K = 300;
    for (size_t t = 1; t < 3; t++) {
        const uint32_t type = types[t];
        weights m = make_weights(&rng, type, N, K);
        for (int64_t M = 1; M <= 6; M++) {
            float *X = malloc((size_t)(M * K) * sizeof(float));
            float *a = alloc_y(M, N), *b = alloc_y(M, N);
            float *s = alloc_scratch(K);
            float *wrow = malloc((size_t)K * sizeof(float));
            assert_true(X && wrow);
            jqt_fill_uniform(&rng, X, (size_t)(M * K), -1, 1);
            jq_gemm(type, m.w, K, X, M, a, N, 0, N, s);
            check_y_guards(a, M, N, 0, N, "jq_gemm");
            if (jq_kernels_isa() == JQ_ISA_AVX512 && M >= 4) {
                jq_avx512_gemm_half(type, m.w, K, X, M, b, N, 0, N, s);
                assert_memory_equal(a, b, (size_t)(M * N) * sizeof(float));
            } else {
                jq_ref_gemm(type, m.w, K, X, M, b, N, 0, N);
                const double u = 0x1p-24, gamma = (double)K * u / (1 - (double)K * u);
                for (int64_t i = 0; i < M; i++)
                    for (int64_t n = 0; n < N; n++) {
                        /* sgemm's blocked sums obey the same bound */
                        const double bound = 2 * gamma * abs_sum(type, &m, K, X + i * K, n, wrow);
                        if (!(fabs((double)a[i * N + n] - b[i * N + n]) <= bound))
                            fail_msg("jq_gemm %s M=%lld: Y[%lld][%lld] = %.9g, "
                                     "reference %.9g", jq_type_traits_get(type)->name,
                                     (long long)M, (long long)i, (long long)n,
                                     (double)a[i * N + n], (double)b[i * N + n]);
                    }
            }
            free(X);
            free(a);
            free(b);
            free_scratch(s);
            free(wrow);
        }
        free(m.mem);
    }
}

int main(void)
{
    jq_kernels_init();
    fprintf(stderr, "kernel ISA in use: %s\n", jq_isa_name(jq_kernels_isa()));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vs_reference),
        cmocka_unit_test(test_empty_sum),
        cmocka_unit_test(test_ranges_and_rows_agree),
        cmocka_unit_test(test_dispatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
