/* gen_model.c — see gen_model.h.
 *
 * Weights are uniform with variance 1/fan_in (so activations keep their
 * scale through the layers and the logits are not degenerate), norms are
 * 1, and everything is drawn from one seeded generator in a fixed order:
 * the same parameters always give the same bytes.
 */
#include "errors.h"
#include "gen_model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "kernels.h"
#include "recall_lang.h"
#include "tokenizer.h"

jq_gen_model_params jq_gen_model_defaults(void)
{
    return (jq_gen_model_params){
        .n_embd = 64, .n_layer = 2, .n_head = 4, .n_head_kv = 2,
        .n_ff = 128, .n_vocab = 512, .n_ctx = 512, .type = JQ_TYPE_F32,
        .seed = 1, .rope_base = 10000.0f, .rms_eps = 1e-5f,
        .arch = "llama", .rope_linear = 1.0f,
    };
}

int jq_gen_model_check(const jq_gen_model_params *p, char *err, size_t errlen)
{
    const int32_t max_dim = 1 << 18;
    struct { const char *name; int32_t v, lo, hi; } dims[] = {
        {"n-embd", p->n_embd, 2, max_dim},
        {"n-layer", p->n_layer, 1, 1024},
        {"n-head", p->n_head, 1, 4096},
        {"n-head-kv", p->n_head_kv, 1, 4096},
        {"n-ff", p->n_ff, 1, max_dim},
        {"n-vocab", p->n_vocab, JQ_GEN_MODEL_MIN_VOCAB, 1 << 21},
        {"ctx", p->n_ctx, 1, 1 << 24},
    };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        if (dims[i].v < dims[i].lo || dims[i].v > dims[i].hi) {
            jq_set_err(err, errlen, "--%s %d is out of range [%d, %d]",
                    dims[i].name, dims[i].v, dims[i].lo, dims[i].hi);
            return -1;
        }
    }
    if (p->n_embd % p->n_head) {
        jq_set_err(err, errlen, "--n-embd %d is not a multiple of --n-head %d",
                p->n_embd, p->n_head);
        return -1;
    }
    if ((p->n_embd / p->n_head) % 2) {
        jq_set_err(err, errlen,
                "head dimension n_embd/n_head = %d must be even (RoPE rotates "
                "pairs)",
                p->n_embd / p->n_head);
        return -1;
    }
    if (p->n_head % p->n_head_kv) {
        jq_set_err(err, errlen,
                "--n-head %d is not a multiple of --n-head-kv %d", p->n_head,
                p->n_head_kv);
        return -1;
    }
    if (p->recall_vocab && p->n_vocab != jq_recall_n_vocab())
        return jq_fail(err, errlen,
                       "the recall vocabulary has %d tokens, not --n-vocab %d",
                       (int)jq_recall_n_vocab(), (int)p->n_vocab);
    if (!p->arch || (strcmp(p->arch, "llama") && strcmp(p->arch, "qwen2")))
        return jq_fail(err, errlen, "--arch must be llama or qwen2");
    if (!(p->rope_linear >= 1.0f && p->rope_linear <= 1e6f))
        return jq_fail(err, errlen, "--rope-linear must be in [1, 1e6]");
    const jq_type_traits *tt = jq_type_traits_get(p->type);
    if (!tt || !(p->type == JQ_TYPE_F32 || p->type == JQ_TYPE_F16 ||
                 p->type == JQ_TYPE_BF16 || p->type == JQ_TYPE_Q8_0 ||
                 p->type == JQ_TYPE_Q4_0 || p->type == JQ_TYPE_Q4_K ||
                 p->type == JQ_TYPE_Q6_K)) {
        jq_set_err(err, errlen,
                   "weight type must be f32, f16, bf16, q8_0, q4_0, q4_k or q6_k");
        return -1;
    }
    /* every matrix row has n_embd or n_ff elements */
    if (p->n_embd % (int32_t)tt->block_size || p->n_ff % (int32_t)tt->block_size) {
        jq_set_err(err, errlen,
                "type %s needs --n-embd (%d) and --n-ff (%d) to be multiples "
                "of %u",
                tt->name, p->n_embd, p->n_ff, tt->block_size);
        return -1;
    }
    return 0;
}

/* ---- vocabulary: <unk> <s> </s>, <0x00>..<0xFF>, then "▁" and pieces
 * over a small alphabet, shortest first, each plain and "▁"-prefixed. */

