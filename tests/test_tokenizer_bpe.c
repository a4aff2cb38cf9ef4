/* test_tokenizer_bpe.c — the byte-level BPE tokenizer (tokenizer.ggml.model
 * = gpt2) against llama.cpp's test vectors for the five BPE vocabularies in
 * the reference data, round trips, invalid UTF-8, user-defined and control
 * tokens, load times, and vocabularies built in memory (merge ranks,
 * duplicates, unknown pre-tokenizers, malformed merges). */
#include "testutil.h"
#include "gguf_build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "tokenizer.h"
#include "tokenizer_internal.h"
#include "tokenizer_unicode.h"

/* ------------------------------------------------------------ helpers */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Loads a reference vocabulary; *secs gets the open + load time. */
static jq_vocab *load_vocab(const char *name, double *secs)
{
    char rel[256], err[512] = "";
    snprintf(rel, sizeof rel, "tokenizers/%s", name);
    const char *path = jqt_reference_path(rel);
    double t0 = now_s();
    jq_gguf *g = jq_gguf_open(path, err, sizeof err);
    if (!g)
        fail_msg("opening %s: %s", path, err);
    jq_vocab *v = jq_vocab_load(g, err, sizeof err);
    if (!v)
        fail_msg("loading the vocabulary of %s: %s", path, err);
    if (secs)
        *secs = now_s() - t0;
    /* Closed right away: a pointer kept into the mapping faults in ASan. */
    jq_gguf_close(g);
    return v;
}

static int32_t *tok(const jq_vocab *v, const char *s, size_t len, bool bos,
                    size_t *n)
{
    char err[256] = "";
    int32_t *ids = NULL;
    if (jq_tokenize(v, s, len, bos, &ids, n, err, sizeof err) != 0)
        fail_msg("jq_tokenize failed: %s", err);
    assert_non_null(ids);
    return ids;
}

static char *fmt_ids(const int32_t *ids, size_t n)
{
    size_t cap = 16 + n * 12;
    char *s = malloc(cap), *p = s;
    *p++ = '[';
    for (size_t i = 0; i < n; i++)
        p += snprintf(p, cap - (size_t)(p - s), "%s%d", i ? ", " : "", ids[i]);
    snprintf(p, cap - (size_t)(p - s), "]");
    return s;
}

static void expect_ids(const jq_vocab *v, const char *s, size_t len,
                       const int32_t *want, size_t nwant)
{
    size_t n;
    int32_t *ids = tok(v, s, len, false, &n);
    if (n != nwant || memcmp(ids, want, n * sizeof *ids) != 0) {
        char *a = fmt_ids(ids, n), *b = fmt_ids(want, nwant);
        print_error("\"%.*s\": got %s, want %s\n", (int)len, s, a, b);
        free(a);
        free(b);
        free(ids);
        fail();
    }
    free(ids);
}

/* detokenize(tokenize(s)) as a string of known length. */
static char *roundtrip(const jq_vocab *v, const char *s, size_t len,
                       size_t *out_len)
{
    size_t n;
    int32_t *ids = tok(v, s, len, false, &n);
    char *back = jq_detokenize(v, ids, n);
    assert_non_null(back);
    size_t total = 0; /* strlen would stop at a NUL from the input */
    for (size_t i = 0; i < n; i++) {
        int k = jq_token_to_piece(v, ids[i], NULL, 0);
        assert_true(k >= 0);
        total += (size_t)k;
    }
    assert_int_equal(back[total], 0);
    free(ids);
    *out_len = total;
    return back;
}

static void expect_roundtrip(const jq_vocab *v, const char *s, size_t len)
{
    size_t bl;
    char *back = roundtrip(v, s, len, &bl);
    if (bl != len || memcmp(back, s, len) != 0) {
        print_error("round trip of \"%.*s\" gave \"%.*s\"\n", (int)len, s,
                    (int)bl, back);
        free(back);
        fail();
    }
    free(back);
}

/* ------------------------------------------------- reference vectors */

/* Splits the .inp file: every string is followed by
 * "\n__ggml_vocab_test__\n" (the reference README). Strings point into
 * buf, whose separators become NULs. */
