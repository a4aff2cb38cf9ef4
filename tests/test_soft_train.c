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


/* ------------------------------------------------------ judgeq train */

static char *judgeq(const char *args, int *rc, char **err)
{
    char *cmd = jqt_fmt("'%s' %s", jqt_judgeq_bin(), args);
    char *out = jqt_run(cmd, rc, err);
    free(cmd);
    return out;
}

/* Runs `judgeq train` with the small stories260K setting plus extra; the
 * JSON summary, exit status must be 0. */
static json_t *train_json(const char *out, const char *extra)
{
    char *args = jqt_fmt(
        "train -m '%s' -o '%s' --self-generate 8 --prompt-len 64 "
        "--response-len 32 --n 16 --batch 7 --eval-frac 0.125 --budget 24 "
        "--window 8 --eval-every 5 --cache-dir '%s/stories-cache' %s",
        jqt_model_path("stories260K.gguf"), out, jqt_tmpdir(), extra);
    int rc;
    char *err;
    char *o = judgeq(args, &rc, &err);
    if (rc != 0)
        fail_msg("judgeq %s: exit %d: %s", args, rc, err);
    json_error_t jerr;
    json_t *j = json_loads(o, 0, &jerr);
    if (!j)
        fail_msg("not JSON: %s", o);
    free(o);
    free(err);
    free(args);
    return j;
}

static double jnum(json_t *j, const char *a, const char *b)
{
    json_t *v = json_object_get(j, a);
    if (b)
        v = json_object_get(v, b);
    if (!json_is_number(v))
        fail_msg("summary field %s%s%s is not a number", a, b ? "." : "",
                 b ? b : "");
    return json_number_value(v);
}

static bool same_file(const char *a, const char *b)
{
    size_t na, nb;
    char *x = jqt_read_file(a, &na), *y = jqt_read_file(b, &nb);
    bool same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static void test_train_stories(void **state)
{
    (void)state;
    char *full = jqt_fmt("%s/full.soft.gguf", jqt_tmpdir());
    json_t *j = train_json(full, "--steps 20");
    double first = jnum(j, "train_loss", "first");
    double last = jnum(j, "train_loss", "last");
    printf("train loss %.6g -> %.6g, held-out %.6g -> %.6g, %.1f ex/s\n",
           first, last, jnum(j, "eval_loss", "start"),
           jnum(j, "eval_loss", "final"), jnum(j, "examples_per_s", NULL));
    /* the batch is the whole training set: the same examples each step */
    assert_true(last < 0.8 * first);
    assert_true(jnum(j, "eval_loss", "final") < jnum(j, "eval_loss", "start"));
    assert_int_equal((int)jnum(j, "steps", NULL), 20);
    json_decref(j);

    /* the file is usable soft tokens for the model */
    char *args = jqt_fmt("run -m '%s' -p 'Once upon a time, there was a "
                         "little girl named Lily. She loved to play outside "
                         "in the park with her friends and her dog.' -n 8 "
                         "--temp 0 --evict judgeq --soft '%s' --budget 12 "
                         "--window 4",
                         jqt_model_path("stories260K.gguf"), full);
    int rc;
    char *err;
    free(judgeq(args, &rc, &err));
    if (rc != 0)
        fail_msg("run --soft: exit %d: %s", rc, err);
    free(err);
    free(args);

    /* 10 steps, then --resume to 20: the same bytes as 20 at once (the
     * targets come from the cache now, and the thread count differs) */
    char *half = jqt_fmt("%s/half.soft.gguf", jqt_tmpdir());
    j = train_json(half, "--steps 10");
    assert_int_equal((int)jnum(j, "targets_cached", NULL), 8);
    json_decref(j);
    j = train_json(half, "--steps 20 --resume --threads 1");
    assert_int_equal((int)jnum(j, "start_step", NULL), 10);
    json_decref(j);
    assert_true(same_file(full, half));
    char *fa = jqt_fmt("%s.adam", full), *ha = jqt_fmt("%s.adam", half);
    assert_true(same_file(fa, ha));

    /* resuming with another learning rate is refused */
    args = jqt_fmt("train -m '%s' -o '%s' --self-generate 8 --prompt-len 64 "
                   "--response-len 32 --batch 7 --eval-frac 0.125 --budget 24 "
                   "--window 8 --cache-dir '%s/stories-cache' --steps 30 "
                   "--resume --lr 0.01",
                   jqt_model_path("stories260K.gguf"), half, jqt_tmpdir());
    free(judgeq(args, &rc, &err));
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "--lr"));
    free(err);
    free(args);
    free(fa);
    free(ha);
    free(full);
    free(half);
}

