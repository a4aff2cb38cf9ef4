/* test_kernels_backward.c — the backward kernels (kernels/backward*.c)
 * against finite differences of the forward kernels they invert.
 *
 * For each op a scalar function f = sum(c ⊙ y) (+ more terms for
 * attention) of the forward kernel's float outputs y is summed in double,
 * and its derivative along each checked input is estimated with the
 * fourth-order central stencil
 *   f'(x) ~ (f(x-2h) - 8 f(x-h) + 8 f(x+h) - f(x+2h)) / (12 h),
 * whose truncation error O(h^4) allows a step large enough that the float
 * rounding of the forward outputs (the error that dominates: ~ulp(y) * |c| /
 * h) stays small. The step actually taken is (float)(x + h) - x, so the
 * estimate is not biased by the rounding of x + h. The backward's input
 * gradient (with dy = c) must agree in the norm-wise relative error
 * ||g - g_fd|| / ||g_fd||, tolerances stated per op below. Inputs whose
 * perturbation cannot change the other terms of f (element-wise ops, RoPE
 * pairs, one attention query row) re-evaluate only what they touch.
 *
 * Then every jq_avx512_* twin against its jq_ref_* (when the CPU has
 * AVX-512) and every public dispatcher against the reference, so the
 * JUDGEQ_ISA=scalar run of the suite exercises the dispatch too. Sizes
 * are ragged (1, 15, 17, 64, 4097 elements; head_dim 8, 15, 64; n_q 1, 5,
 * 32; n_kv 1, 17, 300 with causal variants), outputs are followed by guard
 * elements (and strided rows separated by guards) that must survive.
 *
 * matmul_backward_x is linear, so it is checked against a naive double
 * dX = dY . W instead of differences, for each weight type and for row
 * sub-ranges [r0, r1) summing to the full product.
 */
#include "testutil.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

static const int64_t sizes[] = {1, 15, 17, 64, 4097};

/* ------------------------------------------------------------ guards */

/* A NaN payload no kernel produces: any store into a guard changes it. */
#define GUARD_BITS 0x7fc0beefu
#define GUARD_N 32

static float guard(void)
{
    const uint32_t b = GUARD_BITS;
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static bool is_guard(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b == GUARD_BITS;
}

/* n floats, all guards, plus GUARD_N trailing guards. */
static float *galloc(int64_t n)
{
    float *p = malloc(((size_t)n + GUARD_N) * sizeof *p);
    assert_non_null(p);
    for (int64_t i = 0; i < n + GUARD_N; i++)
        p[i] = guard();
    return p;
}

/* The trailing guards, and for a [rows x ld] array with `used` columns per
 * row, the gap columns too. */
static void check_guards(const float *p, int64_t rows, int64_t ld,
                         int64_t used, const char *what)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = used; c < ld; c++)
            if (!is_guard(p[r * ld + c]))
                fail_msg("%s: gap element (%lld, %lld) overwritten", what,
                         (long long)r, (long long)c);
    for (int i = 0; i < GUARD_N; i++)
        if (!is_guard(p[rows * ld + i]))
            fail_msg("%s: guard %d after the output overwritten", what, i);
}

/* Random values in the used columns of a [rows x ld] guarded array. */
static float *grand(jqt_rng *rng, int64_t rows, int64_t ld, int64_t used,
                    float lo, float hi)
{
    float *p = galloc(rows * ld);
    for (int64_t r = 0; r < rows; r++)
        jqt_fill_uniform(rng, p + r * ld, (size_t)used, lo, hi);
    return p;
}

/* --------------------------------------------------------- comparing */

/* Norm-wise relative error ||got - want|| / max(||want||, floor); the
 * floor is the op's gradient scale before a projection that can cancel it
 * to nothing (softmax of one element, RMSNorm of one element, attention
 * over one key: there the exact gradient is ~0 and FD returns rounding
 * noise, so a pure relative error would measure noise against noise).
 * Non-finite values in got fail. */
static double rel_err(const char *what, const float *got, const double *want,
                      int64_t n, double floor)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i]))
            fail_msg("%s: element %lld is %g", what, (long long)i,
                     (double)got[i]);
        const double d = (double)got[i] - want[i];
        num += d * d;
        den += want[i] * want[i];
    }
    den = sqrt(den) > floor ? sqrt(den) : floor;
    return den > 0.0 ? sqrt(num) / den : sqrt(num);
}

static double check_rel(const char *what, const float *got,
                        const double *want, int64_t n, double floor,
                        double tol)
{
    const double e = rel_err(what, got, want, n, floor);
    if (!(e <= tol))
        fail_msg("%s: relative error %.3g > %.3g", what, e, tol);
    return e;
}

/* got vs a float reference (AVX-512 vs scalar, dispatcher vs scalar),
 * norm-wise with the same floor as the FD checks. */
static double check_vs(const char *what, const float *got, const float *ref,
                       int64_t n, double floor, double tol)
{
    double *w = malloc(((size_t)n + 1) * sizeof *w);
    assert_non_null(w);
    for (int64_t i = 0; i < n; i++)
        w[i] = ref[i];
    const double e = check_rel(what, got, w, n, floor, tol);
    free(w);
    return e;
}

/* The same over the used columns of all rows of a strided matrix. */
static double check_mat_vs(const char *what, const float *got,
                           const float *ref, int64_t rows, int64_t ld,
                           int64_t used, double tol)
{
    float *g = malloc(((size_t)(rows * used) + 1) * sizeof *g);
    float *r = malloc(((size_t)(rows * used) + 1) * sizeof *r);
    assert_non_null(g);
    assert_non_null(r);
    for (int64_t i = 0; i < rows; i++) {
        memcpy(g + i * used, got + i * ld, (size_t)used * sizeof *g);
        memcpy(r + i * used, ref + i * ld, (size_t)used * sizeof *r);
    }
    const double e = check_vs(what, g, r, rows * used, 0.0, tol);
    free(g);
    free(r);
    return e;
}

#define WORST(acc, e) ((acc) = (e) > (acc) ? (e) : (acc))

/* ------------------------------------------------ finite differences */

/* f(ctx) summed in double from the forward kernel's outputs. */
typedef double (*scalar_fn)(void *ctx);

/* The derivative of f along *x from evaluations at x0 +- h, +- 2h (the
 * fourth-order central stencil, npts = 4) or also +- 3h (sixth order,
 * npts = 6, for inputs whose forward is noisy enough to need a large
 * step), x restored afterwards bit for bit. x0 + kh is rarely exact in
 * float, so the derivative is that of the polynomial through the points
 * actually evaluated (offsets t_k exact in double): for symmetric offsets
 * this is the classic stencil, e.g. (f(-2h) - 8 f(-h) + 8 f(h) - f(2h)) /
 * 12h, and rounding asymmetry of an ulp cannot bias it. */
static double fd_n(scalar_fn f, void *ctx, float *x, double h, int npts)
{
    const float x0 = *x;
    double t[6], fv[6];
    for (int k = 0; k < npts; k++) {
        const int step = k < npts / 2 ? k - npts / 2 : k - npts / 2 + 1;
        *x = (float)((double)x0 + step * h);
        t[k] = (double)*x - (double)x0;
        fv[k] = f(ctx);
    }
    *x = x0;
    /* L_k'(0) = sum_{m != k} prod_{l != k, m} (-t_l) / prod_{l != k}(t_k - t_l) */
    double d = 0.0;
    for (int k = 0; k < npts; k++) {
        double den = 1.0, num = 0.0;
        for (int l = 0; l < npts; l++)
            if (l != k)
                den *= t[k] - t[l];
        for (int m = 0; m < npts; m++) {
            if (m == k)
                continue;
            double pr = 1.0;
            for (int l = 0; l < npts; l++)
                if (l != k && l != m)
                    pr *= -t[l];
            num += pr;
        }
        d += fv[k] * num / den;
    }
    return d;
}

