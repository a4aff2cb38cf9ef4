/* pretrain_data.c — the pretraining curriculum over the recall language
 * (see pretrain_data.h). */
#include "pretrain_data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

/* The easiest difficulty of each task, as recall_lang.h documents the
 * ranges (niah 1, multikey 2-32, mqar 2-64, vt 1-16, cwe 1-10);
 * jq_pt_data_check asks the generator whether they are accepted. */
static const int32_t easiest[JQ_RECALL_COUNT_] = {1, 2, 2, 1, 1};

/* Salts that keep the random streams of the choices apart. */
enum { SALT_TASK = 1, SALT_LEN, SALT_DIFF, SALT_QFIRST, SALT_INDEX };
#define HELDOUT_SEED_SALT 0x4e1d0a57c0ffee11ull

void jq_pt_data_defaults(jq_pt_data_plan *p, uint64_t seed, int64_t steps,
                         int32_t n_ctx)
{
    memset(p, 0, sizeof *p);
    p->seed = seed;
    p->steps = steps;
    p->n_ctx = n_ctx;
    /* Why this shape, measured: with a 0.6M model (n_embd 128, 2 layers)
     * niah alone at 64-128 tokens stayed at 0 answer accuracy for 400-800
     * steps (the copy plateau), at 29-48 tokens it was 72% at step 200;
     * the five tasks mixed from the start learnt nothing in 700 steps.
     * The default 3.6M model with this plan (lr 2e-3): niah 68% at step
     * 100 and 94% at 300 (48 tokens), then at 96 tokens niah 96% and
     * multikey rising by step 450. So: short examples and niah alone
     * first, multikey next, then all five tasks. */
    const jq_pt_point len[] = {{0, 48},      {0.08, 96},  {0.2, 128},
                               {0.35, 256},  {0.55, 512}, {0.8, 1024}};
    for (int i = 0; i < 6; i++) {
        p->length[p->n_length] = len[i];
        if (p->length[p->n_length].value > n_ctx)
            p->length[p->n_length].value = n_ctx;
        p->n_length++;
    }
    p->level[0] = (jq_pt_point){0, 0};
    p->level[1] = (jq_pt_point){0.7, 1};
    p->n_level = 2;
    const double w[JQ_RECALL_COUNT_] = {1, 2, 2, 2, 1};
    p->task_weight[0][JQ_RECALL_NIAH] = 1;
    p->task_at[1] = 0.08;
    p->task_weight[1][JQ_RECALL_NIAH] = 1;
    p->task_weight[1][JQ_RECALL_MULTIKEY] = 1;
    p->task_at[2] = 0.2;
    memcpy(p->task_weight[2], w, sizeof w);
    p->n_task_stages = 3;
    p->question_first = 0.3;
    p->min_frac = 0.5;
}

/* "A:B,A:B,...": ascending fractions from 0; value range [lo, hi]. On
 * failure out and *n are left as they were. */
static int parse_points(const char *s, const char *what, double lo,
                        double hi, jq_pt_point *out_final, int *n_final,
                        char *err, size_t errlen)
{
    jq_pt_point out[JQ_PT_MAX_POINTS];
    int nn = 0, *n = &nn;
    const char *c = s;
    while (*c) {
        if (*n == JQ_PT_MAX_POINTS)
            return jq_fail(err, errlen, "%s: more than %d points", what,
                           JQ_PT_MAX_POINTS);
        char *end;
        const double at = strtod(c, &end);
        if (end == c || *end != ':')
            return jq_fail(err, errlen,
                           "%s '%s': expected FRACTION:VALUE,... (e.g. "
                           "0:128,0.5:256)",
                           what, s);
        c = end + 1;
        const double v = strtod(c, &end);
        if (end == c || (*end != ',' && *end != 0))
            return jq_fail(err, errlen, "%s '%s': a value is missing after "
                           "'%g:'", what, s, at);
        if (!(at >= 0 && at < 1) || (*n == 0 && at != 0) ||
            (*n > 0 && !(at > out[*n - 1].at)))
            return jq_fail(err, errlen,
                           "%s '%s': fractions must start at 0, ascend and "
                           "stay below 1",
                           what, s);
        if (!(v >= lo && v <= hi))
            return jq_fail(err, errlen, "%s '%s': %g is outside [%g, %g]",
                           what, s, v, lo, hi);
        out[(*n)++] = (jq_pt_point){at, v};
        c = *end == ',' ? end + 1 : end;
    }
    if (*n == 0)
        return jq_fail(err, errlen, "%s is empty", what);
    memcpy(out_final, out, (size_t)nn * sizeof *out);
    *n_final = nn;
    return 0;
}

