/* test_soft_train.c — the soft-token trainer.
 *
 * Gradient: the analytic dE of jq_soft_loss_grad (float32, the engine's
 * kernels) against central finite differences of the same loss computed in
 * double precision by tests/naive_llama.c (an independent forward pass with
 * whole attention matrices). The finite differences perturb the float soft
 * embedding by h = 1e-3 (x max(1, |e|)) and divide by the exact difference
 * of the two perturbed floats, so the only errors are the O(h^2) truncation
 * (~1e-6 relative here) and the float32 rounding of the analytic side. The
 * tolerance: per coordinate |g - fd| / max(|g|, |fd|, 1e-3 max|fd|) < 1e-3
 * (coordinates a thousand times smaller than the largest are compared on
 * the largest's scale, where float32 rounding of the forward pass would
 * otherwise dominate a relative measure).
 *
 * Forward: the scores the trainer computes over the soft rows equal
 * jq_prefill_scores with the judgeq policy (the engine's own forward pass),
 * and so does the loss computed from them.
 *
 * `judgeq train` end to end on stories260K: the loss falls, the file loads
 * in `judgeq run --evict judgeq`, a resumed run ends in the same file as an
 * uninterrupted one, and bad input fails with clear messages.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#include "gen_model.h"
#include "kernels.h"
#include "model.h"
#include "naive_llama.h"
#include "prefill.h"
#include "soft_tokens.h"
#include "soft_train.h"

/* ------------------------------------------------------------- helpers */

static jq_model *load_model(const char *path)
{
    char err[1024];
    jq_model *m = jq_model_load(path, err, sizeof err);
    if (!m)
        fail_msg("loading %s: %s", path, err);
    return m;
}

/* F32, GQA (4 query heads on 2 KV heads), 2 layers. */
static jq_model *tiny_model(void)
{
    static char *path;
    if (!path) {
        jq_gen_model_params p = jq_gen_model_defaults();
        p.n_embd = 32;
        p.n_layer = 2;
        p.n_head = 4;
        p.n_head_kv = 2;
        p.n_ff = 48;
        p.n_vocab = 300;
        p.n_ctx = 128;
        p.seed = 5;
        path = jqt_fmt("%s/soft-train-tiny.gguf", jqt_tmpdir());
        char err[256];
        if (jq_gen_model_write(&p, path, err, sizeof err) != 0)
            fail_msg("%s", err);
    }
    return load_model(path);
}

static void random_tokens(int32_t *t, int n, int32_t vocab, uint64_t seed)
{
    jqt_rng r;
    jqt_rng_seed(&r, seed);
    t[0] = 1;
    for (int i = 1; i < n; i++)
        t[i] = 3 + (int32_t)(jqt_rng_u64(&r) % (uint64_t)(vocab - 3));
}

/* An example: a prompt, its KV (evaluated by the engine) and a target —
 * the mean attention of other tokens appended after the prompt (the
 * oracle's observers), as the trainer's targets are made. */
typedef struct {
    jq_model *m;
    jq_ctx *ctx;
    int32_t *prompt, L, n_resp;
    int32_t *resp;
    float *target;
} example;

static void example_make(example *ex, jq_model *m, int32_t L, int32_t n_resp,
                         uint64_t seed)
{
    const jq_hparams *hp = &m->hp;
    ex->m = m;
    ex->L = L;
    ex->n_resp = n_resp;
    ex->prompt = malloc(sizeof(int32_t) * (size_t)L);
    ex->resp = malloc(sizeof(int32_t) * (size_t)n_resp);
    random_tokens(ex->prompt, L, hp->n_vocab, seed);
    random_tokens(ex->resp, n_resp, hp->n_vocab, seed + 1);
    ex->resp[0] = ex->prompt[L - 1];
    char err[512];
    ex->ctx = jq_ctx_new(m, L + 64, 0, NULL, err, sizeof err);
    if (!ex->ctx)
        fail_msg("%s", err);
    size_t cells = (size_t)hp->n_layer * hp->n_head * (size_t)L;
    ex->target = malloc(sizeof(float) * cells);
    jq_prefill_params pp = {
        .spec = jq_evict_spec_default(JQ_EVICT_ORACLE, L),
        .oracle_tokens = ex->resp,
        .n_oracle = n_resp,
        .kv_type = JQ_TYPE_F32,
    };
    if (jq_prefill_scores(ex->ctx, ex->prompt, L, &pp, ex->target, NULL, err,
                          sizeof err) != 0)
        fail_msg("%s", err);
    for (size_t c = 0; c < cells; c++)
        ex->target[c] /= (float)n_resp;
    /* the context now holds the prompt's KV: the trainer's constants */
}

