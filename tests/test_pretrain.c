/* test_pretrain.c — the pretrainer (engine/pretrain*.c, adamw.c).
 *
 * - The whole model's gradient against finite differences of its loss,
 *   for every kind of parameter, over sequences whose attention spans more
 *   than one query block.
 * - Blockwise causal attention forward and backward against a naive
 *   double-precision reference that materialises the full matrix.
 * - AdamW and the learning-rate schedule against hand computation.
 * - A tiny pretraining run on toy data whose loss falls clearly; the same
 *   steps on 1 and 2 threads give the same bits.
 * - Checkpoint / resume continues bit for bit; a damaged checkpoint is
 *   refused with a message.
 * - The exported GGUF loads with jq_model_load, and judgeq's own forward
 *   pass reproduces the trainer's logits.
 * - The data plan: curricula parsed and followed, batches a pure function
 *   of (seed, step), loss only on each example's answer.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adamw.h"
#include "gguf.h"
#include "kernels.h"
#include "model.h"
#include "pretrain.h"
#include "pretrain_data.h"
#include "pretrain_internal.h"
#include "thread_pool.h"

/* ------------------------------------------------------------ helpers */

static bool g_tie; /* the next tiny_model ties its classifier */

static jq_pt_model *tiny_model(int32_t n_vocab, int32_t n_embd,
                               int32_t n_layer, int32_t n_head,
                               int32_t n_head_kv, int32_t n_ff, int32_t n_ctx,
                               uint64_t seed)
{
    const jq_pt_hparams hp = {n_vocab, n_embd, n_layer, n_head, n_head_kv,
                              n_ff,    n_ctx,  10000.0f, 1e-5f, g_tie};
    char err[256];
    jq_pt_model *m = jq_pt_model_new(&hp, err, sizeof err);
    if (!m)
        fail_msg("jq_pt_model_new: %s", err);
    jq_pt_model_init(m, seed);
    return m;
}

/* Random tokens in [3, n_vocab) after a BOS (1). */
static int32_t *random_tokens(jqt_rng *r, int32_t n, int32_t n_vocab)
{
    int32_t *t = malloc((size_t)n * sizeof *t);
    assert_non_null(t);
    t[0] = 1;
    for (int32_t i = 1; i < n; i++)
        t[i] = 3 + (int32_t)(jqt_rng_u64(r) % (uint64_t)(n_vocab - 3));
    return t;
}

static double mean_loss(const jq_pt_model *m, jq_pt_work *w,
                        const jq_pt_seq *s, int n)
{
    jq_pt_stats st = {0};
    jq_pt_group_pass(m, w, s, n, 0.0f, 0.0f, NULL, &st, NULL);
    return st.loss_sum / (double)st.n_tokens;
}

/* ------------------------------------------------- gradient vs FD */

/* Parameters are redrawn uniform in [-0.5, 0.5] (norms in [0.5, 1.5]) so
 * every term of the gradient is of order one rather than the 0.02 of the
 * real initialisation. The loss is a mean over the scored tokens, each
 * computed in float and summed in double; the fourth-order central
 * stencil with h = 1e-2 has truncation error ~h^4 f^(5) (1e-8) and
 * rounding error ~ulp(loss) / h (~3e-5 for a loss near 3), so the
 * difference quotient is good to ~5e-5 absolute. The backward pass itself
 * rounds in float through a few hundred-term sums, relative ~1e-5. A
 * coordinate passes when |g - fd| <= 2e-4 + 1e-2 |fd|; a wrong term
 * (a missing transpose, a wrong sign, a lost residual) is off by O(|g|). */