static double fd(scalar_fn f, void *ctx, float *x, double h)
{
    return fd_n(f, ctx, x, h, 4);
}

/* Which implementation a check runs: the reference, the AVX-512 twin
 * (only when the CPU has it) or the public dispatcher. */
enum { PATH_REF, PATH_AVX512, PATH_DISPATCH, PATH_COUNT };
static const char *const path_name[PATH_COUNT] = {"ref", "avx512",
                                                  "dispatch"};

static bool path_available(int path)
{
    return path != PATH_AVX512 || jq_cpu_has_avx512();
}

/* The bar for a backward against finite differences. */
#define FD_TOL 1e-3

/* ========================================================== RMSNorm */

typedef struct {
    const float *x, *w, *c;
    float *y;
    int64_t n;
    float eps;
} rms_ctx;

static double rms_f(void *p)
{
    rms_ctx *r = p;
    jq_ref_rmsnorm(r->y, r->x, r->w, r->n, r->eps);
    double f = 0.0;
    for (int64_t i = 0; i < r->n; i++)
        f += (double)r->c[i] * (double)r->y[i];
    return f;
}

typedef void (*rms_bwd_fn)(float *, const float *, const float *,
                           const float *, int64_t, float);
static const rms_bwd_fn rms_bwd[PATH_COUNT] = {jq_ref_rmsnorm_backward,
                                               jq_avx512_rmsnorm_backward,
                                               jq_rmsnorm_backward};

/* Tolerances: FD 1e-3 (the issue's); AVX-512 and dispatch vs reference
 * 1e-5 (the products x w dy are rounded to float before the double sum,
 * and FMA contracts the last step: a few ulp per element). */
static void test_rmsnorm_backward(void **state)
{
    (void)state;
    jqt_rng rng;
    jqt_rng_seed(&rng, 101);
    double worst_fd = 0.0, worst_vs = 0.0;
    /* unit-scale inputs, and tiny ones where eps is most of the norm */
    const float scales[] = {1.0f, 3e-3f};
    for (size_t si = 0; si < NELEMS(sizes); si++)
        for (size_t sc = 0; sc < NELEMS(scales); sc++) {
            const int64_t n = sizes[si];
            const float a = scales[sc];
            float *x = grand(&rng, 1, n, n, -a, a);
            float *w = grand(&rng, 1, n, n, -1.5f, 1.5f);
            float *c = grand(&rng, 1, n, n, -1.0f, 1.0f);
            float *y = galloc(n);
            rms_ctx ctx = {x, w, c, y, n, 1e-5f};
            double *g = malloc((size_t)n * sizeof *g);
            assert_non_null(g);
            for (int64_t i = 0; i < n; i++)
                g[i] = fd(rms_f, &ctx, &x[i], 0.02 * a);
            float *ref = galloc(n);
            jq_ref_rmsnorm_backward(ref, x, w, c, n, ctx.eps);
            /* the floor: ||s w dy||, the gradient without the norm's
             * projection */
            double ss = 0.0, fl = 0.0;
            for (int64_t i = 0; i < n; i++)
                ss += (double)x[i] * x[i];
            const double sc = 1.0 / sqrt(ss / (double)n + ctx.eps);
            for (int64_t i = 0; i < n; i++)
                fl += pow(sc * w[i] * c[i], 2);
            fl = sqrt(fl);
            for (int path = 0; path < PATH_COUNT; path++) {
                if (!path_available(path))
                    continue;
                char *what = jqt_fmt("rmsnorm_backward %s n %lld scale %g",
                                     path_name[path], (long long)n, (double)a);
                float *dx = galloc(n);
                rms_bwd[path](dx, x, w, c, n, ctx.eps);
                check_guards(dx, 1, n, n, what);
                WORST(worst_fd, check_rel(what, dx, g, n, fl, FD_TOL));
                if (path != PATH_REF)
                    WORST(worst_vs, check_vs(what, dx, ref, n, fl, 1e-5));
                /* in place on dy: the same result bit for bit */
                float *inpl = galloc(n);
                memcpy(inpl, c, (size_t)n * sizeof *inpl);
                rms_bwd[path](inpl, x, w, inpl, n, ctx.eps);
                if (memcmp(inpl, dx, (size_t)n * sizeof *dx) != 0)
                    fail_msg("%s: dx aliasing dy differs", what);
                free(inpl);
                free(dx);
                free(what);
            }
            free(ref);
            free(g);
            free(x);
            free(w);
            free(c);
            free(y);
        }
    print_message("rmsnorm_backward: vs FD worst rel %.3g; vs ref %.3g\n",
                  worst_fd, worst_vs);
}

/* ============================================================ softmax */

typedef struct {
    const float *s, *c;
    float *p;
    int64_t n;
} sm_ctx;

static double sm_f(void *v)
{
    sm_ctx *r = v;
    memcpy(r->p, r->s, (size_t)r->n * sizeof *r->p);
    jq_ref_softmax(r->p, r->n);
    double f = 0.0;
    for (int64_t i = 0; i < r->n; i++)
        f += (double)r->c[i] * (double)r->p[i];
    return f;
}

typedef void (*sm_bwd_fn)(float *, const float *, const float *, int64_t);
static const sm_bwd_fn sm_bwd[PATH_COUNT] = {jq_ref_softmax_backward,
                                             jq_avx512_softmax_backward,
                                             jq_softmax_backward};

/* Tolerances: FD 1e-3; vs reference 1e-6 (only the order of the double
 * sum and FMA differ). */
static void test_softmax_backward(void **state)
{
    (void)state;
    jqt_rng rng;
    jqt_rng_seed(&rng, 202);
    double worst_fd = 0.0, worst_vs = 0.0;
    for (size_t si = 0; si < NELEMS(sizes); si++) {
        const int64_t n = sizes[si];
        /* logits spread enough that p ranges over orders of magnitude */
        float *s = grand(&rng, 1, n, n, -4.0f, 4.0f);
        float *c = grand(&rng, 1, n, n, -1.0f, 1.0f);
        float *p = galloc(n);
        sm_ctx ctx = {s, c, p, n};
        double *g = malloc((size_t)n * sizeof *g);
        assert_non_null(g);
        for (int64_t i = 0; i < n; i++)
            g[i] = fd(sm_f, &ctx, &s[i], 0.03);
        sm_f(&ctx); /* p at the unperturbed logits */
        double fl = 0.0; /* the floor: ||p dp|| */
        for (int64_t i = 0; i < n; i++)
            fl += pow((double)p[i] * c[i], 2);
        fl = sqrt(fl);
        float *ref = galloc(n);
        jq_ref_softmax_backward(ref, p, c, n);
        for (int path = 0; path < PATH_COUNT; path++) {
            if (!path_available(path))
                continue;
            char *what = jqt_fmt("softmax_backward %s n %lld",
                                 path_name[path], (long long)n);
            float *ds = galloc(n);
            sm_bwd[path](ds, p, c, n);
            check_guards(ds, 1, n, n, what);
            WORST(worst_fd, check_rel(what, ds, g, n, fl, FD_TOL));
            if (path != PATH_REF)
                WORST(worst_vs, check_vs(what, ds, ref, n, fl, 1e-6));
            /* in place on dp and on p */
            for (int alias = 0; alias < 2; alias++) {
                float *buf = galloc(n);
                memcpy(buf, alias ? p : c, (size_t)n * sizeof *buf);
                sm_bwd[path](buf, alias ? buf : p, alias ? c : buf, n);
                if (memcmp(buf, ds, (size_t)n * sizeof *ds) != 0)
                    fail_msg("%s: ds aliasing %s differs", what,
                             alias ? "p" : "dp");
                free(buf);
            }
            free(ds);
            free(what);
        }
        free(ref);
        free(g);
        free(s);
        free(c);
        free(p);
    }
    print_message("softmax_backward: vs FD worst rel %.3g; vs ref %.3g\n",
                  worst_fd, worst_vs);
}