static void example_free(example *ex)
{
    jq_ctx_free(ex->ctx);
    free(ex->prompt);
    free(ex->resp);
    free(ex->target);
}

/* The loss in double precision from the naive forward pass. */
static double naive_loss(const example *ex, const float *E, int32_t n,
                         double scale)
{
    const jq_hparams *hp = &ex->m->hp;
    size_t cells = (size_t)hp->n_layer * hp->n_head * (size_t)ex->L;
    double *raw = calloc(cells, sizeof(double));
    naive_run r = {
        .tokens = ex->prompt, .n_tokens = ex->L,
        .extra_embd = E, .n_extra = n,
        .scores = raw, .score_row0 = ex->L, .score_row1 = ex->L + n,
        .n_score = ex->L,
    };
    if (naive_forward(ex->m, &r) != 0)
        fail_msg("naive forward failed");
    double acc = 0;
    for (size_t c = 0; c < cells; c++) {
        double diff = raw[c] / n - ex->target[c];
        acc += diff * diff;
    }
    free(raw);
    return scale * acc / (double)cells;
}

typedef struct {
    double max_rel, norm_rel;
} grad_check;

/* Checks coordinates [0, n*E) with stride `every` of the analytic
 * gradient against central differences. */
static grad_check check_gradient(const example *ex, const float *E0,
                                 int32_t n, float loss_scale, int every)
{
    const jq_hparams *hp = &ex->m->hp;
    const int64_t NE = (int64_t)n * hp->n_embd;
    jq_soft_work *w = jq_soft_work_new(ex->m, n, ex->L);
    assert_non_null(w);
    float *g = malloc(sizeof(float) * (size_t)NE);
    double loss;
    char err[512];
    jq_soft_example se = {.prompt_kv = jq_ctx_kv(ex->ctx), .L = ex->L,
                          .target = ex->target, .loss_scale = loss_scale};
    if (jq_soft_loss_grad(w, E0, &se, &loss, g, NULL, err, sizeof err) != 0)
        fail_msg("%s", err);
    double scale = loss_scale > 0 ? loss_scale : ex->L;
    double nl = naive_loss(ex, E0, n, scale);
    /* the float forward agrees with the double one */
    assert_true(fabs(loss - nl) <= 1e-4 * fabs(nl));

    float *E = malloc(sizeof(float) * (size_t)NE);
    memcpy(E, E0, sizeof(float) * (size_t)NE);
    int64_t count = (NE + every - 1) / every;
    double *fd = malloc(sizeof(double) * (size_t)count);
    double fd_max = 0;
    for (int64_t c = 0, k = 0; c < NE; c += every, k++) {
        float e = E0[c];
        double h = 1e-3 * fmax(1.0, fabs(e));
        float ep = (float)(e + h), em = (float)(e - h);
        E[c] = ep;
        double lp = naive_loss(ex, E, n, scale);
        E[c] = em;
        double lm = naive_loss(ex, E, n, scale);
        E[c] = e;
        fd[k] = (lp - lm) / ((double)ep - (double)em);
        fd_max = fmax(fd_max, fabs(fd[k]));
    }
    assert_true(fd_max > 0);
    grad_check r = {0};
    double num = 0, den = 0;
    for (int64_t c = 0, k = 0; c < NE; c += every, k++) {
        double diff = fabs(g[c] - fd[k]);
        double ref = fmax(fmax(fabs(g[c]), fabs(fd[k])), 1e-3 * fd_max);
        r.max_rel = fmax(r.max_rel, diff / ref);
        num += diff * diff;
        den += fd[k] * fd[k];
    }
    r.norm_rel = sqrt(num / den);
    free(fd);
    free(E);
    free(g);
    jq_soft_work_free(w);
    return r;
}

/* ---------------------------------------------------- gradient checks */

