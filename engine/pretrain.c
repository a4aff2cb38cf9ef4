/* pretrain.c — the pretrainer: one optimizer step over a batch, on a pool
 * of threads, with a result that does not depend on the thread count.
 *
 * How the work is split: the batch is cut into o->slots contiguous
 * slots of sequences. Each slot has its own gradient array and is
 * processed by one thread from start to end (slot s by thread s mod nth),
 * in groups of whole sequences of at most group_tokens positions
 * (jq_pt_group_pass: GEMMs over all of a group's rows, single-threaded
 * OpenBLAS), the groups' gradients added into the slot's array in order.
 * Then every parameter's gradient is the sum of the slots' in slot order,
 * the squared norm is summed per fixed chunk of parameters (double) and the
 * chunks in order, and AdamW is element-wise: nothing depends on which
 * thread did what, so --threads 1 and --threads 2 give the same bits.
 * Threads beyond the slot count idle in the slot phase. Fewer slots mean
 * longer groups (bigger GEMMs: at 128-token examples and batch 32, 2 slots
 * of ~2000 rows run ~8% faster per CPU-second than 4 slots of ~1000), so
 * the default is 2, one per core here. No barrier or lock runs inside a
 * slot, so the threads never wait for each other mid-pass.
 */
#include "pretrain.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adamw.h"
#include "errors.h"
#include "pretrain_internal.h"

/* Parameters per norm-summing chunk: fixed, so the norm's rounding does not
 * depend on the thread count. */
#define NORM_CHUNK 16384

jq_pt_opts jq_pt_opts_defaults(void)
{
    return (jq_pt_opts){
        .steps = 1000, .lr = 1e-3f, .min_lr = 1e-4f, .warmup = 100,
        .weight_decay = 0.1f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
        .clip = 1.0f, .group_tokens = 4096, .slots = 2,
    };
}

struct jq_pt_trainer {
    jq_pt_model *m;
    jq_pt_opts o;
    jq_pool *pool;
    int n_work;                 /* threads that take slots */
    jq_pt_work **work;          /* (n_work) */
    float *grad[JQ_PT_MAX_SLOTS]; /* (n_params) per slot */
    float *adam_m, *adam_v;     /* (n_params) */
    double *chunk_sq;           /* (n_chunks) */
    size_t n_chunks;
    int64_t step;
};

jq_pt_trainer *jq_pt_trainer_new(jq_pt_model *m, const jq_pt_opts *o,
                                 jq_pool *pool, char *err, size_t errlen)
{
    if (o->steps < 1 || o->warmup < 0 || !(o->lr > 0) ||
        !(o->min_lr >= 0 && o->min_lr <= o->lr) || !(o->weight_decay >= 0) ||
        !(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1) ||
        !(o->eps > 0) || !(o->clip >= 0) ||
        !(o->context_loss >= 0 && o->context_loss <= 100) ||
        o->group_tokens < 1 ||
        o->slots < 1 || o->slots > JQ_PT_MAX_SLOTS) {
        jq_set_err(err, errlen,
                   "optimizer options out of range (steps >= 1, warmup >= 0, "
                   "0 <= min_lr <= lr, weight decay and clip >= 0, context loss "
                   "in [0, 100], betas in "
                   "[0, 1), eps > 0, slots in [1, %d])",
                   JQ_PT_MAX_SLOTS);
        return NULL;
    }
    jq_pt_trainer *t = calloc(1, sizeof *t);
    if (!t)
        goto oom;
    t->m = m;
    t->o = *o;
    t->pool = pool;
    const int nth = pool && pool->n_threads > 1 ? pool->n_threads : 1;
    t->n_work = nth < o->slots ? nth : o->slots;
    const int64_t cap = o->group_tokens > m->hp.n_ctx ? o->group_tokens
                                                      : m->hp.n_ctx;
    t->work = calloc((size_t)t->n_work, sizeof *t->work);
    if (!t->work)
        goto oom;
    for (int i = 0; i < t->n_work; i++)
        if (!(t->work[i] = jq_pt_work_new(m, cap, m->hp.n_ctx)))
            goto oom;
    for (int s = 0; s < o->slots; s++)
        if (!(t->grad[s] = malloc(m->n_params * sizeof(float))))
            goto oom;
    t->adam_m = calloc(m->n_params, sizeof(float));
    t->adam_v = calloc(m->n_params, sizeof(float));
    t->n_chunks = (m->n_params + NORM_CHUNK - 1) / NORM_CHUNK;
    t->chunk_sq = calloc(t->n_chunks, sizeof(double));
    if (!t->adam_m || !t->adam_v || !t->chunk_sq)
        goto oom;
    return t;
oom:
    jq_pt_trainer_free(t);
    jq_set_err(err, errlen,
               "out of memory for the trainer (gradients, moments and "
               "activations of %d-token groups)",
               o->group_tokens);
    return NULL;
}

