/* pretrain_ckpt.c — the pretrainer's files: checkpoints and the exported
 * llama GGUF (see pretrain.h).
 *
 * A checkpoint is a GGUF too (the same reader validates it): keys
 * judgeq.pretrain.* with the shape, the completed step and the caller's
 * config text, and three F32 tensors per parameter tensor — the values
 * under their llama.cpp names, the AdamW moments under "adam_m." and
 * "adam_v." + name. Everything the next step reads is there, raw F32, so
 * a resumed run continues bit for bit (the data are a function of the step
 * and the config's seed, which the caller keeps in the config text). The
 * writer goes through PATH.tmp, fsync and rename, so an interrupted save
 * leaves the previous checkpoint intact.
 */
#include "pretrain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "gguf.h"
#include "kernels.h"
#include "pretrain_internal.h"

#define CKPT_VERSION 1

static const char *const moment_prefix[2] = {"adam_m.", "adam_v."};

static int add_shaped(jq_gguf_writer *w, const char *name, uint32_t type,
                      const jq_pt_tensor *t)
{
    const int64_t ne[2] = {t->cols, t->rows};
    return jq_gguf_writer_add_tensor(w, name, type, t->rows == 1 ? 1 : 2, ne);
}

static int set_shape(jq_gguf_writer *w, const jq_pt_hparams *hp)
{
    int bad = 0;
    bad |= jq_gguf_writer_set_u32(w, "judgeq.pretrain.n_vocab", (uint32_t)hp->n_vocab);
    bad |= jq_gguf_writer_set_u32(w, "judgeq.pretrain.n_embd", (uint32_t)hp->n_embd);
    bad |= jq_gguf_writer_set_u32(w, "judgeq.pretrain.n_layer", (uint32_t)hp->n_layer);
    bad |= jq_gguf_writer_set_u32(w, "judgeq.pretrain.n_head", (uint32_t)hp->n_head);
    bad |= jq_gguf_writer_set_u32(w, "judgeq.pretrain.n_head_kv", (uint32_t)hp->n_head_kv);
    bad |= jq_gguf_writer_set_u32(w, "judgeq.pretrain.n_ff", (uint32_t)hp->n_ff);
    bad |= jq_gguf_writer_set_u32(w, "judgeq.pretrain.n_ctx", (uint32_t)hp->n_ctx);
    bad |= jq_gguf_writer_set_f32(w, "judgeq.pretrain.rope_base", hp->rope_base);
    bad |= jq_gguf_writer_set_f32(w, "judgeq.pretrain.rms_eps", hp->rms_eps);
    bad |= jq_gguf_writer_set_u32(w, "judgeq.pretrain.tie_embd", hp->tie_embd);
    return bad ? -1 : 0;
}

int jq_pt_checkpoint_save(const jq_pt_trainer *t, const char *config,
                          const char *path, char *err, size_t errlen)
{
    jq_pt_model *m;
    float *mom[2];
    int64_t *step;
    jq_pt_trainer_state((jq_pt_trainer *)t, &m, &mom[0], &mom[1], &step);
    jq_gguf_writer *w = jq_gguf_writer_new();
    if (!w)
        return jq_fail(err, errlen, "out of memory");
    int bad = 0;
    bad |= jq_gguf_writer_set_str(w, "general.architecture", "judgeq-pretrain-checkpoint");
    bad |= jq_gguf_writer_set_u32(w, "judgeq.pretrain.version", CKPT_VERSION);
    bad |= jq_gguf_writer_set_u64(w, "judgeq.pretrain.step", (uint64_t)*step);
    bad |= jq_gguf_writer_set_str(w, "judgeq.pretrain.config", config ? config : "");
    bad |= set_shape(w, &m->hp);
    for (int i = 0; i < m->n_tensors && !bad; i++) {
        const jq_pt_tensor *te = &m->tensors[i];
        bad |= add_shaped(w, te->name, JQ_TYPE_F32, te) < 0;
        for (int k = 0; k < 2; k++) {
            char nm[96];
            snprintf(nm, sizeof nm, "%s%s", moment_prefix[k], te->name);
            bad |= add_shaped(w, nm, JQ_TYPE_F32, te) < 0;
        }
    }
    int idx = 0;
    bad = bad || jq_gguf_writer_begin(w, path) != 0;
    for (int i = 0; i < m->n_tensors && !bad; i++) {
        const size_t off = m->tensors[i].offset;
        bad |= jq_gguf_writer_write_tensor(w, idx++, m->params + off) != 0;
        for (int k = 0; k < 2 && !bad; k++)
            bad |= jq_gguf_writer_write_tensor(w, idx++, mom[k] + off) != 0;
    }
    bad = bad || jq_gguf_writer_finish(w) != 0;
    if (bad)
        jq_set_err(err, errlen, "writing checkpoint %s: %s", path,
                   jq_gguf_writer_error(w));
    jq_gguf_writer_free(w);
    return bad ? -1 : 0;
}