static size_t split_inp(char *buf, size_t len, char ***out, size_t **lens)
{
    static const char sep[] = "\n__ggml_vocab_test__\n";
    const size_t sl = sizeof sep - 1;
    size_t cap = 64, n = 0, pos = 0;
    *out = malloc(cap * sizeof **out);
    *lens = malloc(cap * sizeof **lens);
    while (pos < len) {
        char *m = memmem(buf + pos, len - pos, sep, sl);
        if (!m)
            fail_msg(".inp: text after the last separator at byte %zu", pos);
        if (n == cap) {
            cap *= 2;
            *out = realloc(*out, cap * sizeof **out);
            *lens = realloc(*lens, cap * sizeof **lens);
        }
        (*out)[n] = buf + pos;
        (*lens)[n] = (size_t)(m - (buf + pos));
        *m = 0;
        n++;
        pos = (size_t)(m - buf) + sl;
    }
    return n;
}

/* One .out line (" 15043 3186", possibly empty) into ids. */
static size_t parse_out_line(const char *line, int32_t *ids, size_t cap)
{
    size_t n = 0;
    const char *p = line;
    while (*p && *p != '\n') {
        assert_true(*p == ' ');
        char *end;
        long v = strtol(p + 1, &end, 10);
        assert_true(end != p + 1);
        assert_true(n < cap);
        ids[n++] = (int32_t)v;
        p = end;
    }
    return n;
}

typedef struct {
    const char *name;
    int32_t n_tokens;
    int32_t bos;
    bool add_bos; /* the README's "added by default?" */
    bool all_bytes; /* a token for every byte of GPT-2's alphabet */
} vocab_case;

static void run_vectors(const vocab_case *c)
{
    double secs;
    jq_vocab *v = load_vocab(c->name, &secs);
    print_message("%s: loaded in %.1f ms\n", c->name, secs * 1e3);
    assert_int_equal(jq_vocab_kind_of(v), JQ_VOCAB_BPE);
    assert_int_equal(jq_vocab_size(v), c->n_tokens);
    assert_int_equal(jq_vocab_bos(v), c->bos);
    assert_int_equal(jq_vocab_add_bos(v), c->add_bos);
    assert_false(jq_vocab_add_space_prefix(v));

    char rel[256];
    snprintf(rel, sizeof rel, "tokenizers/%s.inp", c->name);
    size_t inp_len;
    char *inp = jqt_read_file(jqt_reference_path(rel), &inp_len);
    assert_non_null(inp);
    snprintf(rel, sizeof rel, "tokenizers/%s.out", c->name);
    char *outf = jqt_read_file(jqt_reference_path(rel), NULL);
    assert_non_null(outf);

    char **strs;
    size_t *lens;
    size_t n = split_inp(inp, inp_len, &strs, &lens);
    assert_int_equal(n, 46);

    int32_t *want = malloc(65536 * sizeof *want);
    const char *line = outf;
    size_t passed = 0;
    for (size_t i = 0; i < n; i++) {
        assert_non_null(line);
        size_t nw = parse_out_line(line, want, 65536);
        const char *nl = strchr(line, '\n');
        line = nl ? nl + 1 : NULL;

        size_t got_n;
        int32_t *got = tok(v, strs[i], lens[i], false, &got_n);
        if (got_n == nw && memcmp(got, want, nw * sizeof *got) == 0) {
            passed++;
        } else {
            char *a = fmt_ids(got, got_n), *b = fmt_ids(want, nw);
            print_error("%s: string %zu (%zu bytes) differs:\n  got  %s\n"
                        "  want %s\n", c->name, i, lens[i], a, b);
            free(a);
            free(b);
        }

        /* Asked for BOS: the same ids after it. */
        size_t bn;
        int32_t *bids = tok(v, strs[i], lens[i], true, &bn);
        assert_int_equal(bn, got_n + 1);
        assert_int_equal(bids[0], c->bos);
        assert_memory_equal(bids + 1, got, got_n * sizeof *got);
        free(bids);

        /* Every vector is valid UTF-8 without user-defined tokens, so it
         * comes back byte for byte. */
        expect_roundtrip(v, strs[i], lens[i]);
        free(got);
    }
    print_message("%s: %zu/%zu test vectors match llama.cpp\n", c->name,
                  passed, n);
    assert_int_equal(passed, n);
    free(want);
    free(strs);
    free(lens);
    free(inp);
    free(outf);
    jq_vocab_free(v);
}

static const vocab_case gpt2_case = {"ggml-vocab-gpt-2.gguf", 50257, 50256, false, true};
static const vocab_case deepseek_case = {"ggml-vocab-deepseek-llm.gguf", 102400, 100000, true, true};
/* Falcon has no token for 28 byte values (0x03, 0x1D, 0xFF, ...). */
static const vocab_case falcon_case = {"ggml-vocab-falcon.gguf", 65024, 11, false, false};
static const vocab_case llama3_case = {"ggml-vocab-llama3.gguf", 128256, 128000, true, true};
static const vocab_case qwen2_case = {"ggml-vocab-qwen2.gguf", 151936, 151643, false, true};