static const char alphabet[] =
    "etaoinshrdlcumwfgypbvkjxqzETAOINSHRDLCUMWFGYPBVKJXQZ0123456789.,!?'\"-:;()";

static char **make_tokens(int32_t n_vocab, int32_t **types_out,
                          float **scores_out)
{
    char **tok = calloc((size_t)n_vocab, sizeof(char *));
    int32_t *types = calloc((size_t)n_vocab, sizeof(int32_t));
    float *scores = calloc((size_t)n_vocab, sizeof(float));
    if (!tok || !types || !scores)
        goto oom;
    int32_t n = 0;
    const char *special[3] = {"<unk>", "<s>", "</s>"};
    const int32_t special_type[3] = {2, 3, 3};
    for (int i = 0; i < 3; i++, n++) {
        tok[n] = strdup(special[i]);
        types[n] = special_type[i];
    }
    for (int b = 0; b < 256; b++, n++) {
        char buf[8];
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        tok[n] = strdup(buf);
        types[n] = 6;
    }
    tok[n] = strdup("\xE2\x96\x81");
    types[n++] = 1;
    const int A = (int)sizeof alphabet - 1;
    /* enumerate strings of length L over the alphabet in base-A order */
    for (int L = 1; n < n_vocab && L <= 6; L++) {
        int digits[6] = {0};
        for (;;) {
            for (int pre = 1; pre >= 0 && n < n_vocab; pre--) {
                char buf[32];
                int k = 0;
                if (pre) {
                    memcpy(buf, "\xE2\x96\x81", 3);
                    k = 3;
                }
                for (int i = 0; i < L; i++)
                    buf[k++] = alphabet[digits[i]];
                buf[k] = 0;
                tok[n] = strdup(buf);
                types[n++] = 1;
            }
            if (n >= n_vocab)
                break;
            int i = L - 1;
            while (i >= 0 && ++digits[i] == A)
                digits[i--] = 0;
            if (i < 0)
                break;
        }
    }
    for (int32_t i = 0; i < n_vocab; i++) {
        if (!tok[i])
            goto oom;
        /* SentencePiece scores: earlier (shorter) pieces merge first */
        scores[i] = types[i] == 1 ? -(float)(i - 259) : 0.0f;
    }
    *types_out = types;
    *scores_out = scores;
    return tok;
oom:
    if (tok)
        for (int32_t i = 0; i < n_vocab; i++)
            free(tok[i]);
    free(tok);
    free(types);
    free(scores);
    return NULL;
}

/* The tokenizer.ggml.* metadata of the pieces vocabulary of n_vocab
 * tokens. */
static int write_pieces_tokenizer(jq_gguf_writer *w, int32_t n_vocab,
                                  char *err, size_t errlen)
{
    int32_t *types = NULL;
    float *scores = NULL;
    char **tok = make_tokens(n_vocab, &types, &scores);
    if (!tok)
        return jq_fail(err, errlen, "out of memory");
    int rc = jq_spm_vocab_write(w, (const char *const *)tok, scores, types,
                                n_vocab, err, errlen);
    for (int32_t i = 0; i < n_vocab; i++)
        free(tok[i]);
    free(tok);
    free(types);
    free(scores);
    return rc;
}

/* ---- weights */

typedef struct {
    uint64_t s;
} rng64;