/* =========================================================== silu_mul */

typedef struct {
    const float *g, *u, *c;
    int64_t i; /* the element being perturbed: the others do not move */
} silu_ctx;

static double silu_f(void *v)
{
    silu_ctx *r = v;
    float out;
    jq_ref_silu_mul(&out, &r->g[r->i], &r->u[r->i], 1);
    return (double)r->c[r->i] * (double)out;
}

typedef void (*silu_bwd_fn)(float *, float *, const float *, const float *,
                            const float *, int64_t);
static const silu_bwd_fn silu_bwd[PATH_COUNT] = {
    jq_ref_silu_mul_backward, jq_avx512_silu_mul_backward,
    jq_silu_mul_backward};

/* Tolerances: FD 1e-3; vs reference 1e-6 (jq_exp512 is within 1.5 ulp of
 * expf, one division becomes a reciprocal-free FMA chain: a few ulp). The
 * gates span [-20, 20] plus the saturated ends +-90 (exp(-g) overflows)
 * and 0. */
static void test_silu_mul_backward(void **state)
{
    (void)state;
    jqt_rng rng;
    jqt_rng_seed(&rng, 303);
    double worst_fd = 0.0, worst_vs = 0.0;
    for (size_t si = 0; si < NELEMS(sizes); si++) {
        const int64_t n = sizes[si];
        float *g = grand(&rng, 1, n, n, -20.0f, 20.0f);
        float *u = grand(&rng, 1, n, n, -2.0f, 2.0f);
        float *c = grand(&rng, 1, n, n, -1.0f, 1.0f);
        if (n >= 17) {
            g[3] = -90.0f;
            g[5] = 90.0f;
            g[7] = 0.0f;
            g[n - 1] = -100.0f;
        }
        double *wg = malloc((size_t)n * sizeof *wg);
        double *wu = malloc((size_t)n * sizeof *wu);
        assert_non_null(wg);
        assert_non_null(wu);
        silu_ctx ctx = {g, u, c, 0};
        for (int64_t i = 0; i < n; i++) {
            ctx.i = i;
            wg[i] = fd(silu_f, &ctx, &g[i], 0.01);
            wu[i] = fd(silu_f, &ctx, &u[i], 0.01);
        }
        float *rg = galloc(n), *ru = galloc(n);
        jq_ref_silu_mul_backward(rg, ru, g, u, c, n);
        for (int path = 0; path < PATH_COUNT; path++) {
            if (!path_available(path))
                continue;
            char *what = jqt_fmt("silu_mul_backward %s n %lld",
                                 path_name[path], (long long)n);
            float *dg = galloc(n), *du = galloc(n);
            silu_bwd[path](dg, du, g, u, c, n);
            check_guards(dg, 1, n, n, what);
            check_guards(du, 1, n, n, what);
            WORST(worst_fd, check_rel(what, dg, wg, n, 0.0, FD_TOL));
            WORST(worst_fd, check_rel(what, du, wu, n, 0.0, FD_TOL));
            if (path != PATH_REF) {
                WORST(worst_vs, check_vs(what, dg, rg, n, 0.0, 1e-6));
                WORST(worst_vs, check_vs(what, du, ru, n, 0.0, 1e-6));
            }
            /* dgate over gate, dup over up (the forward's usual aliasing) */
            float *ag = galloc(n), *au = galloc(n);
            memcpy(ag, g, (size_t)n * sizeof *ag);
            memcpy(au, u, (size_t)n * sizeof *au);
            silu_bwd[path](ag, au, ag, au, c, n);
            if (memcmp(ag, dg, (size_t)n * sizeof *ag) != 0 ||
                memcmp(au, du, (size_t)n * sizeof *au) != 0)
                fail_msg("%s: outputs aliasing inputs differ", what);
            free(ag);
            free(au);
            free(dg);
            free(du);
            free(what);
        }
        free(rg);
        free(ru);
        free(wg);
        free(wu);
        free(g);
        free(u);
        free(c);
    }
    print_message("silu_mul_backward: vs FD worst rel %.3g; vs ref %.3g\n",
                  worst_fd, worst_vs);
}

/* =============================================================== RoPE */

typedef struct {
    const float *x, *c;
    float *y;
    int n_heads, head_dim, rope_dim;
    int32_t pos;
    float base;
    const float *ff;
    bool neox;
} rope_ctx;

static double rope_f(void *v)
{
    rope_ctx *r = v;
    const int64_t n = (int64_t)r->n_heads * r->head_dim;
    memcpy(r->y, r->x, (size_t)n * sizeof *r->y);
    jq_ref_rope(r->y, r->n_heads, r->head_dim, r->rope_dim, r->pos, r->base,
                r->ff, r->neox);
    double f = 0.0;
    for (int64_t i = 0; i < n; i++)
        f += (double)r->c[i] * (double)r->y[i];
    return f;
}

typedef void (*rope_bwd_fn)(float *, int, int, int, int32_t, float,
                            const float *, bool);
static const rope_bwd_fn rope_bwd[PATH_COUNT] = {
    jq_ref_rope_backward, jq_avx512_rope_backward, jq_rope_backward};

/* Tolerances: FD 1e-3 (RoPE is linear, so the differences are exact but
 * for the forward's rounding); vs reference 1e-6 (same angle table, FMA
 * rounding). Also: backward(forward(x)) == x to 1e-6, the rotation being
 * orthogonal. */