static int read_shape(const jq_gguf *g, jq_pt_hparams *hp, char *err,
                      size_t errlen)
{
    const struct { const char *key; int32_t *v; } ints[] = {
        {"judgeq.pretrain.n_vocab", &hp->n_vocab},
        {"judgeq.pretrain.n_embd", &hp->n_embd},
        {"judgeq.pretrain.n_layer", &hp->n_layer},
        {"judgeq.pretrain.n_head", &hp->n_head},
        {"judgeq.pretrain.n_head_kv", &hp->n_head_kv},
        {"judgeq.pretrain.n_ff", &hp->n_ff},
        {"judgeq.pretrain.n_ctx", &hp->n_ctx},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (!jq_gguf_get_i32(g, ints[i].key, ints[i].v))
            return jq_fail(err, errlen, "key %s is missing or not an integer",
                           ints[i].key);
    if (!jq_gguf_get_f32(g, "judgeq.pretrain.rope_base", &hp->rope_base) ||
        !jq_gguf_get_f32(g, "judgeq.pretrain.rms_eps", &hp->rms_eps))
        return jq_fail(err, errlen,
                       "key judgeq.pretrain.rope_base or rms_eps is missing");
    uint32_t tie = 0; /* absent in checkpoints from before the option */
    if (jq_gguf_find_key(g, "judgeq.pretrain.tie_embd") >= 0 &&
        (!jq_gguf_get_u32(g, "judgeq.pretrain.tie_embd", &tie) || tie > 1))
        return jq_fail(err, errlen, "key judgeq.pretrain.tie_embd is not 0 or 1");
    hp->tie_embd = tie == 1;
    return jq_pt_hparams_check(hp, err, errlen);
}

/* Field by field: the struct has padding after tie_embd. */
static bool hparams_equal(const jq_pt_hparams *a, const jq_pt_hparams *b)
{
    return a->n_vocab == b->n_vocab && a->n_embd == b->n_embd &&
           a->n_layer == b->n_layer && a->n_head == b->n_head &&
           a->n_head_kv == b->n_head_kv && a->n_ff == b->n_ff &&
           a->n_ctx == b->n_ctx && a->rope_base == b->rope_base &&
           a->rms_eps == b->rms_eps && a->tie_embd == b->tie_embd;
}

/* Copies tensor `name` (F32, the shape of te) into dst. */
static int read_tensor(const jq_gguf *g, const char *name,
                       const jq_pt_tensor *te, float *dst, char *err,
                       size_t errlen)
{
    const jq_gguf_tensor *t = jq_gguf_find_tensor(g, name);
    if (!t)
        return jq_fail(err, errlen, "tensor %s is missing", name);
    const bool shape_ok = t->type == JQ_TYPE_F32 && t->ne[0] == te->cols &&
                          (te->rows == 1 ? t->n_dims == 1
                                         : t->n_dims == 2 &&
                                               t->ne[1] == te->rows);
    if (!shape_ok)
        return jq_fail(err, errlen,
                       "tensor %s is not F32 [%lld, %lld] (type %u, [%lld, "
                       "%lld])",
                       name, (long long)te->cols, (long long)te->rows, t->type,
                       (long long)t->ne[0], (long long)t->ne[1]);
    memcpy(dst, t->data, (size_t)(te->rows * te->cols) * sizeof(float));
    return 0;
}

static jq_gguf *open_checkpoint(const char *path, char *err, size_t errlen)
{
    char e[512];
    jq_gguf *g = jq_gguf_open(path, e, sizeof e);
    if (!g) {
        jq_set_err(err, errlen, "%s: %s", path, e);
        return NULL;
    }
    uint32_t version;
    if (!jq_gguf_get_u32(g, "judgeq.pretrain.version", &version) ||
        version != CKPT_VERSION) {
        jq_set_err(err, errlen,
                   "%s is not a judgeq pretrain checkpoint (version %d)", path,
                   CKPT_VERSION);
        jq_gguf_close(g);
        return NULL;
    }
    return g;
}

int jq_pt_checkpoint_load(const char *path, jq_pt_model **model,
                          char **config, char *err, size_t errlen)
{
    *model = NULL;
    *config = NULL;
    jq_gguf *g = open_checkpoint(path, err, errlen);
    if (!g)
        return -1;
    char e[512];
    jq_pt_hparams hp = {0};
    jq_str cfg;
    jq_pt_model *m = NULL;
    int rc = -1;
    if (read_shape(g, &hp, e, sizeof e) != 0)
        goto fail;
    if (!jq_gguf_get_str(g, "judgeq.pretrain.config", &cfg)) {
        snprintf(e, sizeof e, "key judgeq.pretrain.config is missing");
        goto fail;
    }
    if (!(m = jq_pt_model_new(&hp, e, sizeof e)))
        goto fail;
    for (int i = 0; i < m->n_tensors; i++)
        if (read_tensor(g, m->tensors[i].name, &m->tensors[i],
                        m->params + m->tensors[i].offset, e, sizeof e) != 0)
            goto fail;
    if (!(*config = malloc(cfg.len + 1))) {
        snprintf(e, sizeof e, "out of memory");
        goto fail;
    }
    memcpy(*config, cfg.ptr, cfg.len);
    (*config)[cfg.len] = 0;
    *model = m;
    m = NULL;
    rc = 0;
fail:
    if (rc != 0)
        jq_set_err(err, errlen, "checkpoint %s: %s", path, e);
    jq_pt_model_free(m);
    jq_gguf_close(g);
    return rc;
}

int jq_pt_trainer_resume(jq_pt_trainer *t, const char *path, char *err,
                         size_t errlen)
{
    jq_pt_model *m;
    float *mom[2];
    int64_t *step;
    jq_pt_trainer_state(t, &m, &mom[0], &mom[1], &step);
    jq_gguf *g = open_checkpoint(path, err, errlen);
    if (!g)
        return -1;
    char e[512];
    int rc = -1;
    jq_pt_hparams hp = {0};
    uint64_t s;
    if (read_shape(g, &hp, e, sizeof e) != 0)
        goto done;
    if (!hparams_equal(&hp, &m->hp)) {
        snprintf(e, sizeof e, "its model shape differs from the trainer's");
        goto done;
    }
    if (!jq_gguf_get_u64(g, "judgeq.pretrain.step", &s) || s > INT64_MAX) {
        snprintf(e, sizeof e, "key judgeq.pretrain.step is missing");
        goto done;
    }
    for (int i = 0; i < m->n_tensors; i++) {
        for (int k = 0; k < 2; k++) {
            char nm[96];
            snprintf(nm, sizeof nm, "%s%s", moment_prefix[k],
                     m->tensors[i].name);
            if (read_tensor(g, nm, &m->tensors[i],
                            mom[k] + m->tensors[i].offset, e, sizeof e) != 0)
                goto done;
        }
    }
    *step = (int64_t)s;
    rc = 0;
done:
    if (rc != 0)
        jq_set_err(err, errlen, "checkpoint %s: %s", path, e);
    jq_gguf_close(g);
    return rc;
}

/* ----------------------------------------------------- staged training */

int jq_pt_model_load_weights(jq_pt_model *m, const char *path, char *err,
                             size_t errlen)
{
    char e[512];
    jq_gguf *g = jq_gguf_open(path, e, sizeof e);
    if (!g)
        return jq_fail(err, errlen, "%s: %s", path, e);
    int rc = 0;
    for (int i = 0; i < m->n_tensors && rc == 0; i++) {
        const jq_pt_tensor *te = &m->tensors[i];
        const jq_gguf_tensor *t = jq_gguf_find_tensor(g, te->name);
        if (!t) {
            rc = jq_fail(err, errlen, "%s: tensor %s is missing (not a "
                         "model of this shape)", path, te->name);
            break;
        }
        const bool type_ok = t->type == JQ_TYPE_F32 ||
                             t->type == JQ_TYPE_F16 || t->type == JQ_TYPE_BF16;
        const bool shape_ok = t->ne[0] == te->cols &&
                              (te->rows == 1 ? t->n_dims == 1
                                             : t->n_dims == 2 &&
                                                   t->ne[1] == te->rows);
        if (!type_ok || !shape_ok) {
            const jq_type_traits *tt = jq_type_traits_get(t->type);
            char tname[24];
            if (tt)
                snprintf(tname, sizeof tname, "%s", tt->name);
            else
                snprintf(tname, sizeof tname, "unknown type %u", t->type);
            rc = jq_fail(err, errlen,
                         "%s: tensor %s is %s [%lld, %lld], this model "
                         "needs f32, f16 or bf16 [%lld, %lld]",
                         path, te->name, tname, (long long)t->ne[0],
                         (long long)(t->n_dims > 1 ? t->ne[1] : 1),
                         (long long)te->cols, (long long)te->rows);
            break;
        }
        /* the reader checked that the data lies inside the file */
        const size_t rb = jq_row_bytes(t->type, te->cols);
        for (int64_t r = 0; r < te->rows; r++)
            jq_dequantize_row(t->type, (const char *)t->data + (size_t)r * rb,
                              m->params + te->offset + r * te->cols,
                              te->cols);
    }
    jq_gguf_close(g);
    return rc;
}

/* ------------------------------------------------------------ export */

int jq_pt_export_gguf(const jq_pt_model *m, uint32_t out_type,
                      const char *name, jq_pt_tokenizer_fn tok, void *ud,
                      const char *path, char *err, size_t errlen)
{
    if (out_type != JQ_TYPE_F32 && out_type != JQ_TYPE_F16)
        return jq_fail(err, errlen, "the output type must be f32 or f16");
    const jq_pt_hparams *hp = &m->hp;
    jq_gguf_writer *w = jq_gguf_writer_new();
    if (!w)
        return jq_fail(err, errlen, "out of memory");
    int bad = 0;
    bad |= jq_gguf_writer_set_str(w, "general.architecture", "llama");
    bad |= jq_gguf_writer_set_str(w, "general.name", name ? name : "judgeq-pretrained");
    bad |= jq_gguf_writer_set_u32(w, "general.file_type", out_type == JQ_TYPE_F16 ? 1 : 0);
    bad |= jq_gguf_writer_set_u32(w, "llama.context_length", (uint32_t)hp->n_ctx);
    bad |= jq_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)hp->n_embd);
    bad |= jq_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)hp->n_layer);
    bad |= jq_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)hp->n_ff);
    bad |= jq_gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)hp->n_head);
    bad |= jq_gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)hp->n_head_kv);
    bad |= jq_gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)m->head_dim);
    bad |= jq_gguf_writer_set_f32(w, "llama.rope.freq_base", hp->rope_base);
    bad |= jq_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", hp->rms_eps);
    bad |= jq_gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)hp->n_vocab);
    if (bad) {
        jq_set_err(err, errlen, "%s", jq_gguf_writer_error(w));
        jq_gguf_writer_free(w);
        return -1;
    }
    char e[512];
    if (tok(ud, w, e, sizeof e) != 0) {
        jq_set_err(err, errlen, "tokenizer: %s", e);
        jq_gguf_writer_free(w);
        return -1;
    }
    for (int i = 0; i < m->n_tensors && !bad; i++) {
        const jq_pt_tensor *te = &m->tensors[i];
        bad |= add_shaped(w, te->name, te->rows == 1 ? JQ_TYPE_F32 : out_type,
                          te) < 0;
    }
    bad = bad || jq_gguf_writer_begin(w, path) != 0;
    void *buf = NULL;
    for (int i = 0; i < m->n_tensors && !bad; i++) {
        const jq_pt_tensor *te = &m->tensors[i];
        const float *src = m->params + te->offset;
        if (te->rows == 1 || out_type == JQ_TYPE_F32) {
            bad |= jq_gguf_writer_write_tensor(w, i, src) != 0;
            continue;
        }
        void *nb = realloc(buf, jq_gguf_writer_tensor_bytes(w, i));
        if (!nb) {
            jq_gguf_writer_free(w);
            free(buf);
            return jq_fail(err, errlen, "out of memory converting %s",
                           te->name);
        }
        buf = nb;
        const size_t rb = jq_row_bytes(out_type, te->cols);
        for (int64_t r = 0; r < te->rows; r++)
            jq_quantize_row(out_type, src + r * te->cols,
                            (char *)buf + (size_t)r * rb, te->cols);
        bad |= jq_gguf_writer_write_tensor(w, i, buf) != 0;
    }
    free(buf);
    bad = bad || jq_gguf_writer_finish(w) != 0;
    if (bad)
        jq_set_err(err, errlen, "writing %s: %s", path,
                   jq_gguf_writer_error(w));
    jq_gguf_writer_free(w);
    return bad ? -1 : 0;
}
