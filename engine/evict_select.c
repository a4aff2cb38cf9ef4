/* evict_select.c — from observer attention scores to the kept positions
 * per (layer, KV head): GQA reduction, max-pooling, PyramidKV's per-layer
 * and AdaKV's per-head budgets, the per-policy selection, and the
 * hit-rate / mass-recall metrics. See evict.h and ../shared/EVICTION.md.
 *
 * Ranking everywhere is one total order — descending score, NaN below
 * everything, ties to the lower index — so every selection is
 * deterministic and the same order serves all policies. It is done here
 * with a sort of (score, index) pairs rather than kernels' jq_topk so that
 * eviction depends on nothing but libc; L is at most tens of thousands
 * and the forward pass that produced the scores costs far more. */
#include "errors.h"
#include "evict.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float s;
    int32_t j;
} scored;

static int rank_cmp(const void *pa, const void *pb)
{
    const scored *a = pa, *b = pb;
    bool an = isnan(a->s), bn = isnan(b->s);
    if (an != bn)
        return an ? 1 : -1;
    if (!an) {
        if (a->s > b->s)
            return -1;
        if (a->s < b->s)
            return 1;
    }
    return (a->j > b->j) - (a->j < b->j);
}

/* Sets mark[j] = 1 for the k best of s[0..n) in the rank order. */
static void mark_top(const float *s, int32_t n, int32_t k, scored *tmp,
                     uint8_t *mark)
{
    if (k <= 0 || n <= 0)
        return;
    if (k >= n) {
        memset(mark, 1, (size_t)n);
        return;
    }
    for (int32_t j = 0; j < n; j++)
        tmp[j] = (scored){s[j], j};
    qsort(tmp, (size_t)n, sizeof *tmp, rank_cmp);
    for (int32_t i = 0; i < k; i++)
        mark[tmp[i].j] = 1;
}

/* Writes the marked positions ascending; returns how many. */
static int32_t emit(const uint8_t *mark, int32_t L, int32_t *pos)
{
    int32_t c = 0;
    for (int32_t j = 0; j < L; j++)
        if (mark[j])
            pos[c++] = j;
    return c;
}

void jq_evict_gqa_reduce(const float *raw_layer, int32_t n_head,
                         int32_t n_head_kv, int32_t g, int32_t L,
                         jq_gqa_reduce how, float *s)
{
    int32_t G = n_head / n_head_kv;
    const float *r0 = raw_layer + (size_t)g * (size_t)G * (size_t)L;
    if (how == JQ_GQA_MAX) {
        for (int32_t j = 0; j < L; j++) {
            float m = r0[j];
            for (int32_t h = 1; h < G; h++)
                m = fmaxf(m, r0[(size_t)h * (size_t)L + j]); /* skips NaN */
            s[j] = m;
        }
    } else {
        float inv = 1.0f / (float)G;
        for (int32_t j = 0; j < L; j++) {
            float sum = 0.0f;
            for (int32_t h = 0; h < G; h++)
                sum += r0[(size_t)h * (size_t)L + j];
            s[j] = sum * inv;
        }
    }
}

void jq_evict_max_pool(const float *in, int32_t n, int32_t kernel,
                       float *out)
{
    int32_t r = kernel > 1 ? (kernel - 1) / 2 : 0;
    for (int32_t j = 0; j < n; j++) {
        /* only real positions take part: torch pads max_pool1d with -inf,
         * which can never be the maximum of a window holding a real value */
        int32_t lo = j - r < 0 ? 0 : j - r;
        int32_t hi = j + r >= n ? n - 1 : j + r;
        float m = NAN;
        for (int32_t i = lo; i <= hi; i++)
            if (!isnan(in[i]) && (isnan(m) || in[i] > m))
                m = in[i];
        out[j] = m;
    }
}

/* Integer shares of x[0..n) with out[i] in [0, cap] and sum `total` when
 * 0 <= total <= n cap. Starts from floor(x), then repeatedly gives a unit
 * to the item furthest below its target (largest x - out, ties to the
 * lower index) or takes one from the item furthest above it. For targets
 * already summing to `total` this is exactly the largest-remainder method;
 * the same rule redistributes whatever a clamp to [0, cap] removed. */
