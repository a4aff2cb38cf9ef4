/* train.c — the soft-token training loop. See train.h.
 *
 * One step: the batch's examples are shared out to the pool's threads
 * through an atomic counter; each thread evaluates its example's soft loss
 * and gradient (soft_train.c) single-threaded into the example's own slot;
 * the slots are then summed in batch order (so the result does not depend
 * on which thread ran what) and Adam updates E.
 *
 * The prompt's K/V — the constants of the soft forward pass — take a full
 * forward pass over the prompt, ~L/n times the cost of the soft rows. They
 * are kept in memory per example up to --kv-mem, and recomputed (single
 * threaded, so bit-identical) for the examples beyond it.
 *
 * Optimiser sidecar (PATH.adam, native little-endian):
 *   "JQADAM01", u32 version 1, i32 n, n_embd, u64 step, u64 jqh64 of the
 *   soft embeddings it belongs to, f32 lr, beta1, beta2, eps, loss_scale,
 *   f64 eval_frac, i32 batch, u64 seed, u64 data key, i32 examples,
 *   f32 m[n * n_embd], f32 v[n * n_embd], u64 jqh64 of all bytes before.
 * The sidecar is written (temp + fsync + rename) before the GGUF, and
 * resuming checks that its hash matches the GGUF's embeddings, so a crash
 * between the two renames is detected rather than resumed wrongly.
 */
#include "train.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels.h"
#include "prefill.h"
#include "soft_train.h"

