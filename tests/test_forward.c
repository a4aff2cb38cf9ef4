/* test_forward.c — the forward pass on gen-model models: batch (GEMM) and
 * single-token (GEMV) evaluation agree, thread counts agree, every weight
 * type agrees with its F32 original within the type's precision, and the
 * loader rejects inconsistent models with a message naming the problem. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "gen_model.h"
#include "kernels.h"
#include "model.h"
#include "naive_llama.h"
#include "thread_pool.h"

static char *gen(const char *tag, jq_gen_model_params p)
{
    char *path = jqt_fmt("%s/%s.gguf", jqt_tmpdir(), tag);
    char err[256];
    if (jq_gen_model_write(&p, path, err, sizeof err) != 0)
        fail_msg("gen-model %s: %s", tag, err);
    return path;
}

static jq_gen_model_params shape(uint32_t type)
{
    jq_gen_model_params p = jq_gen_model_defaults();
    p.n_embd = 128;
    p.n_layer = 2;
    p.n_head = 8;
    p.n_head_kv = 2;
    p.n_ff = 320;
    p.n_vocab = 700;
    p.type = type;
    p.seed = 99;
    return p;
}

/* logits of the last of toks, evaluated as one batch or one by one */
static float *logits_of(const char *path, const int32_t *toks, int32_t n,
                        bool batch, int threads)
{
    char err[512];
    jq_model *m = jq_model_load(path, err, sizeof err);
    if (!m)
        fail_msg("%s", err);
    jq_pool *pool = jq_thread_pool_new(threads);
    jq_ctx *c = jq_ctx_new(m, n, batch ? n : 1, pool, err, sizeof err);
    assert_non_null(c);
    float *l = malloc(sizeof(float) * (size_t)m->hp.n_vocab);
    if (batch) {
        assert_int_equal(jq_ctx_eval(c, toks, n, l, err, sizeof err), 0);
    } else {
        for (int32_t i = 0; i < n; i++)
            assert_int_equal(jq_ctx_eval(c, &toks[i], 1, l, err, sizeof err), 0);
    }
    jq_ctx_free(c);
    jq_thread_pool_free(pool);
    jq_model_free(m);
    return l;
}

static double max_abs_diff(const float *a, const float *b, int n)
{
    double d = 0;
    for (int i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= d))
            d = e;
    }
    return d;
}

static double rms_diff(const float *a, const float *b, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return sqrt(s / n);
}

static double rms(const float *a, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)a[i] * a[i];
    return sqrt(s / n);
}

static const int32_t toks[] = {1, 300, 301, 450, 17, 600, 599, 260, 261, 5,
                               400, 401, 402, 403, 404, 405, 406, 407, 408,
                               409, 410, 411, 412, 413, 414, 415, 416, 417,
                               418, 419, 420, 421, 422, 423, 424, 425, 426,
                               427, 428, 429, 430, 431, 432, 433, 434, 435,
                               436, 437, 438, 439, 440, 441, 442, 443, 444,
                               445, 446, 447, 448, 449, 450, 451, 452, 453,
                               454, 455, 456, 457, 458, 459, 460, 461, 462};
#define NT ((int32_t)(sizeof toks / sizeof toks[0]))

static void test_batch_vs_decode_every_type(void **state)
{
    (void)state;
    const uint32_t types[] = {JQ_TYPE_F32, JQ_TYPE_F16, JQ_TYPE_BF16,
                              JQ_TYPE_Q8_0};
    for (int t = 0; t < 4; t++) {
        char *path = gen(jq_type_traits_get(types[t])->name, shape(types[t]));
        float *a = logits_of(path, toks, NT, true, 2);
        float *b = logits_of(path, toks, NT, false, 1);
        /* same weights, same math, only summation order differs */
        double d = max_abs_diff(a, b, 700), scale = rms(a, 700);
        if (!(d < 1e-4 * (1 + scale)))
            fail_msg("%s: batch vs decode logits differ by %g (rms %g)",
                     jq_type_traits_get(types[t])->name, d, scale);
        free(a);
        free(b);
        free(path);
    }
}