int jq_pt_parse_lengths(jq_pt_data_plan *p, const char *s, char *err,
                        size_t errlen)
{
    jq_pt_point pts[JQ_PT_MAX_POINTS];
    int n;
    if (parse_points(s, "length curriculum", 16, p->n_ctx, pts, &n, err,
                     errlen) != 0)
        return -1;
    for (int i = 0; i < n; i++)
        if (pts[i].value != floor(pts[i].value))
            return jq_fail(err, errlen, "length curriculum '%s': %g is not "
                           "a whole number of tokens", s, pts[i].value);
    memcpy(p->length, pts, (size_t)n * sizeof *pts);
    p->n_length = n;
    return 0;
}

int jq_pt_parse_levels(jq_pt_data_plan *p, const char *s, char *err,
                       size_t errlen)
{
    return parse_points(s, "difficulty curriculum", 0, 1, p->level,
                        &p->n_level, err, errlen);
}

/* One mix "TASK:WEIGHT,..." into w. */
static int parse_mix(const char *s, const char *whole, double *w, char *err,
                     size_t errlen)
{
    double total = 0;
    char buf[256];
    if (strlen(s) >= sizeof buf)
        return jq_fail(err, errlen, "task mix '%.40s...' is too long", whole);
    strcpy(buf, s);
    for (int t = 0; t < JQ_RECALL_COUNT_; t++)
        w[t] = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(tok, ':');
        if (colon)
            *colon = 0;
        const int t = jq_recall_task_from_name(tok);
        if (t < 0)
            return jq_fail(err, errlen,
                           "task mix '%s': unknown task '%s' (niah, "
                           "multikey, mqar, vt, cwe)",
                           whole, tok);
        double v = 1;
        if (colon) {
            char *end;
            v = strtod(colon + 1, &end);
            if (end == colon + 1 || *end || !(v >= 0 && v <= 1e6))
                return jq_fail(err, errlen, "task mix '%s': the weight of %s "
                               "must be a number in [0, 1e6]", whole, tok);
        }
        w[t] = v;
        total += v;
    }
    if (!(total > 0))
        return jq_fail(err, errlen, "task mix '%s': a stage has no task with "
                       "a weight above 0", whole);
    return 0;
}

int jq_pt_parse_tasks(jq_pt_data_plan *p, const char *s, char *err,
                      size_t errlen)
{
    jq_pt_data_plan q = *p;
    q.n_task_stages = 0;
    const char *c = s;
    for (;;) {
        if (q.n_task_stages == JQ_PT_MAX_POINTS)
            return jq_fail(err, errlen, "task mix '%s': more than %d stages",
                           s, JQ_PT_MAX_POINTS);
        const size_t len = strcspn(c, "/");
        char stage[256];
        if (len >= sizeof stage)
            return jq_fail(err, errlen, "task mix '%.40s...' is too long", s);
        memcpy(stage, c, len);
        stage[len] = 0;
        const int k = q.n_task_stages;
        const char *mix = stage;
        double at = 0;
        if (k > 0) { /* "FRAC:MIX" */
            char *end;
            at = strtod(stage, &end);
            if (end == stage || *end != ':' || !(at > q.task_at[k - 1]) ||
                !(at < 1))
                return jq_fail(err, errlen,
                               "task mix '%s': stage %d must start with its "
                               "step fraction, above the previous one and "
                               "below 1 (e.g. niah/0.05:niah,vt)",
                               s, k + 1);
            mix = end + 1;
        }
        if (parse_mix(mix, s, q.task_weight[k], err, errlen) != 0)
            return -1;
        q.task_at[k] = at;
        q.n_task_stages++;
        if (c[len] == 0)
            break;
        c += len + 1;
    }
    *p = q;
    return 0;
}

/* The task stage of a step. */
static const double *task_mix(const jq_pt_data_plan *p, int64_t step)
{
    const double f = (double)step / (double)p->steps;
    int k = 0;
    for (int i = 1; i < p->n_task_stages; i++)
        if (f >= p->task_at[i])
            k = i;
    return p->task_weight[k];
}

