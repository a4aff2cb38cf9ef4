/* tokenizer.c — loading a vocabulary from GGUF metadata, token lookup,
 * and turning ids back into text. The SPM tokenizer is in tokenizer_spm.c.
 *
 * Loading follows llama.cpp's llama_vocab::load for the parts that change
 * tokenization or rendering: the per-model defaults (BOS 1 / EOS 2 / UNK 0
 * and add_bos + add_space_prefix for SPM), out-of-range special ids falling
 * back to the default, and the token attributes llama.cpp adjusts by token
 * text. Every count and id in the file is checked; a bad vocabulary is a
 * load error, never a crash later.
 */
#include "tokenizer_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* No real vocabulary has tokens anywhere near this long; the limit keeps
 * piece lengths comfortably inside int. */
#define MAX_TOKEN_LEN ((uint64_t)1 << 20)

void jq_tok_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Copies up to 64 bytes of s for an error message, with non-printable bytes
 * as '?', so a hostile file cannot put control characters in our logs. */
static const char *printable(jq_str s, char buf[72])
{
    size_t n = s.len < 64 ? (size_t)s.len : 64, i;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        buf[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (s.len > 64) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = 0;
    return buf;
}

/* ---- text -> id */

static uint64_t hash_text(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h ^ (h >> 32);
}

int32_t jq_vocab_lookup(const jq_vocab *v, const char *s, size_t len)
{
    size_t i = (size_t)hash_text(s, len) & v->table_mask;
    for (;;) {
        int32_t id = v->table[i];
        if (id < 0)
            return -1;
        if (v->len[id] == len && memcmp(v->arena + v->off[id], s, len) == 0)
            return id;
        i = (i + 1) & v->table_mask;
    }
}

int32_t jq_vocab_find(const jq_vocab *v, const char *text, size_t len)
{
    if (!v || (!text && len))
        return -1;
    return jq_vocab_lookup(v, text ? text : "", len);
}

static int build_table(jq_vocab *v, char *err, size_t errlen)
{
    size_t size = 16;
    while (size < 2 * (size_t)v->n)
        size *= 2; /* load factor <= 1/2 keeps probe chains short */
    v->table = malloc(size * sizeof *v->table);
    if (!v->table) {
        jq_tok_err(err, errlen, "out of memory for the token table");
        return -1;
    }
    memset(v->table, 0xff, size * sizeof *v->table); /* all -1 */
    v->table_mask = size - 1;
    for (int32_t id = 0; id < v->n; id++) {
        const char *t = v->arena + v->off[id];
        /* An empty token can never match a piece of text; llama.cpp renames
         * such tokens, which amounts to the same. */
        if (v->len[id] == 0)
            continue;
        size_t i = (size_t)hash_text(t, v->len[id]) & v->table_mask;
        while (v->table[i] >= 0) {
            int32_t o = v->table[i];
            if (v->len[o] == v->len[id] &&
                memcmp(v->arena + v->off[o], t, v->len[id]) == 0) {
                /* llama.cpp refuses these too: the text -> id map would
                 * silently lose one of them. */
                char pb[72];
                jq_tok_err(err, errlen,
                           "duplicate token in tokenizer.ggml.tokens: '%s' "
                           "has ids %d and %d",
                           printable((jq_str){t, v->len[id]}, pb), o, id);
                return -1;
            }
            i = (i + 1) & v->table_mask;
        }
        v->table[i] = id;
    }
    return 0;
}

/* ---- attributes */

static uint16_t attr_of_type(int32_t type)
{
    switch (type) {
    case JQ_TOKEN_NORMAL: return JQ_ATTR_NORMAL;
    case JQ_TOKEN_UNKNOWN: return JQ_ATTR_UNKNOWN;
    case JQ_TOKEN_CONTROL: return JQ_ATTR_CONTROL;
    case JQ_TOKEN_USER_DEFINED: return JQ_ATTR_USER_DEFINED;
    case JQ_TOKEN_UNUSED: return JQ_ATTR_UNUSED;
    case JQ_TOKEN_BYTE: return JQ_ATTR_BYTE;
    default: return 0; /* undefined: rendered as nothing */
    }
}

/* Texts llama.cpp always treats as control tokens (end-of-generation and
 * fill-in-the-middle markers), whatever type the file gives them. It matters
 * here because a control token is never matched in raw text and renders as
 * nothing, while a user-defined one is and renders as its text. */
static const char *const control_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
    "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>",
    "<eos>", "<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>",
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>",
    "\xe2\x96\x81<PRE>", "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
    "<SUF>", "\xe2\x96\x81<SUF>", "<|fim_middle|>", "<fim-middle>",
    "<fim_middle>", "<MID>", "\xe2\x96\x81<MID>", "<|fim_pad|>",
    "<fim-pad>", "<fim_pad>", "<PAD>", "<|fim_repo|>", "<|repo_name|>",
    "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>",
};