static void apportion(const double *x, int32_t n, int64_t total, int32_t cap,
                      int32_t *out)
{
    int64_t sum = 0;
    for (int32_t i = 0; i < n; i++) {
        double f = floor(x[i]);
        if (!(f >= 0.0)) /* also NaN */
            f = 0.0;
        if (f > (double)cap)
            f = (double)cap;
        out[i] = (int32_t)f;
        sum += out[i];
    }
    while (sum < total) {
        int32_t best = -1;
        double bp = 0.0;
        for (int32_t i = 0; i < n; i++) {
            double p = x[i] - out[i];
            if (out[i] < cap && (best < 0 || p > bp)) {
                best = i;
                bp = p;
            }
        }
        if (best < 0)
            break; /* infeasible: everything at cap */
        out[best]++;
        sum++;
    }
    while (sum > total) {
        int32_t best = -1;
        double bp = 0.0;
        for (int32_t i = 0; i < n; i++) {
            double p = x[i] - out[i];
            if (out[i] > 0 && (best < 0 || p < bp)) {
                best = i;
                bp = p;
            }
        }
        if (best < 0)
            break;
        out[best]--;
        sum--;
    }
}

void jq_evict_pyramid_caps(int32_t n_layer, int32_t L, int32_t budget,
                           int32_t window, float beta, int32_t *caps)
{
    if (n_layer <= 0)
        return;
    int64_t C = (int64_t)budget - window;
    if (C < 0)
        C = 0;
    int64_t room = (int64_t)L - window; /* candidates outside the window */
    if (room < 0)
        room = 0;
    if (room < C || n_layer == 1) {
        /* nothing to redistribute: either all is kept (L < B) or one
         * layer takes the whole per-layer budget */
        int32_t c = (int32_t)(room < C ? room : C);
        for (int32_t l = 0; l < n_layer; l++)
            caps[l] = c;
        return;
    }
    double b = beta >= 1.0f ? (double)beta : 1.0;
    double mn = (double)C / b;
    double mx = 2.0 * (double)C - mn;
    if (mx >= (double)room) {
        /* the largest layer cannot exceed what exists; keep the mean at C
         * by raising the smallest (room >= C makes mn <= C <= mx) */
        mx = (double)room;
        mn = 2.0 * (double)C - mx;
    }
    double *x = malloc(sizeof(double) * (size_t)n_layer);
    if (!x) {
        /* the uniform split is a valid (if not pyramidal) answer */
        for (int32_t l = 0; l < n_layer; l++)
            caps[l] = (int32_t)C;
        return;
    }
    double step = (mx - mn) / (double)(n_layer - 1);
    for (int32_t l = 0; l < n_layer; l++)
        x[l] = mx - (double)l * step;
    apportion(x, n_layer, (int64_t)n_layer * C, (int32_t)room, caps);
    free(x);
}

int jq_evict_adakv_budgets(const float *pooled, int32_t n_head_kv,
                           int32_t n, int32_t C, float alpha, int32_t *b)
{
    if (!pooled || !b || n_head_kv < 1 || n < 0 || C < 0 || C > n)
        return -1;
    size_t total = (size_t)n_head_kv * (size_t)n;
    if (total > (size_t)INT32_MAX)
        return -1; /* flat indices are int32 */
    scored *items = malloc(sizeof *items * (total ? total : 1));
    int32_t *count = calloc((size_t)n_head_kv, sizeof *count);
    double *x = malloc(sizeof *x * (size_t)n_head_kv);
    if (!items || !count || !x) {
        free(items);
        free(count);
        free(x);
        return -1;
    }
    /* the flat index g*n + j orders ties by head, then position */
    for (size_t i = 0; i < total; i++)
        items[i] = (scored){pooled[i], (int32_t)i};
    qsort(items, total, sizeof *items, rank_cmp);
    size_t k = (size_t)n_head_kv * (size_t)C;
    for (size_t i = 0; i < k && i < total; i++)
        count[items[i].j / n]++;
    double a = alpha >= 0.0f && alpha <= 1.0f ? (double)alpha : 0.0;
    for (int32_t g = 0; g < n_head_kv; g++)
        x[g] = (1.0 - a) * (double)count[g] + a * (double)C;
    apportion(x, n_head_kv, (int64_t)k, n, b);
    free(items);
    free(count);
    free(x);
    return 0;
}

