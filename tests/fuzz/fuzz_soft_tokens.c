/* fuzz_soft_tokens.c — any bytes as a Judge Q soft-token file.
 *
 * jq_soft_tokens_load takes a path, so the bytes go through a memory file
 * (no engine change needed). Each input is loaded twice: without a model
 * (inspection: metadata and tensor checks only) and against stories260K,
 * the model the seed files are made for (make fuzz runs soft-init on it),
 * so mutations of a valid file reach the model-identity checks and the
 * init_token_ids range check too.
 */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "model.h"
#include "soft_tokens.h"

static jq_model *model;

int jq_fuzz_soft_tokens_init(void)
{
    if (model)
        return 0;
    const char *path = jq_fuzz_model_path("stories260K.gguf");
    char err[512];
    model = jq_model_load(path, err, sizeof err);
    jq_fuzz_check(model != NULL, "cannot load the model the soft tokens are "
                  "checked against (set JUDGEQ_TEST_MODELS): %s", err);
    return 0;
}

/* What a successful load promises (soft_tokens.h). */
static void check_loaded(const jq_soft_tokens *s, const jq_model *m)
{
    jq_fuzz_check(s->n >= 1 && s->n <= JQ_SOFT_MAX_TOKENS, "n = %d", s->n);
    jq_fuzz_check(s->n_embd >= 1, "n_embd = %d", s->n_embd);
    jq_fuzz_check(s->emb != NULL, "no embeddings");
    size_t nv = (size_t)s->n * (size_t)s->n_embd;
    for (size_t i = 0; i < nv; i++)
        jq_fuzz_check(isfinite(s->emb[i]), "value %zu not finite", i);
    jq_fuzz_check(memchr(s->model_arch, 0, sizeof s->model_arch) != NULL &&
                      s->model_arch[0] != 0,
                  "model_arch not a non-empty C string");
    jq_fuzz_check(memchr(s->init, 0, sizeof s->init) != NULL,
                  "init not a C string");
    jq_fuzz_check(s->model_n_layer >= 1, "model_n_layer = %d",
                  s->model_n_layer);
    if (s->init_token_ids)
        for (int32_t i = 0; i < s->n; i++)
            jq_fuzz_check(s->init_token_ids[i] >= 0 &&
                              (!m || s->init_token_ids[i] < m->hp.n_vocab),
                          "init_token_ids[%d] = %d", i, s->init_token_ids[i]);
    if (m)
        jq_fuzz_check(s->n_embd == m->hp.n_embd &&
                          s->model_n_layer == m->hp.n_layer &&
                          s->model_hash == jq_model_embd_hash(m) &&
                          strcmp(s->model_arch, m->hp.arch) == 0,
                      "loaded against a model it was not made for");
}

int jq_fuzz_soft_tokens(const uint8_t *data, size_t size)
{
    jq_fuzz_soft_tokens_init();
    const char *path = jq_fuzz_memfile(data, size);
    char err[512];
    jq_soft_tokens *any = jq_soft_tokens_load(path, NULL, err, sizeof err);
    bool loads_alone = any != NULL;
    if (any) {
        check_loaded(any, NULL);
        jq_soft_tokens_free(any);
    } else {
        jq_fuzz_check(err[0] != 0, "an error without a message");
    }
    jq_soft_tokens *mine = jq_soft_tokens_load(path, model, err, sizeof err);
    if (mine) {
        /* what loads against the model loads without it */
        jq_fuzz_check(loads_alone, "loads only with a model");
        check_loaded(mine, model);
        jq_soft_tokens_free(mine);
    }
    return 0;
}
