/* tokenizer_bpe.c — llama.cpp's byte-level BPE tokenizer (tokenizer.ggml.model
 * = "gpt2"), reproduced id for id.
 *
 * The pipeline, as llama.cpp runs it with parse_special = false:
 *   1. user-defined tokens are cut out of the raw text first (longest text
 *      first), exactly as for SPM;
 *   2. each remaining fragment is decoded to code points (a malformed byte
 *      becomes U+FFFD) and split into words by the pre-tokenizer named by
 *      tokenizer.ggml.pre (tokenizer_pretok.c);
 *   3. each word is re-encoded as UTF-8 and every byte replaced by its
 *      character in GPT-2's byte alphabet (printable Latin-1 stands for
 *      itself, the other 68 bytes are U+0100..U+0143);
 *   4. the word is split into those characters and adjacent symbols are
 *      merged by rank: always the pair with the lowest rank in
 *      tokenizer.ggml.merges, leftmost on ties, until no pair has a rank.
 *      With ignore_merges (Llama 3) a word that is itself a token is taken
 *      whole first;
 *   5. each final symbol is its token; one that is not a token is replaced
 *      by the tokens of its single bytes, where those exist (llama.cpp
 *      drops the rest silently).
 */
#include "tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

/* Bounds that keep every symbol offset in uint32 and the per-word work
 * arrays allocatable; a fragment above this is refused. */
#define BPE_MAX_TEXT ((size_t)1 << 28)

typedef struct {
    uint32_t off;        /* "left" then "right" in the arena, no space */
    uint32_t llen, rlen;
} merge;

struct jq_bpe {
    jq_pre_kind pre;
    char pre_name[64];   /* tokenizer.ggml.pre, for messages */
    bool ignore_merges;  /* a word that is a token is not split */
    bool has_merges;     /* the key exists (llama.cpp refuses it missing) */

    /* Merges: rank = index. The table maps a pair (left, right) to its
     * lowest rank: open addressing, linear probing, power-of-two size. */
    char *arena;
    merge *m;
    uint32_t n_merges;
    int32_t *table;
    size_t mask;

    /* GPT-2's byte alphabet: byte b is enc[b][0..enc_len[b]) in UTF-8. */
    char enc[256][2];
    uint8_t enc_len[256];
};

/* ---- pair hash */