static void gradient_matches_fd(bool tie)
{
    g_tie = tie;
    jq_pt_model *m = tiny_model(24, 16, 2, 4, 2, 20, 96, 7);
    g_tie = false;
    jqt_rng r;
    jqt_rng_seed(&r, 42);
    for (int i = 0; i < m->n_tensors; i++) {
        const jq_pt_tensor *t = &m->tensors[i];
        for (size_t j = 0; j < (size_t)(t->rows * t->cols); j++)
            m->params[t->offset + j] =
                t->rows == 1 ? jqt_rng_uniform(&r, 0.5f, 1.5f)
                             : jqt_rng_uniform(&r, -0.5f, 0.5f);
    }
    /* 80 positions: two attention blocks; loss on positions 55..79 */
    int32_t *a = random_tokens(&r, 81, 24), *b = random_tokens(&r, 12, 24);
    const jq_pt_seq seqs[2] = {{a, 81, 56}, {b, 12, 6}};
    int64_t n_scored = (81 - 56) + (12 - 6);
    jq_pt_work *w = jq_pt_work_new(m, 100, 96);
    assert_non_null(w);
    float *grad = calloc(m->n_params, sizeof *grad);
    assert_non_null(grad);
    jq_pt_stats st = {0};
    jq_pt_group_pass(m, w, seqs, 2, 1.0f / (float)n_scored, 0.0f, grad, &st,
                     NULL);
    assert_int_equal(st.n_tokens, n_scored);

    int checked = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const jq_pt_tensor *t = &m->tensors[i];
        const size_t n = (size_t)(t->rows * t->cols);
        for (int c = 0; c < 5; c++) {
            size_t j = jqt_rng_u64(&r) % n;
            if (i == JQ_PT_TOK_EMBD && c < 3) /* rows of tokens present */
                j = (size_t)a[1 + c * 20] * (size_t)t->cols + j % (size_t)t->cols;
            float *p = &m->params[t->offset + j];
            const float x0 = *p;
            double f[4];
            const float hs[4] = {-2e-2f, -1e-2f, 1e-2f, 2e-2f};
            for (int k = 0; k < 4; k++) {
                *p = x0 + hs[k];
                f[k] = mean_loss(m, w, seqs, 2);
            }
            *p = x0;
            /* the steps actually taken, as floats */
            const double h = (double)((x0 + 1e-2f) - x0);
            const double fd = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h);
            const double g = grad[t->offset + j];
            if (!(fabs(g - fd) <= 2e-4 + 1e-2 * fabs(fd)))
                fail_msg("%s[%zu]: backward %.6g, finite differences %.6g",
                         t->name, j, g, fd);
            checked++;
        }
    }
    assert_int_equal(checked, 5 * m->n_tensors);
    /* a token that occurs nowhere gets no embedding gradient (tied: it
     * does, from the classifier) */
    bool seen[24] = {0};
    for (int i = 0; tie && i < 24; i++)
        seen[i] = true;
    for (int i = 0; i < 81; i++)
        seen[a[i]] = true;
    for (int i = 0; i < 12; i++)
        seen[b[i]] = true;
    for (int tok = 0; tok < 24; tok++)
        if (!seen[tok])
            for (int c = 0; c < 16; c++)
                assert_true(grad[tok * 16 + c] == 0.0f);
    free(grad);
    jq_pt_work_free(w);
    free(a);
    free(b);
    jq_pt_model_free(m);
}

static void test_gradient_matches_fd(void **state)
{
    (void)state;
    gradient_matches_fd(false);
}

/* --tie-embeddings: the token embedding is also the classifier, and its
 * gradient is the sum of both uses */
static void test_gradient_matches_fd_tied(void **state)
{
    (void)state;
    gradient_matches_fd(true);
}

/* --context-loss: the prompt's next-token loss joins the objective with
 * its own scale, f = ls * (answer losses) + cs * (prompt losses), and its
 * gradient is checked against finite differences of exactly that f (same
 * stencil and tolerance as above). The answer statistics stay the
 * answer's: what the progress line and the held-out accuracy report. */
static double combined_loss(const jq_pt_model *m, jq_pt_work *w,
                            const jq_pt_seq *s, int n, float ls, float cs)
{
    jq_pt_stats st = {0};
    jq_pt_group_pass(m, w, s, n, 0.0f, cs, NULL, &st, NULL);
    return (double)ls * st.loss_sum + (double)cs * st.ctx_loss_sum;
}

static void test_context_loss_gradient(void **state)
{
    (void)state;
    jq_pt_model *m = tiny_model(24, 16, 2, 4, 2, 20, 96, 11);
    jqt_rng r;
    jqt_rng_seed(&r, 7);
    for (int i = 0; i < m->n_tensors; i++) {
        const jq_pt_tensor *t = &m->tensors[i];
        for (size_t j = 0; j < (size_t)(t->rows * t->cols); j++)
            m->params[t->offset + j] =
                t->rows == 1 ? jqt_rng_uniform(&r, 0.5f, 1.5f)
                             : jqt_rng_uniform(&r, -0.5f, 0.5f);
    }
    int32_t *a = random_tokens(&r, 40, 24), *b = random_tokens(&r, 12, 24);
    const jq_pt_seq seqs[2] = {{a, 40, 30}, {b, 12, 6}};
    const int64_t n_ans = (40 - 30) + (12 - 6), n_ctx = (30 - 1) + (6 - 1);
    const float ls = 1.0f / (float)n_ans, cs = 0.5f / (float)n_ctx;
    jq_pt_work *w = jq_pt_work_new(m, 64, 64);
    assert_non_null(w);
    float *grad = calloc(m->n_params, sizeof *grad);
    assert_non_null(grad);
    jq_pt_stats st = {0};
    jq_pt_group_pass(m, w, seqs, 2, ls, cs, grad, &st, NULL);
    assert_int_equal(st.n_tokens, n_ans);
    assert_int_equal(st.n_ctx_tokens, n_ctx);
    assert_true(st.ctx_loss_sum > 0);
    /* without it, nothing of the prompt is scored */
    jq_pt_stats st0 = {0};
    jq_pt_group_pass(m, w, seqs, 2, ls, 0.0f, NULL, &st0, NULL);
    assert_int_equal(st0.n_ctx_tokens, 0);
    assert_true(st0.loss_sum == st.loss_sum);
    for (int i = 0; i < m->n_tensors; i++) {
        const jq_pt_tensor *t = &m->tensors[i];
        const size_t n = (size_t)(t->rows * t->cols);
        for (int c = 0; c < 3; c++) {
            const size_t j = jqt_rng_u64(&r) % n;
            float *p = &m->params[t->offset + j];
            const float x0 = *p;
            double f[4];
            const float hs[4] = {-2e-2f, -1e-2f, 1e-2f, 2e-2f};
            for (int k = 0; k < 4; k++) {
                *p = x0 + hs[k];
                f[k] = combined_loss(m, w, seqs, 2, ls, cs);
            }
            *p = x0;
            const double h = (double)((x0 + 1e-2f) - x0);
            const double fd = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h);
            const double g = grad[t->offset + j];
            if (!(fabs(g - fd) <= 2e-4 + 1e-2 * fabs(fd)))
                fail_msg("%s[%zu]: backward %.6g, finite differences %.6g",
                         t->name, j, g, fd);
        }
    }
    free(grad);
    jq_pt_work_free(w);
    free(a);
    free(b);
    jq_pt_model_free(m);
}

