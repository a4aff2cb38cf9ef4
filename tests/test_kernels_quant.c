/* test_kernels_quant.c — Q4_0 / Q4_K / Q6_K weights, int8 activations and
 * the VNNI products (kernels/quant.c, quant_avx512.c, gemm_q_avx512.c).
 *
 * Three kinds of check, as in test_kernels_linalg.c:
 *   - layouts: hand-built blocks whose values are known, so a wrong bit
 *     position in a dequantizer cannot agree with a wrong quantizer;
 *   - AVX-512 against the scalar reference: bit for bit where the paths do
 *     the same float operations (dequantization, activation quantization),
 *     NMSE where only the summation order differs (products), with ragged
 *     shapes and guard elements after every output;
 *   - both against double precision: the products against the exact value
 *     of what they specify (dequantized weights times the dequantized int8
 *     activation), and against the unquantized activation, which measures
 *     the error the int8 activation adds.
 * Tolerances are stated (and justified) beside each check.
 */
#include "kernels.h"
#include "isa_internal.h"
#include "quant_internal.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GUARD_BITS 0x7fa5a5a5u
#define NGUARD 32

static const uint32_t q_types[] = {JQ_TYPE_Q8_0, JQ_TYPE_Q4_0, JQ_TYPE_Q4_K,
                                   JQ_TYPE_Q6_K};
#define N_QTYPES (sizeof q_types / sizeof q_types[0])

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float *alloc_guarded(int64_t n)
{
    float *p = malloc(((size_t)n + NGUARD) * sizeof(float));
    assert_non_null(p);
    const uint32_t g = GUARD_BITS;
    for (int64_t i = 0; i < n + NGUARD; i++)
        memcpy(&p[i], &g, sizeof g);
    return p;
}

static void check_guard(const float *p, int64_t n, const char *what)
{
    for (int64_t i = n; i < n + NGUARD; i++)
        if (bits_of(p[i]) != GUARD_BITS)
            fail_msg("%s: guard element %lld after %lld outputs overwritten",
                     what, (long long)(i - n), (long long)n);
}

static double nmse_d(const double *ref, const float *got, int64_t n,
                     const char *what)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i]))
            fail_msg("%s: non-finite value at %lld", what, (long long)i);
        const double d = ref[i] - (double)got[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return den == 0 ? (num == 0 ? 0 : INFINITY) : num / den;
}

static double nmse_f(const float *ref, const float *got, int64_t n,
                     const char *what)
{
    double *r = malloc(((size_t)n + 1) * sizeof(double));
    assert_non_null(r);
    for (int64_t i = 0; i < n; i++)
        r[i] = ref[i];
    const double e = nmse_d(r, got, n, what);
    free(r);
    return e;
}

static void check_tol(double e, double tol, const char *what)
{
    if (!(e <= tol))
        fail_msg("%s: NMSE %.3g > tolerance %.3g", what, e, tol);
}

static bool have_vnni(void)
{
    if (jq_cpu_has_avx512() && jq_cpu_has_avx512_vnni())
        return true;
    fprintf(stderr, "skipping: no AVX-512 VNNI on this CPU/OS\n");
    return false;
}

/* N(0, 1) by Box-Muller: weights look like this more than uniform ones. */
static void fill_gauss(jqt_rng *r, float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const double u1 = (jqt_rng_u64(r) >> 11) * 0x1p-53 + 0x1p-54;
        const double u2 = (jqt_rng_u64(r) >> 11) * 0x1p-53;
        x[i] = (float)(sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
    }
}

typedef struct {
    unsigned char *w;
    size_t stride;
    float *deq; /* rows x cols, the exact weights */
} qmatrix;

static qmatrix make_qmatrix(jqt_rng *rng, uint32_t type, int64_t rows,
                            int64_t cols)
{
    qmatrix m;
    m.stride = jq_row_bytes(type, cols);
    assert_true(m.stride > 0);
    m.w = malloc(m.stride * (size_t)rows + 64);
    m.deq = malloc(((size_t)(rows * cols) + 1) * sizeof(float));
    float *src = malloc(((size_t)cols + 1) * sizeof(float));
    assert_true(m.w && m.deq && src);
    for (int64_t r = 0; r < rows; r++) {
        fill_gauss(rng, src, (size_t)cols);
        jq_quantize_row(type, src, m.w + (size_t)r * m.stride, cols);
        jq_ref_dequantize_row(type, m.w + (size_t)r * m.stride, m.deq + r * cols, cols);
    }
    free(src);
    return m;
}

