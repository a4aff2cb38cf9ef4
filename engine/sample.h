/* sample.h — choosing the next token from logits.
 *
 * temp <= 0 is greedy: the argmax, ties to the lowest id (as the llama.cpp
 * reference does). Otherwise, in this order: logits / temp, keep the top_k
 * highest (top_k <= 0: all), softmax, keep the smallest prefix of the
 * remaining tokens (by descending probability) whose mass reaches top_p
 * (top_p >= 1: all), renormalise, draw with the seeded generator. The same
 * seed and logits always give the same token.
 */
#ifndef JQ_SAMPLE_H
#define JQ_SAMPLE_H

#include <stdint.h>

typedef struct {
    float temp;    /* default 0.8; <= 0 greedy */
    int32_t top_k; /* default 40; <= 0 off */
    float top_p;   /* default 0.95; >= 1 off */
    uint64_t seed;
} jq_sampling;

typedef struct jq_sampler jq_sampler;

jq_sampler *jq_sampler_new(const jq_sampling *params, int32_t n_vocab);
void jq_sampler_free(jq_sampler *s);
/* Picks a token from logits[0..n_vocab). logits are not modified. */
int32_t jq_sampler_sample(jq_sampler *s, const float *logits);
/* The greedy choice (argmax, ties to the lowest id). */
int32_t jq_argmax(const float *logits, int32_t n);

#endif