static void test_gradient_tiny(void **state)
{
    (void)state;
    jq_model *m = tiny_model();
    example ex;
    example_make(&ex, m, 21, 6, 11);
    const int32_t n = 3;
    char err[256];
    /* the trainer's starting point: embeddings of ordinary tokens */
    jq_soft_tokens *s = jq_soft_tokens_init(m, n, 7, err, sizeof err);
    assert_non_null(s);
    grad_check r = check_gradient(&ex, s->emb, n, 0, 1);
    printf("tiny gen-model, token init: max rel %.3g, norm rel %.3g\n",
           r.max_rel, r.norm_rel);
    assert_true(r.max_rel < 1e-3);
    /* larger random embeddings: peakier attention, a larger loss scale */
    jqt_rng rng;
    jqt_rng_seed(&rng, 3);
    jqt_fill_uniform(&rng, s->emb, (size_t)n * m->hp.n_embd, -2.f, 2.f);
    r = check_gradient(&ex, s->emb, n, 100.f, 1);
    printf("tiny gen-model, random init: max rel %.3g, norm rel %.3g\n",
           r.max_rel, r.norm_rel);
    assert_true(r.max_rel < 1e-3);
    jq_soft_tokens_free(s);
    example_free(&ex);
    jq_model_free(m);
}

static void test_gradient_stories(void **state)
{
    (void)state;
    /* trained weights: sharper attention than random ones */
    jq_model *m = load_model(jqt_model_path("stories260K.gguf"));
    example ex;
    example_make(&ex, m, 24, 8, 5);
    const int32_t n = 4;
    char err[256];
    jq_soft_tokens *s = jq_soft_tokens_init(m, n, 1, err, sizeof err);
    assert_non_null(s);
    grad_check r = check_gradient(&ex, s->emb, n, 0, 3);
    printf("stories260K: max rel %.3g, norm rel %.3g\n", r.max_rel,
           r.norm_rel);
    assert_true(r.max_rel < 1e-3);
    jq_soft_tokens_free(s);
    example_free(&ex);
    jq_model_free(m);
}

/* --------------------------------------- the engine's judgeq scoring */

static void test_matches_prefill_scores(void **state)
{
    (void)state;
    jq_model *m = tiny_model();
    const jq_hparams *hp = &m->hp;
    example ex;
    example_make(&ex, m, 40, 8, 23);
    const int32_t n = 6;
    char err[256];
    jq_soft_tokens *s = jq_soft_tokens_init(m, n, 9, err, sizeof err);
    assert_non_null(s);
    size_t cells = (size_t)hp->n_layer * hp->n_head * (size_t)ex.L;
    float *mine = malloc(sizeof(float) * cells);
    float *raw = malloc(sizeof(float) * cells);
    jq_soft_work *w = jq_soft_work_new(m, n, 64);
    jq_soft_example se = {.prompt_kv = jq_ctx_kv(ex.ctx), .L = ex.L,
                          .target = ex.target};
    double loss;
    if (jq_soft_loss_grad(w, s->emb, &se, &loss, NULL, mine, err,
                          sizeof err) != 0)
        fail_msg("%s", err);

    /* the engine's forward pass with the judgeq policy's observers */
    jq_ctx *c = jq_ctx_new(m, ex.L + n, 0, NULL, err, sizeof err);
    jq_prefill_params pp = {
        .spec = jq_evict_spec_default(JQ_EVICT_JUDGEQ, 16),
        .soft_embd = s->emb,
        .n_soft = n,
        .kv_type = JQ_TYPE_F32,
    };
    if (jq_prefill_scores(c, ex.prompt, ex.L, &pp, raw, NULL, err,
                          sizeof err) != 0)
        fail_msg("%s", err);
    double acc = 0, worst = 0;
    for (size_t i = 0; i < cells; i++) {
        worst = fmax(worst, fabs(mine[i] - raw[i]) / fmax(raw[i], 1e-3));
        double diff = (double)raw[i] / n - ex.target[i];
        acc += diff * diff;
    }
    double direct = ex.L * acc / (double)cells;
    printf("scores vs jq_prefill_scores: max rel %.3g; loss %.6g vs %.6g\n",
           worst, loss, direct);
    assert_true(worst < 1e-4);
    assert_true(fabs(loss - direct) <= 1e-4 * direct);

    /* a prompt longer than the workspace is refused */
    jq_soft_work *small = jq_soft_work_new(m, n, 8);
    assert_int_equal(jq_soft_loss_grad(small, s->emb, &se, &loss, NULL, NULL,
                                       err, sizeof err), -1);
    assert_non_null(strstr(err, "prompt of 40 tokens"));
    jq_soft_work_free(small);

    jq_ctx_free(c);
    jq_soft_work_free(w);
    free(mine);
    free(raw);
    jq_soft_tokens_free(s);
    example_free(&ex);
    jq_model_free(m);
}

int main(void)
{
    jq_kernels_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradient_tiny),
        cmocka_unit_test(test_gradient_stories),
        cmocka_unit_test(test_matches_prefill_scores),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