static void test_rope_backward(void **state)
{
    (void)state;
    jqt_rng rng;
    jqt_rng_seed(&rng, 404);
    static const struct {
        int n_heads, head_dim, rope_dim;
    } shapes[] = {{1, 8, 8}, {3, 15, 14}, {2, 15, 6}, {4, 64, 64},
                  {2, 64, 32}, {1, 256, 256}};
    static const int32_t positions[] = {0, 7, 1000, 131071};
    double worst_fd = 0.0, worst_vs = 0.0, worst_rt = 0.0;
    for (size_t sh = 0; sh < NELEMS(shapes); sh++)
        for (size_t pi = 0; pi < NELEMS(positions); pi++)
            for (int variant = 0; variant < 4; variant++) {
                const bool neox = variant & 1;
                const int nh = shapes[sh].n_heads, hd = shapes[sh].head_dim;
                const int rd = shapes[sh].rope_dim;
                const int64_t n = (int64_t)nh * hd;
                float *ff = NULL;
                if (variant & 2)
                    ff = grand(&rng, 1, rd / 2, rd / 2, 1.0f, 8.0f);
                float *x = grand(&rng, 1, n, n, -1.0f, 1.0f);
                float *c = grand(&rng, 1, n, n, -1.0f, 1.0f);
                float *y = galloc(n);
                rope_ctx ctx = {x, c, y, nh, hd, rd, positions[pi], 10000.0f,
                                ff, neox};
                double *g = malloc((size_t)n * sizeof *g);
                assert_non_null(g);
                for (int64_t i = 0; i < n; i++)
                    g[i] = fd(rope_f, &ctx, &x[i], 0.05);
                float *ref = galloc(n);
                memcpy(ref, c, (size_t)n * sizeof *ref);
                jq_ref_rope_backward(ref, nh, hd, rd, positions[pi],
                                     10000.0f, ff, neox);
                for (int path = 0; path < PATH_COUNT; path++) {
                    if (!path_available(path))
                        continue;
                    char *what = jqt_fmt(
                        "rope_backward %s heads %d hd %d rope %d pos %d%s%s",
                        path_name[path], nh, hd, rd, (int)positions[pi],
                        neox ? " neox" : "", ff ? " ff" : "");
                    float *dx = galloc(n);
                    memcpy(dx, c, (size_t)n * sizeof *dx);
                    rope_bwd[path](dx, nh, hd, rd, positions[pi], 10000.0f,
                                   ff, neox);
                    check_guards(dx, 1, n, n, what);
                    WORST(worst_fd, check_rel(what, dx, g, n, 0.0, FD_TOL));
                    if (path != PATH_REF)
                        WORST(worst_vs, check_vs(what, dx, ref, n, 0.0, 1e-6));
                    /* the transpose undoes the forward */
                    memcpy(dx, x, (size_t)n * sizeof *dx);
                    jq_rope(dx, nh, hd, rd, positions[pi], 10000.0f, ff,
                            neox);
                    rope_bwd[path](dx, nh, hd, rd, positions[pi], 10000.0f,
                                   ff, neox);
                    WORST(worst_rt, check_vs(what, dx, x, n, 0.0, 1e-6));
                    free(dx);
                    free(what);
                }
                free(ref);
                free(g);
                free(x);
                free(c);
                free(y);
                free(ff);
            }
    print_message("rope_backward: vs FD worst rel %.3g; vs ref %.3g; "
                  "round trip %.3g\n",
                  worst_fd, worst_vs, worst_rt);
}

/* ====================================================== matmul dX */

typedef void (*mm_bwd_fn)(uint32_t, const void *, int64_t, const float *,
                          int64_t, int64_t, float *, int64_t, int64_t,
                          int64_t, float *);
static const mm_bwd_fn mm_bwd[PATH_COUNT] = {jq_ref_matmul_backward_x,
                                             jq_avx512_matmul_backward_x,
                                             jq_matmul_backward_x};

typedef struct {
    uint32_t type;
    int64_t K, R, M, ldy, ldx;
    unsigned char *W; /* R rows of `type` */
    float *wf;        /* the same rows dequantized (R x K) */
    float *dY;        /* M x ldy */
    float *x0;        /* M x ldx, the initial dX (guards in the gaps) */
    double *want;     /* M x K: x0 + dY . W in double */
    double *bound;    /* M x K: the float summation bound */
} mm_case;

/* Every element of dX is x0 plus a float sum of R products added in
 * ascending order (two roundings per step, one with FMA): the classic
 * recursive-summation bound 2 (R + 1) u (|x0| + sum |dY W|), u = 2^-24. */
static void mm_case_init(mm_case *m, jqt_rng *rng, uint32_t type, int64_t K,
                         int64_t R, int64_t M)
{
    m->type = type;
    m->K = K;
    m->R = R;
    m->M = M;
    m->ldy = R + 2;
    m->ldx = K + 3;
    const size_t rb = jq_row_bytes(type, K);
    assert_true(rb > 0);
    m->W = malloc(rb * (size_t)R);
    m->wf = malloc((size_t)(R * K) * sizeof *m->wf);
    float *tmp = malloc((size_t)K * sizeof *tmp);
    assert_non_null(m->W);
    assert_non_null(m->wf);
    assert_non_null(tmp);
    for (int64_t r = 0; r < R; r++) {
        jqt_fill_uniform(rng, tmp, (size_t)K, -1.0f, 1.0f);
        jq_quantize_row(type, tmp, m->W + (size_t)r * rb, K);
        jq_ref_dequantize_row(type, m->W + (size_t)r * rb, m->wf + r * K, K);
    }
    free(tmp);
    m->dY = grand(rng, M, m->ldy, R, -1.0f, 1.0f);
    m->x0 = grand(rng, M, m->ldx, K, -1.0f, 1.0f);
    m->want = malloc((size_t)(M * K) * sizeof *m->want);
    m->bound = malloc((size_t)(M * K) * sizeof *m->bound);
    assert_non_null(m->want);
    assert_non_null(m->bound);
    for (int64_t i = 0; i < M; i++)
        for (int64_t c = 0; c < K; c++) {
            const double x = m->x0[i * m->ldx + c];
            double s = x, a = fabs(x);
            for (int64_t r = 0; r < R; r++) {
                const double t = (double)m->dY[i * m->ldy + r] *
                                 (double)m->wf[r * K + c];
                s += t;
                a += fabs(t);
            }
            m->want[i * K + c] = s;
            m->bound[i * K + c] = 2.0 * (double)(R + 1) * 0x1p-24 * a;
        }
}

static void mm_case_free(mm_case *m)
{
    free(m->W);
    free(m->wf);
    free(m->dY);
    free(m->x0);
    free(m->want);
    free(m->bound);
}

/* got (M x ldx) against want + offset (offset: the initial dX that got
 * did not start from, or NULL); returns the largest error in bounds. */
static double mm_check(const mm_case *m, const float *got,
                       const float *offset, const char *what)
{
    double worst = 0.0;
    for (int64_t i = 0; i < m->M; i++)
        for (int64_t c = 0; c < m->K; c++) {
            const double g = (double)got[i * m->ldx + c] +
                             (offset ? (double)offset[i * m->ldx + c] : 0.0);
            const double w = m->want[i * m->K + c];
            const double b = m->bound[i * m->K + c];
            if (!(fabs(g - w) <= b))
                fail_msg("%s: dX[%lld][%lld] = %.9g, want %.9g (bound %.3g)",
                         what, (long long)i, (long long)c, g, w, b);
            const double e = fabs(g - w) / b;
            WORST(worst, e);
        }
    return worst;
}

static float *mm_copy_x0(const mm_case *m)
{
    float *p = galloc(m->M * m->ldx);
    memcpy(p, m->x0, (size_t)(m->M * m->ldx) * sizeof *p);
    return p;
}

/* Tolerance: each dX element within the recursive-summation bound above of
 * the exact double result (the measured fraction of the bound is
 * printed); the range split must add up to the same within the bound. */