#define ADAM_MAGIC "JQADAM01"
#define ADAM_VERSION 1u

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* splitmix64: every random choice is a function of (seed, purpose, index) */
static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Fisher-Yates with a stream seeded by (seed, purpose). */
static void shuffle(int32_t *v, int32_t n, uint64_t seed, uint64_t purpose)
{
    uint64_t s = seed ^ (purpose * 0xd6e8feb86659fd93ull);
    splitmix(&s);
    for (int32_t i = n - 1; i > 0; i--) {
        int32_t j = (int32_t)(splitmix(&s) % (uint64_t)(i + 1));
        int32_t t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

/* ------------------------------------------------------- the workers */

enum { TASK_TRAIN, TASK_EVAL, TASK_BASELINES };

typedef struct {
    const jq_model *m;
    const jq_train_set *set;
    const jq_train_opts *o;
    int nth;
    int32_t n_soft;
    jq_soft_work **work;       /* per thread */
    jq_ctx **ctx;              /* per thread, made on first use */
    float **scores;            /* per thread (n_layer, n_head, max_L) */
    _Atomic(jq_kv_store *) *kv; /* per example: prompt K/V kept in memory */
    _Atomic size_t kv_bytes;
    /* the current task */
    int task;
    const int32_t *items;      /* example indices */
    int32_t n_items;
    const float *E;
    float *grads;              /* (n_items, n * n_embd) */
    double *losses;            /* (n_items) */
    double *hit, *mass;        /* (n_items): judgeq (eval) */
    double *hit2, *mass2;      /* (n_items): streaming (baselines) */
    jq_kept **oracle;          /* per example (eval set only) */
    _Atomic int32_t next;
    _Atomic bool failed;
    char err[512];
} runner;

static void fail_task(runner *r, const char *msg)
{
    bool expected = false;
    if (atomic_compare_exchange_strong(&r->failed, &expected, true))
        snprintf(r->err, sizeof r->err, "%s", msg);
}

static jq_ctx *worker_ctx(runner *r, int ith, char *err, size_t errlen)
{
    if (!r->ctx[ith])
        r->ctx[ith] = jq_ctx_new(r->m, r->set->max_L, r->set->max_L, NULL,
                                 err, errlen);
    return r->ctx[ith];
}

/* The prompt's K/V for example idx: the kept copy, or a fresh evaluation
 * (kept when the memory budget allows, else in the thread's context, valid
 * until its next use). */
static const jq_kv_store *prompt_kv(runner *r, int ith, int32_t idx,
                                    char *err, size_t errlen)
{
    jq_kv_store *kept = atomic_load(&r->kv[idx]);
    if (kept)
        return kept;
    const jq_hparams *hp = &r->m->hp;
    const jq_train_example *ex = &r->set->ex[idx];
    jq_ctx *c = worker_ctx(r, ith, err, errlen);
    if (!c)
        return NULL;
    size_t bytes = jq_kv_bytes_for(hp->n_layer, hp->n_head_kv, hp->head_dim,
                                   JQ_TYPE_F32, ex->L);
    jq_kv_store *st = NULL;
    if (atomic_fetch_add(&r->kv_bytes, bytes) + bytes <= r->o->kv_mem_bytes)
        st = jq_kv_store_new(hp->n_layer, hp->n_head_kv, hp->head_dim,
                             JQ_TYPE_F32, ex->L);
    if (!st)
        atomic_fetch_sub(&r->kv_bytes, bytes);
    jq_ctx_reset(c);
    if (st)
        jq_ctx_set_kv(c, st, false);
    int rc = jq_ctx_eval(c, ex->tokens, ex->L, NULL, err, errlen);
    if (!st)
        return rc == 0 ? jq_ctx_kv(c) : NULL;
    jq_ctx_reset(c); /* back to the own store; st stays ours */
    if (rc != 0) {
        atomic_fetch_sub(&r->kv_bytes, bytes);
        jq_kv_store_free(st);
        return NULL;
    }
    jq_kv_store *expected = NULL;
    if (!atomic_compare_exchange_strong(&r->kv[idx], &expected, st)) {
        /* the same example twice in a batch: the other copy won */
        atomic_fetch_sub(&r->kv_bytes, bytes);
        jq_kv_store_free(st);
        return expected;
    }
    return st;
}

/* Judge Q's kept set from scores, its hit rate against the oracle's and
 * its attention-mass recall. */
static int score_policy(runner *r, const jq_evict_spec *spec, int32_t idx,
                        const float *scores, double *hit, double *mass,
                        char *err, size_t errlen)
{
    const jq_hparams *hp = &r->m->hp;
    const jq_train_example *ex = &r->set->ex[idx];
    jq_kept *k = jq_kept_new(hp->n_layer, hp->n_head_kv, ex->L);
    if (!k) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    int rc = jq_evict_select(spec, hp->n_layer, hp->n_head, hp->n_head_kv,
                             ex->L, scores, k, err, errlen);
    if (rc == 0) {
        *hit = jq_evict_hit_rate(k, r->oracle[idx]);
        *mass = jq_evict_mass_recall(k, ex->raw, hp->n_head,
                                     spec->gqa_reduce);
    }
    jq_kept_free(k);
    return rc;
}

static int run_item(runner *r, int ith, int32_t k, char *err, size_t errlen)
{
    const jq_train_example *ex = &r->set->ex[r->items[k]];
    int32_t idx = r->items[k];
    if (r->task == TASK_BASELINES) {
        /* SnapKV's scores need the prompt's own forward pass */
        jq_ctx *c = worker_ctx(r, ith, err, errlen);
        if (!c)
            return -1;
        jq_prefill_params pp = {.spec = r->o->snapkv, .kv_type = JQ_TYPE_F32};
        if (jq_prefill_scores(c, ex->tokens, ex->L, &pp, r->scores[ith], NULL,
                              err, errlen) != 0 ||
            score_policy(r, &r->o->snapkv, idx, r->scores[ith], &r->hit[k],
                         &r->mass[k], err, errlen) != 0 ||
            score_policy(r, &r->o->streaming, idx, NULL, &r->hit2[k],
                         &r->mass2[k], err, errlen) != 0)
            return -1;
        return 0;
    }
    const jq_kv_store *kv = prompt_kv(r, ith, idx, err, errlen);
    if (!kv)
        return -1;
    jq_soft_example se = {.prompt_kv = kv, .L = ex->L, .target = ex->target,
                          .loss_scale = r->o->loss_scale};
    size_t nE = (size_t)r->n_soft * (size_t)r->m->hp.n_embd;
    if (r->task == TASK_TRAIN)
        return jq_soft_loss_grad(r->work[ith], r->E, &se, &r->losses[k],
                                 r->grads + (size_t)k * nE, NULL, err, errlen);
    if (jq_soft_loss_grad(r->work[ith], r->E, &se, &r->losses[k], NULL,
                          r->scores[ith], err, errlen) != 0)
        return -1;
    return score_policy(r, &r->o->judgeq, idx, r->scores[ith], &r->hit[k],
                        &r->mass[k], err, errlen);
}

static void runner_task(void *arg, int ith, int nth)
{
    (void)nth;
    runner *r = arg;
    char err[512];
    for (;;) {
        int32_t k = atomic_fetch_add(&r->next, 1);
        if (k >= r->n_items || atomic_load(&r->failed))
            return;
        if (run_item(r, ith, k, err, sizeof err) != 0) {
            fail_task(r, err);
            return;
        }
    }
}

static int run(runner *r, jq_pool *pool, int task, const int32_t *items,
               int32_t n_items, char *err, size_t errlen)
{
    r->task = task;
    r->items = items;
    r->n_items = n_items;
    atomic_store(&r->next, 0);
    atomic_store(&r->failed, false);
    jq_pool_run(pool, runner_task, r);
    if (atomic_load(&r->failed)) {
        set_err(err, errlen, "%s", r->err);
        return -1;
    }
    return 0;
}

static void runner_free(runner *r)
{
    for (int i = 0; i < r->nth; i++) {
        if (r->work)
            jq_soft_work_free(r->work[i]);
        if (r->ctx)
            jq_ctx_free(r->ctx[i]);
        if (r->scores)
            free(r->scores[i]);
    }
    free(r->work);
    free(r->ctx);
    free(r->scores);
    if (r->kv)
        for (int32_t i = 0; i < r->set->n; i++)
            jq_kv_store_free(atomic_load(&r->kv[i]));
    free((void *)r->kv);
    if (r->oracle)
        for (int32_t i = 0; i < r->set->n; i++)
            jq_kept_free(r->oracle[i]);
    free(r->oracle);
    free(r->grads);
    free(r->losses);
    free(r->hit);
    free(r->mass);
    free(r->hit2);
    free(r->mass2);
}

/* ------------------------------------------------------- checkpoints */

void jq_adam_state_free(jq_adam_state *a)
{
    if (!a)
        return;
    free(a->m);
    free(a->v);
    a->m = a->v = NULL;
}

typedef struct {
    char magic[8];
    uint32_t version;
    int32_t n, n_embd;
    uint32_t pad0;
    uint64_t step, soft_hash;
    float lr, beta1, beta2, eps, loss_scale;
    uint32_t pad1;
    double eval_frac;
    int32_t batch;
    uint32_t pad2;
    uint64_t seed, data_key;
    int32_t n_examples;
    uint32_t pad3;
} adam_header;

static uint64_t embd_hash(const jq_soft_tokens *s)
{
    return jq_hash64(s->emb, sizeof(float) * (size_t)s->n * s->n_embd, 0);
}

static char *sidecar_path(const char *path)
{
    size_t n = strlen(path) + 6;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s.adam", path);
    return p;
}

static adam_header make_header(const jq_train_opts *o,
                               const jq_train_set *set,
                               const jq_soft_tokens *s, uint64_t step)
{
    adam_header h;
    memset(&h, 0, sizeof h); /* padding too: the file is hashed */
    memcpy(h.magic, ADAM_MAGIC, 8);
    h.version = ADAM_VERSION;
    h.n = s->n;
    h.n_embd = s->n_embd;
    h.step = step;
    h.soft_hash = embd_hash(s);
    h.lr = o->lr;
    h.beta1 = o->beta1;
    h.beta2 = o->beta2;
    h.eps = o->eps;
    h.loss_scale = o->loss_scale;
    h.eval_frac = o->eval_frac;
    h.batch = o->batch;
    h.seed = o->seed;
    h.data_key = set->key;
    h.n_examples = set->n;
    return h;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int save_sidecar(const char *path, const adam_header *h,
                        const float *m, const float *v, char *err,
                        size_t errlen)
{
    size_t nE = (size_t)h->n * (size_t)h->n_embd;
    size_t size = sizeof *h + 2 * nE * sizeof(float);
    unsigned char *buf = malloc(size + 8);
    char *tmp = malloc(strlen(path) + 5);
    if (!buf || !tmp) {
        free(buf);
        free(tmp);
        set_err(err, errlen, "out of memory");
        return -1;
    }
    memcpy(buf, h, sizeof *h);
    memcpy(buf + sizeof *h, m, nE * sizeof(float));
    memcpy(buf + sizeof *h + nE * sizeof(float), v, nE * sizeof(float));
    uint64_t sum = jq_hash64(buf, size, 0);
    memcpy(buf + size, &sum, 8);
    sprintf(tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    int rc = -1;
    if (fd >= 0 && write_all(fd, buf, size + 8) == 0 && fsync(fd) == 0) {
        rc = close(fd);
        fd = -1;
        if (rc == 0)
            rc = rename(tmp, path);
    }
    if (rc != 0) {
        set_err(err, errlen, "writing '%s': %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        unlink(tmp);
    }
    free(tmp);
    free(buf);
    return rc == 0 ? 0 : -1;
}

static int save_checkpoint(const jq_model *m, const jq_train_opts *o,
                           const jq_train_set *set, jq_soft_tokens *s,
                           const float *am, const float *av, uint64_t step,
                           char *err, size_t errlen)
{
    s->trained_steps = step;
    adam_header h = make_header(o, set, s, step);
    char *side = sidecar_path(o->out_path);
    if (!side) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    int rc = save_sidecar(side, &h, am, av, err, errlen);
    free(side);
    if (rc != 0)
        return -1;
    return jq_soft_tokens_save(s, m, o->out_path, err, errlen);
}

int jq_train_resume_load(const char *path, const jq_model *m,
                         const jq_train_opts *o, const jq_train_set *set,
                         jq_soft_tokens **soft, jq_adam_state *adam,
                         char *err, size_t errlen)
{
    *soft = NULL;
    *adam = (jq_adam_state){0};
    char lerr[768];
    jq_soft_tokens *s = jq_soft_tokens_load(path, m, lerr, sizeof lerr);
    if (!s) {
        set_err(err, errlen, "--resume: %s", lerr);
        return -1;
    }
    char *side = sidecar_path(path);
    FILE *f = side ? fopen(side, "rb") : NULL;
    unsigned char *buf = NULL;
    size_t nE = (size_t)s->n * (size_t)s->n_embd;
    size_t size = sizeof(adam_header) + 2 * nE * sizeof(float) + 8;
    if (!f) {
        set_err(err, errlen, "--resume: cannot open the optimiser state "
                "'%s': %s", side ? side : path, strerror(errno));
        goto fail;
    }
    buf = malloc(size + 1);
    if (!buf || fread(buf, 1, size + 1, f) != size) {
        set_err(err, errlen, "--resume: '%s' is not the optimiser state of "
                "%d x %d soft tokens (wrong size)", side, s->n, s->n_embd);
        goto fail;
    }
    adam_header h, want = make_header(o, set, s, s->trained_steps);
    memcpy(&h, buf, sizeof h);
    uint64_t sum;
    memcpy(&sum, buf + size - 8, 8);
    if (memcmp(h.magic, ADAM_MAGIC, 8) != 0 || h.version != ADAM_VERSION ||
        jq_hash64(buf, size - 8, 0) != sum) {
        set_err(err, errlen, "--resume: '%s' is damaged or not a judgeq "
                "optimiser state", side);
        goto fail;
    }
    if (h.n != s->n || h.n_embd != s->n_embd || h.step != s->trained_steps ||
        h.soft_hash != want.soft_hash) {
        set_err(err, errlen, "--resume: '%s' (step %llu) does not belong to "
                "'%s' (step %llu): the run stopped between writing them; "
                "start again without --resume", side,
                (unsigned long long)h.step, path,
                (unsigned long long)s->trained_steps);
        goto fail;
    }
    struct { const char *what; bool same; double was, now; } checks[] = {
        {"--lr", h.lr == want.lr, h.lr, want.lr},
        {"Adam beta1", h.beta1 == want.beta1, h.beta1, want.beta1},
        {"Adam beta2", h.beta2 == want.beta2, h.beta2, want.beta2},
        {"Adam eps", h.eps == want.eps, h.eps, want.eps},
        {"--loss-scale", h.loss_scale == want.loss_scale, h.loss_scale,
         want.loss_scale},
        {"--eval-frac", h.eval_frac == want.eval_frac, h.eval_frac,
         want.eval_frac},
        {"--batch", h.batch == want.batch, h.batch, want.batch},
        {"--seed", h.seed == want.seed, (double)h.seed, (double)want.seed},
    };
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        if (!checks[i].same) {
            set_err(err, errlen, "--resume: %s is %g but the checkpoint was "
                    "trained with %g", checks[i].what, checks[i].now,
                    checks[i].was);
            goto fail;
        }
    }
    if (h.data_key != want.data_key || h.n_examples != want.n_examples) {
        set_err(err, errlen, "--resume: the training data differ from the "
                "checkpoint's (%d examples then, %d now, or other prompts "
                "or settings)", h.n_examples, want.n_examples);
        goto fail;
    }
    adam->n = s->n;
    adam->n_embd = s->n_embd;
    adam->step = h.step;
    adam->m = malloc(nE * sizeof(float));
    adam->v = malloc(nE * sizeof(float));
    if (!adam->m || !adam->v) {
        set_err(err, errlen, "out of memory");
        goto fail;
    }
    memcpy(adam->m, buf + sizeof h, nE * sizeof(float));
    memcpy(adam->v, buf + sizeof h + nE * sizeof(float), nE * sizeof(float));
    fclose(f);
    free(buf);
    free(side);
    *soft = s;
    return 0;
fail:
    if (f)
        fclose(f);
    free(buf);
    free(side);
    jq_adam_state_free(adam);
    jq_soft_tokens_free(s);
    return -1;
}

/* ----------------------------------------------------------- the loop */

typedef struct {
    double loss, hit, mass;
} eval_result;

static int evaluate(runner *r, jq_pool *pool, const int32_t *eval_idx,
                    int32_t n_eval, const float *E, eval_result *out,
                    char *err, size_t errlen)
{
    *out = (eval_result){NAN, NAN, NAN};
    if (n_eval == 0)
        return 0;
    r->E = E;
    if (run(r, pool, TASK_EVAL, eval_idx, n_eval, err, errlen) != 0)
        return -1;
    double l = 0, h = 0, m = 0;
    for (int32_t k = 0; k < n_eval; k++) {
        l += r->losses[k];
        h += r->hit[k];
        m += r->mass[k];
    }
    *out = (eval_result){l / n_eval, h / n_eval, m / n_eval};
    return 0;
}

int jq_train(const jq_model *m, jq_pool *pool, const jq_train_set *set,
             jq_soft_tokens *soft, const jq_adam_state *adam,
             const jq_train_opts *o, jq_train_summary *sum, char *err,
             size_t errlen)
{
    const jq_hparams *hp = &m->hp;
    memset(sum, 0, sizeof *sum);
    const int32_t n = soft->n;
    const size_t nE = (size_t)n * (size_t)hp->n_embd;
    if (soft->n_embd != hp->n_embd) {
        set_err(err, errlen, "soft tokens of %d values for a model of %d",
                soft->n_embd, hp->n_embd);
        return -1;
    }
    if (o->batch < 1 || o->lr <= 0 || set->n < 1) {
        set_err(err, errlen, "nothing to train (batch %d, lr %g, %d "
                "examples)", o->batch, o->lr, set->n);
        return -1;
    }

    /* held-out split: a seeded permutation, the first n_eval held out */
    int32_t *order = malloc(sizeof(int32_t) * (size_t)set->n);
    int32_t *batch = malloc(sizeof(int32_t) * (size_t)o->batch);
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)set->n);
    float *am = calloc(nE, sizeof(float)), *av = calloc(nE, sizeof(float));
    runner r = {.m = m, .set = set, .o = o, .n_soft = n,
                .nth = pool && pool->n_threads > 1 ? pool->n_threads : 1};
    int rc = -1;
    if (!order || !batch || !perm || !am || !av) {
        set_err(err, errlen, "out of memory");
        goto done;
    }
    for (int32_t i = 0; i < set->n; i++)
        order[i] = i;
    shuffle(order, set->n, o->seed, 1);
    int32_t n_eval = (int32_t)lround(o->eval_frac * set->n);
    if (o->eval_frac > 0 && n_eval == 0 && set->n >= 2)
        n_eval = 1;
    if (n_eval >= set->n) {
        set_err(err, errlen, "--eval-frac %g leaves no training example out "
                "of %d", o->eval_frac, set->n);
        goto done;
    }
    const int32_t *eval_idx = order, *train_idx = order + n_eval;
    const int32_t n_train = set->n - n_eval;
    sum->n_train = n_train;
    sum->n_eval = n_eval;
    int32_t max_items = o->batch > n_eval ? o->batch : n_eval;

    r.work = calloc((size_t)r.nth, sizeof *r.work);
    r.ctx = calloc((size_t)r.nth, sizeof *r.ctx);
    r.scores = calloc((size_t)r.nth, sizeof *r.scores);
    r.kv = calloc((size_t)set->n, sizeof *r.kv);
    r.oracle = calloc((size_t)set->n, sizeof *r.oracle);
    r.grads = malloc(sizeof(float) * nE * (size_t)o->batch);
    r.losses = calloc((size_t)max_items, sizeof(double));
    r.hit = calloc((size_t)max_items, sizeof(double));
    r.mass = calloc((size_t)max_items, sizeof(double));
    r.hit2 = calloc((size_t)max_items, sizeof(double));
    r.mass2 = calloc((size_t)max_items, sizeof(double));
    if (!r.work || !r.ctx || !r.scores || !r.kv || !r.oracle || !r.grads ||
        !r.losses || !r.hit || !r.mass || !r.hit2 || !r.mass2) {
        set_err(err, errlen, "out of memory");
        goto done;
    }
    for (int i = 0; i < r.nth; i++) {
        r.work[i] = jq_soft_work_new(m, n, set->max_L);
        r.scores[i] = malloc(sizeof(float) * (size_t)hp->n_layer *
                             (size_t)hp->n_head * (size_t)set->max_L);
        if (!r.work[i] || !r.scores[i]) {
            set_err(err, errlen, "out of memory for the trainer's workspace");
            goto done;
        }
    }
    /* the oracle sets of the held-out examples, and the baselines */
    jq_evict_spec ospec = jq_evict_spec_default(JQ_EVICT_ORACLE,
                                                o->judgeq.budget);
    for (int32_t k = 0; k < n_eval; k++) {
        const jq_train_example *ex = &set->ex[eval_idx[k]];
        jq_kept *kk = jq_kept_new(hp->n_layer, hp->n_head_kv, ex->L);
        if (!kk) {
            set_err(err, errlen, "out of memory");
            goto done;
        }
        r.oracle[eval_idx[k]] = kk;
        if (jq_evict_select(&ospec, hp->n_layer, hp->n_head, hp->n_head_kv,
                            ex->L, ex->raw, kk, err, errlen) != 0)
            goto done;
    }
    if (n_eval > 0) {
        if (run(&r, pool, TASK_BASELINES, eval_idx, n_eval, err, errlen) != 0)
            goto done;
        double hs = 0, ms = 0, ht = 0, mt = 0;
        for (int32_t k = 0; k < n_eval; k++) {
            hs += r.hit[k];
            ms += r.mass[k];
            ht += r.hit2[k];
            mt += r.mass2[k];
        }
        sum->hit_snapkv = hs / n_eval;
        sum->mass_snapkv = ms / n_eval;
        sum->hit_streaming = ht / n_eval;
        sum->mass_streaming = mt / n_eval;
    } else {
        sum->hit_snapkv = sum->mass_snapkv = NAN;
        sum->hit_streaming = sum->mass_streaming = NAN;
    }

    int64_t step = 0;
    if (adam) {
        if (adam->n != n || adam->n_embd != hp->n_embd) {
            set_err(err, errlen, "optimiser state of another shape");
            goto done;
        }
        memcpy(am, adam->m, nE * sizeof(float));
        memcpy(av, adam->v, nE * sizeof(float));
        step = (int64_t)adam->step;
    }
    sum->start_step = step;
    float *E = soft->emb;
    eval_result ev;
    if (evaluate(&r, pool, eval_idx, n_eval, E, &ev, err, errlen) != 0)
        goto done;
    sum->eval_loss_start = ev.loss;
    sum->hit_start = ev.hit;
    sum->mass_start = ev.mass;
    if (o->progress) {
        jq_train_progress p = {.step = step, .total = o->steps, .loss = NAN,
                               .eval = true, .eval_loss = ev.loss,
                               .eval_hit = ev.hit};
        o->progress(o->progress_ud, &p);
    }

    double t_train = 0;
    int64_t seen = 0;
    int64_t perm_epoch = -1;
    sum->train_loss_first = NAN;
    while (step < o->steps) {
        if (o->stop && *o->stop) {
            sum->interrupted = true;
            break;
        }
        /* the batch: positions [step*B, step*B + B) of the stream of
         * seeded per-epoch permutations of the training examples */
        for (int32_t b = 0; b < o->batch; b++) {
            int64_t pos = step * o->batch + b;
            int64_t epoch = pos / n_train;
            if (epoch != perm_epoch) {
                memcpy(perm, train_idx, sizeof(int32_t) * (size_t)n_train);
                shuffle(perm, n_train, o->seed, 1000 + (uint64_t)epoch);
                perm_epoch = epoch;
            }
            batch[b] = perm[pos % n_train];
        }
        double t0 = now_s();
        r.E = E;
        if (run(&r, pool, TASK_TRAIN, batch, o->batch, err, errlen) != 0)
            goto done;
        /* gradient accumulation over the batch, in batch order */
        double loss = 0;
        for (int32_t b = 0; b < o->batch; b++)
            loss += r.losses[b];
        loss /= o->batch;
        step++;
        double bc1 = 1.0 - pow((double)o->beta1, (double)step);
        double bc2 = 1.0 - pow((double)o->beta2, (double)step);
        for (size_t c = 0; c < nE; c++) {
            double gs = 0;
            for (int32_t b = 0; b < o->batch; b++)
                gs += r.grads[(size_t)b * nE + c];
            float g = (float)(gs / o->batch);
            am[c] = o->beta1 * am[c] + (1.0f - o->beta1) * g;
            av[c] = o->beta2 * av[c] + (1.0f - o->beta2) * g * g;
            double mh = am[c] / bc1, vh = av[c] / bc2;
            E[c] -= (float)(o->lr * mh / (sqrt(vh) + o->eps));
        }
        t_train += now_s() - t0;
        seen += o->batch;
        if (isnan(sum->train_loss_first))
            sum->train_loss_first = loss;
        sum->train_loss_last = loss;
        if (!isfinite(loss)) {
            set_err(err, errlen, "the loss became %g at step %lld (try a "
                    "smaller --lr)", loss, (long long)step);
            goto done;
        }
        bool eval_now = o->eval_every > 0 && step % o->eval_every == 0 &&
                        step < o->steps;
        if (eval_now &&
            evaluate(&r, pool, eval_idx, n_eval, E, &ev, err, errlen) != 0)
            goto done;
        if (o->progress) {
            double eps = t_train > 0 ? (double)seen / t_train : 0;
            jq_train_progress p = {
                .step = step, .total = o->steps, .loss = loss,
                .examples_per_s = eps,
                .eta_s = eps > 0 ? (double)(o->steps - step) * o->batch / eps
                                 : 0,
                .eval = eval_now, .eval_loss = ev.loss, .eval_hit = ev.hit};
            o->progress(o->progress_ud, &p);
        }
        if (o->save_every > 0 && step % o->save_every == 0 &&
            step < o->steps &&
            save_checkpoint(m, o, set, soft, am, av, (uint64_t)step, err,
                            errlen) != 0)
            goto done;
    }
    sum->steps_done = step;
    sum->train_seconds = t_train;
    sum->examples_seen = seen;
    sum->examples_per_s = t_train > 0 ? (double)seen / t_train : 0;
    if (save_checkpoint(m, o, set, soft, am, av, (uint64_t)step, err,
                        errlen) != 0)
        goto done;
    /* Ctrl-C wants out quickly: the checkpoint is what matters */
    if (sum->interrupted)
        ev = (eval_result){NAN, NAN, NAN};
    else if (evaluate(&r, pool, eval_idx, n_eval, E, &ev, err, errlen) != 0)
        goto done;
    sum->eval_loss_final = ev.loss;
    sum->hit_final = ev.hit;
    sum->mass_final = ev.mass;
    sum->kv_cached_bytes = atomic_load(&r.kv_bytes);
    rc = 0;
done:
    runner_free(&r);
    free(order);
    free(batch);
    free(perm);
    free(am);
    free(av);
    return rc;
}