static int32_t find_cstr(const jq_vocab *v, const char *s)
{
    return jq_vocab_lookup(v, s, strlen(s));
}

static bool name_is_phi3(const jq_gguf *g)
{
    jq_str name;
    if (!jq_gguf_get_str(g, "general.name", &name))
        return false;
    /* case-insensitive search for "phi-3" or "phi3" */
    for (uint64_t i = 0; i < name.len; i++) {
        static const char *const pats[] = {"phi-3", "phi3"};
        for (int p = 0; p < 2; p++) {
            size_t pl = strlen(pats[p]);
            if (name.len - i < pl)
                continue;
            size_t k = 0;
            while (k < pl) {
                char c = name.ptr[i + k];
                if (c >= 'A' && c <= 'Z')
                    c = (char)(c - 'A' + 'a');
                if (c != pats[p][k])
                    break;
                k++;
            }
            if (k == pl)
                return true;
        }
    }
    return false;
}

static void derive_attrs(jq_vocab *v, const jq_gguf *g)
{
    for (int32_t i = 0; i < v->n; i++)
        v->attr[i] = attr_of_type(v->type[i]);
    for (size_t k = 0; k < sizeof control_texts / sizeof *control_texts; k++) {
        int32_t id = find_cstr(v, control_texts[k]);
        if (id >= 0)
            v->attr[id] |= JQ_ATTR_CONTROL;
    }
    /* llama.cpp's Phi-3 special case (chosen by general.name): its added
     * tokens swallow the whitespace that follows them. */
    if (name_is_phi3(g)) {
        const uint16_t special =
            JQ_ATTR_CONTROL | JQ_ATTR_USER_DEFINED | JQ_ATTR_UNKNOWN;
        for (int32_t i = 0; i < v->n; i++)
            if (v->attr[i] & special)
                v->attr[i] |= JQ_ATTR_RSTRIP;
        int32_t id = find_cstr(v, "</s>");
        if (id >= 0)
            v->attr[id] |= JQ_ATTR_RSTRIP;
        static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
        for (int k = 0; k < 3; k++)
            if ((id = find_cstr(v, keep[k])) >= 0)
                v->attr[id] &= (uint16_t)~JQ_ATTR_RSTRIP;
    }
}

/* Byte fallback targets: <0xNN>, else the bare byte as a token (both as in
 * llama.cpp's byte_to_token), else -1. */
static void build_byte_tokens(jq_vocab *v)
{
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        char t[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        char c = (char)b;
        int32_t id = jq_vocab_lookup(v, t, 6);
        v->byte_token[b] = id >= 0 ? id : jq_vocab_lookup(v, &c, 1);
    }
}

typedef struct {
    uint32_t len;
    int32_t id;
} split_key;

/* Longest text first so that a token containing another wins; by id on
 * equal length so the order is deterministic (llama.cpp's std::sort leaves
 * it unspecified). */