static void test_matmul_backward_x(void **state)
{
    (void)state;
    jqt_rng rng;
    jqt_rng_seed(&rng, 505);
    static const uint32_t types[] = {JQ_TYPE_F32, JQ_TYPE_F16, JQ_TYPE_BF16,
                                     JQ_TYPE_Q8_0};
    static const int64_t plain_k[] = {1, 15, 17, 64, 4097};
    static const int64_t q8_k[] = {32, 64, 4128};
    static const int64_t rows[] = {1, 17, 67};
    static const int64_t ms[] = {1, 5, 32};
    double worst = 0.0, worst_vs = 0.0;
    for (size_t ti = 0; ti < NELEMS(types); ti++) {
        const bool q8 = types[ti] == JQ_TYPE_Q8_0;
        const size_t nk = q8 ? NELEMS(q8_k) : NELEMS(plain_k);
        for (size_t ki = 0; ki < nk; ki++)
            for (size_t ri = 0; ri < NELEMS(rows); ri++)
                for (size_t mi = 0; mi < NELEMS(ms); mi++) {
                    mm_case m;
                    const int64_t K = q8 ? q8_k[ki] : plain_k[ki];
                    mm_case_init(&m, &rng, types[ti], K, rows[ri], ms[mi]);
                    float *scratch = galloc(K);
                    float *ref = mm_copy_x0(&m);
                    jq_ref_matmul_backward_x(m.type, m.W, K, m.dY, m.ldy, m.M,
                                             ref, m.ldx, 0, m.R, scratch);
                    for (int path = 0; path < PATH_COUNT; path++) {
                        if (!path_available(path))
                            continue;
                        char *what = jqt_fmt(
                            "matmul_backward_x %s %s K %lld R %lld M %lld",
                            path_name[path], jq_type_traits_get(m.type)->name,
                            (long long)K, (long long)m.R, (long long)m.M);
                        float *dx = mm_copy_x0(&m);
                        mm_bwd[path](m.type, m.W, K, m.dY, m.ldy, m.M, dx,
                                     m.ldx, 0, m.R, scratch);
                        check_guards(dx, m.M, m.ldx, K, what);
                        check_guards(scratch, 1, K, K, what);
                        WORST(worst, mm_check(&m, dx, NULL, what));
                        if (path != PATH_REF) {
                            /* the same sum order, FMA rounding only: far
                             * inside the summation bound of each other */
                            for (int64_t i = 0; i < m.M; i++)
                                for (int64_t c = 0; c < K; c++) {
                                    const double d = fabs(
                                        (double)dx[i * m.ldx + c] -
                                        (double)ref[i * m.ldx + c]);
                                    const double e = d / m.bound[i * K + c];
                                    if (!(e <= 1.0))
                                        fail_msg("%s: dX[%lld][%lld] %.9g vs "
                                                 "ref %.9g",
                                                 what, (long long)i,
                                                 (long long)c,
                                                 (double)dx[i * m.ldx + c],
                                                 (double)ref[i * m.ldx + c]);
                                    WORST(worst_vs, e);
                                }
                        }
                        /* [0, a) + [a, b) + [b, R) into private zeroed dX,
                         * plus the empty range, which must not write */
                        const int64_t a = m.R / 3, b = m.R - m.R / 4;
                        const int64_t cuts[4] = {0, a, b, m.R};
                        float *sum = mm_copy_x0(&m);
                        for (int part = 0; part < 3; part++) {
                            float *priv = mm_copy_x0(&m);
                            for (int64_t i = 0; i < m.M; i++)
                                memset(priv + i * m.ldx, 0,
                                       (size_t)K * sizeof *priv);
                            mm_bwd[path](m.type, m.W, K, m.dY, m.ldy, m.M,
                                         priv, m.ldx, cuts[part],
                                         cuts[part + 1], scratch);
                            mm_bwd[path](m.type, m.W, K, m.dY, m.ldy, m.M,
                                         priv, m.ldx, cuts[part + 1],
                                         cuts[part + 1], scratch);
                            check_guards(priv, m.M, m.ldx, K, what);
                            for (int64_t i = 0; i < m.M; i++)
                                for (int64_t c = 0; c < K; c++)
                                    sum[i * m.ldx + c] += priv[i * m.ldx + c];
                            free(priv);
                        }
                        WORST(worst, mm_check(&m, sum, NULL, what));
                        free(sum);
                        free(dx);
                        free(what);
                    }
                    free(ref);
                    free(scratch);
                    mm_case_free(&m);
                }
    }
    print_message("matmul_backward_x: worst error %.3g of the summation "
                  "bound; avx512/dispatch vs ref %.3g of it\n",
                  worst, worst_vs);
}

/* ========================================================= attention */

/* One case: hd, n_q, n_kv, causal_base, the first trainable key kgrad0,
 * n_pe keys with a direct probability gradient (0: dp_extra = NULL). */
typedef struct {
    int hd;
    int64_t n_q, n_kv, cb, kgrad0, n_pe;
    int64_t ld, lddo, ldpe, ldp, ldqo, lddk;
    float scale;
    float *q, *k, *v, *c, *e;
    /* forward outputs at the unperturbed point, and row scratch */
    float *p, *out_row, *p_row, *fscratch;
    int64_t row0, row1; /* rows f sums over (the rows a perturbation moves) */
} att_case;

/* Row i through the reference forward, one row per call (causal_base
 * shifted by i, so the row sees what it sees in the full call), its
 * probabilities taken from the scoring output. */
static void att_forward_row(att_case *a, int64_t i, float *out, float *prow)
{
    memset(prow, 0, (size_t)a->n_kv * sizeof *prow);
    const jq_attn_args f = {
        .q = a->q + i * a->ld, .ldq = a->ld, .n_q = 1,
        .kv_type = JQ_TYPE_F32, .k = a->k, .v = a->v, .ldk = a->ld,
        .ldv = a->ld, .n_kv = a->n_kv, .head_dim = a->hd, .scale = a->scale,
        .causal_base = a->cb + i, .out = out, .ldo = a->hd,
        .scratch = a->fscratch, .score = prow, .score_row0 = 0,
        .score_row1 = 1, .n_score = a->n_kv};
    jq_ref_attention_ex(&f);
}

/* f = sum_i c_i . out_i + sum_{i, j < n_pe} e_ij p_ij over rows
 * [row0, row1). */
static double att_f(void *v)
{
    att_case *a = v;
    double f = 0.0;
    for (int64_t i = a->row0; i < a->row1; i++) {
        att_forward_row(a, i, a->out_row, a->p_row);
        for (int d = 0; d < a->hd; d++)
            f += (double)a->c[i * a->lddo + d] * (double)a->out_row[d];
        for (int64_t j = 0; j < a->n_pe; j++)
            f += (double)a->e[i * a->ldpe + j] * (double)a->p_row[j];
    }
    return f;
}

typedef void (*att_bwd_fn)(const jq_attn_bwd_args *);
static const att_bwd_fn att_bwd[PATH_COUNT] = {jq_ref_attention_backward,
                                               jq_avx512_attention_backward,
                                               jq_attention_backward};

typedef struct {
    float *dq, *dk, *dv, *scratch;
} att_grads;

