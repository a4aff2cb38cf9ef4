/* sample.c — see sample.h. */
#include "sample.h"

#include <math.h>
#include <stdlib.h>

#include "kernels.h"

struct jq_sampler {
    jq_sampling p;
    int32_t n_vocab;
    uint64_t rng;   /* xorshift64* state */
    int32_t *idx;   /* candidate ids, best first */
    float *prob;    /* their probabilities */
};

jq_sampler *jq_sampler_new(const jq_sampling *params, int32_t n_vocab)
{
    if (n_vocab < 1)
        return NULL;
    jq_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->p = *params;
    s->n_vocab = n_vocab;
    /* splitmix the seed so that small seeds give unrelated streams */
    uint64_t z = params->seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    s->rng = (z ^ (z >> 31)) | 1;
    s->idx = malloc(sizeof(int32_t) * (size_t)n_vocab);
    s->prob = malloc(sizeof(float) * (size_t)n_vocab);
    if (!s->idx || !s->prob) {
        jq_sampler_free(s);
        return NULL;
    }
    return s;
}

void jq_sampler_free(jq_sampler *s)
{
    if (!s)
        return;
    free(s->idx);
    free(s->prob);
    free(s);
}

int32_t jq_argmax(const float *logits, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (logits[i] > logits[best])
            best = i;
    return best;
}

static double next_uniform(jq_sampler *s)
{
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    uint64_t r = s->rng * 0x2545f4914f6cdd1dull;
    return (double)(r >> 11) * (1.0 / 9007199254740992.0);
}

int32_t jq_sampler_sample(jq_sampler *s, const float *logits)
{
    int32_t n = s->n_vocab;
    if (!(s->p.temp > 0.0f))
        return jq_argmax(logits, n);

    int32_t k = (s->p.top_k > 0 && s->p.top_k < n) ? s->p.top_k : n;
    /* candidates ordered by descending logit (ties: lower id first) */
    k = (int32_t)jq_topk(logits, n, k, s->idx);
    if (k < 1)
        return jq_argmax(logits, n);

    double inv_t = 1.0 / s->p.temp;
    double maxl = logits[s->idx[0]], sum = 0.0;
    for (int32_t i = 0; i < k; i++) {
        double e = exp(((double)logits[s->idx[i]] - maxl) * inv_t);
        s->prob[i] = (float)e;
        sum += e;
    }
    int32_t keep = k;
    if (s->p.top_p < 1.0f) {
        double target = (double)s->p.top_p * sum, cum = 0.0;
        for (int32_t i = 0; i < k; i++) {
            cum += s->prob[i];
            if (cum >= target) {
                keep = i + 1;
                break;
            }
        }
        sum = 0.0;
        for (int32_t i = 0; i < keep; i++)
            sum += s->prob[i];
    }
    double r = next_uniform(s) * sum, cum = 0.0;
    for (int32_t i = 0; i < keep; i++) {
        cum += s->prob[i];
        if (r < cum)
            return s->idx[i];
    }
    return s->idx[keep - 1];
}
