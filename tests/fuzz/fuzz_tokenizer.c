/* fuzz_tokenizer.c — any bytes as text for real vocabularies: tokenize,
 * detokenize, and check the round trip.
 *
 * The vocabularies are loaded once (jq_fuzz_tokenizer_init, which
 * LLVMFuzzerInitialize calls): the reference files of both tokenizer
 * families, including every BPE pre-tokenizer judgeq implements that has a
 * reference file. Invariants, from tokenizer.h and the tokenizer tests:
 *   - tokenizing never fails for these vocabularies, and every id is in
 *     range; with add_bos the ids are BOS followed by the same ids;
 *   - SPM: detokenize(tokenize(s)) == " " + s (add_space_prefix; empty text
 *     gets no prefix), reading "▁" as a space on both sides: input "▁"
 *     comes back as a space, and an invalid lead byte that swallows an
 *     escaped space brings back the bytes of "▁" (llama.cpp does the same);
 *   - BPE: valid UTF-8 comes back byte for byte; any other input comes back
 *     as UTF-8 in which only surrogates may remain (malformed bytes become
 *     U+FFFD, overlong forms their shortest form, and encoded surrogates
 *     are kept: llama.cpp's decoder, pinned by test_tokenizer_bpe.c).
 *     Falcon's vocabulary lacks tokens for some bytes, so its output is
 *     not checked against the input (only ids and lengths).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "gguf.h"
#include "tokenizer.h"

typedef struct {
    const char *name;
    bool in_models; /* JUDGEQ_TEST_MODELS, else the tokenizer references */
    bool all_bytes; /* a token for every byte: the round trip is exact */
    /* Tokenize a second time with add_bos. Once per family: BOS is
     * prepended after the tokenizer ran, and each vocabulary costs
     * ~0.3 us per byte uninstrumented, several times that here. */
    bool check_bos;
    jq_vocab *v;
} vocab_slot;

static vocab_slot vocabs[] = {
    {"stories260K.gguf", true, true, true, NULL}, /* 512 tokens: bytes */
    {"tokenizers/ggml-vocab-llama-spm.gguf", false, true, false, NULL},
    {"tokenizers/ggml-vocab-llama3.gguf", false, true, true, NULL},
    {"tokenizers/ggml-vocab-qwen2.gguf", false, true, false, NULL},
    {"tokenizers/ggml-vocab-gpt-2.gguf", false, true, false, NULL},
    {"tokenizers/ggml-vocab-deepseek-llm.gguf", false, true, false, NULL},
    {"tokenizers/ggml-vocab-falcon.gguf", false, false, false, NULL},
};
#define N_VOCABS (sizeof vocabs / sizeof *vocabs)

int jq_fuzz_tokenizer_init(void)
{
    for (size_t i = 0; i < N_VOCABS; i++) {
        if (vocabs[i].v)
            continue;
        const char *path = vocabs[i].in_models
                               ? jq_fuzz_model_path(vocabs[i].name)
                               : jq_fuzz_reference_path(vocabs[i].name);
        char err[512];
        jq_gguf *g = jq_gguf_open(path, err, sizeof err);
        jq_fuzz_check(g != NULL, "%s (set JUDGEQ_TEST_MODELS and "
                      "JUDGEQ_TEST_REFERENCE)", err);
        vocabs[i].v = jq_vocab_load(g, err, sizeof err);
        jq_gguf_close(g);
        jq_fuzz_check(vocabs[i].v != NULL, "%s: %s", path, err);
    }
    return 0;
}

/* UTF-8 in shortest forms up to U+10FFFF; surrogates (U+D800..U+DFFF)
 * only when allowed. */
static bool valid_utf8(const uint8_t *s, size_t n, bool surrogates)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            k = 1, cp = c & 0x1f, min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2, cp = c & 0x0f, min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i - 1 < k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff ||
            (!surrogates && cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

/* s[0..n) with every "▁" (E2 96 81) read as a space, scanning left to
 * right; returns the new length (in place). */
static size_t unescape_spaces(uint8_t *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (i + 3 <= n && s[i] == 0xe2 && s[i + 1] == 0x96 && s[i + 2] == 0x81) {
            s[o++] = ' ';
            i += 3;
        } else {
            s[o++] = s[i++];
        }
    }
    return o;
}