/* Ctrl-C: the run saves its step and exits 130; --resume then ends where
 * an uninterrupted run ends. */
static void test_train_interrupt(void **state)
{
    (void)state;
    const char *common =
        "--self-generate 8 --prompt-len 64 --response-len 32 --n 8 "
        "--batch 2 --eval-frac 0.125 --budget 24 --window 8 --steps 150 "
        "--eval-every 0 --save-every 0";
    char *full = jqt_fmt("%s/int-full.gguf", jqt_tmpdir());
    char *part = jqt_fmt("%s/int-part.gguf", jqt_tmpdir());
    char *cache = jqt_fmt("%s/int-cache", jqt_tmpdir());
    const char *model = jqt_model_path("stories260K.gguf");
    char *cmd = jqt_fmt(
        "'%s' train -m '%s' -o '%s' %s --cache-dir '%s' >/dev/null 2>&1",
        jqt_judgeq_bin(), model, full, common, cache);
    int rc;
    free(jqt_run(cmd, &rc, NULL));
    assert_int_equal(rc, 0);
    free(cmd);
    /* interrupt once training is under way (its first step printed) */
    char *log = jqt_fmt("%s/int.log", jqt_tmpdir());
    cmd = jqt_fmt("'%s' train -m '%s' -o '%s' %s --cache-dir '%s' "
                  "--log-every 1 >/dev/null 2>'%s' & pid=$!; "
                  "until grep -q '^step [1-9]' '%s' || ! kill -0 $pid; do "
                  "sleep 0.02; done; kill -INT $pid; wait $pid",
                  jqt_judgeq_bin(), model, part, common, cache, log, log);
    free(log);
    free(jqt_run(cmd, &rc, NULL));
    free(cmd);
    if (rc == 0) {
        /* finished within the delay: nothing to resume, still equal */
        assert_true(same_file(full, part));
    } else {
        assert_int_equal(rc, 130);
        char err[512];
        jq_soft_tokens *s = jq_soft_tokens_load(part, NULL, err, sizeof err);
        if (!s)
            fail_msg("checkpoint after Ctrl-C: %s", err);
        printf("interrupted at step %llu of 150\n",
               (unsigned long long)s->trained_steps);
        assert_true(s->trained_steps < 150);
        jq_soft_tokens_free(s);
        cmd = jqt_fmt("'%s' train -m '%s' -o '%s' %s --cache-dir '%s' "
                      "--resume >/dev/null 2>&1",
                      jqt_judgeq_bin(), model, part, common, cache);
        free(jqt_run(cmd, &rc, NULL));
        free(cmd);
        assert_int_equal(rc, 0);
        assert_true(same_file(full, part));
    }
    free(full);
    free(part);
    free(cache);
}

static void expect_fail(const char *args, int want_rc, const char *needle)
{
    int rc;
    char *err;
    free(judgeq(args, &rc, &err));
    if (rc != want_rc || !strstr(err, needle))
        fail_msg("judgeq %s: exit %d (want %d), stderr: %s (want '%s')",
                 args, rc, want_rc, err, needle);
    free(err);
}