static void free_qmatrix(qmatrix *m)
{
    free(m->w);
    free(m->deq);
}

static const char *tname(uint32_t t)
{
    return jq_type_traits_get(t)->name;
}

/* -------------------------------------------------------------- types */

static void test_types_and_sizes(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_QTYPES; i++) {
        assert_true(jq_type_traits_get(q_types[i])->compute);
        assert_int_equal(jq_act_kind_of(q_types[i]), JQ_ACT_Q8);
    }
    assert_int_equal(jq_act_kind_of(JQ_TYPE_F32), JQ_ACT_F32);
    assert_int_equal(jq_act_kind_of(JQ_TYPE_BF16), JQ_ACT_F32);
    assert_int_equal(jq_row_bytes(JQ_TYPE_Q4_0, 64), 36);
    assert_int_equal(jq_row_bytes(JQ_TYPE_Q6_K, 512), 420);
    /* F32-kind rows are the F32 activations themselves, unpadded (jq_gemm
     * reads them with stride K); Q8 rows: K + 12 K / 32, to 64 bytes. */
    assert_int_equal(jq_act_row_bytes(JQ_TYPE_F16, 7), 28);
    assert_int_equal(jq_act_row_bytes(JQ_TYPE_Q8_0, 32), 64);
    assert_int_equal(jq_act_row_bytes(JQ_TYPE_Q4_K, 2048), 2816);
    assert_int_equal(jq_act_row_bytes(JQ_TYPE_Q4_0, 48), 0);
    assert_true(jq_gemm_q_scratch_bytes(JQ_TYPE_Q6_K, 8192) <=
                (size_t)JQ_GEMM_PANEL * 8192 * sizeof(float));
}

/* ------------------------------------------------------ block layouts */

static void test_q4_0_hand_block(void **state)
{
    (void)state;
    jq_block_q4_0 b;
    b.d = jq_f32_to_f16(0.5f);
    for (int j = 0; j < 16; j++)
        b.qs[j] = (uint8_t)(j | ((15 - j) << 4));
    float y[32];
    jq_ref_dequantize_row(JQ_TYPE_Q4_0, &b, y, 32);
    for (int j = 0; j < 16; j++) {
        assert_true(y[j] == 0.5f * (float)(j - 8));
        assert_true(y[j + 16] == 0.5f * (float)(7 - j));
    }
}