static void test_vectors_gpt2(void **state) { (void)state; run_vectors(&gpt2_case); }
static void test_vectors_deepseek_llm(void **state) { (void)state; run_vectors(&deepseek_case); }
static void test_vectors_falcon(void **state) { (void)state; run_vectors(&falcon_case); }
static void test_vectors_llama3(void **state) { (void)state; run_vectors(&llama3_case); }
static void test_vectors_qwen2(void **state) { (void)state; run_vectors(&qwen2_case); }

/* ------------------------------------------------------- round trips */

static const vocab_case *const all_cases[] = {
    &gpt2_case, &deepseek_case, &falcon_case, &llama3_case, &qwen2_case,
};
#define N_CASES (sizeof all_cases / sizeof *all_cases)

static void test_roundtrip(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "Hello world",
        "  leading and trailing spaces  ",
        "tabs\tand\nnewlines\r\n\r\n\n   \n",
        "Ünïcödé: Äpfel, Straße, naïve café — “quotes” ‘too’",
        "Русский текст и 中文字符 and 日本語のテキスト, 한국어 텍스트",
        "emoji \xf0\x9f\xa6\x99\xf0\x9f\x9a\x80 \xf0\x9f\x91\xa8\xe2\x80\x8d"
        "\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7 and \xe1\x9e\x80\xe1\x9e\xb6",
        "<s> <|endoftext|> <|begin_of_text|> <|im_end|> look special",
        "3.14159 2718281828 1234567 !!!???... $$$ +++ ~~~ ```",
        "I'm you're we've they'll he'd It'S DON'T 'tis",
        "\xc2\xa0non-breaking\xe2\x80\x83" "em\xe3\x80\x80ideographic space",
        "\x01\x02\x1f\x7f control bytes \x00 and NUL",
        "",
    };
    for (size_t c = 0; c < N_CASES; c++) {
        jq_vocab *v = load_vocab(all_cases[c]->name, NULL);
        for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
            size_t len = strlen(texts[i]);
            if (i + 2 == sizeof texts / sizeof *texts)
                len += 9; /* the NUL and " and NUL" */
            expect_roundtrip(v, texts[i], len);
        }
        /* Text that looks like a control token is plain text. */
        size_t n;
        int32_t *ids = tok(v, "<|endoftext|><|im_end|><|begin_of_text|>", 40,
                           false, &n);
        for (size_t i = 0; i < n; i++)
            assert_true(jq_vocab_token_type(v, ids[i]) != JQ_TOKEN_CONTROL);
        free(ids);
        jq_vocab_free(v);
    }
}

/* Invalid UTF-8 never crashes. Like llama.cpp, each malformed byte becomes
 * U+FFFD and an overlong form its shortest encoding, so the round trip
 * gives the text as llama.cpp decodes it. */
static void test_invalid_utf8(void **state)
{
    (void)state;
#define FFFD "\xef\xbf\xbd"
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"\xff", FFFD},
        {"abc\xff\xfe" "def", "abc" FFFD FFFD "def"},
        {"\xc3", FFFD},
        {"\xc3(", FFFD "("},
        {"\xe2\x82", FFFD FFFD},
        {"\xe2\x28\xa1", FFFD "(" FFFD},
        {"\xf0\x9f\x98", FFFD FFFD FFFD},
        {"\x80\x80", FFFD FFFD},
        {"\xf8\x88\x80\x80\x80", FFFD FFFD FFFD FFFD FFFD},
        {"\xc0\xaf", "/"},                   /* overlong '/' */
        {"\xe0\x80\xa0x", " x"},             /* overlong ' ' */
        {"\xed\xa0\x80", "\xed\xa0\x80"},    /* a surrogate, kept */
        {"x\xf4\x90\x80\x80y", "x" FFFD FFFD FFFD FFFD "y"}, /* > U+10FFFF */
    };
