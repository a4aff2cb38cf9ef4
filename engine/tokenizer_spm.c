/* tokenizer_spm.c — llama.cpp's SPM tokenizer (tokenizer.ggml.model =
 * "llama"), reproduced id for id.
 *
 * The pipeline, as llama.cpp runs it with parse_special = false:
 *   1. user-defined tokens are cut out of the raw text first (longest text
 *      first); the pieces of text between them are "fragments";
 *   2. each fragment that starts the text or follows a cut-out token gets a
 *      " " prefix (when add_space_prefix), and every space becomes "▁";
 *   3. the fragment is split into UTF-8 characters and adjacent symbols are
 *      merged greedily: always the pair whose concatenation is the token with
 *      the highest score, leftmost on ties, until no pair forms a token;
 *   4. each final symbol is its token, or else its bytes as <0xNN> tokens.
 */
#include "tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

/* "▁" (U+2581), SentencePiece's visible space. */
static const char SPM_SPACE[3] = {'\xe2', '\x96', '\x81'};

/* Upper bound on one escaped fragment, so that symbol indices and sizes
 * fit in int32 and the work arrays (about 64 bytes per input byte) stay
 * allocatable. */
#define SPM_MAX_TEXT ((size_t)1 << 28)

int jq_idvec_push(jq_idvec *o, int32_t id)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        int32_t *p = realloc(o->ids, cap * sizeof *p);
        if (!p)
            return -1;
        o->ids = p;
        o->cap = cap;
    }
    o->ids[o->n++] = id;
    return 0;
}

/* Length of the UTF-8 sequence a lead byte announces, from its high nibble,
 * exactly as llama.cpp's unicode_len_utf8: continuation bytes and invalid
 * leads count as 1-byte characters, and the sequence is not validated (a
 * broken one is later emitted byte by byte through the fallback). */
static size_t utf8_len(unsigned char c)
{
    static const unsigned char len_by_nibble[16] = {1, 1, 1, 1, 1, 1, 1, 1,
                                                    1, 1, 1, 1, 2, 2, 3, 4};
    return len_by_nibble[c >> 4];
}

typedef struct {
    int32_t prev, next; /* neighbours in the live chain, -1 at the ends */
    uint32_t start, n;  /* bytes [start, start+n) of the text; n = 0: merged away */
} spm_sym;

typedef struct {
    float score;
    int32_t left, right;
    uint32_t size; /* n of left + right when queued; detects stale entries */
} spm_bigram;

typedef struct {
    const jq_vocab *v;
    const char *text;
    spm_sym *sym;
    spm_bigram *heap;
    size_t heap_n;
} spm_session;

/* Queue order: the higher score first, then the leftmost pair (llama.cpp's
 * std::priority_queue comparator, inverted). */
static bool bigram_first(const spm_bigram *a, const spm_bigram *b)
{
    if (a->score != b->score)
        return a->score > b->score;
    return a->left < b->left;
}

static void heap_push(spm_session *s, spm_bigram b)
{
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bigram_first(&b, &s->heap[parent]))
            break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = b;
}