static void att_run(const att_case *a, att_bwd_fn fn, att_grads *g,
                    const float *dk0, const float *dv0, bool with_dkv)
{
    const int64_t ns = a->n_kv - a->kgrad0;
    g->dq = galloc(a->n_q * a->ldqo);
    g->dk = galloc(ns * a->lddk);
    g->dv = galloc(ns * a->lddk);
    g->scratch = galloc(a->n_kv);
    /* dk/dv accumulate into dk0/dv0 (the gaps stay guards) */
    for (int64_t j = 0; j < ns; j++)
        for (int d = 0; d < a->hd; d++) {
            g->dk[j * a->lddk + d] = dk0[j * a->lddk + d];
            g->dv[j * a->lddk + d] = dv0[j * a->lddk + d];
        }
    const jq_attn_bwd_args b = {
        .q = a->q, .ldq = a->ld, .n_q = a->n_q, .k = a->k, .v = a->v,
        .ldk = a->ld, .ldv = a->ld, .n_kv = a->n_kv, .head_dim = a->hd,
        .scale = a->scale, .causal_base = a->cb, .p = a->p, .ldp = a->ldp,
        .dout = a->c, .lddo = a->lddo,
        .dp_extra = a->n_pe > 0 ? a->e : NULL, .ldpe = a->ldpe,
        .n_pe = a->n_pe, .dq = g->dq, .ldq_out = a->ldqo,
        .dk = with_dkv ? g->dk : NULL, .dv = with_dkv ? g->dv : NULL,
        .lddk = a->lddk, .lddv = a->lddk, .kgrad0 = a->kgrad0,
        .scratch = g->scratch};
    fn(&b);
}

static void att_grads_free(att_grads *g)
{
    free(g->dq);
    free(g->dk);
    free(g->dv);
    free(g->scratch);
}

/* Up to `cap` distinct indices of [0, n), in random order. */
static int64_t sample(jqt_rng *rng, int64_t n, int64_t cap, int64_t *idx)
{
    for (int64_t i = 0; i < n; i++)
        idx[i] = i;
    const int64_t m = n < cap ? n : cap;
    for (int64_t i = 0; i < m; i++) {
        const int64_t j = i + (int64_t)(jqt_rng_u64(rng) % (uint64_t)(n - i));
        const int64_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
    return m;
}

typedef struct {
    double fd, vs;
} att_worst;

/* AVX-512 / dispatch vs reference, norm-wise over each gradient matrix:
 * dp sums in float lanes (the reference in double) and ds = p (dp - p.dp)
 * cancels, so a single row can differ by ~1e-5 relative; measured 4e-7
 * over whole matrices. */
#define ATT_VS_TOL 1e-5

/* Tolerances: FD 1e-3 on dq, dk, dv; AVX-512 and dispatch vs reference
 * 1e-5 (float-lane dot products instead of double, FMA). */
/* Steps: a key's or value's perturbation moves every row's output, whose
 * float sums over up to 300 keys carry ~1e-7 relative noise, against a
 * gradient that for a weakly attended key (p ~ 1e-4) is ~1e-5: the step
 * must be large, so the sixth-order stencil (truncation ~ (scale q h)^6,
 * < 1e-5 here) with h = 0.75; a query's row is one row, h = 0.15. The
 * worst case seen while choosing the steps (with twice the samples), a
 * single trainable key among 300 (n_q 1), was at 4.4e-4; every other case
 * is below 1e-4. */
#define FD_H_KV 0.75
#define FD_H_Q 0.15
static void att_case_run(jqt_rng *rng, int hd, int64_t n_q, int64_t n_kv,
                         int variant, att_worst *worst)
{
    att_case a = {.hd = hd, .n_q = n_q, .n_kv = n_kv};
    switch (variant) {
    case 0: /* the trainer: n_q soft rows appended after the prompt */
        a.cb = n_kv - n_q;
        a.kgrad0 = n_kv > n_q ? n_kv - n_q : 0;
        a.n_pe = a.kgrad0 > 0 ? a.kgrad0 : 1;
        break;
    case 1: /* no mask, half the keys trainable, dp_extra on all */
        a.cb = n_kv - 1;
        a.kgrad0 = n_kv / 2;
        a.n_pe = n_kv;
        break;
    default: /* the first rows see nothing; no dp_extra */
        a.cb = -2;
        a.kgrad0 = n_kv / 3;
        a.n_pe = 0;
        break;
    }
    a.ld = hd + 3;
    a.lddo = hd + 1;
    a.ldpe = (a.n_pe > 0 ? a.n_pe : 1) + 2;
    a.ldp = n_kv + 1;
    a.ldqo = hd + 2;
    a.lddk = hd + 1;
    a.scale = 1.0f / sqrtf((float)hd);
    a.q = grand(rng, n_q, a.ld, hd, -2.0f, 2.0f);
    a.k = grand(rng, n_kv, a.ld, hd, -2.0f, 2.0f);
    a.v = grand(rng, n_kv, a.ld, hd, -1.0f, 1.0f);
    a.c = grand(rng, n_q, a.lddo, hd, -1.0f, 1.0f);
    a.e = grand(rng, n_q, a.ldpe, a.n_pe > 0 ? a.n_pe : 1, -1.0f, 1.0f);
    a.p = galloc(n_q * a.ldp);
    a.out_row = galloc(hd);
    a.p_row = galloc(n_kv);
    a.fscratch = galloc(n_kv);
    for (int64_t i = 0; i < n_q; i++) {
        att_forward_row(&a, i, a.out_row, a.p_row);
        memcpy(a.p + i * a.ldp, a.p_row, (size_t)n_kv * sizeof *a.p);
    }
    const int64_t ns = n_kv - a.kgrad0;
    /* dk/dv start at zero for the FD check (a gradient ~1e-5, as a soft
     * key's among 300, added to O(1) would keep 2 digits); accumulation
     * is checked separately below */
    float *dk0 = grand(rng, ns, a.lddk, hd, 0.0f, 0.0f);
    /* p_ij |dp_ij| in double, for the gradient-scale floor of dq and dk
     * (the softmax projection cancels them to ~0 over one key) */
    double *pdp = calloc((size_t)(n_q * n_kv), sizeof *pdp);
    assert_non_null(pdp);
    for (int64_t i = 0; i < n_q; i++)
        for (int64_t j = 0; j < n_kv; j++) {
            double dp = j < a.n_pe ? a.e[i * a.ldpe + j] : 0.0;
            for (int d = 0; d < hd; d++)
                dp += (double)a.c[i * a.lddo + d] * a.v[j * a.ld + d];
            pdp[i * n_kv + j] = a.p[i * a.ldp + j] * fabs(dp);
        }

    /* analytic gradients on every path */
    att_grads g[PATH_COUNT];
    for (int path = 0; path < PATH_COUNT; path++)
        if (path_available(path))
            att_run(&a, att_bwd[path], &g[path], dk0, dk0, true);

    /* finite differences on a sample of the inputs: all of them when few,
     * otherwise as many as a budget of forward work allows */
    const double row_cost = (double)n_kv * hd + 1.0;
    const int64_t cap_q = 128;
    int64_t cap_kv = (int64_t)(6e6 / (row_cost * (double)n_q));
    cap_kv = cap_kv < 24 ? 24 : cap_kv;
    const int64_t nmax = (n_q > ns ? n_q : ns) * hd;
    int64_t *idx = malloc((size_t)nmax * sizeof *idx);
    double *want = malloc((size_t)nmax * sizeof *want);
    float *got = malloc((size_t)nmax * sizeof *got);
    assert_non_null(idx);
    assert_non_null(want);
    assert_non_null(got);
    for (int which = 0; which < 3; which++) { /* dq, dk, dv */
        if (which > 0 && ns == 0)
            continue;
        const int64_t rows = which == 0 ? n_q : ns;
        const int64_t m = sample(rng, rows * hd, which == 0 ? cap_q : cap_kv,
                                 idx);
        for (int64_t t = 0; t < m; t++) {
            const int64_t r = idx[t] / hd, d = idx[t] % hd;
            float *x;
            if (which == 0) {
                x = &a.q[r * a.ld + d];
                a.row0 = r;
                a.row1 = r + 1;
            } else {
                const int64_t j = a.kgrad0 + r;
                x = which == 1 ? &a.k[j * a.ld + d] : &a.v[j * a.ld + d];
                a.row0 = j - a.cb > 0 ? j - a.cb : 0; /* rows that see j */
                a.row1 = n_q;
            }
            want[t] = fd_n(att_f, &a, x, which == 0 ? FD_H_Q : FD_H_KV, 6);
        }
        double fl = 0.0;
        for (int64_t t = 0; t < m && which < 2; t++) {
            const int64_t r = idx[t] / hd, d = idx[t] % hd;
            double term = 0.0;
            if (which == 0)
                for (int64_t j = 0; j < n_kv; j++)
                    term += pdp[r * n_kv + j] * fabs(a.k[j * a.ld + d]);
            else
                for (int64_t i = 0; i < n_q; i++)
                    term += pdp[i * n_kv + a.kgrad0 + r] *
                            fabs(a.q[i * a.ld + d]);
            fl += pow(a.scale * term, 2);
        }
        fl = sqrt(fl);
        for (int path = 0; path < PATH_COUNT; path++) {
            if (!path_available(path))
                continue;
            const float *src = which == 0 ? g[path].dq
                               : which == 1 ? g[path].dk
                                            : g[path].dv;
            const int64_t lds = which == 0 ? a.ldqo : a.lddk;
            char *what = jqt_fmt(
                "attention_backward %s %s hd %d n_q %lld n_kv %lld base %lld "
                "kgrad0 %lld n_pe %lld",
                path_name[path], which == 0 ? "dq" : which == 1 ? "dk" : "dv",
                hd, (long long)n_q, (long long)n_kv, (long long)a.cb,
                (long long)a.kgrad0, (long long)a.n_pe);
            for (int64_t t = 0; t < m; t++) {
                const int64_t r = idx[t] / hd, d = idx[t] % hd;
                got[t] = src[r * lds + d];
            }
            WORST(worst->fd, check_rel(what, got, want, m, fl, FD_TOL));
            check_guards(src, rows, lds, hd, what);
            if (path != PATH_REF)
                WORST(worst->vs,
                      check_mat_vs(what, src,
                                   which == 0   ? g[PATH_REF].dq
                                   : which == 1 ? g[PATH_REF].dk
                                                : g[PATH_REF].dv,
                                   rows, lds, hd, ATT_VS_TOL));
            free(what);
        }
    }
    /* dk/dv accumulate: starting from the first result gives twice it
     * (to rounding: the second sum starts from the first) */
    for (int path = 0; path < PATH_COUNT && ns > 0; path++) {
        if (!path_available(path))
            continue;
        att_grads h;
        att_run(&a, att_bwd[path], &h, g[path].dk, g[path].dv, true);
        for (int64_t j = 0; j < ns; j++)
            for (int d = 0; d < hd; d++) {
                g[path].dk[j * a.lddk + d] *= 2.0f;
                g[path].dv[j * a.lddk + d] *= 2.0f;
            }
        char *what = jqt_fmt("attention_backward %s accumulate",
                             path_name[path]);
        for (int64_t j = 0; j < ns; j++) {
            check_vs(what, h.dk + j * a.lddk, g[path].dk + j * a.lddk, hd,
                     0.0, 1e-5);
            check_vs(what, h.dv + j * a.lddk, g[path].dv + j * a.lddk, hd,
                     0.0, 1e-5);
        }
        free(what);
        att_grads_free(&h);
    }
    /* dk = dv = NULL: the same dq, nothing else written */
    for (int path = 0; path < PATH_COUNT; path++) {
        if (!path_available(path))
            continue;
        att_grads h;
        att_run(&a, att_bwd[path], &h, dk0, dk0, false);
        if (memcmp(h.dq, g[path].dq,
                   (size_t)(n_q * a.ldqo) * sizeof *h.dq) != 0)
            fail_msg("attention_backward %s: dq differs without dk/dv",
                     path_name[path]);
        if (memcmp(h.dk, dk0, (size_t)(ns * a.lddk) * sizeof *h.dk) != 0 ||
            memcmp(h.dv, dk0, (size_t)(ns * a.lddk) * sizeof *h.dv) != 0)
            fail_msg("attention_backward %s: dk/dv written when NULL",
                     path_name[path]);
        check_guards(h.scratch, 1, n_kv, n_kv, "attention_backward scratch");
        att_grads_free(&h);
    }
    for (int path = 0; path < PATH_COUNT; path++)
        if (path_available(path))
            att_grads_free(&g[path]);
    free(pdp);
    free(idx);
    free(want);
    free(got);
    free(dk0);
    free(a.q);
    free(a.k);
    free(a.v);
    free(a.c);
    free(a.e);
    free(a.p);
    free(a.out_row);
    free(a.p_row);
    free(a.fscratch);
}

static void test_attention_backward(void **state)
{
    (void)state;
    jqt_rng rng;
    jqt_rng_seed(&rng, 606);
    static const int hds[] = {8, 15, 64};
    static const int64_t nqs[] = {1, 5, 32};
    static const int64_t nkvs[] = {1, 17, 300};
    att_worst w = {0, 0};
    for (size_t hi = 0; hi < NELEMS(hds); hi++)
        for (size_t qi = 0; qi < NELEMS(nqs); qi++)
            for (size_t ki = 0; ki < NELEMS(nkvs); ki++)
                for (int variant = 0; variant < 3; variant++)
                    att_case_run(&rng, hds[hi], nqs[qi], nkvs[ki], variant,
                                 &w);
    print_message("attention_backward: vs FD worst rel %.3g; vs ref %.3g\n",
                  w.fd, w.vs);
}

/* ============================================================ timing */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Best of `reps` runs of the reference and of the AVX-512 path, in ms, on
 * the trainer's shapes. Only with JUDGEQ_BENCH=1 (timings are not a
 * pass/fail matter, and the ASan build would take minutes). */