static float rng_uniform(rng64 *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    uint64_t x = r->s * 0x2545f4914f6cdd1dull;
    return (float)((double)(x >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

/* Llama 3.1's frequency factors (factor 8, low 1, high 4, original
 * context 8192): long wavelengths are divided by 8, short ones kept, the
 * band between interpolated, as Meta's reference code defines them. */
static void llama3_rope_factors(float *f, int half, float base)
{
    const double factor = 8, low = 1, high = 4, old_ctx = 8192;
    const double low_wavelen = old_ctx / low, high_wavelen = old_ctx / high;
    for (int i = 0; i < half; i++) {
        double freq = pow(base, -2.0 * i / (2.0 * half));
        double wavelen = 2 * M_PI / freq;
        if (wavelen < high_wavelen) {
            f[i] = 1.0f;
        } else if (wavelen > low_wavelen) {
            f[i] = (float)factor;
        } else {
            double smooth = (old_ctx / wavelen - low) / (high - low);
            f[i] = (float)(1.0 / ((1 - smooth) / factor + smooth));
        }
    }
}

typedef struct {
    char name[64];
    int64_t cols, rows; /* rows == 0: 1-D of cols */
    float amplitude;    /* 0: all ones (norms); < 0: Llama 3 RoPE factors */
    uint32_t type;
} tensor_plan;

static int write_tensor(jq_gguf_writer *w, int idx, const tensor_plan *t,
                        rng64 *rng, float rope_base, char *err, size_t errlen)
{
    int64_t rows = t->rows ? t->rows : 1;
    size_t n = (size_t)(rows * t->cols);
    uint64_t bytes = jq_gguf_writer_tensor_bytes(w, idx);
    float *f = malloc(n * sizeof(float));
    void *q = t->type == JQ_TYPE_F32 ? (void *)f : malloc(bytes);
    if (!f || !q) {
        free(f);
        jq_set_err(err, errlen, "out of memory generating %s", t->name);
        return -1;
    }
    if (t->amplitude < 0)
        llama3_rope_factors(f, (int)n, rope_base);
    else
        for (size_t i = 0; i < n; i++)
            f[i] = t->amplitude > 0 ? t->amplitude * rng_uniform(rng) : 1.0f;
    if (t->type != JQ_TYPE_F32) {
        size_t row_bytes = jq_row_bytes(t->type, t->cols);
        for (int64_t r = 0; r < rows; r++)
            jq_quantize_row(t->type, f + (size_t)r * t->cols,
                            (char *)q + (size_t)r * row_bytes, t->cols);
    }
    int rc = jq_gguf_writer_write_tensor(w, idx, q);
    if (rc != 0)
        jq_set_err(err, errlen, "%s", jq_gguf_writer_error(w));
    if (q != f)
        free(q);
    free(f);
    return rc;
}

int jq_gen_model_write(const jq_gen_model_params *p, const char *path,
                       char *err, size_t errlen)
{
    if (jq_gen_model_check(p, err, errlen) != 0)
        return -1;
    int rc = -1;
    jq_gguf_writer *w = jq_gguf_writer_new();
    bool qwen2 = p->arch && !strcmp(p->arch, "qwen2");
    int n_tensors = 3 + (qwen2 ? 12 : 9) * p->n_layer + (p->rope_freqs ? 1 : 0);
    tensor_plan *plan = calloc((size_t)n_tensors, sizeof *plan);
    if (!w || !plan) {
        jq_set_err(err, errlen, "out of memory");
        goto done;
    }
    int32_t head_dim = p->n_embd / p->n_head;
    int64_t kv_dim = (int64_t)p->n_head_kv * head_dim;
    /* llama.cpp's llama_ftype for the dominant type */
    uint32_t ftype = p->type == JQ_TYPE_F32    ? 0
                     : p->type == JQ_TYPE_F16  ? 1
                     : p->type == JQ_TYPE_Q4_0 ? 2
                     : p->type == JQ_TYPE_Q8_0 ? 7
                     : p->type == JQ_TYPE_Q6_K ? 18
                     : p->type == JQ_TYPE_Q4_K ? 15 /* Q4_K_M */
                                               : 32;
    int bad = 0;
    char key[96];
#define AK(suffix) (snprintf(key, sizeof key, "%s." suffix, p->arch), key)
    bad |= jq_gguf_writer_set_str(w, "general.architecture", p->arch);
    bad |= jq_gguf_writer_set_str(w, "general.name", "judgeq-random");
    bad |= jq_gguf_writer_set_u32(w, "general.file_type", ftype);
    bad |= jq_gguf_writer_set_u32(w, AK("context_length"), (uint32_t)p->n_ctx);
    bad |= jq_gguf_writer_set_u32(w, AK("embedding_length"), (uint32_t)p->n_embd);
    bad |= jq_gguf_writer_set_u32(w, AK("block_count"), (uint32_t)p->n_layer);
    bad |= jq_gguf_writer_set_u32(w, AK("feed_forward_length"), (uint32_t)p->n_ff);
    bad |= jq_gguf_writer_set_u32(w, AK("attention.head_count"), (uint32_t)p->n_head);
    bad |= jq_gguf_writer_set_u32(w, AK("attention.head_count_kv"), (uint32_t)p->n_head_kv);
    bad |= jq_gguf_writer_set_u32(w, AK("rope.dimension_count"), (uint32_t)head_dim);
    bad |= jq_gguf_writer_set_f32(w, AK("rope.freq_base"), p->rope_base);
    bad |= jq_gguf_writer_set_f32(w, AK("attention.layer_norm_rms_epsilon"), p->rms_eps);
    bad |= jq_gguf_writer_set_u32(w, AK("vocab_size"), (uint32_t)p->n_vocab);
    if (p->rope_linear > 1.0f) {
        bad |= jq_gguf_writer_set_str(w, AK("rope.scaling.type"), "linear");
        bad |= jq_gguf_writer_set_f32(w, AK("rope.scaling.factor"), p->rope_linear);
    }
#undef AK
    if (bad) {
        jq_set_err(err, errlen, "%s", jq_gguf_writer_error(w));
        goto done;
    }
    if (p->recall_vocab ? jq_recall_write_tokenizer(w, err, errlen)
                        : write_pieces_tokenizer(w, p->n_vocab, err, errlen))
        goto done;

    float a_embd = sqrtf(3.0f / (float)p->n_embd);
    float a_ff = sqrtf(3.0f / (float)p->n_ff);
    int k = 0;
#define PLAN(nm, c, r, amp, ty)                                              \
    do {                                                                     \
        snprintf(plan[k].name, sizeof plan[k].name, "%s", nm);               \
        plan[k].cols = (c);                                                  \
        plan[k].rows = (r);                                                  \
        plan[k].amplitude = (amp);                                           \
        plan[k].type = (ty);                                                 \
        k++;                                                                 \
    } while (0)
    /* embeddings of unit scale: the first rmsnorm sees O(1) inputs */
    PLAN("token_embd.weight", p->n_embd, p->n_vocab, 1.7f, p->type);
    char nm[64];
    for (int l = 0; l < p->n_layer; l++) {
#define BLK(s) (snprintf(nm, sizeof nm, "blk.%d." s, l), nm)
        PLAN(BLK("attn_norm.weight"), p->n_embd, 0, 0, JQ_TYPE_F32);
        PLAN(BLK("attn_q.weight"), p->n_embd, p->n_embd, a_embd, p->type);
        PLAN(BLK("attn_k.weight"), p->n_embd, kv_dim, a_embd, p->type);
        PLAN(BLK("attn_v.weight"), p->n_embd, kv_dim, a_embd, p->type);
        if (qwen2) {
            PLAN(BLK("attn_q.bias"), p->n_embd, 0, 0.5f, JQ_TYPE_F32);
            PLAN(BLK("attn_k.bias"), kv_dim, 0, 0.5f, JQ_TYPE_F32);
            PLAN(BLK("attn_v.bias"), kv_dim, 0, 0.5f, JQ_TYPE_F32);
        }
        PLAN(BLK("attn_output.weight"), p->n_embd, p->n_embd, a_embd, p->type);
        PLAN(BLK("ffn_norm.weight"), p->n_embd, 0, 0, JQ_TYPE_F32);
        PLAN(BLK("ffn_gate.weight"), p->n_embd, p->n_ff, a_embd, p->type);
        PLAN(BLK("ffn_up.weight"), p->n_embd, p->n_ff, a_embd, p->type);
        PLAN(BLK("ffn_down.weight"), p->n_ff, p->n_embd, a_ff, p->type);
#undef BLK
    }
    PLAN("output_norm.weight", p->n_embd, 0, 0, JQ_TYPE_F32);
    PLAN("output.weight", p->n_embd, p->n_vocab, a_embd, p->type);
    if (p->rope_freqs)
        PLAN("rope_freqs.weight", head_dim / 2, 0, -1.0f, JQ_TYPE_F32);
#undef PLAN

    for (int i = 0; i < n_tensors; i++) {
        int64_t ne[2] = {plan[i].cols, plan[i].rows};
        if (jq_gguf_writer_add_tensor(w, plan[i].name, plan[i].type,
                                      plan[i].rows ? 2 : 1, ne) < 0) {
            jq_set_err(err, errlen, "%s", jq_gguf_writer_error(w));
            goto done;
        }
    }
    if (jq_gguf_writer_begin(w, path) != 0) {
        jq_set_err(err, errlen, "%s", jq_gguf_writer_error(w));
        goto done;
    }
    rng64 rng = {.s = p->seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull};
    if (!rng.s)
        rng.s = 1;
    for (int i = 0; i < n_tensors; i++)
        if (write_tensor(w, i, &plan[i], &rng, p->rope_base, err, errlen) != 0)
            goto done;
    if (jq_gguf_writer_finish(w) != 0) {
        jq_set_err(err, errlen, "%s", jq_gguf_writer_error(w));
        goto done;
    }
    rc = 0;
done:
    jq_gguf_writer_free(w);
    free(plan);
    return rc;
}