/* -------------------------------------------- attention vs naive */

/* The full L x L attention in double: out, then for the gradient of
 * sum(dout . out): dq, dk, dv. */
static void naive_attention(const jq_pt_attn_shape *a, int64_t L,
                            const float *q, const float *k, const float *v,
                            const float *dout, double *out, double *dq,
                            double *dk, double *dv)
{
    const int hd = a->head_dim, nh = a->n_head;
    const int64_t QD = (int64_t)nh * hd, KD = (int64_t)a->n_head_kv * hd;
    const double scale = 1.0 / sqrt((double)hd);
    double *p = malloc((size_t)L * sizeof *p), *dp = malloc((size_t)L * sizeof *dp);
    assert_non_null(p);
    assert_non_null(dp);
    memset(dk, 0, (size_t)(L * KD) * sizeof *dk);
    memset(dv, 0, (size_t)(L * KD) * sizeof *dv);
    for (int h = 0; h < nh; h++) {
        const int g = h / (nh / a->n_head_kv);
        for (int64_t i = 0; i < L; i++) {
            double max = -INFINITY, sum = 0;
            for (int64_t j = 0; j <= i; j++) {
                double s = 0;
                for (int d = 0; d < hd; d++)
                    s += (double)q[i * QD + h * hd + d] * k[j * KD + g * hd + d];
                p[j] = s * scale;
                max = p[j] > max ? p[j] : max;
            }
            for (int64_t j = 0; j <= i; j++)
                sum += (p[j] = exp(p[j] - max));
            double pdp = 0;
            for (int64_t j = 0; j <= i; j++) {
                p[j] /= sum;
                double s = 0;
                for (int d = 0; d < hd; d++)
                    s += (double)dout[i * QD + h * hd + d] * v[j * KD + g * hd + d];
                dp[j] = s;
                pdp += p[j] * s;
            }
            for (int d = 0; d < hd; d++) {
                double o = 0, gq = 0;
                for (int64_t j = 0; j <= i; j++) {
                    o += p[j] * v[j * KD + g * hd + d];
                    gq += p[j] * (dp[j] - pdp) * k[j * KD + g * hd + d];
                }
                out[i * QD + h * hd + d] = o;
                dq[i * QD + h * hd + d] = gq * scale;
            }
            for (int64_t j = 0; j <= i; j++)
                for (int d = 0; d < hd; d++) {
                    dk[j * KD + g * hd + d] += scale * p[j] * (dp[j] - pdp) *
                                               q[i * QD + h * hd + d];
                    dv[j * KD + g * hd + d] += p[j] * dout[i * QD + h * hd + d];
                }
        }
    }
    free(p);
    free(dp);
}