static void test_q4_K_hand_block(void **state)
{
    (void)state;
    /* Scales and mins chosen so that every packed bit matters: sub-blocks
     * 4..7 take their top 2 bits from bytes 0..7. */
    static const uint8_t sc[8] = {1, 63, 17, 32, 5, 48, 63, 33};
    static const uint8_t mn[8] = {0, 7, 63, 16, 60, 2, 31, 49};
    jq_block_q4_K b;
    memset(&b, 0, sizeof b);
    b.d = jq_f32_to_f16(0.25f);
    b.dmin = jq_f32_to_f16(0.125f);
    for (int j = 0; j < 4; j++) {
        b.scales[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        b.scales[j + 4] = (uint8_t)(mn[j] | ((mn[j + 4] >> 4) << 6));
        b.scales[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
    }
    uint8_t q[256];
    for (int e = 0; e < 256; e++)
        q[e] = (uint8_t)((e * 7 + e / 32) % 16);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            b.qs[32 * c + l] = (uint8_t)(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
    float y[256], y2[256];
    jq_ref_dequantize_row(JQ_TYPE_Q4_K, &b, y, 256);
    for (int e = 0; e < 256; e++) {
        const int j = e / 32;
        const float want = 0.25f * (float)sc[j] * (float)q[e] - 0.125f * (float)mn[j];
        if (y[e] != want)
            fail_msg("q4_K element %d: %g, want %g", e, (double)y[e], (double)want);
    }
    if (jq_cpu_has_avx512()) {
        jq_avx512_dequantize_row(JQ_TYPE_Q4_K, &b, y2, 256);
        assert_memory_equal(y, y2, sizeof y);
    }
}

static void test_q6_K_hand_block(void **state)
{
    (void)state;
    jq_block_q6_K b;
    memset(&b, 0, sizeof b);
    uint8_t q[256];
    for (int e = 0; e < 256; e++)
        q[e] = (uint8_t)((e * 37 + 11) % 64);
    /* element 128 h + 32 g + l: low nibble in ql[64 h + 32 (g & 1) + l]
     * (high nibble of that byte when g >= 2), 2 high bits in qh[32 h + l]
     * at bit 2 g */
    for (int e = 0; e < 256; e++) {
        const int h = e / 128, g = (e % 128) / 32, l = e % 32;
        uint8_t *lo = &b.ql[64 * h + 32 * (g & 1) + l];
        *lo |= (uint8_t)(g >= 2 ? (q[e] & 15) << 4 : q[e] & 15);
        b.qh[32 * h + l] |= (uint8_t)((q[e] >> 4) << (2 * g));
    }
    for (int t = 0; t < 16; t++)
        b.scales[t] = (int8_t)(t * 17 - 128 + (t == 0));
    b.d = jq_f32_to_f16(0.0625f);
    float y[256], y2[256];
    jq_ref_dequantize_row(JQ_TYPE_Q6_K, &b, y, 256);
    for (int e = 0; e < 256; e++) {
        const float want = 0.0625f * (float)b.scales[e / 16] * (float)(q[e] - 32);
        if (y[e] != want)
            fail_msg("q6_K element %d: %g, want %g", e, (double)y[e], (double)want);
    }
    if (jq_cpu_has_avx512()) {
        jq_avx512_dequantize_row(JQ_TYPE_Q6_K, &b, y2, 256);
        assert_memory_equal(y, y2, sizeof y);
    }
}

/* ggml's quantize_row_q4_0_ref rule, checked on a block whose answer is
 * known: the largest-magnitude value (-4) maps to nibble 0, d = 4 / 8. */
static void test_q4_0_quantize_rule(void **state)
{
    (void)state;
    float x[32];
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j % 8) * 0.5f - 2.0f; /* -2 .. 1.5 */
    x[5] = -4.0f;
    jq_block_q4_0 b;
    jq_quantize_row(JQ_TYPE_Q4_0, x, &b, 32);
    assert_int_equal(b.d, jq_f32_to_f16(0.5f));
    float y[32];
    jq_ref_dequantize_row(JQ_TYPE_Q4_0, &b, y, 32);
    for (int j = 0; j < 32; j++)
        assert_true(y[j] == x[j]); /* every value is a multiple of d */
    assert_int_equal(b.qs[5] & 15, 0);
    /* a zero block: d = 0 / -8 = -0 (as ggml) and every nibble 8 */
    memset(x, 0, sizeof x);
    jq_quantize_row(JQ_TYPE_Q4_0, x, &b, 32);
    assert_int_equal(b.d, 0x8000);
    for (int j = 0; j < 16; j++)
        assert_int_equal(b.qs[j], 0x88);
}

/* Quantize N(0,1) rows and dequantize: the format's error. The bounds are
 * the measured values (printed: Q8_0 2.9e-5, Q4_0 7.4e-3, Q4_K 5.3e-3,
 * Q6_K 3.6e-4) with 25% margin, so a quantizer that gets worse fails.
 * Expected orders: a uniform step s gives s^2/12; Q4_0's 16 levels over
 * +-max of 32 Gaussians (max ~2.1) give ~7e-3; Q4_K's fitted min/scale
 * per 32 a little less; Q6_K's 64 levels per 16 ~3e-4. */
static void test_quantize_error(void **state)
{
    (void)state;
    static const struct {
        uint32_t type;
        double tol;
    } cases[] = {
        {JQ_TYPE_Q8_0, 3.6e-5}, {JQ_TYPE_Q4_0, 9.3e-3}, {JQ_TYPE_Q4_K, 6.7e-3},
        {JQ_TYPE_Q6_K, 4.5e-4},
    };
    jqt_rng rng;
    jqt_rng_seed(&rng, 7);
    const int64_t n = 256 * 64;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    unsigned char *q = malloc(jq_row_bytes(JQ_TYPE_Q8_0, n));
    assert_true(x && y && q);
    fill_gauss(&rng, x, (size_t)n);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        jq_quantize_row(cases[c].type, x, q, n);
        jq_ref_dequantize_row(cases[c].type, q, y, n);
        const double e = nmse_f(x, y, n, tname(cases[c].type));
        fprintf(stderr, "quantize %s: NMSE %.3g on N(0,1) (tolerance %.3g)\n",
                tname(cases[c].type), e, cases[c].tol);
        check_tol(e, cases[c].tol, tname(cases[c].type));
    }
    free(x);
    free(y);
    free(q);
}

/* ------------------------------------------------ dequantize fast path */

static void test_dequantize_avx512(void **state)
{
    (void)state;
    if (!jq_cpu_has_avx512())
        skip();
    jqt_rng rng;
    jqt_rng_seed(&rng, 11);
    static const uint32_t types[] = {JQ_TYPE_Q4_0, JQ_TYPE_Q4_K, JQ_TYPE_Q6_K};
    for (size_t t = 0; t < 3; t++) {
        const int64_t bs = jq_type_traits_get(types[t])->block_size;
        for (int64_t nb = 1; nb <= 9; nb += 2) {
            const int64_t n = nb * bs;
            qmatrix m = make_qmatrix(&rng, types[t], 1, n);
            float *got = alloc_guarded(n);
            jq_avx512_dequantize_row(types[t], m.w, got, n);
            char what[64];
            snprintf(what, sizeof what, "dequantize %s n=%lld", tname(types[t]), (long long)n);
            check_guard(got, n, what);
            /* the same F32 operations in the same order: bit-identical */
            if (memcmp(got, m.deq, (size_t)n * sizeof(float)) != 0)
                fail_msg("%s: differs from the reference", what);
            free(got);
            free_qmatrix(&m);
        }
    }
}

/* ----------------------------------------------- activation quantization */

static void test_quantize_act(void **state)
{
    (void)state;
    jqt_rng rng;
    jqt_rng_seed(&rng, 13);
    static const int64_t Ks[] = {32, 64, 96, 288, 2048, 8192};
    for (size_t k = 0; k < sizeof Ks / sizeof Ks[0]; k++) {
        const int64_t K = Ks[k];
        const size_t rb = jq_act_row_bytes(JQ_TYPE_Q8_0, K);
        float *x = malloc(K * sizeof(float));
        unsigned char *a = aligned_alloc(64, rb), *b = aligned_alloc(64, rb);
        assert_true(x && a && b);
        fill_gauss(&rng, x, (size_t)K);
        /* block 0: exact ties (amax 127 gives d = 1): 2.5 -> 3, -2.5 -> -3,
         * 0.5 -> 1 (roundf, away from zero); the last block all zeros */
        x[0] = 127.0f;
        x[1] = 2.5f;
        x[2] = -2.5f;
        x[3] = 0.5f;
        x[4] = -126.5f;
        if (K >= 64)
            memset(x + K - 32, 0, 32 * sizeof(float));
        jq_ref_quantize_act(JQ_TYPE_Q8_0, x, K, a);
        const jq_actq_view v = jq_actq_view_of(a, K);
        assert_true(v.d[0] == 1.0f);
        assert_int_equal(v.qs[1], 3);
        assert_int_equal(v.qs[2], -3);
        assert_int_equal(v.qs[3], 1);
        assert_int_equal(v.qs[4], -127);
        if (K >= 64)
            assert_true(v.d[K / 32 - 1] == 0.0f && v.s[K / 32 - 1] == 0.0f);
        /* the stored sums match the quants; each value within d/2 */
        for (int64_t blk = 0; blk < K / 32; blk++) {
            int s0 = 0, s1 = 0;
            for (int j = 0; j < 16; j++) {
                s0 += v.qs[32 * blk + j];
                s1 += v.qs[32 * blk + 16 + j];
            }
            assert_int_equal(v.s16[2 * blk], s0);
            assert_int_equal(v.s16[2 * blk + 1], s1);
            assert_true(v.s[blk] == v.d[blk] * (float)(s0 + s1));
            for (int j = 0; j < 32; j++) {
                const double err = fabs((double)x[32 * blk + j] -
                                        (double)v.qs[32 * blk + j] * v.d[blk]);
                /* half a step, plus the rounding of x * (1/d) */
                if (err > 0.5 * v.d[blk] * (1 + 1e-5))
                    fail_msg("K=%lld x[%lld]: error %g > d/2", (long long)K,
                             (long long)(32 * blk + j), err);
            }
        }
        if (jq_cpu_has_avx512()) {
            memset(b, 0xa5, rb);
            jq_avx512_quantize_act(JQ_TYPE_Q8_0, x, K, b);
            if (memcmp(a, b, rb) != 0)
                fail_msg("K=%lld: AVX-512 activation bytes differ from the reference",
                         (long long)K);
        }
        memset(b, 0xa5, rb);
        jq_quantize_act(JQ_TYPE_Q6_K, x, K, b); /* same kind, same bytes */
        assert_memory_equal(a, b, rb);
        free(x);
        free(a);
        free(b);
    }
    /* F32 kind: a copy */
    float x[5] = {1, 2, 3, 4, 5}, y[5];
    jq_quantize_act(JQ_TYPE_F16, x, 5, y);
    assert_memory_equal(x, y, sizeof x);
}

/* --------------------------------------------------------- products */

/* The exact value of the quantized product (double over the dequantized
 * weights and the dequantized activation) and of the unquantized one. */
static void exact_products(const qmatrix *m, int64_t rows, int64_t cols,
                           const float *x, const void *xq, double *spec,
                           double *full, double *mag)
{
    const jq_actq_view v = jq_actq_view_of(xq, cols);
    for (int64_t r = 0; r < rows; r++) {
        double s = 0, f = 0, a = 0;
        for (int64_t k = 0; k < cols; k++) {
            const double w = m->deq[r * cols + k];
            const double p = w * ((double)v.qs[k] * (double)v.d[k / 32]);
            s += p;
            a += fabs(p);
            f += w * (double)x[k];
        }
        spec[r] = s;
        full[r] = f;
        mag[r] = a;
    }
}

typedef void (*matvec_q_fn)(uint32_t, const void *, int64_t, const void *,
                            float *, int64_t, int64_t);

/* Tolerances of the products, over all the outputs of one type (a single
 * output near zero would make a per-case NMSE meaningless):
 *   against the exact quantized product: F32 summation of cols/32 block
 *   terms, each exact to an ulp -> NMSE ~ (cols/32) eps^2 ~ 1e-13; 1e-10
 *   leaves room for cancellation. Per output also |error| <= 1e-5 *
 *   sum |w q_x d_x| (F32 summation of <= 2048 terms: n eps <= 1.2e-4 is
 *   the worst case; the typical sqrt(n) eps is 3e-6).
 *   against the unquantized x: the activation's rounding, uniform in
 *   +-d/2 with d = amax/127 of 32 Gaussians (amax ~ 2.5): relative
 *   variance (2.5/127)^2/12 = 3.2e-5 (measured 3.0e-5 to 3.6e-5 per
 *   type); bound 5e-5. */
#define TOL_SPEC 1e-10
#define TOL_ELEM 1e-5
#define TOL_FULL 5e-5

typedef struct {
    double num_spec, num_full, den_spec, den_full;
} err_acc;

static void matvec_case(matvec_q_fn fn, const char *name, uint32_t type,
                        int64_t rows, int64_t cols, jqt_rng *rng, err_acc *acc)
{
    qmatrix m = make_qmatrix(rng, type, rows, cols);
    float *x = malloc(cols * sizeof(float));
    const size_t rb = jq_act_row_bytes(type, cols);
    void *xq = aligned_alloc(64, rb);
    double *spec = malloc(rows * sizeof(double)), *full = malloc(rows * sizeof(double));
    double *mag = malloc(rows * sizeof(double));
    assert_true(x && xq && spec && full && mag);
    fill_gauss(rng, x, (size_t)cols);
    jq_quantize_act(type, x, cols, xq);
    exact_products(&m, rows, cols, x, xq, spec, full, mag);
    float *got = alloc_guarded(rows);
    fn(type, m.w, cols, xq, got, 0, rows);
    char what[128];
    snprintf(what, sizeof what, "%s %s %lldx%lld", name, tname(type),
             (long long)rows, (long long)cols);
    check_guard(got, rows, what);
    for (int64_t r = 0; r < rows; r++) {
        if (!isfinite(got[r]))
            fail_msg("%s: row %lld not finite", what, (long long)r);
        const double es = got[r] - spec[r], ef = got[r] - full[r];
        if (fabs(es) > TOL_ELEM * mag[r])
            fail_msg("%s: row %lld: %.9g vs exact %.9g (sum |terms| %g)", what,
                     (long long)r, (double)got[r], spec[r], mag[r]);
        acc->num_spec += es * es;
        acc->den_spec += spec[r] * spec[r];
        acc->num_full += ef * ef;
        acc->den_full += full[r] * full[r];
    }
    /* a row range writes y[r0..r1) only */
    if (rows >= 3) {
        float *part = alloc_guarded(rows);
        fn(type, m.w, cols, xq, part, 1, rows - 1);
        for (int64_t r = 0; r < rows + NGUARD; r++) {
            const bool inside = r >= 1 && r < rows - 1;
            if (inside ? bits_of(part[r]) != bits_of(got[r])
                       : bits_of(part[r]) != GUARD_BITS)
                fail_msg("%s: rows [1,%lld): y[%lld] wrong", what,
                         (long long)(rows - 1), (long long)r);
        }
        free(part);
    }
    free(got);
    free(spec);
    free(full);
    free(mag);
    free(xq);
    free(x);
    free_qmatrix(&m);
}

static void matvec_all(matvec_q_fn fn, const char *name)
{
    jqt_rng rng;
    jqt_rng_seed(&rng, 17);
    static const int64_t rows_list[] = {1, 3, 4, 5, 9, 64};
    static const int64_t cols32[] = {32, 64, 96, 160, 2048};
    static const int64_t cols256[] = {256, 512, 768, 2048};
    for (size_t t = 0; t < N_QTYPES; t++) {
        const bool k = jq_type_traits_get(q_types[t])->block_size == 256;
        const int64_t *cl = k ? cols256 : cols32;
        const size_t nc = k ? 4 : 5;
        err_acc acc = {0, 0, 0, 0};
        for (size_t r = 0; r < sizeof rows_list / sizeof rows_list[0]; r++)
            for (size_t c = 0; c < nc; c++)
                matvec_case(fn, name, q_types[t], rows_list[r], cl[c], &rng, &acc);
        char what[96];
        snprintf(what, sizeof what, "%s %s vs exact", name, tname(q_types[t]));
        check_tol(acc.num_spec / acc.den_spec, TOL_SPEC, what);
        const double full = acc.num_full / acc.den_full;
        fprintf(stderr, "%s %s: NMSE vs the unquantized x %.3g\n", name,
                tname(q_types[t]), full);
        snprintf(what, sizeof what, "%s %s vs unquantized x", name, tname(q_types[t]));
        check_tol(full, TOL_FULL, what);
    }
}

static void test_ref_matvec_q(void **state)
{
    (void)state;
    matvec_all(jq_ref_matvec_q, "ref matvec_q");
}

static void test_avx512_matvec_q(void **state)
{
    (void)state;
    if (!have_vnni())
        skip();
    matvec_all(jq_avx512_matvec_q, "avx512 matvec_q");
}

static void test_dispatch_matvec_q(void **state)
{
    (void)state;
    matvec_all(jq_matvec_q, "jq_matvec_q");
    /* under JUDGEQ_ISA=scalar the dispatcher is the reference, bit for bit */
    if (jq_kernels_isa() != JQ_ISA_SCALAR)
        return;
    jqt_rng rng;
    jqt_rng_seed(&rng, 19);
    for (size_t t = 0; t < N_QTYPES; t++) {
        qmatrix m = make_qmatrix(&rng, q_types[t], 6, 512);
        float x[512], a[6], b[6];
        void *xq = aligned_alloc(64, jq_act_row_bytes(q_types[t], 512));
        assert_non_null(xq);
        fill_gauss(&rng, x, 512);
        jq_quantize_act(q_types[t], x, 512, xq);
        jq_ref_matvec_q(q_types[t], m.w, 512, xq, a, 0, 6);
        jq_matvec_q(q_types[t], m.w, 512, xq, b, 0, 6);
        assert_memory_equal(a, b, sizeof a);
        free(xq);
        free_qmatrix(&m);
    }
}

/* The F32-x reference path also computes the new types: against double
 * with the unquantized x, F32 accumulation only (NMSE 1e-10 as
 * test_kernels_linalg's matvec). */
static void test_matvec_f32x_new_types(void **state)
{
    (void)state;
    jqt_rng rng;
    jqt_rng_seed(&rng, 23);
    static const uint32_t types[] = {JQ_TYPE_Q4_0, JQ_TYPE_Q4_K, JQ_TYPE_Q6_K};
    for (size_t t = 0; t < 3; t++) {
        const int64_t rows = 7, cols = 512;
        qmatrix m = make_qmatrix(&rng, types[t], rows, cols);
        float x[512];
        fill_gauss(&rng, x, 512);
        double want[7];
        for (int64_t r = 0; r < rows; r++) {
            double s = 0;
            for (int64_t k = 0; k < cols; k++)
                s += (double)m.deq[r * cols + k] * x[k];
            want[r] = s;
        }
        float *y = alloc_guarded(rows);
        jq_ref_matvec(types[t], m.w, cols, x, y, 0, rows);
        check_tol(nmse_d(want, y, rows, "ref matvec"), 1e-10, tname(types[t]));
        if (jq_cpu_has_avx512()) {
            jq_avx512_matvec(types[t], m.w, cols, x, y, 0, rows);
            check_guard(y, rows, "avx512 matvec");
            check_tol(nmse_d(want, y, rows, "avx512 matvec"), 1e-10, tname(types[t]));
        }
        free(y);
        free_qmatrix(&m);
    }
}

/* ------------------------------------------------------------- GEMM */

static void gemm_case(uint32_t type, int64_t M, int64_t N, int64_t K,
                      int64_t n0, int64_t n1, jqt_rng *rng)
{
    qmatrix m = make_qmatrix(rng, type, N, K);
    const size_t rb = jq_act_row_bytes(type, K);
    float *X = malloc((size_t)(M * K) * sizeof(float));
    unsigned char *Xq = aligned_alloc(64, rb * (size_t)M);
    const int64_t ldy = N + 3;
    float *Y = alloc_guarded(M * ldy), *R = alloc_guarded(M * ldy);
    void *scratch = aligned_alloc(64, jq_gemm_q_scratch_bytes(type, K));
    assert_true(X && Xq && scratch);
    fill_gauss(rng, X, (size_t)(M * K));
    for (int64_t i = 0; i < M; i++)
        jq_quantize_act(type, X + i * K, K, Xq + i * rb);
    char what[128];
    snprintf(what, sizeof what, "gemm_q %s M=%lld N=%lld K=%lld [%lld,%lld)",
             tname(type), (long long)M, (long long)N, (long long)K,
             (long long)n0, (long long)n1);
    jq_ref_gemm_q(type, m.w, K, Xq, M, R, ldy, n0, n1);
    jq_gemm_q(type, m.w, K, Xq, M, Y, ldy, n0, n1, scratch);
    check_guard(Y, M * ldy, what);
    const int64_t cnt = M * (n1 - n0);
    double *spec = malloc(((size_t)cnt + 1) * sizeof(double));
    float *got = malloc(((size_t)cnt + 1) * sizeof(float));
    float *ref = malloc(((size_t)cnt + 1) * sizeof(float));
    assert_true(spec && got && ref);
    int64_t c = 0;
    for (int64_t i = 0; i < M; i++) {
        const jq_actq_view v = jq_actq_view_of(Xq + i * rb, K);
        for (int64_t n = n0; n < n1; n++, c++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++)
                s += (double)m.deq[n * K + k] * ((double)v.qs[k] * v.d[k / 32]);
            spec[c] = s;
            got[c] = Y[i * ldy + n];
            ref[c] = R[i * ldy + n];
        }
    }
    check_tol(nmse_d(spec, got, cnt, what), TOL_SPEC, what);
    check_tol(nmse_d(spec, ref, cnt, what), TOL_SPEC, what);
    for (int64_t i = 0; i < M; i++)
        for (int64_t n = 0; n < ldy; n++)
            if ((n < n0 || n >= n1) && bits_of(Y[i * ldy + n]) != GUARD_BITS)
                fail_msg("%s: Y[%lld][%lld] outside the range was written",
                         what, (long long)i, (long long)n);
    free(spec);
    free(got);
    free(ref);
    free(scratch);
    free(Y);
    free(R);
    free(Xq);
    free(X);
    free_qmatrix(&m);
}