/* Every head of `out` keeps all L positions. */
static void keep_all(jq_kept *out)
{
    size_t heads = (size_t)out->n_layer * (size_t)out->n_head_kv;
    for (size_t h = 0; h < heads; h++) {
        int32_t *pos = out->positions + h * (size_t)out->L;
        for (int32_t j = 0; j < out->L; j++)
            pos[j] = j;
        out->counts[h] = out->L;
    }
}

static void keep_streaming(jq_kept *out, int32_t B, int32_t sink)
{
    size_t heads = (size_t)out->n_layer * (size_t)out->n_head_kv;
    int32_t L = out->L, recent = B - sink;
    for (size_t h = 0; h < heads; h++) {
        int32_t *pos = out->positions + h * (size_t)L, c = 0;
        for (int32_t j = 0; j < sink; j++)
            pos[c++] = j;
        for (int32_t j = L - recent; j < L; j++)
            pos[c++] = j;
        out->counts[h] = c;
    }
}

int jq_evict_select(const jq_evict_spec *spec, int32_t n_layer,
                    int32_t n_head, int32_t n_head_kv, int32_t L,
                    const float *raw, jq_kept *out, char *err, size_t errlen)
{
    if (jq_evict_spec_check(spec, err, errlen) != 0)
        return -1;
    if (n_layer < 1 || n_head_kv < 1 || n_head < 1 || L < 0)
        return jq_fail(err, errlen,
                    "bad model shape: n_layer %d, n_head %d, n_head_kv %d, "
                    "L %d",
                    (int)n_layer, (int)n_head, (int)n_head_kv, (int)L);
    if (n_head % n_head_kv != 0)
        return jq_fail(err, errlen, "n_head %d is not a multiple of n_head_kv %d",
                    (int)n_head, (int)n_head_kv);
    if (!out || !out->counts || !out->positions || out->n_layer != n_layer ||
        out->n_head_kv != n_head_kv || out->L != L)
        return jq_fail(err, errlen,
                    "the kept set must have the shape (n_layer %d, n_head_kv "
                    "%d, L %d)",
                    (int)n_layer, (int)n_head_kv, (int)L);

    jq_evict_policy p = spec->policy;
    int32_t B = spec->budget;
    if (p == JQ_EVICT_FULL || L <= B) {
        keep_all(out);
        return 0;
    }
    if (p == JQ_EVICT_STREAMING) {
        keep_streaming(out, B, spec->sink);
        return 0;
    }
    if (!raw)
        return jq_fail(err, errlen, "%s needs attention scores (raw is NULL)",
                    jq_evict_policy_name(p));

    /* L > B > w from here (spec_check), so the window and the candidates
     * [0, L - w) are both well inside the prompt */
    int32_t w = p == JQ_EVICT_ORACLE ? 0 : spec->window;
    int32_t n = L - w;     /* candidates */
    int32_t C = B - w;     /* candidates kept per head (uniform policies) */
    int32_t kernel = p == JQ_EVICT_ORACLE ? 1 : spec->pool_kernel;

    size_t row = (size_t)L;
    float *s = malloc(sizeof(float) * row);
    float *pooled = malloc(sizeof(float) * row * (size_t)n_head_kv);
    scored *tmp = malloc(sizeof(scored) * row);
    uint8_t *mark = malloc(row);
    int32_t *caps = malloc(sizeof(int32_t) * (size_t)n_layer);
    int32_t *hb = malloc(sizeof(int32_t) * (size_t)n_head_kv);
    int rc = 0;
    if (!s || !pooled || !tmp || !mark || !caps || !hb) {
        rc = jq_fail(err, errlen, "out of memory selecting kept entries");
        goto done;
    }
    if (p == JQ_EVICT_PYRAMIDKV)
        jq_evict_pyramid_caps(n_layer, L, B, w, spec->pyramid_beta, caps);

    for (int32_t l = 0; l < n_layer; l++) {
        const float *raw_layer = raw + (size_t)l * (size_t)n_head * row;
        /* scores of every KV head of the layer first: AdaKV shares the
         * layer's budget between heads by comparing them */
        for (int32_t g = 0; g < n_head_kv; g++) {
            jq_evict_gqa_reduce(raw_layer, n_head, n_head_kv, g, L,
                                spec->gqa_reduce, s);
            if (p == JQ_EVICT_H2O)
                for (int32_t j = 0; j < L; j++)
                    s[j] /= (float)(L - j); /* queries that see j */
            jq_evict_max_pool(s, n, kernel, pooled + (size_t)g * row);
        }
        if (p == JQ_EVICT_ADAKV) {
            /* the rows are L apart; compact the n candidates of each */
            for (int32_t g = 1; g < n_head_kv; g++)
                memmove(pooled + (size_t)g * (size_t)n,
                        pooled + (size_t)g * row, sizeof(float) * (size_t)n);
            if (jq_evict_adakv_budgets(pooled, n_head_kv, n, C,
                                       spec->adakv_alpha, hb) != 0) {
                rc = jq_fail(err, errlen, "out of memory in adakv budgets");
                goto done;
            }
        }
        for (int32_t g = 0; g < n_head_kv; g++) {
            int32_t k;
            const float *ps;
            if (p == JQ_EVICT_ADAKV) {
                k = hb[g];
                ps = pooled + (size_t)g * (size_t)n;
            } else {
                k = p == JQ_EVICT_PYRAMIDKV ? caps[l]
                    : p == JQ_EVICT_ORACLE  ? B
                                            : C;
                ps = pooled + (size_t)g * row;
            }
            memset(mark, 0, row);
            memset(mark + n, 1, (size_t)w); /* the forced window */
            mark_top(ps, n, k, tmp, mark);
            size_t h = (size_t)l * (size_t)n_head_kv + (size_t)g;
            out->counts[h] = emit(mark, L, out->positions + h * row);
        }
    }
done:
    free(s);
    free(pooled);
    free(tmp);
    free(mark);
    free(caps);
    free(hb);
    return rc;
}

