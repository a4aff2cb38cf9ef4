/* selfgen.h — prompts sampled from the model itself.
 *
 * When no data set is at hand (or a model's own distribution is the point,
 * as for held-out evaluation of soft tokens trained on self-generated
 * text), a prompt is drawn from the model: BOS, then tokens sampled at
 * temperature 1 from the full next-token distribution (no top-k, no
 * top-p). Prompt i of a set with seed S uses the sampler seed
 * jq_selfgen_seed(S, i), so any one prompt can be regenerated alone and
 * sets with different seeds are disjoint in practice. The derivation is
 * the one `judgeq train --self-generate` uses: the same (seed, index) gives
 * the same prompt in both, so evaluation is held out exactly when its
 * --seed differs from the training seed.
 */
#ifndef JQ_SELFGEN_H
#define JQ_SELFGEN_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* The sampler seed of prompt `index` of the set seeded with `seed`:
 * jq_hash64 of the two values as little-endian u64s, seeded 0x7261696e. */
uint64_t jq_selfgen_seed(uint64_t seed, uint64_t index);

/* Samples prompt `index` of the set `seed`: L tokens (BOS first; L >= 1)
 * into tokens, on c (reset first; its own store must hold L - 1 entries).
 * A vocabulary without BOS is an error (the prompt needs a fixed start).
 * 0, or -1 with a message. */
int jq_selfgen_prompt(jq_ctx *c, uint64_t seed, uint64_t index, int32_t L,
                      int32_t *tokens, char *err, size_t errlen);

#endif