/* ================================================ training attention rows */

typedef float (*lse_fn)(float *, int64_t, float);
static const lse_fn lse_fwd[PATH_COUNT] = {
    jq_ref_softmax_lse, jq_avx512_softmax_lse, jq_softmax_lse};
typedef void (*lse_bwd_fn)(float *, float *, int64_t, float, float, float);
static const lse_bwd_fn lse_bwd[PATH_COUNT] = {
    jq_ref_softmax_lse_backward, jq_avx512_softmax_lse_backward,
    jq_softmax_lse_backward};

/* jq_softmax_lse against double: p = softmax(scale s) and the log-sum-exp;
 * jq_softmax_lse_backward against double: p = exp(scale s - lse), ds =
 * p (dp - d). Tolerances: 1e-6 relative (expf or jq_exp512, <= 1.5 ulp,
 * and float products: a few ulp per element); the lse 1e-6 absolute (a
 * float near |lse| <= 10). Both paths, guards after every output. */
static void test_softmax_lse(void **state)
{
    (void)state;
    jqt_rng rng;
    jqt_rng_seed(&rng, 77);
    const float scale = 0.17677669f; /* 1/sqrt(32) */
    double worst = 0.0;
    for (size_t si = 0; si < NELEMS(sizes); si++) {
        const int64_t n = sizes[si];
        float *s = grand(&rng, 1, n, n, -30.0f, 30.0f);
        float *dp = grand(&rng, 1, n, n, -1.0f, 1.0f);
        double *p_want = malloc((size_t)n * sizeof *p_want);
        double *ds_want = malloc((size_t)n * sizeof *ds_want);
        assert_true(p_want && ds_want);
        double max = -INFINITY, sum = 0.0;
        for (int64_t j = 0; j < n; j++)
            max = (double)(s[j] * scale) > max ? (double)(s[j] * scale) : max;
        for (int64_t j = 0; j < n; j++)
            sum += exp((double)(s[j] * scale) - max);
        const double lse_want = max + log(sum);
        const float d = 0.3f;
        for (int64_t j = 0; j < n; j++) {
            p_want[j] = exp((double)(s[j] * scale) - lse_want);
            ds_want[j] = p_want[j] * ((double)dp[j] - d);
        }
        for (int path = 0; path < PATH_COUNT; path++) {
            if (!path_available(path))
                continue;
            char *what = jqt_fmt("softmax_lse %s n %lld", path_name[path],
                                 (long long)n);
            float *p = galloc(n);
            memcpy(p, s, (size_t)n * sizeof *p);
            const float lse = lse_fwd[path](p, n, scale);
            check_guards(p, 1, n, n, what);
            assert_float_equal(lse, lse_want, 1e-6 * (1 + fabs(lse_want)));
            WORST(worst, check_rel(what, p, p_want, n, 0.0, 1e-6));
            /* backward from the raw scores and that lse */
            float *p2 = galloc(n), *g = galloc(n);
            memcpy(p2, s, (size_t)n * sizeof *p2);
            memcpy(g, dp, (size_t)n * sizeof *g);
            lse_bwd[path](p2, g, n, scale, (float)lse_want, d);
            check_guards(p2, 1, n, n, what);
            check_guards(g, 1, n, n, what);
            WORST(worst, check_rel(what, p2, p_want, n, 0.0, 1e-6));
            WORST(worst, check_rel(what, g, ds_want, n, 1e-30, 1e-6));
            free(p);
            free(p2);
            free(g);
            free(what);
        }
        free(s);
        free(dp);
        free(p_want);
        free(ds_want);
    }
    print_message("softmax_lse: worst rel %.3g\n", worst);
}

