/* selfgen.c — see selfgen.h. */
#include "selfgen.h"

#include <stdlib.h>

#include "errors.h"
#include "sample.h"
#include "soft_tokens.h"

uint64_t jq_selfgen_seed(uint64_t seed, uint64_t index)
{
    /* hashed as bytes in a fixed order, so the value is the same on any
     * host */
    uint8_t b[16];
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(seed >> (8 * i));
        b[8 + i] = (uint8_t)(index >> (8 * i));
    }
    return jq_hash64(b, sizeof b, 0x7261696e);
}

int jq_selfgen_prompt(jq_ctx *c, uint64_t seed, uint64_t index, int32_t L,
                      int32_t *tokens, char *err, size_t errlen)
{
    const jq_model *m = jq_ctx_model(c);
    if (L < 1)
        return jq_fail(err, errlen, "a self-generated prompt needs at least "
                       "1 token, asked for %d", L);
    int32_t bos = jq_vocab_bos(m->vocab);
    if (bos < 0)
        return jq_fail(err, errlen, "the model's vocabulary has no BOS token "
                       "to start a self-generated prompt from");
    jq_sampling sp = {.temp = 1.0f, .top_k = 0, .top_p = 1.0f,
                      .seed = jq_selfgen_seed(seed, index)};
    jq_sampler *s = jq_sampler_new(&sp, m->hp.n_vocab);
    float *logits = malloc(sizeof(float) * (size_t)m->hp.n_vocab);
    int rc = 0;
    if (!s || !logits) {
        rc = jq_fail(err, errlen, "out of memory");
        goto done;
    }
    jq_ctx_reset(c);
    tokens[0] = bos;
    /* one token at a time: each draw depends on the one before */
    for (int32_t i = 1; i < L && rc == 0; i++) {
        rc = jq_ctx_eval(c, &tokens[i - 1], 1, logits, err, errlen);
        if (rc == 0)
            tokens[i] = jq_sampler_sample(s, logits);
    }
done:
    jq_sampler_free(s);
    free(logits);
    return rc;
}