static void test_train_bad_input(void **state)
{
    (void)state;
    const char *model = jqt_model_path("stories260K.gguf");
    char *out = jqt_fmt("%s/bad.gguf", jqt_tmpdir());
    char *data = jqt_fmt("%s/bad.jsonl", jqt_tmpdir());
    FILE *f = fopen(data, "w");
    assert_non_null(f);
    fputs("{\"prompt\": \"Once upon a time there was a cat.\"}\n"
          "\n"
          "{\"prompt\": \"The dog ran to the park.\", \"response\": \"It "
          "played.\"}\n"
          "{\"prompt\": \"broken\n"
          "{\"text\": \"no prompt here\"}\n"
          "{\"prompt\": \"Lily had a red ball. She liked to kick it.\"}\n",
          f);
    fclose(f);
    char *a;
    /* the first bad line stops the run, with its number */
    a = jqt_fmt("train -m '%s' -o '%s' --data '%s' --steps 1", model, out,
                data);
    expect_fail(a, 1, "bad.jsonl:4: not valid JSON");
    free(a);
    /* skipped with --skip-bad-lines, each reported */
    a = jqt_fmt("train -m '%s' -o '%s' --data '%s' --steps 2 --batch 2 "
                "--response-len 8 --budget 8 --window 2 --n 4 "
                "--skip-bad-lines --eval-frac 0",
                model, out, data);
    int rc;
    char *err;
    char *o = judgeq(a, &rc, &err);
    if (rc != 0)
        fail_msg("--skip-bad-lines: exit %d: %s", rc, err);
    assert_non_null(strstr(err, "bad.jsonl:4: skipped"));
    assert_non_null(strstr(err, "bad.jsonl:5: skipped: no string field "
                                "\"prompt\""));
    assert_non_null(strstr(o, "\"lines_skipped\":2"));
    assert_non_null(strstr(o, "\"examples_train\":3"));
    free(o);
    free(err);
    free(a);

    /* a prompt longer than the context (512) names its line */
    f = fopen(data, "w");
    fputs("{\"prompt\": \"A short one.\"}\n{\"prompt\": \"", f);
    for (int i = 0; i < 200; i++)
        fputs("The cat sat on the mat and looked at the big tree. ", f);
    fputs("\"}\n", f);
    fclose(f);
    a = jqt_fmt("train -m '%s' -o '%s' --data '%s' --steps 1", model, out,
                data);
    expect_fail(a, 1, "bad.jsonl:2: the prompt (");
    expect_fail(a, 1, "exceed the model context of 512");
    free(a);

    /* usage errors */
    a = jqt_fmt("train -m '%s' -o '%s' --steps 1", model, out);
    expect_fail(a, 2, "exactly one of --data FILE and --self-generate N");
    free(a);
    a = jqt_fmt("train -m '%s' -o '%s' --self-generate 4 --data '%s'", model,
                out, data);
    expect_fail(a, 2, "exactly one of");
    free(a);
    a = jqt_fmt("train -m '%s' --self-generate 4", model);
    expect_fail(a, 2, "an output file is required");
    free(a);
    a = jqt_fmt("train -m '%s' -o '%s' --self-generate 4 --steps 1 "
                "--epochs 2", model, out);
    expect_fail(a, 2, "--steps or --epochs");
    free(a);
    a = jqt_fmt("train -m '%s' -o '%s' --self-generate 4 --lr x", model, out);
    expect_fail(a, 2, "--lr");
    free(a);
    a = jqt_fmt("train -m '%s' -o '%s' --self-generate 4 --prompt-len 600",
                model, out);
    expect_fail(a, 1, "must fit the model context of 512");
    free(a);
    a = jqt_fmt("train -m '%s' -o '%s' --data '%s/missing.jsonl'", model, out,
                jqt_tmpdir());
    expect_fail(a, 1, "cannot open");
    free(a);
    a = jqt_fmt("train -m '%s' -o '%s/never-written.gguf' --self-generate 4 "
                "--resume",
                model, jqt_tmpdir());
    expect_fail(a, 1, "--resume");
    free(a);
    free(out);
    free(data);
}

int main(void)
{
    jq_kernels_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradient_tiny),
        cmocka_unit_test(test_gradient_stories),
        cmocka_unit_test(test_matches_prefill_scores),
        cmocka_unit_test(test_train_stories),
        cmocka_unit_test(test_train_interrupt),
        cmocka_unit_test(test_train_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