/* The quantized models are the F32 model's values rounded (same seed), so
 * their logits differ by the rounding only. Tolerances relative to the
 * logits' RMS: F16 keeps 11 bits (~5e-4 relative per weight), BF16 8 bits
 * (~4e-3), Q8_0 about 7 bits per block (~4e-3 of the block max); the
 * errors average out over sums of hundreds of terms, so a few per cent of
 * the RMS bounds them with a wide margin while a wrong kernel (a swapped
 * row, a bad scale) is off by the order of the RMS itself. */
static void test_types_agree_with_f32(void **state)
{
    (void)state;
    char *pf = gen("agree-f32", shape(JQ_TYPE_F32));
    float *ref = logits_of(pf, toks, NT, true, 2);
    double scale = rms(ref, 700);
    struct { uint32_t type; double rel; } cases[] = {
        /* Q8_0 also quantizes the activations to int8 per 32-block (VNNI),
         * which adds about as much error as its weights: twice the
         * weight-only bound */
        {JQ_TYPE_F16, 0.01}, {JQ_TYPE_BF16, 0.05}, {JQ_TYPE_Q8_0, 0.10}};
    for (int i = 0; i < 3; i++) {
        char tag[32];
        snprintf(tag, sizeof tag, "agree-%u", cases[i].type);
        char *p = gen(tag, shape(cases[i].type));
        float *l = logits_of(p, toks, NT, true, 2);
        double d = max_abs_diff(ref, l, 700);
        print_message("%s vs f32: max |dlogit| %.4g (logit rms %.3g)\n",
                      jq_type_traits_get(cases[i].type)->name, d, scale);
        if (!(d < cases[i].rel * scale))
            fail_msg("%s: logits differ from f32 by %g > %g",
                     jq_type_traits_get(cases[i].type)->name, d,
                     cases[i].rel * scale);
        free(l);
        free(p);
    }
    free(ref);
    free(pf);
}

/* F16 and BF16 models against the double-precision naive reference on the
 * same weights (converted exactly): the batch path (on AVX-512 the GEMM of
 * gemm_half_avx512.c, one and two threads) and the decode path (GEMV) add
 * only F32 rounding, so the logits agree to 1e-4 (1 + rms), the bound the
 * F32 model meets in test_architectures. The rounding of the weights to
 * F16/BF16 is not part of this difference (test_types_agree_with_f32
 * measures that); a kernel that rounded the activations to BF16 would add
 * ~2^-9 relative per product and fail here. */
static void test_half_types_vs_naive(void **state)
{
    (void)state;
    const uint32_t types[] = {JQ_TYPE_F16, JQ_TYPE_BF16};
    for (int t = 0; t < 2; t++) {
        const char *name = jq_type_traits_get(types[t])->name;
        char tag[32];
        snprintf(tag, sizeof tag, "naive-%s", name);
        jq_gen_model_params p = shape(types[t]);
        p.n_ff = 520; /* w_down's K spans three 256-wide slices */
        char *path = gen(tag, p);
        char err[512];
        jq_model *m = jq_model_load(path, err, sizeof err);
        if (!m)
            fail_msg("%s: %s", tag, err);
        double *ref = malloc(sizeof(double) * 700);
        naive_run nr = {.tokens = toks, .n_tokens = NT, .logits_row = NT - 1,
                        .logits = ref};
        assert_int_equal(naive_forward(m, &nr), 0);
        double scale = 0;
        for (int i = 0; i < 700; i++)
            scale += ref[i] * ref[i];
        scale = sqrt(scale / 700);
        struct { bool batch; int threads; } runs[] = {{true, 1}, {true, 2}, {false, 2}};
        for (int r = 0; r < 3; r++) {
            float *l = logits_of(path, toks, NT, runs[r].batch, runs[r].threads);
            double worst = 0;
            for (int i = 0; i < 700; i++)
                worst = fmax(worst, fabs(l[i] - ref[i]));
            print_message("%s %s, %d threads: max |dlogit| vs naive %.3g (rms %.3g)\n",
                          name, runs[r].batch ? "batch" : "decode",
                          runs[r].threads, worst, scale);
            if (!(worst < 1e-4 * (1 + scale)))
                fail_msg("%s (%s, %d threads): logits differ from the naive "
                         "reference by %g (rms %g)", name,
                         runs[r].batch ? "batch" : "decode", runs[r].threads,
                         worst, scale);
            free(l);
        }
        free(ref);
        jq_model_free(m);
        free(path);
    }
}