#undef FFFD
    for (size_t c = 0; c < N_CASES; c++) {
        jq_vocab *v = load_vocab(all_cases[c]->name, NULL);
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            if (!all_cases[c]->all_bytes)
                break;
            size_t bl, want = strlen(cases[i].out);
            char *back = roundtrip(v, cases[i].in, strlen(cases[i].in), &bl);
            if (bl != want || memcmp(back, cases[i].out, want) != 0) {
                print_error("%s: case %zu gave \"%.*s\"\n",
                            all_cases[c]->name, i, (int)bl, back);
                fail();
            }
            free(back);
        }
        /* Random bytes: whatever comes back is stable under another
         * round trip (it is valid UTF-8, as llama.cpp decoded it) when the
         * vocabulary has every byte; otherwise (Falcon) bytes without a
         * token vanish, possibly from the middle of a character, so only
         * "no crash" is checked. */
        jqt_rng r;
        jqt_rng_seed(&r, 7 + c);
        char buf[2048];
        for (int round = 0; round < 40; round++) {
            size_t len = (size_t)(jqt_rng_u64(&r) % sizeof buf);
            for (size_t i = 0; i < len; i++)
                buf[i] = (char)jqt_rng_u64(&r);
            size_t l1, l2;
            char *a = roundtrip(v, buf, len, &l1);
            char *b = roundtrip(v, a, l1, &l2);
            if (all_cases[c]->all_bytes) {
                assert_int_equal(l1, l2);
                assert_memory_equal(a, b, l1);
            }
            free(a);
            free(b);
        }
        jq_vocab_free(v);
    }
}

/* ---------------------------------------------- special/added tokens */

static void test_special_tokens(void **state)
{
    (void)state;
    /* Qwen2's <tool_call> and </tool_call> are user-defined: cut out of
     * the text before pre-tokenizing, as llama.cpp does even with special
     * parsing off. Its <|im_end|> is a control token: never parsed. */
    jq_vocab *v = load_vocab("ggml-vocab-qwen2.gguf", NULL);
    assert_int_equal(jq_vocab_find(v, "<tool_call>", 11), 151657);
    assert_int_equal(jq_vocab_token_type(v, 151657), JQ_TOKEN_USER_DEFINED);
    size_t na, nb, n;
    int32_t *a = tok(v, "say", 3, false, &na);
    int32_t *b = tok(v, " hi", 3, false, &nb);
    int32_t *ids = tok(v, "say<tool_call> hi</tool_call>", 29, false, &n);
    assert_int_equal(n, na + 1 + nb + 1);
    assert_memory_equal(ids, a, na * sizeof *a);
    assert_int_equal(ids[na], 151657);
    assert_memory_equal(ids + na + 1, b, nb * sizeof *b);
    assert_int_equal(ids[n - 1], 151658);
    expect_roundtrip(v, "say<tool_call> hi</tool_call>", 29);
    free(a);
    free(b);
    free(ids);
    ids = tok(v, "<|im_end|>", 10, false, &n);
    assert_true(n > 1);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(ids[i], 151645);
    free(ids);
    /* Rendering: control tokens give nothing, user-defined their text. */
    char piece[32];
    assert_int_equal(jq_token_to_piece(v, 151645, piece, sizeof piece), 0);
    assert_int_equal(jq_token_to_piece(v, 151657, piece, sizeof piece), 11);
    assert_memory_equal(piece, "<tool_call>", 11);
    jq_vocab_free(v);

    /* deepseek-llm has 2398 user-defined "[PAD...]" tokens: cut out too,
     * wherever they are, adjacent ones included. */
    v = load_vocab("ggml-vocab-deepseek-llm.gguf", NULL);
    assert_int_equal(jq_vocab_token_type(v, 100016), JQ_TOKEN_USER_DEFINED);
    ids = tok(v, "x[PAD100016][PAD100017]y [PAD1000", 32, false, &n);
    size_t hits = 0;
    for (size_t i = 0; i < n; i++)
        hits += ids[i] == 100016 || ids[i] == 100017;
    assert_int_equal(hits, 2);
    free(ids);
    expect_roundtrip(v, "x[PAD100016][PAD100017]y [PAD1000", 32);
    jq_vocab_free(v);

    /* Falcon: a byte without a token is dropped, as in llama.cpp. */
    v = load_vocab("ggml-vocab-falcon.gguf", NULL);
    size_t bl;
    char *back = roundtrip(v, "a\x03" "b\x1d", 4, &bl);
    assert_int_equal(bl, 2);
    assert_memory_equal(back, "ab", 2);
    free(back);
    jq_vocab_free(v);

    /* Llama 3: BOS by default, <|begin_of_text|> in text is plain text. */
    v = load_vocab("ggml-vocab-llama3.gguf", NULL);
    static const int32_t hw[] = {9906, 1917};
    expect_ids(v, "Hello world", 11, hw, 2);
    ids = tok(v, "<|begin_of_text|>", 17, true, &n);
    assert_true(n > 2);
    assert_int_equal(ids[0], 128000);
    for (size_t i = 1; i < n; i++)
        assert_int_not_equal(ids[i], 128000);
    free(ids);
    assert_int_equal(jq_token_to_piece(v, 128000, piece, sizeof piece), 0);
    /* GPT-2 byte decoding: "Ġworld" renders as " world". */
    assert_int_equal(jq_token_to_piece(v, 1917, piece, sizeof piece), 6);
    assert_memory_equal(piece, " world", 6);
    jq_vocab_free(v);
}