static uint64_t fnv_more(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* The left length is mixed in so that ("ab","c") and ("a","bc") differ. */
static uint64_t pair_hash(const char *l, size_t ll, const char *r, size_t rl)
{
    uint64_t h = fnv_more(0xcbf29ce484222325ull, l, ll);
    h ^= ll + 0x9e3779b97f4a7c15ull;
    h *= 0x100000001b3ull;
    h = fnv_more(h, r, rl);
    return h ^ (h >> 29);
}

/* Rank of the merge (l, r), or -1. */
static int32_t find_rank(const jq_bpe *b, const char *l, size_t ll,
                         const char *r, size_t rl)
{
    size_t i = (size_t)pair_hash(l, ll, r, rl) & b->mask;
    for (;;) {
        int32_t k = b->table[i];
        if (k < 0)
            return -1;
        const merge *m = &b->m[k];
        if (m->llen == ll && m->rlen == rl &&
            memcmp(b->arena + m->off, l, ll) == 0 &&
            memcmp(b->arena + m->off + ll, r, rl) == 0)
            return k;
        i = (i + 1) & b->mask;
    }
}

/* ---- loading */

typedef struct {
    const char *name;
    jq_pre_kind kind;
} pre_name;

/* tokenizer.ggml.pre names llama.cpp maps to the types implemented here
 * (llama_vocab::impl::load). */
static const pre_name pre_names[] = {
    {"default", JQ_PRE_DEFAULT},
    {"llama3", JQ_PRE_LLAMA3}, {"llama-v3", JQ_PRE_LLAMA3},
    {"llama-bpe", JQ_PRE_LLAMA3}, {"falcon3", JQ_PRE_LLAMA3},
    {"falcon-h1", JQ_PRE_LLAMA3}, {"pixtral", JQ_PRE_LLAMA3},
    {"midm-2.0", JQ_PRE_LLAMA3}, {"lfm2", JQ_PRE_LLAMA3},
    {"jina-v5-nano", JQ_PRE_LLAMA3},
    /* same expression as Llama 3, without its flags */
    {"dbrx", JQ_PRE_LLAMA3}, {"smaug-bpe", JQ_PRE_LLAMA3},
    {"glm4", JQ_PRE_LLAMA3}, {"chatglm-bpe", JQ_PRE_LLAMA3},
    {"deepseek-llm", JQ_PRE_DEEPSEEK_LLM},
    {"deepseek-coder", JQ_PRE_DEEPSEEK_CODER},
    {"falcon", JQ_PRE_FALCON},
    {"gpt-2", JQ_PRE_GPT2}, {"phi-2", JQ_PRE_GPT2}, {"jina-es", JQ_PRE_GPT2},
    {"jina-de", JQ_PRE_GPT2}, {"gigachat", JQ_PRE_GPT2},
    {"jina-v2-es", JQ_PRE_GPT2}, {"jina-v2-de", JQ_PRE_GPT2},
    {"a.x-4.0", JQ_PRE_GPT2}, {"mellum", JQ_PRE_GPT2},
    {"modern-bert", JQ_PRE_GPT2}, {"jina-v1-en", JQ_PRE_GPT2},
    {"jina-v2-code", JQ_PRE_GPT2}, {"roberta-bpe", JQ_PRE_GPT2},
    {"mpt", JQ_PRE_GPT2}, {"olmo", JQ_PRE_GPT2}, {"jais", JQ_PRE_GPT2},
    {"exaone4", JQ_PRE_GPT2}, {"trillion", JQ_PRE_GPT2},
    {"granite-docling", JQ_PRE_GPT2},
    {"qwen2", JQ_PRE_QWEN2}, {"deepseek-r1-qwen", JQ_PRE_QWEN2},
    {"kormo", JQ_PRE_QWEN2}, {"f2llmv2", JQ_PRE_QWEN2},
    {"megrez", JQ_PRE_QWEN2}, {"stablelm2", JQ_PRE_QWEN2},
    {"hunyuan", JQ_PRE_QWEN2}, {"solar-open", JQ_PRE_QWEN2},
    {"grok-2", JQ_PRE_QWEN2},
    {"starcoder", JQ_PRE_STARCODER}, {"refact", JQ_PRE_STARCODER},
    {"command-r", JQ_PRE_STARCODER}, {"smollm", JQ_PRE_STARCODER},
    {"codeshell", JQ_PRE_STARCODER}, {"exaone", JQ_PRE_STARCODER},
    {"minerva-7b", JQ_PRE_STARCODER}, {"mellum2", JQ_PRE_STARCODER},
    {"bloom", JQ_PRE_BLOOM}, {"poro-chat", JQ_PRE_BLOOM},
    {"gpt3-finnish", JQ_PRE_BLOOM},
};

/* The names of the Llama 3 group proper, which also set ignore_merges and
 * add BOS by default (dbrx, smaug and glm share only the expression). */
static bool is_llama3_proper(jq_str s)
{
    static const char *const names[] = {
        "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1",
        "pixtral", "midm-2.0", "lfm2", "jina-v5-nano",
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (jq_str_eq(s, names[i]))
            return true;
    return false;
}

static void build_alphabet(jq_bpe *b)
{
    int next = 0x100;
    for (int c = 0; c < 256; c++) {
        bool self = (c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) ||
                    (c >= 0xae && c <= 0xff);
        int cp = self ? c : next++;
        if (cp < 0x80) {
            b->enc[c][0] = (char)cp;
            b->enc_len[c] = 1;
        } else {
            b->enc[c][0] = (char)(0xc0 | (cp >> 6));
            b->enc[c][1] = (char)(0x80 | (cp & 0x3f));
            b->enc_len[c] = 2;
        }
    }
}

static int load_merges(jq_bpe *b, const jq_gguf *g, char *err, size_t errlen)
{
    static const char key[] = "tokenizer.ggml.merges";
    if (jq_gguf_find_key(g, key) < 0)
        return 0; /* tokenizing will say so */
    jq_gguf_type et;
    uint64_t cnt;
    if (!jq_gguf_get_arr(g, key, &et, &cnt) || et != JQ_GGUF_STRING) {
        jq_tok_err(err, errlen, "%s: expected an array of strings", key);
        return -1;
    }
    if (cnt > (uint64_t)INT32_MAX) {
        jq_tok_err(err, errlen, "%s has %llu entries (limit %d)", key,
                   (unsigned long long)cnt, INT32_MAX);
        return -1;
    }
    b->has_merges = true;
    /* Pass 1: sizes, so the arena is one allocation. */
    uint64_t total = 0;
    for (uint64_t i = 0; i < cnt; i++) {
        jq_str s;
        if (!jq_gguf_arr_str(g, key, i, &s)) {
            jq_tok_err(err, errlen, "%s[%llu] cannot be read", key,
                       (unsigned long long)i);
            return -1;
        }
        total += s.len;
    }
    if (total > UINT32_MAX) {
        jq_tok_err(err, errlen, "%s: %llu bytes of merges (limit 4 GiB)", key,
                   (unsigned long long)total);
        return -1;
    }
    size_t size = 16;
    while (size < 2 * (size_t)cnt)
        size *= 2; /* load factor <= 1/2 */
    b->arena = malloc(total ? (size_t)total : 1);
    b->m = malloc((cnt ? (size_t)cnt : 1) * sizeof *b->m);
    b->table = malloc(size * sizeof *b->table);
    if (!b->arena || !b->m || !b->table) {
        jq_tok_err(err, errlen, "out of memory for %llu merges",
                   (unsigned long long)cnt);
        return -1;
    }
    memset(b->table, 0xff, size * sizeof *b->table);
    b->mask = size - 1;

    uint32_t off = 0, n = 0;
    for (uint64_t i = 0; i < cnt; i++) {
        jq_str s;
        jq_gguf_arr_str(g, key, i, &s); /* checked in pass 1 */
        /* llama.cpp splits at the first space after the first byte, so a
         * token starting with a space stays whole; an entry without one
         * becomes the pair ("", ""), which never matches two symbols. */
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
        if (!sp)
            continue;
        uint32_t ll = (uint32_t)(sp - s.ptr), rl = (uint32_t)(s.len - ll - 1);
        if (ll == 0 || rl == 0)
            continue; /* an empty side never matches a symbol either */
        size_t h = (size_t)pair_hash(s.ptr, ll, sp + 1, rl) & b->mask;
        bool dup = false;
        for (int32_t k; (k = b->table[h]) >= 0; h = (h + 1) & b->mask) {
            const merge *m = &b->m[k];
            if (m->llen == ll && m->rlen == rl &&
                memcmp(b->arena + m->off, s.ptr, ll) == 0 &&
                memcmp(b->arena + m->off + ll, sp + 1, rl) == 0) {
                dup = true; /* llama.cpp's emplace keeps the first rank */
                break;
            }
        }
        /* The rank is the entry's index in the file, skipped ones
         * included; the merge array is indexed by rank, so it keeps a slot
         * (with lengths 0, never matched) for each of those. */
        while (n < (uint32_t)i)
            b->m[n++] = (merge){0, 0, 0};
        memcpy(b->arena + off, s.ptr, ll);
        memcpy(b->arena + off + ll, sp + 1, rl);
        b->m[n++] = (merge){off, ll, rl};
        off += ll + rl;
        if (!dup)
            b->table[h] = (int32_t)i;
    }
    b->n_merges = n;
    return 0;
}

int jq_bpe_load(jq_vocab *v, const jq_gguf *g, char *err, size_t errlen)
{
    jq_bpe *b = calloc(1, sizeof *b);
    if (!b) {
        jq_tok_err(err, errlen, "out of memory");
        return -1;
    }
    v->bpe = b;
    build_alphabet(b);

    jq_str pre = {"", 0};
    if (jq_gguf_find_key(g, "tokenizer.ggml.pre") >= 0 &&
        !jq_gguf_get_str(g, "tokenizer.ggml.pre", &pre)) {
        jq_tok_err(err, errlen, "tokenizer.ggml.pre: expected a string");
        return -1;
    }
    size_t nl = pre.len < sizeof b->pre_name - 1 ? (size_t)pre.len
                                                 : sizeof b->pre_name - 1;
    for (size_t i = 0; i < nl; i++) {
        unsigned char c = (unsigned char)pre.ptr[i];
        b->pre_name[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    /* Absent or empty: llama.cpp warns and uses its default expressions. */
    b->pre = pre.len == 0 ? JQ_PRE_DEFAULT : JQ_PRE_UNSUPPORTED;
    for (size_t i = 0; i < sizeof pre_names / sizeof *pre_names; i++)
        if (jq_str_eq(pre, pre_names[i].name))
            b->pre = pre_names[i].kind;
    /* An unknown name still loads (the vocabulary detokenizes, and a
     * benchmark needs no tokenizer); tokenizing reports it. llama.cpp
     * refuses such a file outright. */

    if (is_llama3_proper(pre)) {
        b->ignore_merges = true;
        v->add_bos = true; /* before tokenizer.ggml.add_bos_token is read */
    }
    if (jq_str_eq(pre, "glm4") || jq_str_eq(pre, "chatglm-bpe"))
        v->bos = -1; /* llama.cpp's default for these; the key overrides */

    return load_merges(b, g, err, errlen);
}

void jq_bpe_free(jq_bpe *b)
{
    if (!b)
        return;
    free(b->arena);
    free(b->m);
    free(b->table);
    free(b);
}

/* ---- tokenizing */

typedef struct {
    int32_t prev, next; /* neighbours in the live chain, -1 at the ends */
    uint32_t start, n;  /* bytes [start, start+n) of the word; 0: merged away */
} bpe_sym;

typedef struct {
    int32_t rank;
    int32_t left, right;
    uint32_t size; /* n of left + right when queued; detects stale entries */
} bpe_pair;

typedef struct {
    const jq_vocab *v;
    const jq_bpe *b;
    /* growable work arrays, reused word after word */
    uint32_t *cps;
    size_t cps_cap;
    char *word;
    size_t word_cap;
    bpe_sym *sym;
    size_t sym_cap;
    bpe_pair *heap;
    size_t heap_n, heap_cap;
    jq_sizevec words, tmp;
} bpe_session;

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

/* Queue order: the lowest rank first, then the leftmost pair (llama.cpp's
 * llm_bigram_bpe comparator, inverted). */
static bool pair_first(const bpe_pair *a, const bpe_pair *b)
{
    if (a->rank != b->rank)
        return a->rank < b->rank;
    return a->left < b->left;
}

static int heap_push(bpe_session *s, bpe_pair p)
{
    if (grow((void **)&s->heap, &s->heap_cap, s->heap_n + 1, sizeof p))
        return -1;
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_first(&p, &s->heap[parent]))
            break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = p;
    return 0;
}

static bpe_pair heap_pop(bpe_session *s)
{
    bpe_pair top = s->heap[0];
    bpe_pair last = s->heap[--s->heap_n];
    size_t n = s->heap_n, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && pair_first(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!pair_first(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n > 0)
        s->heap[i] = last;
    return top;
}

/* Queues (left, right) when the pair has a rank. */
static int try_pair(bpe_session *s, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return 0;
    const bpe_sym *l = &s->sym[left], *r = &s->sym[right];
    int32_t rank = find_rank(s->b, s->word + l->start, l->n,
                             s->word + r->start, r->n);
    if (rank < 0)
        return 0;
    return heap_push(s, (bpe_pair){rank, left, right, l->n + r->n});
}

/* Length of the UTF-8 sequence a lead byte announces (llama.cpp's
 * unicode_len_utf8); the encoded word is valid UTF-8, so this just walks
 * its characters. */
static size_t utf8_len(unsigned char c)
{
    static const unsigned char len_by_nibble[16] = {1, 1, 1, 1, 1, 1, 1, 1,
                                                    1, 1, 1, 1, 2, 2, 3, 4};
    return len_by_nibble[c >> 4];
}

/* Merges one encoded word s->word[0..len) and appends its tokens. */
static int bpe_word(bpe_session *s, size_t len, jq_idvec *out)
{
    const jq_vocab *v = s->v;
    if (s->b->ignore_merges) {
        int32_t id = jq_vocab_lookup(v, s->word, len);
        if (id >= 0)
            return jq_idvec_push(out, id);
    }
    if (grow((void **)&s->sym, &s->sym_cap, len, sizeof *s->sym))
        return -1;
    int32_t n_sym = 0;
    for (size_t offs = 0; offs < len;) {
        size_t n = utf8_len((unsigned char)s->word[offs]);
        if (n > len - offs)
            n = len - offs;
        s->sym[n_sym] = (bpe_sym){.prev = n_sym - 1,
                                  .next = offs + n == len ? -1 : n_sym + 1,
                                  .start = (uint32_t)offs,
                                  .n = (uint32_t)n};
        offs += n;
        n_sym++;
    }
    s->heap_n = 0;
    for (int32_t i = 1; i < n_sym; i++)
        if (try_pair(s, i - 1, i))
            return -1;
    while (s->heap_n > 0) {
        bpe_pair p = heap_pop(s);
        bpe_sym *l = &s->sym[p.left], *r = &s->sym[p.right];
        /* llama.cpp compares the texts; symbols only grow to the right
         * from fixed starts, so equal sizes mean equal texts. */
        if (l->n == 0 || r->n == 0 || l->n + r->n != p.size)
            continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            s->sym[r->next].prev = p.left;
        if (try_pair(s, l->prev, p.left) || try_pair(s, p.left, l->next))
            return -1;
    }
    for (int32_t i = 0; i != -1; i = s->sym[i].next) {
        const bpe_sym *y = &s->sym[i];
        int32_t id = jq_vocab_lookup(v, s->word + y->start, y->n);
        if (id >= 0) {
            if (jq_idvec_push(out, id))
                return -1;
            continue;
        }
        /* Not a token: each byte of the encoded text as a token of its
         * own, if the vocabulary has one (it rarely does: these bytes are
         * halves of two-byte characters). llama.cpp drops the others. */
        for (uint32_t j = 0; j < y->n; j++) {
            int32_t bt = jq_vocab_lookup(v, s->word + y->start + j, 1);
            if (bt >= 0 && jq_idvec_push(out, bt))
                return -1;
        }
    }
    return 0;
}

/* Decodes UTF-8 as llama.cpp's unicode_cpts_from_utf8 does: a lead byte
 * with the wrong continuation bytes, a stray continuation byte or a byte
 * 0xF8-0xFF gives U+FFFD and moves one byte on; overlong forms and
 * surrogates decode to their value (and are re-encoded in shortest form
 * later). One deviation: a 4-byte form above U+10FFFF (leads 0xF4-0xF7)
 * makes llama.cpp throw while re-encoding; we treat it as malformed. */
static size_t decode_utf8(const unsigned char *s, size_t len, uint32_t *cps)
{
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        size_t need;
        uint32_t cp;
        if (c < 0x80) {
            cps[n++] = c;
            i++;
            continue;
        }
        if ((c & 0xe0) == 0xc0) { need = 1; cp = c & 0x1f; }
        else if ((c & 0xf0) == 0xe0) { need = 2; cp = c & 0x0f; }
        else if ((c & 0xf8) == 0xf0) { need = 3; cp = c & 0x07; }
        else { need = 0; cp = 0; }
        bool ok = need > 0 && len - i > need;
        for (size_t k = 1; ok && k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                ok = false;
            else
                cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (ok && cp > 0x10ffff)
            ok = false;
        if (!ok) {
            cps[n++] = 0xfffd;
            i++;
            continue;
        }
        cps[n++] = cp;
        i += need + 1;
    }
    return n;
}

/* Writes the GPT-2 encoding of code point cp's UTF-8 bytes (shortest form,
 * as llama.cpp re-encodes) to w; returns its length (at most 8). */
static size_t encode_cpt(const jq_bpe *b, uint32_t cp, char *w)
{
    unsigned char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xc0 | (cp >> 6));
        u[1] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xe0 | (cp >> 12));
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (unsigned char)(0xf0 | (cp >> 18));
        u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    size_t o = 0;
    for (size_t k = 0; k < n; k++) {
        memcpy(w + o, b->enc[u[k]], b->enc_len[u[k]]);
        o += b->enc_len[u[k]];
    }
    return o;
}

/* Tokenizes one raw fragment text[0..len), len > 0. */
static int bpe_fragment(bpe_session *s, const char *text, size_t len,
                        jq_idvec *out)
{
    if (grow((void **)&s->cps, &s->cps_cap, len, sizeof *s->cps))
        return -1;
    size_t n = decode_utf8((const unsigned char *)text, len, s->cps);
    if (jq_pretokenize(s->b->pre, s->cps, n, &s->words, &s->tmp))
        return -1;
    size_t at = 0;
    for (size_t w = 0; w < s->words.n; w++) {
        size_t wl = s->words.v[w];
        /* at most 4 UTF-8 bytes per code point, 2 bytes per encoded byte */
        if (grow((void **)&s->word, &s->word_cap, 8 * wl, 1))
            return -1;
        size_t o = 0;
        for (size_t k = 0; k < wl; k++)
            o += encode_cpt(s->b, s->cps[at + k], s->word + o);
        at += wl;
        if (o > 0 && bpe_word(s, o, out))
            return -1;
    }
    return 0;
}

int jq_bpe_tokenize(const jq_vocab *v, const char *text, size_t len,
                    bool add_bos, jq_idvec *out, char *err, size_t errlen)
{
    const jq_bpe *b = v->bpe;
    if (b->pre == JQ_PRE_UNSUPPORTED) {
        jq_tok_err(err, errlen,
                   "unsupported pre-tokenizer '%s' (tokenizer.ggml.pre)",
                   b->pre_name);
        return -1;
    }
    if (!b->has_merges) {
        jq_tok_err(err, errlen,
                   "byte-level BPE vocabulary without tokenizer.ggml.merges");
        return -1;
    }
    if (add_bos && v->bos >= 0 && jq_idvec_push(out, v->bos))
        goto oom;
    if (len == 0)
        return 0;

    jq_fragvec fv = {0};
    bpe_session s = {.v = v, .b = b};
    int rc = -1;
    if (jq_tok_partition(v, text, len, &fv))
        goto done_oom;
    for (size_t i = 0; i < fv.n; i++) {
        const jq_fragment *f = &fv.f[i];
        if (f->token >= 0) {
            if (jq_idvec_push(out, f->token))
                goto done_oom;
            continue;
        }
        if (f->len > BPE_MAX_TEXT) {
            jq_tok_err(err, errlen,
                       "text too long to tokenize (%zu bytes, limit %zu)",
                       f->len, BPE_MAX_TEXT);
            goto done;
        }
        if (bpe_fragment(&s, text + f->off, f->len, out))
            goto done_oom;
    }
    rc = 0;
    goto done;
done_oom:
    jq_tok_err(err, errlen, "out of memory");
done:
    free(fv.f);
    free(s.cps);
    free(s.word);
    free(s.sym);
    free(s.heap);
    free(s.words.v);
    free(s.tmp.v);
    return rc;
oom:
    jq_tok_err(err, errlen, "out of memory");
    return -1;
}