static void test_backward_timing(void **state)
{
    (void)state;
    if (!getenv("JUDGEQ_BENCH") || !jq_cpu_has_avx512())
        skip();
    jqt_rng rng;
    jqt_rng_seed(&rng, 707);
    /* attention: 32 soft rows after a 992-token prompt, head_dim 64 */
    {
        const int hd = 64;
        const int64_t nq = 32, nkv = 1024, ld = hd;
        float *q = grand(&rng, nq, ld, hd, -1, 1);
        float *k = grand(&rng, nkv, ld, hd, -1, 1);
        float *v = grand(&rng, nkv, ld, hd, -1, 1);
        float *dout = grand(&rng, nq, ld, hd, -1, 1);
        float *pe = grand(&rng, nq, nkv, nkv, -1, 1);
        float *p = grand(&rng, nq, nkv, nkv, 0, 1.0f / 512);
        float *dq = galloc(nq * ld), *dk = galloc(nq * ld), *dv = galloc(nq * ld);
        float *scratch = galloc(nkv);
        const jq_attn_bwd_args b = {
            .q = q, .ldq = ld, .n_q = nq, .k = k, .v = v, .ldk = ld,
            .ldv = ld, .n_kv = nkv, .head_dim = hd, .scale = 0.125f,
            .causal_base = nkv - nq, .p = p, .ldp = nkv, .dout = dout,
            .lddo = ld, .dp_extra = pe, .ldpe = nkv, .n_pe = nkv - nq,
            .dq = dq, .ldq_out = ld, .dk = dk, .dv = dv, .lddk = ld,
            .lddv = ld, .kgrad0 = nkv - nq, .scratch = scratch};
        double best[2] = {1e9, 1e9};
        for (int rep = 0; rep < 20; rep++)
            for (int path = 0; path < 2; path++) {
                memset(dk, 0, (size_t)(nq * ld) * sizeof *dk);
                memset(dv, 0, (size_t)(nq * ld) * sizeof *dv);
                const double t0 = now_s();
                (path ? jq_avx512_attention_backward
                      : jq_ref_attention_backward)(&b);
                const double t = now_s() - t0;
                best[path] = t < best[path] ? t : best[path];
            }
        print_message("attention_backward n_q 32 n_kv 1024 hd 64: ref %.3f ms, "
                      "avx512 %.3f ms (%.1fx)\n",
                      1e3 * best[0], 1e3 * best[1], best[0] / best[1]);
        free(q);
        free(k);
        free(v);
        free(dout);
        free(pe);
        free(p);
        free(dq);
        free(dk);
        free(dv);
        free(scratch);
    }
    /* matmul_backward_x, M = 32, both orientations of a 2048 x 8192 */
    static const uint32_t types[] = {JQ_TYPE_F32, JQ_TYPE_Q8_0};
    static const int64_t shapes[][2] = {{2048, 8192}, {8192, 2048}};
    for (size_t ti = 0; ti < NELEMS(types); ti++)
        for (size_t si = 0; si < NELEMS(shapes); si++) {
            const int64_t R = shapes[si][0], K = shapes[si][1], M = 32;
            const size_t rb = jq_row_bytes(types[ti], K);
            unsigned char *W = malloc(rb * (size_t)R);
            float *row = malloc((size_t)K * sizeof *row);
            assert_non_null(W);
            assert_non_null(row);
            for (int64_t r = 0; r < R; r++) {
                jqt_fill_uniform(&rng, row, (size_t)K, -1, 1);
                jq_quantize_row(types[ti], row, W + (size_t)r * rb, K);
            }
            float *dY = grand(&rng, M, R, R, -1, 1);
            float *dX = galloc(M * K);
            double best[2] = {1e9, 1e9};
            for (int rep = 0; rep < 3; rep++)
                for (int path = 0; path < 2; path++) {
                    memset(dX, 0, (size_t)(M * K) * sizeof *dX);
                    const double t0 = now_s();
                    (path ? jq_avx512_matmul_backward_x
                          : jq_ref_matmul_backward_x)(types[ti], W, K, dY, R,
                                                      M, dX, K, 0, R, row);
                    const double t = now_s() - t0;
                    best[path] = t < best[path] ? t : best[path];
                }
            print_message("matmul_backward_x %s %lld rows x %lld cols, M 32: "
                          "ref %.1f ms, avx512 %.1f ms (%.1fx, %.1f GFLOP/s)\n",
                          jq_type_traits_get(types[ti])->name, (long long)R,
                          (long long)K, 1e3 * best[0], 1e3 * best[1],
                          best[0] / best[1],
                          2.0 * (double)(R * K * M) / best[1] * 1e-9);
            free(W);
            free(row);
            free(dY);
            free(dX);
        }
}

int main(void)
{
    jq_kernels_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm_backward),
        cmocka_unit_test(test_softmax_backward),
        cmocka_unit_test(test_silu_mul_backward),
        cmocka_unit_test(test_rope_backward),
        cmocka_unit_test(test_matmul_backward_x),
        cmocka_unit_test(test_attention_backward),
        cmocka_unit_test(test_softmax_lse),
        cmocka_unit_test(test_backward_timing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