/* Empty text, and a pre-tokenizer corner per vocabulary. */
static void test_empty(void **state)
{
    (void)state;
    for (size_t c = 0; c < N_CASES; c++) {
        jq_vocab *v = load_vocab(all_cases[c]->name, NULL);
        size_t n = 99;
        int32_t *ids = tok(v, "", 0, false, &n);
        assert_int_equal(n, 0);
        free(ids);
        ids = tok(v, NULL, 0, true, &n);
        assert_int_equal(n, 1);
        assert_int_equal(ids[0], all_cases[c]->bos);
        free(ids);
        char err[128] = "";
        assert_int_equal(jq_tokenize(v, NULL, 3, false, &ids, &n, err,
                                     sizeof err), -1);
        jq_vocab_free(v);
    }
}

/* A megabyte of mixed text in Llama 3 (280k merges): tokenizing is
 * O(n log n) per word, and fast enough to report. */
static void test_long_text(void **state)
{
    (void)state;
    static const char unit[] = "The quick brown fox jumps over the lazy dog. "
                               "Äpfel und Birnen \xf0\x9f\xa6\x99 33333\n"
                               "    indented code();\t// comment\r\n";
    size_t ul = sizeof unit - 1, len = 0, cap = (size_t)1 << 20;
    char *text = malloc(cap + 4096);
    while (len + ul <= cap) {
        memcpy(text + len, unit, ul);
        len += ul;
    }
    /* One very long word too: BPE within a single 4 KiB word. */
    memset(text + len, 'a', 4096);
    len += 4096;
    for (size_t c = 0; c < N_CASES; c++) {
        jq_vocab *v = load_vocab(all_cases[c]->name, NULL);
        double t0 = now_s();
        size_t n;
        int32_t *ids = tok(v, text, len, false, &n);
        double dt = now_s() - t0;
        print_message("%s: %zu bytes -> %zu tokens in %.1f ms\n",
                      all_cases[c]->name, len, n, dt * 1e3);
        assert_true(n > len / ul);
        free(ids);
        expect_roundtrip(v, text, len);
        jq_vocab_free(v);
    }
    free(text);
}

/* ------------------------------------------ pre-tokenizers, directly */

/* The words of text under kind, joined by '|'. */
static char *pieces(jq_pre_kind kind, const char *text)
{
    size_t len = strlen(text);
    uint32_t *cps = malloc((len + 1) * sizeof *cps);
    size_t n = 0;
    for (size_t i = 0; i < len;) { /* the inputs here are valid UTF-8 */
        unsigned char c = (unsigned char)text[i];
        int k = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
        uint32_t cp = k == 1 ? c : (uint32_t)(c & (0x7f >> k));
        for (int j = 1; j < k; j++)
            cp = (cp << 6) | ((unsigned char)text[i + j] & 0x3f);
        cps[n++] = cp;
        i += (size_t)k;
    }
    jq_sizevec w = {0}, t = {0};
    assert_int_equal(jq_pretokenize(kind, cps, n, &w, &t), 0);
    char *out = malloc(2 * len + 2), *o = out;
    size_t at = 0, byte = 0, sum = 0;
    for (size_t k = 0; k < w.n; k++) {
        assert_true(w.v[k] > 0);
        sum += w.v[k];
        if (k)
            *o++ = '|';
        for (size_t j = 0; j < w.v[k]; j++, at++) {
            unsigned char c = (unsigned char)text[byte];
            size_t l = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
            memcpy(o, text + byte, l);
            o += l;
            byte += l;
        }
    }
    *o = 0;
    assert_int_equal(sum, n);
    free(w.v);
    free(t.v);
    free(cps);
    return out;
}

static void expect_pieces(jq_pre_kind kind, const char *text, const char *want)
{
    char *got = pieces(kind, text);
    if (strcmp(got, want) != 0) {
        print_error("pre-tokenizer %d on \"%s\":\n  got  %s\n  want %s\n",
                    (int)kind, text, got, want);
        free(got);
        fail();
    }
    free(got);
}

/* Expectations worked out from llama.cpp's expressions by hand, for the
 * types without reference vectors, and corner cases of the others. */