static void test_gemm_q(void **state)
{
    (void)state;
    jqt_rng rng;
    jqt_rng_seed(&rng, 29);
    /* M around the 4-row tile, N around the 32-column panel, sub-ranges
     * that start and end inside panels */
    static const int64_t Ms[] = {1, 3, 4, 5, 9};
    static const struct {
        int64_t N, n0, n1;
    } ns[] = {{1, 0, 1}, {31, 0, 31}, {32, 0, 32}, {33, 0, 33}, {70, 5, 69}};
    for (size_t t = 0; t < N_QTYPES; t++) {
        const bool k = jq_type_traits_get(q_types[t])->block_size == 256;
        const int64_t Ks[2] = {k ? 256 : 32, k ? 768 : 224};
        for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++)
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
                for (int ki = 0; ki < 2; ki++)
                    gemm_case(q_types[t], Ms[mi], ns[ni].N, Ks[ki], ns[ni].n0,
                              ns[ni].n1, &rng);
    }
}

/* ------------------------------------------------------ BF16 vdpbf16ps */

/* x rounded to BF16 (RNE) is off by at most 2^-9 relative per element and
 * the products and sums are F32, so each output is within
 * 2^-9 * sum |w x| (+ F32 summation, far smaller) of the exact value;
 * the bound checked is 2^-8 * sum |w x|. */