void jq_pt_trainer_free(jq_pt_trainer *t)
{
    if (!t)
        return;
    if (t->work)
        for (int i = 0; i < t->n_work; i++)
            jq_pt_work_free(t->work[i]);
    free(t->work);
    for (int s = 0; s < JQ_PT_MAX_SLOTS; s++)
        free(t->grad[s]);
    free(t->adam_m);
    free(t->adam_v);
    free(t->chunk_sq);
    free(t);
}

int64_t jq_pt_trainer_steps_done(const jq_pt_trainer *t)
{
    return t->step;
}

/* ------------------------------------------------------------- jobs */

typedef enum { PHASE_SLOTS, PHASE_REDUCE, PHASE_UPDATE } phase;

typedef struct {
    jq_pt_trainer *t;
    phase ph;
    const jq_pt_seq *seqs;
    int n, n_slots;
    float loss_scale, ctx_scale;
    bool train;
    jq_pt_stats slot_stats[JQ_PT_MAX_SLOTS];
    jq_adamw_step as;
} step_job;

/* Sequences [first, end) of slot s. */
static void slot_range(const step_job *j, int s, int *first, int *end)
{
    *first = (int)((int64_t)s * j->n / j->n_slots);
    *end = (int)((int64_t)(s + 1) * j->n / j->n_slots);
}

static void run_slot(step_job *j, int s, jq_pt_work *w)
{
    jq_pt_trainer *t = j->t;
    float *grad = j->train ? t->grad[s] : NULL;
    if (grad)
        memset(grad, 0, t->m->n_params * sizeof *grad);
    int first, end;
    slot_range(j, s, &first, &end);
    const int64_t cap = jq_pt_work_cap_tokens(w);
    while (first < end) {
        /* the longest run of whole sequences that fits the work */
        int last = first;
        int64_t tokens = jq_pt_seq_positions(&j->seqs[first]);
        while (last + 1 < end &&
               tokens + jq_pt_seq_positions(&j->seqs[last + 1]) <= cap)
            tokens += jq_pt_seq_positions(&j->seqs[++last]);
        jq_pt_group_pass(t->m, w, j->seqs + first, last + 1 - first,
                         j->loss_scale, j->ctx_scale, grad,
                         &j->slot_stats[s], NULL);
        first = last + 1;
    }
}

static void split(size_t n, int ith, int nth, size_t *lo, size_t *hi)
{
    *lo = n * (size_t)ith / (size_t)nth;
    *hi = n * (size_t)(ith + 1) / (size_t)nth;
}

static void step_task(void *arg, int ith, int nth)
{
    step_job *j = arg;
    jq_pt_trainer *t = j->t;
    const jq_pt_model *m = t->m;
    switch (j->ph) {
    case PHASE_SLOTS: {
        const int nw = nth < t->n_work ? nth : t->n_work;
        if (ith >= nw)
            break;
        for (int s = ith; s < j->n_slots; s += nw)
            run_slot(j, s, t->work[ith]);
        break;
    }
    case PHASE_REDUCE: {
        /* whole chunks per thread: each chunk's sum is one thread's */
        size_t c0, c1;
        split(t->n_chunks, ith, nth, &c0, &c1);
        for (size_t c = c0; c < c1; c++) {
            const size_t lo = c * NORM_CHUNK;
            const size_t hi = lo + NORM_CHUNK < m->n_params ? lo + NORM_CHUNK
                                                             : m->n_params;
            float *g = t->grad[0];
            for (int s = 1; s < j->n_slots; s++)
                for (size_t i = lo; i < hi; i++)
                    g[i] += t->grad[s][i];
            double sq = 0.0;
            for (size_t i = lo; i < hi; i++)
                sq += (double)g[i] * (double)g[i];
            t->chunk_sq[c] = sq;
        }
        break;
    }
    case PHASE_UPDATE: {
        size_t lo, hi;
        split(m->n_params, ith, nth, &lo, &hi);
        for (int k = 0; k < m->n_tensors; k++) {
            const jq_pt_tensor *te = &m->tensors[k];
            const size_t a = te->offset,
                         b = te->offset + (size_t)(te->rows * te->cols);
            const size_t x0 = a > lo ? a : lo, x1 = b < hi ? b : hi;
            if (x0 >= x1)
                continue;
            jq_adamw_step as = j->as;
            if (!te->decay)
                as.weight_decay = 0.0f;
            jq_adamw_update(m->params + x0, t->grad[0] + x0, t->adam_m + x0,
                            t->adam_v + x0, x1 - x0, &as);
        }
        break;
    }
    }
}