int32_t jq_pt_data_length(const jq_pt_data_plan *p, int64_t step)
{
    const double f = (double)step / (double)p->steps;
    int32_t L = (int32_t)p->length[0].value;
    for (int i = 1; i < p->n_length; i++)
        if (f >= p->length[i].at)
            L = (int32_t)p->length[i].value;
    return L;
}

double jq_pt_data_level(const jq_pt_data_plan *p, int64_t step)
{
    const double f = (double)step / (double)p->steps;
    const jq_pt_point *v = p->level;
    for (int i = p->n_level - 1; i >= 0; i--) {
        if (f < v[i].at)
            continue;
        if (i + 1 == p->n_level)
            return v[i].value;
        const double t = (f - v[i].at) / (v[i + 1].at - v[i].at);
        return v[i].value + t * (v[i + 1].value - v[i].value);
    }
    return v[0].value;
}

int32_t jq_pt_data_max_difficulty(jq_recall_task t, double level)
{
    const int32_t lo = easiest[t], hi = jq_recall_default_difficulty(t);
    return lo + (int32_t)lround(level * (double)(hi - lo));
}

/* A hash of the choice (seed, step, i, salt): splitmix64's finaliser over
 * a running combination, so every choice has its own stream. */
static uint64_t mix(uint64_t seed, uint64_t step, uint64_t i, uint64_t salt)
{
    uint64_t z = seed * 0x9e3779b97f4a7c15ull;
    const uint64_t parts[3] = {step, i, salt};
    for (int k = 0; k < 3; k++) {
        z ^= parts[k] + 0x9e3779b97f4a7c15ull + (z << 6) + (z >> 2);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
    }
    return z;
}

static double unit(uint64_t h)
{
    return (double)(h >> 11) * 0x1p-53;
}

/* The hardest difficulty <= d whose shortest example fits `length`. */
static int32_t fit_difficulty(jq_recall_opts *o, int32_t d)
{
    for (; d > easiest[o->task]; d--) {
        o->difficulty = d;
        const int32_t need = jq_recall_min_length(o, NULL, 0);
        if (need > 0 && need <= o->length)
            return d;
    }
    return easiest[o->task];
}

int jq_pt_data_check(const jq_pt_data_plan *p, char *err, size_t errlen)
{
    int32_t shortest = p->n_ctx;
    for (int i = 0; i < p->n_length; i++)
        if (p->length[i].value < shortest)
            shortest = (int32_t)p->length[i].value;
    shortest = (int32_t)floor(shortest * p->min_frac);
    for (int t = 0; t < JQ_RECALL_COUNT_; t++) {
        bool used = false;
        for (int k = 0; k < p->n_task_stages; k++)
            used |= p->task_weight[k][t] > 0;
        if (!used)
            continue;
        jq_recall_opts o = {.task = t, .length = shortest,
                            .difficulty = easiest[t], .digits = p->digits,
                            .seed = p->seed};
        char e[256];
        const int32_t need = jq_recall_min_length(&o, e, sizeof e);
        if (need < 0)
            return jq_fail(err, errlen, "task %s: %s", jq_recall_task_name(t),
                           e);
        if (need > p->n_ctx)
            return jq_fail(err, errlen,
                           "task %s needs %d tokens at its easiest, more "
                           "than the context %d",
                           jq_recall_task_name(t), need, p->n_ctx);
    }
    return 0;
}

void jq_pt_batch_free(jq_pt_batch *b)
{
    if (b->ex)
        for (int i = 0; i < b->n; i++)
            jq_recall_example_free(&b->ex[i]);
    free(b->ex);
    free(b->task);
    free(b->seqs);
    memset(b, 0, sizeof *b);
}