static int cmp_split(const void *a, const void *b)
{
    const split_key *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static bool is_split_token(const jq_vocab *v, int32_t i)
{
    /* With special-token parsing off, llama.cpp still cuts user-defined
     * tokens out of the text (as Hugging Face tokenizers do with added
     * tokens); control and unknown ones are left to the tokenizer. */
    return (v->attr[i] & JQ_ATTR_USER_DEFINED) &&
           !(v->attr[i] & (JQ_ATTR_CONTROL | JQ_ATTR_UNKNOWN)) && v->len[i];
}

/* FNV-1a, one byte at a time, never 0 (0 marks an empty slot). */
static uint64_t prefix_step(uint64_t h, unsigned char c)
{
    return (h ^ c) * 0x100000001b3ull;
}
static uint64_t prefix_key(uint64_t h) { return h ? h : 1; }

static bool prefix_has(const jq_vocab *v, uint64_t h)
{
    uint64_t k = prefix_key(h);
    for (size_t i = (size_t)(k ^ (k >> 31)) & v->split_prefix_mask;;
         i = (i + 1) & v->split_prefix_mask) {
        if (v->split_prefix[i] == k)
            return true;
        if (v->split_prefix[i] == 0)
            return false;
    }
}

static int build_split_prefixes(jq_vocab *v)
{
    size_t total = 0;
    for (size_t k = 0; k < v->n_split; k++) {
        uint32_t l = v->len[v->split_ids[k]];
        total += l;
        if (l > v->split_max_len)
            v->split_max_len = l;
    }
    size_t size = 16;
    while (size < 2 * total)
        size *= 2;
    v->split_prefix = calloc(size, sizeof *v->split_prefix);
    if (!v->split_prefix)
        return -1;
    v->split_prefix_mask = size - 1;
    for (size_t k = 0; k < v->n_split; k++) {
        const unsigned char *t =
            (const unsigned char *)v->arena + v->off[v->split_ids[k]];
        uint64_t h = 0xcbf29ce484222325ull;
        for (uint32_t j = 0; j < v->len[v->split_ids[k]]; j++) {
            h = prefix_step(h, t[j]);
            uint64_t key = prefix_key(h);
            size_t i = (size_t)(key ^ (key >> 31)) & v->split_prefix_mask;
            while (v->split_prefix[i] != 0 && v->split_prefix[i] != key)
                i = (i + 1) & v->split_prefix_mask;
            v->split_prefix[i] = key;
        }
    }
    return 0;
}

static int build_split_list(jq_vocab *v, char *err, size_t errlen)
{
    size_t n = 0;
    for (int32_t i = 0; i < v->n; i++)
        n += is_split_token(v, i);
    if (n == 0)
        return 0;
    split_key *keys = malloc(n * sizeof *keys);
    v->split_ids = malloc(n * sizeof *v->split_ids);
    if (!keys || !v->split_ids) {
        free(keys);
        jq_tok_err(err, errlen, "out of memory");
        return -1;
    }
    size_t k = 0;
    for (int32_t i = 0; i < v->n; i++)
        if (is_split_token(v, i))
            keys[k++] = (split_key){v->len[i], i};
    qsort(keys, n, sizeof *keys, cmp_split);
    for (k = 0; k < n; k++)
        v->split_ids[k] = keys[k].id;
    v->n_split = n;
    free(keys);
    if (build_split_prefixes(v)) {
        jq_tok_err(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* ---- metadata helpers */

static bool is_int_type(jq_gguf_type t)
{
    switch (t) {
    case JQ_GGUF_UINT8: case JQ_GGUF_INT8: case JQ_GGUF_UINT16:
    case JQ_GGUF_INT16: case JQ_GGUF_UINT32: case JQ_GGUF_INT32:
    case JQ_GGUF_UINT64: case JQ_GGUF_INT64:
        return true;
    default:
        return false;
    }
}

/* Reads a special token id. Absent keeps *id. A value outside the
 * vocabulary (e.g. 0xFFFFFFFF or -1, which converters write for "none")
 * also keeps the default, as llama.cpp does. A non-integer is an error. */
static int read_special(const jq_gguf *g, const char *key, int32_t n,
                        int32_t *id, char *err, size_t errlen)
{
    int64_t k = jq_gguf_find_key(g, key);
    if (k < 0)
        return 0;
    if (!is_int_type(jq_gguf_kv_type(g, k))) {
        jq_tok_err(err, errlen, "%s: expected an integer (gguf type %d)",
                   key, (int)jq_gguf_kv_type(g, k));
        return -1;
    }
    uint32_t u;
    if (jq_gguf_get_u32(g, key, &u) && u < (uint32_t)n)
        *id = (int32_t)u;
    return 0;
}

static int read_bool(const jq_gguf *g, const char *key, bool *out,
                     char *err, size_t errlen)
{
    if (jq_gguf_find_key(g, key) < 0)
        return 0;
    if (!jq_gguf_get_bool(g, key, out)) {
        jq_tok_err(err, errlen, "%s: expected a bool", key);
        return -1;
    }
    return 0;
}

/* An optional numeric array with one entry per token. */
static int check_per_token_array(const jq_gguf *g, const char *key,
                                 int32_t n, bool want_int, bool *present,
                                 char *err, size_t errlen)
{
    *present = false;
    if (jq_gguf_find_key(g, key) < 0)
        return 0;
    jq_gguf_type et;
    uint64_t cnt;
    if (!jq_gguf_get_arr(g, key, &et, &cnt)) {
        jq_tok_err(err, errlen, "%s: expected an array", key);
        return -1;
    }
    bool ok = want_int ? is_int_type(et)
                       : (et == JQ_GGUF_FLOAT32 || et == JQ_GGUF_FLOAT64 ||
                          is_int_type(et));
    if (!ok) {
        jq_tok_err(err, errlen, "%s: expected an array of %s, not of gguf type %d",
                   key, want_int ? "integers" : "numbers", (int)et);
        return -1;
    }
    if (cnt != (uint64_t)n) {
        jq_tok_err(err, errlen,
                   "%s has %llu entries but tokenizer.ggml.tokens has %d",
                   key, (unsigned long long)cnt, n);
        return -1;
    }
    *present = true;
    return 0;
}

/* ---- load */

static int load_tokens(jq_vocab *v, const jq_gguf *g, char *err, size_t errlen)
{
    static const char key[] = "tokenizer.ggml.tokens";
    jq_gguf_type et;
    uint64_t cnt;
    if (jq_gguf_find_key(g, key) < 0) {
        jq_tok_err(err, errlen, "no %s in the file (the vocabulary is missing)", key);
        return -1;
    }
    if (!jq_gguf_get_arr(g, key, &et, &cnt) || et != JQ_GGUF_STRING) {
        jq_tok_err(err, errlen, "%s: expected an array of strings", key);
        return -1;
    }
    if (cnt == 0) {
        jq_tok_err(err, errlen, "%s is empty", key);
        return -1;
    }
    if (cnt > (uint64_t)INT32_MAX) {
        jq_tok_err(err, errlen, "%s has %llu tokens (limit %d)", key,
                   (unsigned long long)cnt, INT32_MAX);
        return -1;
    }
    v->n = (int32_t)cnt;
    v->off = malloc(cnt * sizeof *v->off);
    v->len = malloc(cnt * sizeof *v->len);
    if (!v->off || !v->len)
        goto oom;

    /* Pass 1: sizes (the reader bounds each string by the file size, so the
     * sum cannot overflow size_t on 64-bit; checked anyway). */
    size_t total = 0;
    for (int32_t i = 0; i < v->n; i++) {
        jq_str s;
        if (!jq_gguf_arr_str(g, key, (uint64_t)i, &s)) {
            jq_tok_err(err, errlen, "%s[%d] cannot be read", key, i);
            return -1;
        }
        if (s.len > MAX_TOKEN_LEN) {
            jq_tok_err(err, errlen, "%s[%d] is %llu bytes long (limit %llu)",
                       key, i, (unsigned long long)s.len,
                       (unsigned long long)MAX_TOKEN_LEN);
            return -1;
        }
        if (total > SIZE_MAX - s.len - 1)
            goto oom;
        v->off[i] = total;
        v->len[i] = (uint32_t)s.len;
        total += (size_t)s.len + 1;
    }
    /* Pass 2: copy, so the vocabulary outlives the gguf handle. */
    v->arena = malloc(total);
    if (!v->arena)
        goto oom;
    for (int32_t i = 0; i < v->n; i++) {
        jq_str s;
        if (!jq_gguf_arr_str(g, key, (uint64_t)i, &s)) {
            jq_tok_err(err, errlen, "%s[%d] cannot be read", key, i);
            return -1;
        }
        if (s.len)
            memcpy(v->arena + v->off[i], s.ptr, (size_t)s.len);
        v->arena[v->off[i] + s.len] = 0;
    }
    return 0;
oom:
    jq_tok_err(err, errlen, "out of memory for %llu tokens",
               (unsigned long long)cnt);
    return -1;
}

jq_vocab *jq_vocab_load(const jq_gguf *g, char *err, size_t errlen)
{
    if (!g) {
        jq_tok_err(err, errlen, "no gguf file");
        return NULL;
    }
    jq_vocab *v = calloc(1, sizeof *v);
    if (!v) {
        jq_tok_err(err, errlen, "out of memory");
        return NULL;
    }

    jq_str model;
    char pb[72];
    if (jq_gguf_find_key(g, "tokenizer.ggml.model") < 0) {
        jq_tok_err(err, errlen, "no tokenizer.ggml.model in the file");
        goto fail;
    }
    if (!jq_gguf_get_str(g, "tokenizer.ggml.model", &model)) {
        jq_tok_err(err, errlen, "tokenizer.ggml.model: expected a string");
        goto fail;
    }
    if (jq_str_eq(model, "llama")) {
        v->kind = JQ_VOCAB_SPM;
        v->bos = 1, v->eos = 2, v->unk = 0;
        v->add_bos = true;
        v->add_space_prefix = true;
    } else if (jq_str_eq(model, "gpt2")) {
        v->kind = JQ_VOCAB_BPE;
        v->bos = 11, v->eos = 11, v->unk = -1; /* llama.cpp's defaults */
        v->add_bos = false;
        v->add_space_prefix = false;
        /* tokenizer.ggml.pre may change the defaults above */
        if (jq_bpe_load(v, g, err, errlen))
            goto fail;
    } else {
        jq_tok_err(err, errlen,
                   "unsupported tokenizer model '%s' (tokenizer.ggml.model; "
                   "judgeq knows 'llama' and 'gpt2')",
                   printable(model, pb));
        goto fail;
    }
    v->pad = -1;

    if (load_tokens(v, g, err, errlen))
        goto fail;
    int32_t n = v->n;

    v->score = calloc((size_t)n, sizeof *v->score);
    v->type = malloc((size_t)n * sizeof *v->type);
    v->attr = calloc((size_t)n, sizeof *v->attr);
    if (!v->score || !v->type || !v->attr) {
        jq_tok_err(err, errlen, "out of memory");
        goto fail;
    }

    bool present;
    if (check_per_token_array(g, "tokenizer.ggml.scores", n, false, &present,
                              err, errlen))
        goto fail;
    if (present &&
        !jq_gguf_arr_to_f32(g, "tokenizer.ggml.scores", v->score, (uint64_t)n)) {
        jq_tok_err(err, errlen, "tokenizer.ggml.scores cannot be read as floats");
        goto fail;
    }
    if (check_per_token_array(g, "tokenizer.ggml.token_type", n, true,
                              &present, err, errlen))
        goto fail;
    if (present) {
        if (!jq_gguf_arr_to_i32(g, "tokenizer.ggml.token_type", v->type,
                                (uint64_t)n)) {
            jq_tok_err(err, errlen,
                       "tokenizer.ggml.token_type has a value outside int32");
            goto fail;
        }
    } else {
        for (int32_t i = 0; i < n; i++)
            v->type[i] = JQ_TOKEN_NORMAL;
    }

    /* Defaults that do not exist in this vocabulary are dropped first (a
     * 3-token test vocabulary has no id 11). */
    if (v->bos >= n) v->bos = -1;
    if (v->eos >= n) v->eos = -1;
    if (v->unk >= n) v->unk = -1;
    if (read_special(g, "tokenizer.ggml.bos_token_id", n, &v->bos, err, errlen) ||
        read_special(g, "tokenizer.ggml.eos_token_id", n, &v->eos, err, errlen) ||
        read_special(g, "tokenizer.ggml.unknown_token_id", n, &v->unk, err, errlen) ||
        read_special(g, "tokenizer.ggml.padding_token_id", n, &v->pad, err, errlen))
        goto fail;
    if (read_bool(g, "tokenizer.ggml.add_bos_token", &v->add_bos, err, errlen) ||
        read_bool(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix,
                  err, errlen))
        goto fail;
    if (v->add_bos && v->bos < 0) {
        jq_tok_err(err, errlen,
                   "tokenizer.ggml.add_bos_token is true, but there is no "
                   "usable tokenizer.ggml.bos_token_id");
        goto fail;
    }

    if (build_table(v, err, errlen))
        goto fail;
    derive_attrs(v, g);
    build_byte_tokens(v);
    if (build_split_list(v, err, errlen))
        goto fail;
    return v;
fail:
    jq_vocab_free(v);
    return NULL;
}

void jq_vocab_free(jq_vocab *v)
{
    if (!v)
        return;
    free(v->arena);
    free(v->off);
    free(v->len);
    free(v->score);
    free(v->type);
    free(v->attr);
    free(v->table);
    free(v->split_ids);
    free(v->split_prefix);
    jq_bpe_free(v->bpe);
    free(v);
}

/* ---- accessors */

jq_vocab_kind jq_vocab_kind_of(const jq_vocab *v) { return v->kind; }
int32_t jq_vocab_size(const jq_vocab *v) { return v->n; }
int32_t jq_vocab_bos(const jq_vocab *v) { return v->bos; }
int32_t jq_vocab_eos(const jq_vocab *v) { return v->eos; }
int32_t jq_vocab_unk(const jq_vocab *v) { return v->unk; }
int32_t jq_vocab_pad(const jq_vocab *v) { return v->pad; }
bool jq_vocab_add_bos(const jq_vocab *v) { return v->add_bos; }
bool jq_vocab_add_space_prefix(const jq_vocab *v) { return v->add_space_prefix; }

const char *jq_vocab_token_text(const jq_vocab *v, int32_t id)
{
    if (!v || id < 0 || id >= v->n)
        return NULL;
    return v->arena + v->off[id];
}

int32_t jq_vocab_token_type(const jq_vocab *v, int32_t id)
{
    if (!v || id < 0 || id >= v->n)
        return -1;
    return v->type[id];
}

float jq_vocab_token_score(const jq_vocab *v, int32_t id)
{
    if (!v || id < 0 || id >= v->n)
        return 0.0f;
    return v->score[id];
}

/* ---- user-defined tokens in raw text */

static int frag_push(jq_fragvec *fv, jq_fragment f)
{
    if (fv->n == fv->cap) {
        size_t cap = fv->cap ? fv->cap * 2 : 16;
        jq_fragment *p = realloc(fv->f, cap * sizeof *p);
        if (!p)
            return -1;
        fv->f = p;
        fv->cap = cap;
    }
    fv->f[fv->n++] = f;
    return 0;
}

/* isspace() of the C locale, which is what llama.cpp's stripping uses. */
static bool c_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' ||
           c == '\r';
}

/* Cuts every occurrence of token id out of the raw fragments of in, into
 * out: leftmost match first, then again in the rest, with the token's
 * lstrip/rstrip eating whitespace on either side (llama.cpp's
 * tokenizer_st_partition). */
static int partition_one(const jq_vocab *v, int32_t id, const char *text,
                         const jq_fragvec *in, jq_fragvec *out)
{
    const char *tt = v->arena + v->off[id];
    size_t tl = v->len[id];
    uint16_t attr = v->attr[id];
    for (size_t k = 0; k < in->n; k++) {
        jq_fragment f = in->f[k];
        if (f.token >= 0) {
            if (frag_push(out, f))
                return -1;
            continue;
        }
        size_t pos = f.off, end = f.off + f.len;
        while (pos < end) {
            const char *m = memmem(text + pos, end - pos, tt, tl);
            if (!m) {
                if (frag_push(out, (jq_fragment){-1, pos, end - pos}))
                    return -1;
                break;
            }
            size_t at = (size_t)(m - text);
            size_t left = at - pos;
            if (attr & JQ_ATTR_LSTRIP)
                while (left > 0 && c_space(text[pos + left - 1]))
                    left--;
            if (left > 0 && frag_push(out, (jq_fragment){-1, pos, left}))
                return -1;
            if (frag_push(out, (jq_fragment){id, 0, 0}))
                return -1;
            pos = at + tl;
            if (attr & JQ_ATTR_RSTRIP)
                while (pos < end && c_space(text[pos]))
                    pos++;
        }
    }
    return 0;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The split tokens that occur in text, sorted by id (duplicates kept):
 * one walk from each position along the prefixes that some token has. */
static int split_tokens_in(const jq_vocab *v, const char *text, size_t len,
                           jq_idvec *found)
{
    const unsigned char *u = (const unsigned char *)text;
    for (size_t p = 0; p < len; p++) {
        uint64_t h = 0xcbf29ce484222325ull;
        size_t lmax = len - p < v->split_max_len ? len - p : v->split_max_len;
        for (size_t l = 1; l <= lmax; l++) {
            h = prefix_step(h, u[p + l - 1]);
            if (!prefix_has(v, h))
                break;
            int32_t id = jq_vocab_lookup(v, text + p, l);
            if (id >= 0 && is_split_token(v, id) && jq_idvec_push(found, id))
                return -1;
        }
    }
    if (found->n > 1)
        qsort(found->ids, found->n, sizeof *found->ids, cmp_i32);
    return 0;
}

int jq_tok_partition(const jq_vocab *v, const char *text, size_t len,
                     jq_fragvec *out)
{
    jq_fragvec a = {0}, b = {0};
    jq_idvec found = {0};
    if (frag_push(&a, (jq_fragment){-1, 0, len}))
        goto oom;
    /* With many split tokens, skip those absent from the text up front (a
     * token cuts nothing where it does not occur, so the result is the
     * same); with a few, searching for each is cheaper. */
    bool filter = v->n_split > 8;
    if (filter && split_tokens_in(v, text, len, &found))
        goto oom;
    for (size_t i = 0; i < v->n_split; i++) {
        if (filter && (found.n == 0 ||
                       !bsearch(&v->split_ids[i], found.ids, found.n,
                                sizeof *found.ids, cmp_i32)))
            continue;
        b.n = 0;
        if (partition_one(v, v->split_ids[i], text, &a, &b))
            goto oom;
        jq_fragvec t = a;
        a = b;
        b = t;
    }
    free(b.f);
    free(found.ids);
    *out = a;
    return 0;
oom:
    free(a.f);
    free(b.f);
    free(found.ids);
    return -1;
}

/* ---- tokenize */

int jq_tokenize(const jq_vocab *v, const char *text, size_t len, bool add_bos,
                int32_t **ids, size_t *n, char *err, size_t errlen)
{
    if (!v || !ids || !n || (!text && len)) {
        jq_tok_err(err, errlen, "jq_tokenize: invalid arguments");
        return -1;
    }
    *ids = NULL;
    *n = 0;
    jq_idvec out = {0};
    int rc = v->kind == JQ_VOCAB_SPM
                 ? jq_spm_tokenize(v, text ? text : "", len, add_bos, &out,
                                   err, errlen)
                 : jq_bpe_tokenize(v, text ? text : "", len, add_bos, &out,
                                   err, errlen);
    if (rc) {
        free(out.ids);
        return -1;
    }
    /* A successful empty result still hands back a freeable pointer, so
     * callers need no special case. */
    if (!out.ids && !(out.ids = malloc(sizeof *out.ids))) {
        jq_tok_err(err, errlen, "out of memory");
        return -1;
    }
    *ids = out.ids;
    *n = out.n;
    return 0;
}

/* ---- pieces */

typedef struct {
    char *buf;
    size_t cap, len; /* len counts everything, written or not */
} sink;

static void put(sink *s, const void *p, size_t n)
{
    if (s->len < s->cap) {
        size_t room = s->cap - s->len;
        memcpy(s->buf + s->len, p, n < room ? n : room);
    }
    s->len += n;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The byte of a <0xNN> token: llama.cpp parses the two characters after
 * "<0x" with strtol, so a malformed text gives what strtol would (the
 * leading hex digits, 0 if none). */
static unsigned char byte_of_token(const char *t, uint32_t len)
{
    int v = 0;
    for (uint32_t i = 3; i < 5 && i < len; i++) {
        int h = hexval(t[i]);
        if (h < 0)
            break;
        v = v * 16 + h;
    }
    return (unsigned char)v;
}

/* One code point of UTF-8 (llama.cpp's unicode_cpt_from_utf8, which checks
 * the continuation bytes but not overlong forms); U+FFFD and one byte on a
 * malformed sequence. */
static uint32_t next_cpt(const unsigned char *s, size_t len, size_t *i)
{
    unsigned char c = s[*i];
    size_t need;
    uint32_t cp;
    if (c < 0x80) { *i += 1; return c; }
    if ((c & 0xe0) == 0xc0) { need = 1; cp = c & 0x1f; }
    else if ((c & 0xf0) == 0xe0) { need = 2; cp = c & 0x0f; }
    else if ((c & 0xf8) == 0xf0) { need = 3; cp = c & 0x07; }
    else { *i += 1; return 0xfffd; }
    if (len - *i <= need) { *i += 1; return 0xfffd; }
    for (size_t k = 1; k <= need; k++) {
        if ((s[*i + k] & 0xc0) != 0x80) { *i += 1; return 0xfffd; }
        cp = (cp << 6) | (s[*i + k] & 0x3f);
    }
    *i += need + 1;
    return cp;
}

static size_t cpt_to_utf8(uint32_t cp, unsigned char out[4])
{
    if (cp < 0x80) { out[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xc0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xe0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (unsigned char)(0xf0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/* GPT-2's byte-level alphabet, reversed: printable Latin-1 bytes stand for
 * themselves and the other 68 bytes were shifted to U+0100..U+0143 in
 * order. -1 for any other code point. */
static int gpt2_byte(uint32_t cp)
{
    if ((cp >= 0x21 && cp <= 0x7e) || (cp >= 0xa1 && cp <= 0xac) ||
        (cp >= 0xae && cp <= 0xff))
        return (int)cp;
    if (cp >= 0x100 && cp < 0x100 + 68) {
        uint32_t k = cp - 0x100; /* bytes 0x00-0x20, 0x7f-0xa0, 0xad */
        if (k < 33) return (int)k;
        if (k < 67) return (int)(0x7f + (k - 33));
        return 0xad;
    }
    return -1;
}

/* llama.cpp's llama_decode_text. A code point outside the alphabet becomes
 * "[UNK_BYTE_0x<its UTF-8 in hex>]"; llama.cpp also repeats the whole token
 * text inside that marker, which we leave out: it makes a piece quadratic
 * in the token length (and overflow int for a hostile 1 MiB token). */
static void put_gpt2_decoded(sink *s, const char *t, uint32_t len)
{
    const unsigned char *u = (const unsigned char *)t;
    for (size_t i = 0; i < len;) {
        uint32_t cp = next_cpt(u, len, &i);
        int b = gpt2_byte(cp);
        if (b >= 0) {
            unsigned char c = (unsigned char)b;
            put(s, &c, 1);
            continue;
        }
        unsigned char enc[4];
        size_t n = cpt_to_utf8(cp, enc);
        put(s, "[UNK_BYTE_0x", 12);
        for (size_t k = 0; k < n; k++) {
            char h[3];
            snprintf(h, sizeof h, "%02x", enc[k]);
            put(s, h, 2);
        }
        put(s, "]", 1);
    }
}

/* llama.cpp's token_to_piece with special = false (what its command line
 * prints): control and unknown tokens render as nothing, user-defined ones
 * as their text, normal ones with "▁" as a space (SPM) or byte-decoded
 * (GPT-2 BPE), byte tokens as the byte, anything else as nothing. */
static void put_piece(const jq_vocab *v, int32_t id, sink *s)
{
    uint16_t a = v->attr[id];
    const char *t = v->arena + v->off[id];
    uint32_t len = v->len[id];
    if (a & (JQ_ATTR_UNKNOWN | JQ_ATTR_CONTROL))
        return;
    if (a & JQ_ATTR_USER_DEFINED) {
        put(s, t, len);
    } else if (a & JQ_ATTR_NORMAL) {
        if (v->kind == JQ_VOCAB_BPE) {
            put_gpt2_decoded(s, t, len);
            return;
        }
        uint32_t from = 0;
        for (uint32_t i = 0; i + 3 <= len;) {
            if (memcmp(t + i, "\xe2\x96\x81", 3) == 0) {
                put(s, t + from, i - from);
                put(s, " ", 1);
                i += 3;
                from = i;
            } else {
                i++;
            }
        }
        put(s, t + from, len - from);
    } else if (a & JQ_ATTR_BYTE) {
        unsigned char b = byte_of_token(t, len);
        put(s, &b, 1);
    }
}

int jq_token_to_piece(const jq_vocab *v, int32_t id, char *buf, size_t buflen)
{
    if (!v || id < 0 || id >= v->n)
        return -1;
    sink s = {buf, buf ? buflen : 0, 0};
    put_piece(v, id, &s);
    return (int)s.len; /* at most 21 * MAX_TOKEN_LEN: fits */
}

char *jq_detokenize(const jq_vocab *v, const int32_t *ids, size_t n)
{
    if (!v || (!ids && n))
        return NULL;
    sink s = {NULL, 0, 0};
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= v->n)
            return NULL;
        size_t before = s.len;
        put_piece(v, ids[i], &s);
        if (s.len < before) /* wrapped: absurdly many tokens */
            return NULL;
    }
    if (s.len == SIZE_MAX)
        return NULL;
    char *out = malloc(s.len + 1);
    if (!out)
        return NULL;
    sink w = {out, s.len, 0};
    for (size_t i = 0; i < n; i++)
        put_piece(v, ids[i], &w);
    out[s.len] = 0;
    return out;
}