/* Tokenizes, checks ids and the BOS variant, and returns the detokenized
 * bytes (malloc'd) and their length (which strlen cannot give: the input
 * may hold NUL bytes). */
static uint8_t *round_trip(const vocab_slot *slot, const uint8_t *data,
                           size_t size, size_t *out_len)
{
    const jq_vocab *v = slot->v;
    const char *name = slot->name;
    int32_t n_vocab = jq_vocab_size(v);
    int32_t *ids;
    size_t n;
    char err[256];
    int rc = jq_tokenize(v, (const char *)data, size, false, &ids, &n, err,
                         sizeof err);
    jq_fuzz_check(rc == 0, "%s: tokenize failed: %s", name, err);
    for (size_t i = 0; i < n; i++)
        jq_fuzz_check(ids[i] >= 0 && ids[i] < n_vocab, "%s: id %d", name,
                      ids[i]);

    int32_t bos = jq_vocab_bos(v);
    if (slot->check_bos && bos >= 0) {
        int32_t *bids;
        size_t bn;
        rc = jq_tokenize(v, (const char *)data, size, true, &bids, &bn, err,
                         sizeof err);
        jq_fuzz_check(rc == 0 && bn == n + 1 && bids[0] == bos &&
                          memcmp(bids + 1, ids, n * sizeof *ids) == 0,
                      "%s: add_bos changed more than the first id", name);
        free(bids);
    }

    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int k = jq_token_to_piece(v, ids[i], NULL, 0);
        jq_fuzz_check(k >= 0, "%s: piece of %d", name, ids[i]);
        total += (size_t)k;
    }
    char *back = jq_detokenize(v, ids, n);
    jq_fuzz_check(back != NULL, "%s: detokenize failed", name);
    jq_fuzz_check(back[total] == 0, "%s: detokenized length is not the sum "
                  "of the pieces (%zu)", name, total);
    free(ids);
    *out_len = total;
    return (uint8_t *)back;
}

static void check_spm(const vocab_slot *slot, const uint8_t *data,
                      size_t size)
{
    const jq_vocab *v = slot->v;
    const char *name = slot->name;
    size_t blen;
    uint8_t *back = round_trip(slot, data, size, &blen);
    uint8_t *want = malloc(size + 1);
    jq_fuzz_check(want != NULL, "out of memory");
    size_t pre = size && jq_vocab_add_space_prefix(v) ? 1 : 0;
    want[0] = ' ';
    memcpy(want + pre, data, size);
    size_t wlen = unescape_spaces(want, size + pre);
    blen = unescape_spaces(back, blen);
    jq_fuzz_check(blen == wlen && memcmp(back, want, wlen) == 0,
                  "%s: SPM round trip of %zu bytes gave %zu bytes", name, size,
                  blen);
    free(want);
    free(back);
}

static void check_bpe(const vocab_slot *slot, const uint8_t *data,
                      size_t size)
{
    const char *name = slot->name;
    size_t blen;
    uint8_t *back = round_trip(slot, data, size, &blen);
    if (!slot->all_bytes)
        ; /* a byte without a token is dropped: nothing to compare */
    else if (valid_utf8(data, size, false))
        jq_fuzz_check(blen == size && memcmp(back, data, size) == 0,
                      "%s: BPE round trip of %zu bytes of valid UTF-8 gave "
                      "%zu different bytes", name, size, blen);
    else
        jq_fuzz_check(valid_utf8(back, blen, true),
                      "%s: BPE output of invalid UTF-8 is not valid UTF-8",
                      name);
    free(back);
}

int jq_fuzz_tokenizer(const uint8_t *data, size_t size)
{
    jq_fuzz_tokenizer_init();
    for (size_t i = 0; i < N_VOCABS; i++) {
        const jq_vocab *v = vocabs[i].v;
        /* the raw-text lookup takes any bytes */
        int32_t id = jq_vocab_find(v, (const char *)data, size);
        if (id >= 0) {
            const char *t = jq_vocab_token_text(v, id);
            jq_fuzz_check(t && memcmp(t, data, size) == 0 && t[size] == 0,
                          "%s: find returned %d for other text",
                          vocabs[i].name, id);
        }
        if (jq_vocab_kind_of(v) == JQ_VOCAB_SPM)
            check_spm(&vocabs[i], data, size);
        else
            check_bpe(&vocabs[i], data, size);
    }
    return 0;
}