static void test_pretokenizers(void **state)
{
    (void)state;
    /* GPT-2: contractions are case-sensitive; \s+(?!\S) leaves one space
     * for the next word; a lone tab before a word stands alone. */
    expect_pieces(JQ_PRE_GPT2, "I'm DON'T  go\tx 1234 ?!",
                  "I|'m| DON|'|T| | go|\t|x| 1234| ?!");
    /* Llama 3: case-insensitive contractions, digits in threes, a
     * punctuation run takes the newlines after it, \s*[\r\n]+. */
    expect_pieces(JQ_PRE_LLAMA3, "DON'T 1234567 ok.\n\n  \n x",
                  "DON|'T| |123|456|7| ok|.\n\n|  \n| x");
    /* Qwen2: the same with single digits. */
    expect_pieces(JQ_PRE_QWEN2, "DON'T 1234 (x)", "DON|'T| |1|2|3|4| (|x|)");
    /* Default: punctuation runs first, then GPT-2, then digit runs cut in
     * threes. */
    expect_pieces(JQ_PRE_DEFAULT, "Hello, world! 12345 $x",
                  "Hello|,| world|!| |123|45| |$|x");
    /* Falcon: the same first expression plus the backtick, no \p{N}+,
     * so the digit triples cut " 12345" itself. */
    expect_pieces(JQ_PRE_FALCON, "a`b 12345", "a|`|b| |123|45");
    /* StarCoder: every digit alone, then GPT-2. */
    expect_pieces(JQ_PRE_STARCODER, "x 123", "x| |1|2|3");
    /* deepseek-llm: \r and \n alone, letters with one leading space,
     * CJK runs, trailing white space, \p{N}+. */
    expect_pieces(JQ_PRE_DEEPSEEK_LLM, "ab cd\n中文 12  ",
                  "ab| cd|\n|中文| |12|  ");
    /* deepseek-coder: \p{N} one by one. */
    expect_pieces(JQ_PRE_DEEPSEEK_CODER, "ab 12", "ab| |1|2");
    /* bloom:  ?[^(\s|.,!?…。，、।۔،)]+ with the rest in gaps. */
    expect_pieces(JQ_PRE_BLOOM, "Hi there, you.", "Hi| there|,| you|.");
    /* Non-ASCII white space is \s (U+3000 here), not part of a CJK run. */
    expect_pieces(JQ_PRE_DEEPSEEK_LLM, "中\xe3\x80\x80" "文", "中|\xe3\x80\x80|" "文");
    expect_pieces(JQ_PRE_LLAMA3, "a\xc2\xa0" "b", "a|\xc2\xa0" "b");
}

static void test_unicode_classes(void **state)
{
    (void)state;
    assert_int_equal(jq_ucat('A'), JQ_UCAT_LETTER);
    assert_int_equal(jq_ucat('5'), JQ_UCAT_NUMBER);
    assert_int_equal(jq_ucat('!'), JQ_UCAT_PUNCT);
    assert_int_equal(jq_ucat('$'), JQ_UCAT_SYMBOL);
    assert_int_equal(jq_ucat(0), JQ_UCAT_CONTROL);
    assert_int_equal(jq_ucat(0xA0), JQ_UCAT_SEPARATOR);
    assert_int_equal(jq_ucat(0x301), JQ_UCAT_MARK);
    assert_int_equal(jq_ucat(0x378), JQ_UCAT_UNDEFINED);
    assert_int_equal(jq_ucat(0x660), JQ_UCAT_NUMBER);
    assert_int_equal(jq_ucat(0x4E00), JQ_UCAT_LETTER);
    assert_int_equal(jq_ucat(0xD800), JQ_UCAT_CONTROL);
    assert_int_equal(jq_ucat(0x1F600), JQ_UCAT_SYMBOL);
    assert_int_equal(jq_ucat(0x2EBF0), JQ_UCAT_LETTER); /* Unicode 15.1 */
    assert_int_equal(jq_ucat(0x31EF), JQ_UCAT_SYMBOL);  /* Unicode 15.1 */
    assert_int_equal(jq_ucat(0x1FBCB), JQ_UCAT_UNDEFINED); /* 16.0 only */
    assert_int_equal(jq_ucat(0xE0001), JQ_UCAT_CONTROL);
    assert_int_equal(jq_ucat(0x10FFFF), JQ_UCAT_UNDEFINED);
    assert_int_equal(jq_ucat(0x110000), JQ_UCAT_UNDEFINED);
    assert_true(jq_uspace_has(' ') && jq_uspace_has('\v'));
    assert_true(jq_uspace_has(0x85) && jq_uspace_has(0x2028));
    assert_true(jq_uspace_has(0x3000));
    assert_false(jq_uspace_has(0x1C) || jq_uspace_has(0x200B));
    assert_false(jq_uspace_has(0x180E));
}