static int check_batch(const jq_pt_trainer *t, const jq_pt_seq *seqs, int n,
                       int64_t *n_scored, int64_t *n_ctx, char *err,
                       size_t errlen)
{
    if (n < 1)
        return jq_fail(err, errlen, "an empty batch");
    *n_scored = 0;
    *n_ctx = 0;
    for (int i = 0; i < n; i++) {
        char e[256];
        if (jq_pt_seq_check(t->m, &seqs[i], e, sizeof e) != 0)
            return jq_fail(err, errlen, "sequence %d of the batch: %s", i, e);
        *n_scored += seqs[i].n_tokens - seqs[i].n_prompt;
        *n_ctx += seqs[i].n_prompt - 1;
    }
    return 0;
}

static void sum_stats(jq_pt_stats *out, const step_job *j)
{
    *out = (jq_pt_stats){0};
    for (int s = 0; s < j->n_slots; s++) {
        const jq_pt_stats *a = &j->slot_stats[s];
        out->loss_sum += a->loss_sum;
        out->n_tokens += a->n_tokens;
        out->n_correct += a->n_correct;
        out->n_seq += a->n_seq;
        out->n_seq_correct += a->n_seq_correct;
        out->n_positions += a->n_positions;
        out->ctx_loss_sum += a->ctx_loss_sum;
        out->n_ctx_tokens += a->n_ctx_tokens;
    }
}

int jq_pt_trainer_step(jq_pt_trainer *t, const jq_pt_seq *seqs, int n,
                       jq_pt_step_info *info, char *err, size_t errlen)
{
    int64_t n_scored, n_ctx;
    if (check_batch(t, seqs, n, &n_scored, &n_ctx, err, errlen) != 0)
        return -1;
    /* the mean answer loss + context_loss x the mean prompt loss */
    step_job j = {.t = t, .seqs = seqs, .n = n, .train = true,
                  .n_slots = n < t->o.slots ? n : t->o.slots,
                  .loss_scale = 1.0f / (float)n_scored,
                  .ctx_scale = t->o.context_loss > 0 && n_ctx > 0
                                   ? t->o.context_loss / (float)n_ctx
                                   : 0.0f};
    /* gradients of the mean loss, per slot */
    j.ph = PHASE_SLOTS;
    jq_pool_run(t->pool, step_task, &j);
    /* their sum and its norm */
    j.ph = PHASE_REDUCE;
    jq_pool_run(t->pool, step_task, &j);
    double sq = 0.0;
    for (size_t c = 0; c < t->n_chunks; c++)
        sq += t->chunk_sq[c];
    const double norm = sqrt(sq);
    /* clipping and AdamW */
    const float lr = jq_pt_lr_at(&t->o, t->step);
    j.as = (jq_adamw_step){
        .lr = lr, .weight_decay = t->o.weight_decay, .beta1 = t->o.beta1,
        .beta2 = t->o.beta2, .eps = t->o.eps, .t = t->step + 1,
        .grad_scale = t->o.clip > 0 && norm > t->o.clip
                          ? (float)(t->o.clip / norm)
                          : 1.0f,
    };
    if (!isfinite(norm))
        return jq_fail(err, errlen,
                       "the gradient is not finite at step %lld (diverged: "
                       "lower the learning rate)",
                       (long long)t->step);
    j.ph = PHASE_UPDATE;
    jq_pool_run(t->pool, step_task, &j);
    t->step++;
    if (info) {
        sum_stats(&info->stats, &j);
        info->grad_norm = norm;
        info->lr = lr;
    }
    return 0;
}

int jq_pt_trainer_eval(jq_pt_trainer *t, const jq_pt_seq *seqs, int n,
                       jq_pt_stats *st, char *err, size_t errlen)
{
    int64_t n_scored, n_ctx;
    if (check_batch(t, seqs, n, &n_scored, &n_ctx, err, errlen) != 0)
        return -1;
    (void)n_scored, (void)n_ctx;
    step_job j = {.t = t, .seqs = seqs, .n = n, .train = false,
                  .n_slots = n < t->o.slots ? n : t->o.slots,
                  .ph = PHASE_SLOTS};
    jq_pool_run(t->pool, step_task, &j);
    sum_stats(st, &j);
    return 0;
}

/* For pretrain_ckpt.c: the state a checkpoint holds. */
void jq_pt_trainer_state(jq_pt_trainer *t, jq_pt_model **m, float **adam_m,
                         float **adam_v, int64_t **step)
{
    *m = t->m;
    *adam_m = t->adam_m;
    *adam_v = t->adam_v;
    *step = &t->step;
}