static double rel_err(const float *x, const double *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)x[i] - ref[i]) * ((double)x[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

/* L = 150 is three query blocks (64, 64, 22), so rows see keys of earlier
 * blocks and the diagonal block is masked; 4 query heads on 2 KV heads.
 * Float GEMMs over <= 150 terms against double: norm-wise 1e-5 is ~100 x
 * the expected rounding and far below any wrong term. */
static void test_attention_matches_naive(void **state)
{
    (void)state;
    const jq_pt_attn_shape a = {4, 2, 16};
    const int64_t L = 150, QD = 64, KD = 32;
    jqt_rng r;
    jqt_rng_seed(&r, 3);
    float *q = malloc(L * QD * 4), *k = malloc(L * KD * 4), *v = malloc(L * KD * 4);
    float *dout = malloc(L * QD * 4), *out = malloc(L * QD * 4),
          *lse = malloc(L * 4 * 4), *dq = malloc(L * QD * 4),
          *dk = malloc(L * KD * 4), *dv = malloc(L * KD * 4);
    float *S = malloc(JQ_PT_ATTN_BLOCK * L * 4), *dP = malloc(JQ_PT_ATTN_BLOCK * L * 4),
          *D = malloc(L * 4);
    double *ro = malloc(L * QD * 8), *rq = malloc(L * QD * 8),
           *rk = malloc(L * KD * 8), *rv = malloc(L * KD * 8);
    assert_true(q && k && v && dout && out && lse && dq && dk && dv && S &&
                dP && D && ro && rq && rk && rv);
    /* scores of a few units: peaked but not one-hot softmaxes */
    jqt_fill_uniform(&r, q, (size_t)(L * QD), -1.5f, 1.5f);
    jqt_fill_uniform(&r, k, (size_t)(L * KD), -1.5f, 1.5f);
    jqt_fill_uniform(&r, v, (size_t)(L * KD), -1, 1);
    jqt_fill_uniform(&r, dout, (size_t)(L * QD), -1, 1);
    jq_pt_attn_forward(&a, L, q, k, v, out, lse, S);
    jq_pt_attn_backward(&a, L, q, k, v, out, lse, dout, dq, dk, dv, S, dP, D);
    naive_attention(&a, L, q, k, v, dout, ro, rq, rk, rv);
    assert_true(rel_err(out, ro, (size_t)(L * QD)) < 1e-5);
    assert_true(rel_err(dq, rq, (size_t)(L * QD)) < 1e-5);
    assert_true(rel_err(dk, rk, (size_t)(L * KD)) < 1e-5);
    assert_true(rel_err(dv, rv, (size_t)(L * KD)) < 1e-5);
    /* row 0 sees only key 0: its output is v_0 of its KV head */
    for (int d = 0; d < 16; d++)
        assert_float_equal(out[d], v[d], 1e-6);
    free(q); free(k); free(v); free(dout); free(out); free(lse); free(dq);
    free(dk); free(dv); free(S); free(dP); free(D); free(ro); free(rq);
    free(rk); free(rv);
}

/* -------------------------------------------------------- AdamW */

static void test_adamw_by_hand(void **state)
{
    (void)state;
    float p[3] = {1.0f, -2.0f, 0.5f}, m[3] = {0}, v[3] = {0};
    const float g1[3] = {0.1f, -0.3f, 0.0f}, g2[3] = {0.2f, 0.1f, -0.4f};
    double P[3] = {1.0, -2.0, 0.5}, M[3] = {0}, Vv[3] = {0};
    const double lr = 0.01, wd = 0.1, b1 = 0.9, b2 = 0.95, eps = 1e-8,
                 gs = 0.5;
    const float *gs_[2] = {g1, g2};
    for (int t = 1; t <= 2; t++) {
        const jq_adamw_step s = {.lr = (float)lr, .weight_decay = (float)wd,
                                 .beta1 = (float)b1, .beta2 = (float)b2,
                                 .eps = (float)eps, .grad_scale = (float)gs,
                                 .t = t};
        jq_adamw_update(p, gs_[t - 1], m, v, 3, &s);
        for (int i = 0; i < 3; i++) {
            const double g = gs * gs_[t - 1][i];
            M[i] = b1 * M[i] + (1 - b1) * g;
            Vv[i] = b2 * Vv[i] + (1 - b2) * g * g;
            const double mh = M[i] / (1 - pow(b1, t)),
                         vh = Vv[i] / (1 - pow(b2, t));
            P[i] = P[i] - lr * wd * P[i] - lr * mh / (sqrt(vh) + eps);
        }
        /* step 1 moves by ~lr whatever the gradient's scale: 1 - lr wd -
         * lr for a positive gradient */
        if (t == 1)
            assert_float_equal(p[0], 1.0 - 0.001 - 0.01, 1e-6);
    }
    for (int i = 0; i < 3; i++) {
        assert_float_equal(p[i], P[i], 1e-6);
        assert_float_equal(m[i], M[i], 1e-7);
        assert_float_equal(v[i], Vv[i], 1e-8);
    }

    jq_pt_opts o = jq_pt_opts_defaults();
    o.steps = 111; /* 10 warm-up, then 101 steps of cosine: half way at 60 */
    o.warmup = 10;
    o.lr = 1e-3f;
    o.min_lr = 1e-4f;
    assert_float_equal(jq_pt_lr_at(&o, 0), 1e-4, 1e-9);
    assert_float_equal(jq_pt_lr_at(&o, 9), 1e-3, 1e-9);
    assert_float_equal(jq_pt_lr_at(&o, 10), 1e-3, 1e-9);
    assert_float_equal(jq_pt_lr_at(&o, 60), 5.5e-4, 1e-9);
    assert_float_equal(jq_pt_lr_at(&o, 110), 1e-4, 1e-9);
    assert_float_equal(jq_pt_lr_at(&o, 500), 1e-4, 1e-9);
}

/* ---------------------------------------------------- toy training */

/* Toy task: BOS, 10 random tokens, a marker (3), then the answer is the
 * second and third token again, and EOS (2). Only the answer is scored.
 * Learnable by induction in a few hundred small steps; chance is
 * ln(20) ~ 3.0 per token. */
#define TOY_VOCAB 24
#define TOY_LEN 15
static void toy_batch(uint64_t seed, int64_t step, int n, int32_t *buf,
                      jq_pt_seq *seqs)
{
    jqt_rng r;
    jqt_rng_seed(&r, seed * 1000003u + (uint64_t)step);
    for (int i = 0; i < n; i++) {
        int32_t *t = buf + i * TOY_LEN;
        t[0] = 1;
        for (int j = 1; j <= 10; j++)
            t[j] = 4 + (int32_t)(jqt_rng_u64(&r) % (TOY_VOCAB - 4));
        t[11] = 3;
        t[12] = t[2];
        t[13] = t[3];
        t[14] = 2;
        seqs[i] = (jq_pt_seq){t, TOY_LEN, 12};
    }
}

static jq_pt_opts toy_opts(int64_t steps)
{
    jq_pt_opts o = jq_pt_opts_defaults();
    o.steps = steps;
    o.warmup = 10;
    o.lr = 1e-2f;
    o.min_lr = 1e-3f;
    o.group_tokens = 64; /* several groups per slot */
    return o;
}

static void train_steps(jq_pt_trainer *t, uint64_t seed, int64_t from,
                        int64_t to, double *first_loss, double *last_loss)
{
    int32_t buf[16 * TOY_LEN];
    jq_pt_seq seqs[16];
    char err[256];
    for (int64_t s = from; s < to; s++) {
        toy_batch(seed, s, 16, buf, seqs);
        jq_pt_step_info info;
        if (jq_pt_trainer_step(t, seqs, 16, &info, err, sizeof err) != 0)
            fail_msg("step %lld: %s", (long long)s, err);
        const double loss = info.stats.loss_sum / (double)info.stats.n_tokens;
        if (s == from && first_loss)
            *first_loss = loss;
        if (last_loss)
            *last_loss = loss;
    }
}

static void test_tiny_run_loss_falls(void **state)
{
    (void)state;
    jq_pt_model *m = tiny_model(TOY_VOCAB, 32, 2, 4, 2, 64, 32, 1);
    jq_pool *pool = jq_thread_pool_new(2);
    assert_non_null(pool);
    const jq_pt_opts o = toy_opts(300);
    char err[256];
    jq_pt_trainer *t = jq_pt_trainer_new(m, &o, pool, err, sizeof err);
    assert_non_null(t);
    double first = 0, last = 0;
    train_steps(t, 5, 0, 300, &first, &last);
    /* held-out batch */
    int32_t buf[16 * TOY_LEN];
    jq_pt_seq seqs[16];
    toy_batch(999, 0, 16, buf, seqs);
    jq_pt_stats st = {0};
    assert_int_equal(jq_pt_trainer_eval(t, seqs, 16, &st, err, sizeof err), 0);
    const double held = st.loss_sum / (double)st.n_tokens;
    print_message("toy run: loss %.3f -> %.3f, held-out %.3f, token acc %.2f\n",
                  first, last, held, (double)st.n_correct / (double)st.n_tokens);
    assert_true(first > 2.5);
    assert_true(held < 0.5 * first);
    assert_int_equal(jq_pt_trainer_steps_done(t), 300);
    jq_pt_trainer_free(t);
    jq_thread_pool_free(pool);
    jq_pt_model_free(m);
}

static void test_thread_count_does_not_change_bits(void **state)
{
    (void)state;
    jq_pt_model *m1 = tiny_model(TOY_VOCAB, 32, 2, 4, 2, 64, 32, 1);
    jq_pt_model *m2 = tiny_model(TOY_VOCAB, 32, 2, 4, 2, 64, 32, 1);
    jq_pool *pool = jq_thread_pool_new(2);
    const jq_pt_opts o = toy_opts(20);
    char err[256];
    jq_pt_trainer *t1 = jq_pt_trainer_new(m1, &o, NULL, err, sizeof err);
    jq_pt_trainer *t2 = jq_pt_trainer_new(m2, &o, pool, err, sizeof err);
    assert_non_null(t1);
    assert_non_null(t2);
    train_steps(t1, 5, 0, 5, NULL, NULL);
    train_steps(t2, 5, 0, 5, NULL, NULL);
    assert_memory_equal(m1->params, m2->params, m1->n_params * sizeof(float));
    jq_pt_trainer_free(t1);
    jq_pt_trainer_free(t2);
    jq_thread_pool_free(pool);
    jq_pt_model_free(m1);
    jq_pt_model_free(m2);
}

/* ---------------------------------------------------- checkpoints */

static void test_checkpoint_resume_bit_exact(void **state)
{
    (void)state;
    const jq_pt_opts o = toy_opts(12);
    char err[256];
    /* straight through */
    jq_pt_model *ma = tiny_model(TOY_VOCAB, 32, 2, 4, 2, 64, 32, 9);
    jq_pt_trainer *ta = jq_pt_trainer_new(ma, &o, NULL, err, sizeof err);
    assert_non_null(ta);
    train_steps(ta, 3, 0, 12, NULL, NULL);
    /* 5 steps, checkpoint, a new process's worth of objects, 7 more */
    jq_pt_model *mb = tiny_model(TOY_VOCAB, 32, 2, 4, 2, 64, 32, 9);
    jq_pt_trainer *tb = jq_pt_trainer_new(mb, &o, NULL, err, sizeof err);
    train_steps(tb, 3, 0, 5, NULL, NULL);
    char *path = jqt_fmt("%s/pt.ckpt", jqt_tmpdir());
    assert_int_equal(jq_pt_checkpoint_save(tb, "seed=3\n", path, err, sizeof err), 0);
    jq_pt_trainer_free(tb);
    jq_pt_model_free(mb);

    jq_pt_model *mc = NULL;
    char *config = NULL;
    if (jq_pt_checkpoint_load(path, &mc, &config, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_string_equal(config, "seed=3\n");
    jq_pt_trainer *tc = jq_pt_trainer_new(mc, &o, NULL, err, sizeof err);
    assert_non_null(tc);
    if (jq_pt_trainer_resume(tc, path, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(jq_pt_trainer_steps_done(tc), 5);
    train_steps(tc, 3, 5, 12, NULL, NULL);
    assert_memory_equal(ma->params, mc->params, ma->n_params * sizeof(float));

    /* a truncated checkpoint is refused, naming the file */
    size_t len;
    char *bytes = jqt_read_file(path, &len);
    assert_non_null(bytes);
    char *bad = jqt_fmt("%s/bad.ckpt", jqt_tmpdir());
    FILE *f = fopen(bad, "wb");
    assert_non_null(f);
    fwrite(bytes, 1, len / 2, f);
    fclose(f);
    jq_pt_model *md = NULL;
    char *cd = NULL;
    assert_int_equal(jq_pt_checkpoint_load(bad, &md, &cd, err, sizeof err), -1);
    assert_null(md);
    assert_non_null(strstr(err, "bad.ckpt"));
    /* a model GGUF is not a checkpoint */
    assert_int_equal(jq_pt_trainer_resume(tc, jqt_model_path("stories260K.gguf"),
                                          err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "not a judgeq pretrain checkpoint"));
    free(bytes);
    free(bad);
    free(config);
    free(path);
    jq_pt_trainer_free(ta);
    jq_pt_trainer_free(tc);
    jq_pt_model_free(ma);
    jq_pt_model_free(mc);
}

/* ------------------------------------------------------- export */

/* A minimal llama vocabulary: <unk> <s> </s>, then "▁w3".."▁wN". */
static int toy_tokenizer(void *ud, jq_gguf_writer *w, char *err,
                         size_t errlen)
{
    const int n = *(const int *)ud;
    char **tok = calloc((size_t)n, sizeof *tok);
    float *scores = calloc((size_t)n, sizeof *scores);
    int32_t *types = calloc((size_t)n, sizeof *types);
    assert_true(tok && scores && types);
    const char *special[3] = {"<unk>", "<s>", "</s>"};
    for (int i = 0; i < n; i++) {
        tok[i] = i < 3 ? strdup(special[i]) : jqt_fmt("\xE2\x96\x81w%d", i);
        types[i] = i == 0 ? 2 : i < 3 ? 3 : 1;
        scores[i] = i < 3 ? 0.0f : -(float)i;
    }
    int bad = 0;
    bad |= jq_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    bad |= jq_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens",
                                      (const char *const *)tok, (uint64_t)n);
    bad |= jq_gguf_writer_set_arr_f32(w, "tokenizer.ggml.scores", scores, (uint64_t)n);
    bad |= jq_gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", types, (uint64_t)n);
    bad |= jq_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    bad |= jq_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    bad |= jq_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    for (int i = 0; i < n; i++)
        free(tok[i]);
    free(tok);
    free(scores);
    free(types);
    if (bad)
        snprintf(err, errlen, "%s", jq_gguf_writer_error(w));
    return bad ? -1 : 0;
}

static void check_export(uint32_t type, double tol, bool tie)
{
    g_tie = tie;
    jq_pt_model *m = tiny_model(40, 32, 2, 4, 2, 48, 100, 11);
    g_tie = false;
    /* trained-looking weights: larger than the initialisation's, so the
     * logits spread over several units */
    jqt_rng r;
    jqt_rng_seed(&r, 8);
    for (size_t i = 0; i < m->n_params; i++)
        m->params[i] += jqt_rng_uniform(&r, -0.15f, 0.15f);
    char *path = jqt_fmt("%s/pt-%u.gguf", jqt_tmpdir(), type);
    char err[256];
    int nv = 40;
    if (jq_pt_export_gguf(m, type, "test", toy_tokenizer, &nv, path, err,
                          sizeof err) != 0)
        fail_msg("export: %s", err);
    jq_model *jm = jq_model_load(path, err, sizeof err);
    if (!jm)
        fail_msg("jq_model_load: %s", err);
    assert_int_equal(jm->hp.n_vocab, 40);
    assert_int_equal(jm->hp.n_head_kv, 2);
    assert_int_equal(jm->hp.n_ctx_train, 100);
    assert_int_equal(jm->output_tied, tie);
    const int32_t n = 90; /* two attention blocks */
    int32_t *tok = random_tokens(&r, n, 40);
    float *ref = malloc((size_t)n * 40 * sizeof *ref);
    float *got = malloc(40 * sizeof *got);
    assert_int_equal(jq_pt_logits(m, tok, n, ref, err, sizeof err), 0);
    jq_ctx *c = jq_ctx_new(jm, n, 1, NULL, err, sizeof err);
    assert_non_null(c);
    double worst = 0, spread = 0;
    for (int32_t i = 0; i < n; i++) {
        assert_int_equal(jq_ctx_eval(c, &tok[i], 1, got, err, sizeof err), 0);
        for (int j = 0; j < 40; j++) {
            const double d = fabs((double)got[j] - ref[i * 40 + j]);
            worst = d > worst ? d : worst;
            spread = fabs(ref[i * 40 + j]) > spread ? fabs(ref[i * 40 + j]) : spread;
        }
    }
    print_message("export %s: max |logit diff| %.2e (logits up to %.2f)\n",
                  type == JQ_TYPE_F32 ? "f32" : "f16", worst, spread);
    assert_true(spread > 0.5);
    assert_true(worst <= tol);
    jq_ctx_free(c);
    jq_model_free(jm);
    free(tok);
    free(ref);
    free(got);
    free(path);
    jq_pt_model_free(m);
}

/* F32: the same arithmetic in another order (decode one token at a time
 * against the trainer's blocked GEMMs): 1e-4 absolute. F16 rounds every
 * weight to 11 bits (relative 2^-12), which moves logits of this size by
 * ~1e-2. */
static void test_export_loads_and_matches(void **state)
{
    (void)state;
    check_export(JQ_TYPE_F32, 1e-4, false);
    check_export(JQ_TYPE_F16, 5e-2, false);
    /* tied: no output.weight; judgeq's loader uses the token embedding */
    check_export(JQ_TYPE_F32, 1e-4, true);
}

/* ------------------------------------------------------ bad input */

static void test_bad_sequences_refused(void **state)
{
    (void)state;
    jq_pt_model *m = tiny_model(TOY_VOCAB, 16, 1, 2, 1, 16, 16, 1);
    const jq_pt_opts o = toy_opts(10);
    char err[256];
    jq_pt_trainer *t = jq_pt_trainer_new(m, &o, NULL, err, sizeof err);
    int32_t toks[20] = {1, 5, 6, 7, 2};
    jq_pt_seq s = {toks, 5, 5};
    assert_int_equal(jq_pt_trainer_step(t, &s, 1, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "n_prompt"));
    s = (jq_pt_seq){toks, 18, 3}; /* longer than n_ctx + 1 */
    assert_int_equal(jq_pt_trainer_step(t, &s, 1, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "n_ctx"));
    toks[3] = TOY_VOCAB;
    s = (jq_pt_seq){toks, 5, 2};
    assert_int_equal(jq_pt_trainer_step(t, &s, 1, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "vocabulary"));
    assert_int_equal(jq_pt_trainer_steps_done(t), 0);
    const jq_pt_hparams bad = {100, 30, 1, 4, 2, 16, 16, 10000.0f, 1e-5f, false};
    assert_null(jq_pt_model_new(&bad, err, sizeof err));
    assert_non_null(strstr(err, "n_embd 30"));
    jq_pt_trainer_free(t);
    jq_pt_model_free(m);
}

/* ------------------------------------------------------ data plan */

static void test_data_plan(void **state)
{
    (void)state;
    jq_pt_data_plan p;
    jq_pt_data_defaults(&p, 7, 1000, 1024);
    char err[256];
    assert_int_equal(jq_pt_data_check(&p, err, sizeof err), 0);
    assert_int_equal(jq_pt_data_length(&p, 0), 48);
    assert_int_equal(jq_pt_data_length(&p, 79), 48);
    assert_int_equal(jq_pt_data_length(&p, 80), 96);
    assert_int_equal(jq_pt_data_length(&p, 999), 1024);
    assert_float_equal(jq_pt_data_level(&p, 0), 0.0, 1e-12);
    assert_float_equal(jq_pt_data_level(&p, 350), 0.5, 1e-12);
    assert_float_equal(jq_pt_data_level(&p, 800), 1.0, 1e-12);
    assert_int_equal(jq_pt_data_max_difficulty(JQ_RECALL_MQAR, 0), 2);
    assert_int_equal(jq_pt_data_max_difficulty(JQ_RECALL_MQAR, 1),
                     jq_recall_default_difficulty(JQ_RECALL_MQAR));

    /* niah alone first, then every task; lengths within the stage; the
     * scored part is exactly the answer and its EOS */
    jq_pt_batch a, b, c;
    assert_int_equal(jq_pt_data_batch(&p, 10, 32, false, &a, err, sizeof err), 0);
    for (int i = 0; i < 32; i++) {
        assert_int_equal(a.task[i], JQ_RECALL_NIAH);
        assert_true(a.seqs[i].n_tokens <= 48);
        assert_int_equal(a.seqs[i].tokens[0], 1);
        assert_int_equal(a.seqs[i].tokens[a.seqs[i].n_tokens - 1], 2);
    }
    assert_int_equal(jq_pt_data_batch(&p, 700, 64, false, &b, err, sizeof err), 0);
    int seen[JQ_RECALL_COUNT_] = {0};
    for (int i = 0; i < 64; i++) {
        seen[b.task[i]]++;
        assert_true(b.seqs[i].n_tokens <= 512);
        assert_true(b.seqs[i].n_tokens >= 200);
    }
    for (int t = 0; t < JQ_RECALL_COUNT_; t++)
        assert_true(seen[t] > 0);
    /* the same step again: the same tokens (what --resume relies on) */
    assert_int_equal(jq_pt_data_batch(&p, 700, 64, false, &c, err, sizeof err), 0);
    for (int i = 0; i < 64; i++) {
        assert_int_equal(b.seqs[i].n_tokens, c.seqs[i].n_tokens);
        assert_memory_equal(b.seqs[i].tokens, c.seqs[i].tokens,
                            (size_t)b.seqs[i].n_tokens * sizeof(int32_t));
    }
    jq_pt_batch_free(&c);
    /* another step: other examples */
    assert_int_equal(jq_pt_data_batch(&p, 701, 64, false, &c, err, sizeof err), 0);
    int same = 0;
    for (int i = 0; i < 64; i++)
        same += b.seqs[i].n_tokens == c.seqs[i].n_tokens &&
                !memcmp(b.seqs[i].tokens, c.seqs[i].tokens,
                        (size_t)b.seqs[i].n_tokens * sizeof(int32_t));
    assert_int_equal(same, 0);
    jq_pt_batch_free(&a);
    jq_pt_batch_free(&b);
    jq_pt_batch_free(&c);
    /* the held-out batch: the stage's tasks in turn, the same at every
     * step of a stage */
    assert_int_equal(jq_pt_data_batch(&p, 700, 10, true, &a, err, sizeof err), 0);
    assert_int_equal(jq_pt_data_batch(&p, 710, 10, true, &b, err, sizeof err), 0);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(a.task[i], i % JQ_RECALL_COUNT_);
        assert_memory_equal(a.seqs[i].tokens, b.seqs[i].tokens,
                            (size_t)a.seqs[i].n_tokens * sizeof(int32_t));
    }
    jq_pt_batch_free(&a);
    jq_pt_batch_free(&b);

    /* the command-line forms */
    assert_int_equal(jq_pt_parse_tasks(&p, "vt:3,cwe", err, sizeof err), 0);
    assert_int_equal(p.n_task_stages, 1);
    assert_float_equal(p.task_weight[0][JQ_RECALL_VT], 3, 0);
    assert_float_equal(p.task_weight[0][JQ_RECALL_CWE], 1, 0);
    assert_float_equal(p.task_weight[0][JQ_RECALL_NIAH], 0, 0);
    assert_int_equal(jq_pt_parse_tasks(&p, "niah/0.2:mqar:2/0.5:vt", err,
                                       sizeof err),
                     0);
    assert_int_equal(p.n_task_stages, 3);
    assert_float_equal(p.task_at[2], 0.5, 0);
    const char *bad_tasks[] = {"", "niah/mqar", "niah/0.5:vt/0.4:cwe",
                               "ruler", "niah:-1", "niah:0"};
    for (size_t i = 0; i < sizeof bad_tasks / sizeof *bad_tasks; i++)
        assert_int_equal(jq_pt_parse_tasks(&p, bad_tasks[i], err, sizeof err), -1);
    assert_int_equal(p.n_task_stages, 3); /* unchanged by the failures */
    assert_int_equal(jq_pt_parse_lengths(&p, "0:100,0.5:300", err, sizeof err), 0);
    assert_int_equal(jq_pt_data_length(&p, 499), 100);
    assert_int_equal(jq_pt_data_length(&p, 500), 300);
    const char *bad_len[] = {"", "0:100,0.5", "0.1:100", "0:100,0.5:300,0.4:400",
                             "0:8", "0:2000", "0:100.5", "0:100,1:200"};
    for (size_t i = 0; i < sizeof bad_len / sizeof *bad_len; i++)
        assert_int_equal(jq_pt_parse_lengths(&p, bad_len[i], err, sizeof err), -1);
    assert_int_equal(jq_pt_parse_levels(&p, "0:0.2,0.5:0.8", err, sizeof err), 0);
    assert_float_equal(jq_pt_data_level(&p, 250), 0.5, 1e-12);
    assert_int_equal(jq_pt_parse_levels(&p, "0:1.5", err, sizeof err), -1);
    char *d = jq_pt_data_describe(&p);
    assert_non_null(strstr(d, "lengths=0:100,0.5:300"));
    assert_non_null(strstr(d, "seed=7"));
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradient_matches_fd),
        cmocka_unit_test(test_gradient_matches_fd_tied),
        cmocka_unit_test(test_context_loss_gradient),
        cmocka_unit_test(test_attention_matches_naive),
        cmocka_unit_test(test_adamw_by_hand),
        cmocka_unit_test(test_tiny_run_loss_falls),
        cmocka_unit_test(test_thread_count_does_not_change_bits),
        cmocka_unit_test(test_checkpoint_resume_bit_exact),
        cmocka_unit_test(test_export_loads_and_matches),
        cmocka_unit_test(test_bad_sequences_refused),
        cmocka_unit_test(test_data_plan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