/* --------------------------------------- the command line, end to end */

static void test_cli(void **state)
{
    (void)state;
    const char *path = jqt_reference_path("tokenizers/ggml-vocab-llama3.gguf");
    char *cmd = jqt_fmt("'%s' tokenize -m '%s' -p 'Hello world' --no-bos",
                        jqt_judgeq_bin(), path);
    int rc;
    char *out = jqt_run(cmd, &rc, NULL);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "[9906,1917]\n");
    free(out);
    free(cmd);
    /* Without --no-bos, Llama 3 adds its BOS. */
    cmd = jqt_fmt("'%s' tokenize -m '%s' -p 'Hello world'", jqt_judgeq_bin(),
                  path);
    out = jqt_run(cmd, &rc, NULL);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "[128000,9906,1917]\n");
    free(out);
    free(cmd);
}

/* ----------------------------------------- hand-built GGUF vocabularies */

/* "Ġ" is GPT-2's encoding of the space byte. */
#define G "\xc4\xa0"

/* A toy vocabulary: a, b, c, space, and merges chosen so that rank order,
 * not length or position, decides. */
static const char *const toy_tokens[] = {
    "a", "b", "c", G, "ab", "bc", "abc", G "a", "<x>", "<|ctl|>",
};
static const int32_t toy_types[] = {1, 1, 1, 1, 1, 1, 1, 1, 4, 3};
#define TOY_N (sizeof toy_tokens / sizeof *toy_tokens)

static gb toy_base(const char *pre, const char *const *merges, size_t nm)
{
    gb b = {0};
    kv_str(&b, "tokenizer.ggml.model", "gpt2");
    if (pre)
        kv_str(&b, "tokenizer.ggml.pre", pre);
    kv_strs(&b, "tokenizer.ggml.tokens", toy_tokens, TOY_N);
    kv_i32s(&b, "tokenizer.ggml.token_type", toy_types, TOY_N);
    if (merges)
        kv_strs(&b, "tokenizer.ggml.merges", merges, nm);
    return b;
}

static jq_vocab *toy(const char *pre, const char *const *merges, size_t nm)
{
    gb b = toy_base(pre, merges, nm);
    char err[256] = "";
    jq_vocab *v = load_built(&b, err, sizeof err);
    if (!v)
        fail_msg("toy vocabulary: %s", err);
    return v;
}

static void test_toy_merges(void **state)
{
    (void)state;
    /* "b c" ranks before "a b": abc -> a + bc; then no "a bc" merge. */
    static const char *const m1[] = {"b c", "a b", G " a"};
    jq_vocab *v = toy("gpt-2", m1, 3);
    static const int32_t w1[] = {0, 5};
    expect_ids(v, "abc", 3, w1, 2);
    /* " a" is one word under GPT-2's pre-tokenizer; "Ġ a" merges it. */
    static const int32_t w2[] = {3, 4}; /* a+b (rank 1) before Ġ+a (2) */
    expect_ids(v, " ab", 3, w2, 2);
    /* A symbol that is not a token falls back to single-byte tokens and
     * otherwise disappears, like llama.cpp ("d" is not in the vocabulary). */
    static const int32_t w3[] = {7};
    expect_ids(v, "d a", 3, w3, 1);
    jq_vocab_free(v);

    /* Reversed ranks: a + b first, then "ab c" makes the whole token. */
    static const char *const m2[] = {"a b", "ab c", "b c"};
    v = toy("gpt-2", m2, 3);
    static const int32_t w4[] = {6};
    expect_ids(v, "abc", 3, w4, 1);
    jq_vocab_free(v);

    /* A duplicate pair keeps its first (lowest) rank, as llama.cpp's
     * emplace does; an entry without a space is ignored but keeps its
     * rank slot. */
    static const char *const m3[] = {"nospace", "b c", "a b", "b c", "ab c"};
    v = toy("gpt-2", m3, 5);
    static const int32_t w5[] = {0, 5};
    expect_ids(v, "abc", 3, w5, 2);
    jq_vocab_free(v);

    /* Llama 3 ignores merges for a word that is a whole token: "abc" is
     * token 6 though no merge could build it. */
    gb b = toy_base("llama-bpe", m1, 3);
    kv_u32(&b, "tokenizer.ggml.bos_token_id", 9);
    char err[256] = "";
    v = load_built(&b, err, sizeof err);
    if (!v)
        fail_msg("llama-bpe toy: %s", err);
    assert_true(jq_vocab_add_bos(v)); /* the Llama 3 default */
    static const int32_t w6[] = {6};
    expect_ids(v, "abc", 3, w6, 1);
    jq_vocab_free(v);
    /* Without a BOS id, that default cannot be honoured: a load error, as
     * in llama.cpp (id 11 does not exist here). */
    b = toy_base("llama-bpe", m1, 3);
    assert_null(load_built(&b, err, sizeof err));
    assert_non_null(strstr(err, "add_bos_token"));

    /* User-defined <x> is cut out; control <|ctl|> is not. */
    v = toy("gpt-2", m2, 3);
    static const int32_t w7[] = {6, 8, 6};
    expect_ids(v, "abc<x>abc", 9, w7, 3);
    size_t n;
    int32_t *ids = tok(v, "<|ctl|>", 7, false, &n);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(ids[i], 9);
    free(ids);
    jq_vocab_free(v);
}