int jq_pt_data_batch(const jq_pt_data_plan *p, int64_t step, int n,
                     bool heldout, jq_pt_batch *b, char *err, size_t errlen)
{
    memset(b, 0, sizeof *b);
    b->ex = calloc((size_t)n, sizeof *b->ex);
    b->task = calloc((size_t)n, sizeof *b->task);
    b->seqs = calloc((size_t)n, sizeof *b->seqs);
    if (!b->ex || !b->task || !b->seqs) {
        jq_pt_batch_free(b);
        return jq_fail(err, errlen, "out of memory for a batch of %d", n);
    }
    b->n = n;
    const int32_t L = jq_pt_data_length(p, step);
    const double level = jq_pt_data_level(p, step);
    const uint64_t seed = heldout ? p->seed ^ HELDOUT_SEED_SALT : p->seed;
    /* the held-out batch does not depend on the step, only on its stage */
    const uint64_t hstep = heldout ? 0 : (uint64_t)step;
    const double *weight = task_mix(p, step);
    int active[JQ_RECALL_COUNT_], n_active = 0;
    double total = 0;
    for (int t = 0; t < JQ_RECALL_COUNT_; t++)
        if (weight[t] > 0) {
            active[n_active++] = t;
            total += weight[t];
        }
    for (int i = 0; i < n; i++) {
        jq_recall_opts o = {.digits = p->digits, .seed = seed};
        int32_t dmax;
        if (heldout) {
            o.task = active[i % n_active];
            o.length = L;
            dmax = jq_pt_data_max_difficulty(o.task, level);
            o.difficulty = dmax;
        } else {
            double u = unit(mix(seed, hstep, (uint64_t)i, SALT_TASK)) * total;
            o.task = active[n_active - 1];
            for (int k = 0; k < n_active; k++) {
                u -= weight[active[k]];
                if (u < 0) {
                    o.task = active[k];
                    break;
                }
            }
            const int32_t lo = (int32_t)ceil(p->min_frac * L);
            o.length = lo + (int32_t)(mix(seed, hstep, (uint64_t)i, SALT_LEN) %
                                      (uint64_t)(L - lo + 1));
            dmax = jq_pt_data_max_difficulty(o.task, level);
            o.difficulty = easiest[o.task] +
                           (int32_t)(mix(seed, hstep, (uint64_t)i, SALT_DIFF) %
                                     (uint64_t)(dmax - easiest[o.task] + 1));
        }
        o.question_first =
            unit(mix(seed, hstep, (uint64_t)i, SALT_QFIRST)) < p->question_first;
        o.difficulty = fit_difficulty(&o, o.difficulty);
        /* the easiest example may still need more than the sampled length */
        const int32_t need = jq_recall_min_length(&o, NULL, 0);
        if (need > o.length)
            o.length = need <= p->n_ctx ? need : p->n_ctx;
        /* every (step, i) its own example; the held-out ones by position */
        const uint64_t index = heldout ? (uint64_t)i + ((uint64_t)L << 32)
                                       : mix(seed, hstep, (uint64_t)i,
                                             SALT_INDEX);
        char e[256];
        if (jq_recall_generate(&o, index, &b->ex[i], e, sizeof e) != 0) {
            jq_pt_batch_free(b);
            return jq_fail(err, errlen, "example %d of step %lld (%s, %d "
                           "tokens, difficulty %d): %s", i, (long long)step,
                           jq_recall_task_name(o.task), o.length,
                           o.difficulty, e);
        }
        b->task[i] = o.task;
        b->seqs[i] = (jq_pt_seq){b->ex[i].tokens, b->ex[i].n_tokens,
                                 b->ex[i].n_prompt};
    }
    return 0;
}

char *jq_pt_data_describe(const jq_pt_data_plan *p)
{
    char buf[2048];
    size_t k = 0;
#define PUT(...) k += (size_t)snprintf(buf + k, sizeof buf - k, __VA_ARGS__)
    PUT("seed=%llu\nsteps=%lld\nn_ctx=%d\nlengths=",
        (unsigned long long)p->seed, (long long)p->steps, p->n_ctx);
    for (int i = 0; i < p->n_length && k < sizeof buf; i++)
        PUT("%s%g:%g", i ? "," : "", p->length[i].at, p->length[i].value);
    PUT("\nlevels=");
    for (int i = 0; i < p->n_level && k < sizeof buf; i++)
        PUT("%s%g:%g", i ? "," : "", p->level[i].at, p->level[i].value);
    PUT("\ntasks=");
    for (int s = 0; s < p->n_task_stages && k < sizeof buf; s++) {
        PUT("%s%g", s ? "/" : "", p->task_at[s]);
        for (int t = 0; t < JQ_RECALL_COUNT_ && k < sizeof buf; t++)
            PUT("%s%s:%g", t ? "," : ":", jq_recall_task_name(t),
                p->task_weight[s][t]);
    }
    PUT("\nquestion_first=%g\nmin_frac=%g\ndigits=%d\n", p->question_first,
        p->min_frac, p->digits);
#undef PUT
    return k < sizeof buf ? strdup(buf) : NULL;
}