static void test_bf16_dp(void **state)
{
    (void)state;
    if (!jq_cpu_has_avx512() || !jq_cpu_has_avx512_bf16())
        skip();
    jqt_rng rng;
    jqt_rng_seed(&rng, 31);
    static const int64_t cols_list[] = {1, 17, 32, 33, 100, 2048};
    for (size_t c = 0; c < sizeof cols_list / sizeof cols_list[0]; c++) {
        const int64_t rows = 6, cols = cols_list[c];
        uint16_t *w = malloc((size_t)(rows * cols) * 2);
        float *wf = malloc((size_t)(rows * cols) * sizeof(float));
        float *x = malloc((size_t)cols * sizeof(float));
        assert_true(w && wf && x);
        fill_gauss(&rng, wf, (size_t)(rows * cols));
        fill_gauss(&rng, x, (size_t)cols);
        jq_quantize_row(JQ_TYPE_BF16, wf, w, rows * cols);
        float *y = alloc_guarded(rows);
        jq_avx512_matvec_bf16_dp(w, cols, x, y, 0, rows);
        check_guard(y, rows, "bf16 dp");
        for (int64_t r = 0; r < rows; r++) {
            double s = 0, a = 0;
            for (int64_t k = 0; k < cols; k++) {
                const double p = (double)jq_bf16_to_f32(w[r * cols + k]) * x[k];
                s += p;
                a += fabs(p);
            }
            if (fabs(s - y[r]) > 0x1p-8 * a + 1e-30)
                fail_msg("bf16 dp cols=%lld row %lld: %g vs exact %g (sum|wx| %g)",
                         (long long)cols, (long long)r, (double)y[r], s, a);
        }
        free(y);
        free(w);
        free(wf);
        free(x);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types_and_sizes),
        cmocka_unit_test(test_q4_0_hand_block),
        cmocka_unit_test(test_q4_K_hand_block),
        cmocka_unit_test(test_q6_K_hand_block),
        cmocka_unit_test(test_q4_0_quantize_rule),
        cmocka_unit_test(test_quantize_error),
        cmocka_unit_test(test_dequantize_avx512),
        cmocka_unit_test(test_quantize_act),
        cmocka_unit_test(test_ref_matvec_q),
        cmocka_unit_test(test_avx512_matvec_q),
        cmocka_unit_test(test_dispatch_matvec_q),
        cmocka_unit_test(test_matvec_f32x_new_types),
        cmocka_unit_test(test_gemm_q),
        cmocka_unit_test(test_bf16_dp),
    };
    jq_kernels_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