static void test_thread_counts_agree(void **state)
{
    (void)state;
    char *path = gen("threads", shape(JQ_TYPE_F32));
    float *a = logits_of(path, toks, NT, true, 1);
    float *b = logits_of(path, toks, NT, true, 2);
    float *c = logits_of(path, toks, NT, true, 3);
    assert_true(max_abs_diff(a, b, 700) < 1e-5);
    assert_true(max_abs_diff(a, c, 700) < 1e-5);
    free(a);
    free(b);
    free(c);
    free(path);
}

static void test_loader_rejects(void **state)
{
    (void)state;
    char err[512];
    assert_null(jq_model_load("/nonexistent.gguf", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent.gguf"));
    /* a gen-model file with a tensor cut short: the loader must name it */
    char *path = gen("cut", shape(JQ_TYPE_F32));
    char *cut = jqt_fmt("%s.cut", path);
    size_t len;
    char *bytes = jqt_read_file(path, &len);
    assert_non_null(bytes);
    FILE *f = fopen(cut, "wb");
    fwrite(bytes, 1, len - 1000, f);
    fclose(f);
    assert_null(jq_model_load(cut, err, sizeof err));
    assert_true(strlen(err) > 10);
    free(bytes);
    free(cut);
    free(path);
}


/* Architectures and RoPE variants against the double-precision naive
 * reference: plain llama, qwen2 (q/k/v biases, NEOX pairs), Llama 3.1
 * rope_freqs, linear scaling. And the AVX-512 and scalar paths agree on
 * them within 1e-3 relative (the requirement). */
static void test_architectures(void **state)
{
    (void)state;
    jq_isa isa_before = jq_kernels_isa();
    struct { const char *tag, *arch; bool freqs; float linear; } cases[] = {
        {"arch-llama", "llama", false, 1.0f},
        {"arch-qwen2", "qwen2", false, 1.0f},
        {"arch-llama3rope", "llama", true, 1.0f},
        {"arch-linear", "llama", false, 4.0f},
        {"arch-qwen2-freqs", "qwen2", true, 2.0f},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        jq_gen_model_params p = shape(JQ_TYPE_F32);
        p.arch = cases[c].arch;
        p.rope_freqs = cases[c].freqs;
        p.rope_linear = cases[c].linear;
        p.rope_base = 500000.0f; /* Llama 3's: long wavelengths matter */
        char *path = gen(cases[c].tag, p);
        char err[512];
        jq_model *m = jq_model_load(path, err, sizeof err);
        if (!m)
            fail_msg("%s: %s", cases[c].tag, err);
        assert_string_equal(m->hp.arch, cases[c].arch);
        assert_int_equal(m->hp.rope_neox, !strcmp(cases[c].arch, "qwen2"));
        assert_true((m->rope_factors != NULL) ==
                    (cases[c].freqs || cases[c].linear != 1.0f));
        assert_true((m->layers[0].bq != NULL) == !strcmp(cases[c].arch, "qwen2"));

        double *ref = malloc(sizeof(double) * 700);
        naive_run nr = {.tokens = toks, .n_tokens = NT, .logits_row = NT - 1,
                        .logits = ref};
        assert_int_equal(naive_forward(m, &nr), 0);
        float *by_isa[2];
        for (int isa = 0; isa < 2; isa++) {
            if (isa == 1 && !jq_cpu_has_avx512())
                break;
            jq_kernels_force_isa(isa ? JQ_ISA_AVX512 : JQ_ISA_SCALAR);
            by_isa[isa] = logits_of(path, toks, NT, true, 2);
            double worst = 0, scale = 0;
            for (int i = 0; i < 700; i++) {
                worst = fmax(worst, fabs(by_isa[isa][i] - ref[i]));
                scale += ref[i] * ref[i];
            }
            scale = sqrt(scale / 700);
            if (!(worst < 1e-4 * (1 + scale)))
                fail_msg("%s (%s): logits differ from the naive reference by "
                         "%g (rms %g)",
                         cases[c].tag, isa ? "avx512" : "scalar", worst, scale);
        }
        jq_kernels_force_isa(isa_before);
        if (jq_cpu_has_avx512()) {
            double worst = 0, scale = rms(by_isa[0], 700);
            worst = max_abs_diff(by_isa[0], by_isa[1], 700);
            assert_true(worst < 1e-3 * scale);
            free(by_isa[1]);
        }
        free(by_isa[0]);
        free(ref);
        jq_model_free(m);
        free(path);
    }
}


/* The 4- and 6-bit types (activations quantized to int8 for VNNI) against
 * the same model in F32 (same seed: the quantized weights are the F32
 * values rounded). Q4_0 keeps ~4 bits per weight (NMSE ~7e-3 on Gaussian
 * weights: ~9% relative error per product), Q4_K ~5e-3, Q6_K ~4e-4, plus
 * ~3e-5 from the int8 activations; through two blocks and the classifier
 * the RMS of the logit error is ~15-30% of the logits' RMS for 4 bits and
 * a few % for 6 bits (the max over 700 logits is ~3x that). A wrong kernel
 * (swapped rows, a bad scale) gives an error RMS of the order of the
 * logits' own (>= 100%). k-quants need rows of a multiple of 256. */
static void test_low_bit_types_agree_with_f32(void **state)
{
    (void)state;
    jq_gen_model_params base = shape(JQ_TYPE_F32);
    base.n_embd = 256;
    base.n_ff = 512;
    char *pf = gen("lowbit-f32", base);
    float *ref = logits_of(pf, toks, NT, true, 2);
    float *ref1 = logits_of(pf, toks, 3, false, 1);
    double scale = rms(ref, 700), scale1 = rms(ref1, 700);
    struct { uint32_t type; double rel; } cases[] = {
        {JQ_TYPE_Q4_0, 0.40}, {JQ_TYPE_Q4_K, 0.40}, {JQ_TYPE_Q6_K, 0.10}};
    for (int i = 0; i < 3; i++) {
        jq_gen_model_params p = base;
        p.type = cases[i].type;
        char tag[32];
        snprintf(tag, sizeof tag, "lowbit-%u", cases[i].type);
        char *path = gen(tag, p);
        float *l = logits_of(path, toks, NT, true, 2);     /* GEMM */
        float *l1 = logits_of(path, toks, 3, false, 1);    /* GEMV */
        double d = rms_diff(ref, l, 700) / scale,
               d1 = rms_diff(ref1, l1, 700) / scale1;
        print_message("%s vs f32: error rms / logit rms %.4g (batch), %.4g "
                      "(decode)\n",
                      jq_type_traits_get(cases[i].type)->name, d, d1);
        if (!(d < cases[i].rel) || !(d1 < cases[i].rel))
            fail_msg("%s: logits differ from f32 by %g / %g of their rms "
                     "(limit %g)",
                     jq_type_traits_get(cases[i].type)->name, d, d1,
                     cases[i].rel);
        free(l);
        free(l1);
        free(path);
    }
    free(ref);
    free(ref1);
    free(pf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_vs_decode_every_type),
        cmocka_unit_test(test_types_agree_with_f32),
        cmocka_unit_test(test_half_types_vs_naive),
        cmocka_unit_test(test_thread_counts_agree),
        cmocka_unit_test(test_loader_rejects),
        cmocka_unit_test(test_architectures),
        cmocka_unit_test(test_low_bit_types_agree_with_f32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