static void test_toy_errors(void **state)
{
    (void)state;
    static const char *const m1[] = {"a b"};
    char err[256] = "";
    int32_t *ids = (int32_t *)1;
    size_t n = 5;

    /* An unknown pre-tokenizer loads (detokenizing works) but does not
     * tokenize. */
    jq_vocab *v = toy("no-such-pre", m1, 1);
    assert_int_equal(jq_tokenize(v, "ab", 2, false, &ids, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "unsupported pre-tokenizer 'no-such-pre'"));
    assert_null(ids);
    static const int32_t ab[] = {4, 3, 0};
    char *s = jq_detokenize(v, ab, 3);
    assert_string_equal(s, "ab a");
    free(s);
    jq_vocab_free(v);

    /* No merges: llama.cpp refuses the file; we refuse to tokenize. */
    v = toy(NULL, NULL, 0);
    assert_int_equal(jq_tokenize(v, "ab", 2, false, &ids, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "tokenizer.ggml.merges"));
    jq_vocab_free(v);

    /* No tokenizer.ggml.pre: llama.cpp's default expressions. */
    v = toy(NULL, m1, 1);
    static const int32_t w[] = {4, 3, 0};
    expect_ids(v, "ab a", 4, w, 3); /* " a" has no merge: Ġ then a */
    jq_vocab_free(v);

    /* Merges that are not strings are a load error. */
    gb b = toy_base("gpt-2", NULL, 0);
    static const int32_t nums[] = {1, 2};
    kv_i32s(&b, "tokenizer.ggml.merges", nums, 2);
    assert_null(load_built(&b, err, sizeof err));
    assert_non_null(strstr(err, "tokenizer.ggml.merges"));

    /* So is a pre-tokenizer name that is not a string. */
    b = toy_base(NULL, m1, 1);
    kv_i32s(&b, "tokenizer.ggml.pre", nums, 2);
    assert_null(load_built(&b, err, sizeof err));
    assert_non_null(strstr(err, "tokenizer.ggml.pre"));
}

/* Truncating a valid vocabulary anywhere gives an error, never a crash;
 * what loads tokenizes. */
static void test_toy_truncated(void **state)
{
    (void)state;
    static const char *const m[] = {"a b", "ab c", G " a"};
    gb b = toy_base("qwen2", m, 3);
    size_t size;
    unsigned char *data = gb_finish(&b, &size);
    for (size_t cut = 0; cut <= size; cut++) {
        unsigned char *copy = malloc(cut ? cut : 1);
        memcpy(copy, data, cut);
        char err[256];
        jq_gguf *g = jq_gguf_open_buffer(copy, cut, err, sizeof err);
        if (g) {
            jq_vocab *v = jq_vocab_load(g, err, sizeof err);
            jq_gguf_close(g);
            if (v) {
                int32_t *ids;
                size_t n;
                if (jq_tokenize(v, "abc a<x>\xff", 9, true, &ids, &n, err,
                                sizeof err) == 0)
                    free(ids);
                jq_vocab_free(v);
            }
        }
        free(copy);
    }
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_gpt2),
        cmocka_unit_test(test_vectors_deepseek_llm),
        cmocka_unit_test(test_vectors_falcon),
        cmocka_unit_test(test_vectors_llama3),
        cmocka_unit_test(test_vectors_qwen2),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_special_tokens),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_long_text),
        cmocka_unit_test(test_pretokenizers),
        cmocka_unit_test(test_unicode_classes),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_toy_merges),
        cmocka_unit_test(test_toy_errors),
        cmocka_unit_test(test_toy_truncated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