static spm_bigram heap_pop(spm_session *s)
{
    spm_bigram top = s->heap[0];
    spm_bigram last = s->heap[--s->heap_n];
    size_t n = s->heap_n, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && bigram_first(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!bigram_first(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n > 0)
        s->heap[i] = last;
    return top;
}

/* Queues the pair (left, right) when their concatenation is a token. The
 * two symbols are adjacent in the text, so the concatenation is a plain
 * slice of it and needs no copy. */
static void try_add_bigram(spm_session *s, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return;
    const spm_sym *l = &s->sym[left], *r = &s->sym[right];
    uint32_t size = l->n + r->n;
    int32_t id = jq_vocab_lookup(s->v, s->text + l->start, size);
    if (id < 0)
        return;
    heap_push(s, (spm_bigram){s->v->score[id], left, right, size});
}

/* Emits one final symbol. llama.cpp would next look the symbol up among the
 * merges it recorded and recurse into the two halves, but every merged
 * symbol is a token by construction (a pair is only queued when its
 * concatenation is one), so only unmerged characters that are not tokens
 * reach the byte fallback, and that lookup never succeeds. */
static int resegment(const spm_session *s, const spm_sym *sym, jq_idvec *out,
                     char *err, size_t errlen)
{
    const jq_vocab *v = s->v;
    int32_t id = jq_vocab_lookup(v, s->text + sym->start, sym->n);
    if (id >= 0) {
        if (jq_idvec_push(out, id)) {
            jq_tok_err(err, errlen, "out of memory");
            return -1;
        }
        return 0;
    }
    for (uint32_t j = 0; j < sym->n; j++) {
        unsigned char b = (unsigned char)s->text[sym->start + j];
        int32_t bt = v->byte_token[b];
        if (bt < 0)
            bt = v->unk;
        if (bt < 0) {
            jq_tok_err(err, errlen,
                       "byte 0x%02X has no token (<0x%02X>) and the "
                       "vocabulary has no unknown token",
                       b, b);
            return -1;
        }
        if (jq_idvec_push(out, bt)) {
            jq_tok_err(err, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

/* Tokenizes one already escaped fragment text[0..len), len > 0. */
static int spm_fragment(const jq_vocab *v, const char *text, size_t len,
                        jq_idvec *out, char *err, size_t errlen)
{
    spm_session s = {.v = v, .text = text};
    /* len symbols at most; the queue holds the n-1 initial pairs plus at
     * most two per merge, and there are at most n-1 merges. */
    s.sym = malloc(len * sizeof *s.sym);
    s.heap = malloc(3 * len * sizeof *s.heap);
    if (!s.sym || !s.heap) {
        free(s.sym);
        free(s.heap);
        jq_tok_err(err, errlen, "out of memory (text of %zu bytes)", len);
        return -1;
    }

    int32_t n_sym = 0;
    for (size_t offs = 0; offs < len;) {
        size_t n = utf8_len((unsigned char)text[offs]);
        if (n > len - offs)
            n = len - offs;
        s.sym[n_sym] = (spm_sym){.prev = n_sym - 1,
                                 .next = offs + n == len ? -1 : n_sym + 1,
                                 .start = (uint32_t)offs,
                                 .n = (uint32_t)n};
        offs += n;
        n_sym++;
    }

    for (int32_t i = 1; i < n_sym; i++)
        try_add_bigram(&s, i - 1, i);

    while (s.heap_n > 0) {
        spm_bigram b = heap_pop(&s);
        spm_sym *l = &s.sym[b.left], *r = &s.sym[b.right];
        /* A symbol merged away or grown since the pair was queued makes the
         * entry stale (sizes only grow, so the size check catches it). */
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
            continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            s.sym[r->next].prev = b.left;
        try_add_bigram(&s, l->prev, b.left);
        try_add_bigram(&s, b.left, l->next);
    }

    int rc = 0;
    for (int32_t i = 0; i != -1 && rc == 0; i = s.sym[i].next)
        rc = resegment(&s, &s.sym[i], out, err, errlen);

    free(s.sym);
    free(s.heap);
    return rc;
}

/* Escapes one raw fragment (optional leading space, spaces -> "▁") and
 * tokenizes it. */
static int spm_raw(const jq_vocab *v, const char *raw, size_t len,
                   bool prefix, jq_idvec *out, char *err, size_t errlen)
{
    size_t spaces = prefix ? 1 : 0;
    for (size_t i = 0; i < len; i++)
        spaces += raw[i] == ' ';
    size_t total = len + (prefix ? 1 : 0) + 2 * spaces;
    if (len > SPM_MAX_TEXT || total > SPM_MAX_TEXT) {
        jq_tok_err(err, errlen, "text too long to tokenize (%zu bytes, limit %zu)",
                   len, SPM_MAX_TEXT);
        return -1;
    }
    char *buf = malloc(total ? total : 1);
    if (!buf) {
        jq_tok_err(err, errlen, "out of memory");
        return -1;
    }
    size_t o = 0;
    if (prefix) {
        memcpy(buf, SPM_SPACE, 3);
        o = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (raw[i] == ' ') {
            memcpy(buf + o, SPM_SPACE, 3);
            o += 3;
        } else {
            buf[o++] = raw[i];
        }
    }
    int rc = o ? spm_fragment(v, buf, o, out, err, errlen) : 0;
    free(buf);
    return rc;
}

int jq_spm_tokenize(const jq_vocab *v, const char *text, size_t len,
                    bool add_bos, jq_idvec *out, char *err, size_t errlen)
{
    if (add_bos && v->bos >= 0 && jq_idvec_push(out, v->bos)) {
        jq_tok_err(err, errlen, "out of memory");
        return -1;
    }
    /* Empty text gives no fragment and so no "▁" either: [] or [BOS],
     * like SentencePiece's encode(''). */
    if (len == 0)
        return 0;

    jq_fragvec a = {0};
    int rc = -1;
    if (jq_tok_partition(v, text, len, &a))
        goto oom;

    /* The prefix space goes at the start of the text and after every
     * cut-out token, as if each such token ended a "sentence". */
    bool prev_special = true;
    for (size_t i = 0; i < a.n; i++) {
        const jq_fragment *f = &a.f[i];
        if (f->token >= 0) {
            if (jq_idvec_push(out, f->token))
                goto oom;
            prev_special = true;
            continue;
        }
        if (spm_raw(v, text + f->off, f->len,
                    v->add_space_prefix && prev_special, out, err, errlen))
            goto done;
        prev_special = false;
    }
    rc = 0;
    goto done;
oom:
    jq_tok_err(err, errlen, "out of memory");
done:
    free(a.f);
    return rc;
}