double jq_evict_hit_rate(const jq_kept *policy, const jq_kept *oracle)
{
    if (!policy || !oracle || policy->n_layer != oracle->n_layer ||
        policy->n_head_kv != oracle->n_head_kv || policy->L != oracle->L)
        return NAN;
    size_t heads = (size_t)policy->n_layer * (size_t)policy->n_head_kv;
    if (heads == 0)
        return NAN;
    size_t row = (size_t)policy->L;
    double acc = 0.0;
    for (size_t h = 0; h < heads; h++) {
        const int32_t *a = policy->positions + h * row;
        const int32_t *o = oracle->positions + h * row;
        int32_t na = policy->counts[h], no = oracle->counts[h];
        if (no <= 0) {
            acc += 1.0; /* nothing critical to miss */
            continue;
        }
        /* both ascending: one merge pass counts the intersection */
        int32_t i = 0, k = 0, hit = 0;
        while (i < na && k < no) {
            if (a[i] < o[k])
                i++;
            else if (a[i] > o[k])
                k++;
            else {
                hit++;
                i++;
                k++;
            }
        }
        acc += (double)hit / (double)no;
    }
    return acc / (double)heads;
}

double jq_evict_mass_recall(const jq_kept *policy, const float *target,
                            int32_t n_head, jq_gqa_reduce how)
{
    if (!policy || !target || policy->n_head_kv < 1 || n_head < 1 ||
        n_head % policy->n_head_kv != 0 || policy->n_layer < 1)
        return NAN;
    int32_t L = policy->L, H = policy->n_head_kv;
    float *s = malloc(sizeof(float) * (L > 0 ? (size_t)L : 1));
    if (!s)
        return NAN;
    double acc = 0.0;
    for (int32_t l = 0; l < policy->n_layer; l++) {
        const float *tl = target + (size_t)l * (size_t)n_head * (size_t)L;
        for (int32_t g = 0; g < H; g++) {
            jq_evict_gqa_reduce(tl, n_head, H, g, L, how, s);
            double all = 0.0, kept = 0.0;
            for (int32_t j = 0; j < L; j++) {
                /* a broken score must not make the ratio meaningless */
                if (!isfinite(s[j]) || s[j] < 0.0f)
                    s[j] = 0.0f;
                all += s[j];
            }
            size_t h = (size_t)l * (size_t)H + (size_t)g;
            const int32_t *pos = policy->positions + h * (size_t)L;
            for (int32_t i = 0; i < policy->counts[h]; i++)
                if (pos[i] >= 0 && pos[i] < L)
                    kept += s[pos[i]];
            acc += all > 0.0 ? kept / all : 1.0;
        }
    }
    free(s);
    return acc / ((double)policy->n_layer * (double)H);
}
