/* test_tokenizer.c — the SPM tokenizer against llama.cpp's own test
 * vectors, the stories260K vocabulary, round trips, byte fallback, and
 * malformed vocabularies built in memory. */
#include "testutil.h"
#include "gguf_build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "tokenizer.h"

/* ------------------------------------------------------------ helpers */

typedef struct {
    jq_gguf *g;
    jq_vocab *v;
} loaded;

static loaded load_file(const char *path)
{
    char err[512] = "";
    loaded l = {0};
    l.g = jq_gguf_open(path, err, sizeof err);
    if (!l.g)
        fail_msg("opening %s: %s", path, err);
    l.v = jq_vocab_load(l.g, err, sizeof err);
    if (!l.v)
        fail_msg("loading the vocabulary of %s: %s", path, err);
    /* The vocabulary copies what it needs: close the file right away so
     * that any pointer into the mapping would fault under ASan. */
    jq_gguf_close(l.g);
    l.g = NULL;
    return l;
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

static void expect_ids(const jq_vocab *v, const char *s, bool bos,
                       const int32_t *want, size_t nwant)
{
    size_t n;
    int32_t *ids = tok(v, s, strlen(s), bos, &n);
    if (n != nwant || memcmp(ids, want, n * sizeof *ids) != 0) {
        char *a = fmt_ids(ids, n), *b = fmt_ids(want, nwant);
        print_error("\"%s\": got %s, want %s\n", s, a, b);
        free(a);
        free(b);
        free(ids);
        fail();
    }
    free(ids);
}

/* Splits the .inp file as the reference README says: every string is
 * followed by "\n__ggml_vocab_test__\n". Returns the count; strings point
 * into buf (which is modified: separators become NULs). */
static size_t split_inp(char *buf, size_t len, char ***out, size_t **lens)
{
    static const char sep[] = "\n__ggml_vocab_test__\n";
    const size_t sl = sizeof sep - 1;
    size_t cap = 64, n = 0;
    *out = malloc(cap * sizeof **out);
    *lens = malloc(cap * sizeof **lens);
    size_t pos = 0;
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

/* Parses one .out line (" 15043 3186", possibly empty) into ids. */
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

static void run_vectors(const char *name)
{
    char rel[256];
    snprintf(rel, sizeof rel, "tokenizers/%s", name);
    loaded l = load_file(jqt_reference_path(rel));
    assert_int_equal(jq_vocab_kind_of(l.v), JQ_VOCAB_SPM);

    snprintf(rel, sizeof rel, "tokenizers/%s.inp", name);
    size_t inp_len;
    char *inp = jqt_read_file(jqt_reference_path(rel), &inp_len);
    assert_non_null(inp);
    snprintf(rel, sizeof rel, "tokenizers/%s.out", name);
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
        int32_t *got = tok(l.v, strs[i], lens[i], false, &got_n);
        if (got_n == nw && memcmp(got, want, nw * sizeof *got) == 0) {
            passed++;
        } else {
            char *a = fmt_ids(got, got_n), *b = fmt_ids(want, nw);
            print_error("%s: string %zu (%zu bytes) differs:\n  got  %s\n"
                        "  want %s\n", name, i, lens[i], a, b);
            free(a);
            free(b);
        }

        /* With BOS: the same ids after it. */
        size_t bn;
        int32_t *bids = tok(l.v, strs[i], lens[i], true, &bn);
        assert_true(jq_vocab_add_bos(l.v));
        assert_int_equal(bn, got_n + 1);
        assert_int_equal(bids[0], jq_vocab_bos(l.v));
        assert_memory_equal(bids + 1, got, got_n * sizeof *got);
        free(bids);
        free(got);
    }
    print_message("%s: %zu/%zu test vectors match llama.cpp\n", name, passed, n);
    assert_int_equal(passed, n);
    free(want);
    free(strs);
    free(lens);
    free(inp);
    free(outf);
    jq_vocab_free(l.v);
}

/* --------------------------------------------------- reference vectors */

static void test_vectors_llama_spm(void **state)
{
    (void)state;
    run_vectors("ggml-vocab-llama-spm.gguf");
}

static void test_vectors_phi3(void **state)
{
    (void)state;
    run_vectors("ggml-vocab-phi-3.gguf");
}

static void test_llama_spm_metadata(void **state)
{
    (void)state;
    loaded l = load_file(jqt_reference_path("tokenizers/ggml-vocab-llama-spm.gguf"));
    const jq_vocab *v = l.v;
    assert_int_equal(jq_vocab_size(v), 32000);
    assert_int_equal(jq_vocab_bos(v), 1);
    assert_int_equal(jq_vocab_eos(v), 2);
    assert_int_equal(jq_vocab_unk(v), 0);
    assert_int_equal(jq_vocab_pad(v), -1);
    assert_true(jq_vocab_add_space_prefix(v));
    assert_string_equal(jq_vocab_token_text(v, 1), "<s>");
    assert_string_equal(jq_vocab_token_text(v, 13), "<0x0A>");
    assert_null(jq_vocab_token_text(v, -1));
    assert_null(jq_vocab_token_text(v, 32000));
    assert_int_equal(jq_vocab_token_type(v, 13), JQ_TOKEN_BYTE);
    assert_int_equal(jq_vocab_token_type(v, 1), JQ_TOKEN_CONTROL);
    assert_int_equal(jq_vocab_token_type(v, 32000), -1);
    assert_int_equal(jq_vocab_find(v, "\xe2\x96\x81Hello", 8), 15043);
    assert_int_equal(jq_vocab_find(v, "no-such-token-here", 18), -1);

    char buf[64];
    assert_int_equal(jq_token_to_piece(v, 15043, buf, sizeof buf), 6);
    assert_memory_equal(buf, " Hello", 6);
    assert_int_equal(jq_token_to_piece(v, 13, buf, sizeof buf), 1);
    assert_int_equal(buf[0], '\n');
    assert_int_equal(jq_token_to_piece(v, 1, buf, sizeof buf), 0);  /* BOS */
    assert_int_equal(jq_token_to_piece(v, 2, buf, sizeof buf), 0);  /* EOS */
    assert_int_equal(jq_token_to_piece(v, 0, buf, sizeof buf), 0);  /* unk */
    assert_int_equal(jq_token_to_piece(v, -1, buf, sizeof buf), -1);
    assert_int_equal(jq_token_to_piece(v, 32000, buf, sizeof buf), -1);
    /* Short buffer: at most buflen bytes written, full length returned. */
    memset(buf, 'x', sizeof buf);
    assert_int_equal(jq_token_to_piece(v, 15043, buf, 3), 6);
    assert_memory_equal(buf, " He", 3);
    assert_int_equal(buf[3], 'x');
    assert_int_equal(jq_token_to_piece(v, 15043, NULL, 0), 6);

    int32_t bad[] = {15043, 32000};
    assert_null(jq_detokenize(v, bad, 2));
    char *e = jq_detokenize(v, NULL, 0);
    assert_non_null(e);
    assert_string_equal(e, "");
    free(e);
    jq_vocab_free(l.v);
}

/* ------------------------------------------------------ stories260K */

static void test_stories260k(void **state)
{
    (void)state;
    loaded l = load_file(jqt_model_path("stories260K.gguf"));
    assert_int_equal(jq_vocab_size(l.v), 512);
    assert_true(jq_vocab_add_bos(l.v));
    /* padding_token_id is 0xFFFFFFFF there: out of range means none. */
    assert_int_equal(jq_vocab_pad(l.v), -1);
    static const int32_t once[] = {1, 403, 407, 261, 378};
    expect_ids(l.v, "Once upon a time", true, once, 5);
    static const int32_t dog[] = {1, 291, 376, 400, 428, 352, 303,
                                  267, 265, 282, 295, 433, 269};
    expect_ids(l.v, "The little dog ran to the park and", true, dog, 13);
    expect_ids(l.v, "Once upon a time", false, once + 1, 4);

    /* Every byte through a 512-token vocabulary: mostly byte fallback. */
    char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (char)i;
    size_t n;
    int32_t *ids = tok(l.v, all, 256, false, &n);
    char *back = jq_detokenize(l.v, ids, n);
    assert_non_null(back);
    assert_int_equal(strlen(back + 1) + 1, 1); /* byte 0 ends the C string */
    assert_memory_equal(back, " ", 1);
    assert_memory_equal(back + 1, all, 256);
    free(back);
    free(ids);
    jq_vocab_free(l.v);
}

/* ------------------------------------------------------- round trips */

/* Replaces each "▁" in s[0..*len) by a space, in place. */
static void unescape_spaces(char *s, size_t *len)
{
    size_t o = 0;
    for (size_t i = 0; i < *len;) {
        if (i + 3 <= *len && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
            s[o++] = ' ';
            i += 3;
        } else {
            s[o++] = s[i++];
        }
    }
    *len = o;
}

/* detokenize(tokenize(s)) == " " + s: the prefix space that
 * add_space_prefix adds stays in the output (jq_detokenize strips nothing);
 * empty text gets no prefix.
 *
 * With invalid UTF-8 one thing differs, in llama.cpp too: a lead byte
 * announcing more bytes than follow swallows the next characters into one
 * symbol, and when that is a space already escaped to "▁", the byte fallback
 * emits the three bytes of "▁" rather than a space. lenient compares with
 * "▁" read as a space, which still proves that no byte is lost. */
static void expect_roundtrip_ex(const jq_vocab *v, const char *s, size_t len,
                                bool bos, bool lenient)
{
    size_t n;
    int32_t *ids = tok(v, s, len, bos, &n);
    char *back = jq_detokenize(v, ids, n);
    assert_non_null(back);
    size_t blen = strlen(back);
    /* strlen stops at a NUL byte from the input: find the real length. */
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int k = jq_token_to_piece(v, ids[i], NULL, 0);
        assert_true(k >= 0);
        total += (size_t)k;
    }
    assert_true(blen <= total);
    assert_int_equal(back[total], 0);
    if (lenient)
        unescape_spaces(back, &total);
    size_t pre = len ? 1 : 0;
    assert_int_equal(total, len + pre);
    if (pre)
        assert_int_equal(back[0], ' ');
    assert_memory_equal(back + pre, s, len);
    free(back);
    free(ids);
}

static void expect_roundtrip(const jq_vocab *v, const char *s, size_t len,
                             bool bos)
{
    expect_roundtrip_ex(v, s, len, bos, false);
}

static void test_roundtrip(void **state)
{
    (void)state;
    loaded l = load_file(jqt_reference_path("tokenizers/ggml-vocab-llama-spm.gguf"));
    static const char *const texts[] = {
        "Hello world",
        "  leading and trailing spaces  ",
        "tabs\tand\nnewlines\r\n",
        "Ünïcödé: Äpfel, Straße, naïve café",
        "Русский текст и 中文字符 and 日本語のテキスト",
        "emoji \xf0\x9f\xa6\x99\xf0\x9f\x9a\x80 and \xe1\x9e\x80\xe1\x9e\xb6",
        "<s> looks special but is not parsed </s>",
        "3.14159 2718281828 !!!???...",
        "",
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        expect_roundtrip(l.v, texts[i], strlen(texts[i]), false);
        expect_roundtrip(l.v, texts[i], strlen(texts[i]), true);
    }
    /* "<s>" in text is plain text, never the BOS id. */
    size_t n;
    int32_t *ids = tok(l.v, "<s>", 3, false, &n);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(ids[i], 1);
    free(ids);
    jq_vocab_free(l.v);
}

static void test_byte_fallback(void **state)
{
    (void)state;
    loaded l = load_file(jqt_reference_path("tokenizers/ggml-vocab-llama-spm.gguf"));
    /* Each single byte, including NUL and invalid UTF-8 leads. */
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        expect_roundtrip(l.v, &c, 1, false);
    }
    /* Invalid and truncated UTF-8 sequences. */
    static const char *const bad[] = {
        "\xc3", "\xc3(", "\xe2\x82", "\xe2\x28\xa1", "\xf0\x9f\x98",
        "abc\xff\xfe" "def", "\x80\x80\x80", "\xf8\x88\x80\x80\x80",
        "\xed\xa0\x80", "\xc0\xaf", "x\xf4\x90\x80\x80y",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        expect_roundtrip(l.v, bad[i], strlen(bad[i]), false);
    /* A lone invalid byte becomes its <0xNN> token. */
    size_t n;
    int32_t *ids = tok(l.v, "\xff", 1, false, &n);
    assert_int_equal(n, 2); /* "▁" then <0xFF> */
    assert_int_equal(ids[1], 3 + 0xff);
    free(ids);
    /* Random bytes. */
    jqt_rng r;
    jqt_rng_seed(&r, 42);
    char buf[4096];
    for (int round = 0; round < 50; round++) {
        size_t len = (size_t)(jqt_rng_u64(&r) % sizeof buf);
        for (size_t i = 0; i < len; i++)
            buf[i] = (char)jqt_rng_u64(&r);
        /* "▁" in input would come back as a space; keep it out. */
        for (size_t i = 0; i + 2 < len; i++)
            if (memcmp(buf + i, "\xe2\x96\x81", 3) == 0)
                buf[i] = 'x';
        expect_roundtrip_ex(l.v, buf, len, round & 1, true);
    }
    jq_vocab_free(l.v);
}

/* A megabyte of text: the merge queue keeps this O(n log n). */
static void test_long_text(void **state)
{
    (void)state;
    loaded l = load_file(jqt_reference_path("tokenizers/ggml-vocab-llama-spm.gguf"));
    static const char unit[] = "The quick brown fox jumps over the lazy dog. "
                               "Äpfel und Birnen \xf0\x9f\xa6\x99 333\n";
    size_t ul = sizeof unit - 1, len = 0, cap = (size_t)1 << 20;
    char *text = malloc(cap);
    while (len + ul <= cap) {
        memcpy(text + len, unit, ul);
        len += ul;
    }
    expect_roundtrip(l.v, text, len, true);
    /* Every unit ends in a newline, a byte token no merge crosses, so the
     * whole text has at least one token per unit beyond one unit's. */
    size_t n1, n;
    int32_t *one = tok(l.v, unit, ul, false, &n1);
    int32_t *all = tok(l.v, text, len, false, &n);
    assert_true(n >= n1 && n > len / ul);
    free(one);
    free(all);
    free(text);
    jq_vocab_free(l.v);
}

static void test_empty(void **state)
{
    (void)state;
    loaded l = load_file(jqt_reference_path("tokenizers/ggml-vocab-llama-spm.gguf"));
    size_t n = 99;
    int32_t *ids = tok(l.v, "", 0, false, &n);
    assert_int_equal(n, 0);
    free(ids);
    ids = tok(l.v, NULL, 0, true, &n);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 1);
    free(ids);
    /* A lone space: prefix "▁" + "▁" = "▁▁" (259), as the vectors say. */
    static const int32_t sp[] = {259};
    expect_ids(l.v, " ", false, sp, 1);

    char err[128] = "";
    assert_int_equal(jq_tokenize(l.v, NULL, 5, false, &ids, &n, err, sizeof err), -1);
    assert_true(err[0] != 0);
    jq_vocab_free(l.v);
}

/* ----------------------------------------- hand-built GGUF vocabularies */

#define SP "\xe2\x96\x81"

/* A toy SPM vocabulary with byte tokens for 'a'..'d' only. */
static const char *const toy_tokens[] = {
    "<unk>", "<s>", "</s>", SP, "a", "b", "c", "d",
    "ab", "bc", SP "a", "abc", "<0x61>", "<0x0A>", "<tool>", "cd",
};
static const float toy_scores[] = {
    0, 0, 0, -1, -2, -2, -2, -2,
    -5, -5, -3, -4, 0, 0, 0, -5,
};
static const int32_t toy_types[] = {
    2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 6, 6, 4, 1,
};
enum { TOY_N = sizeof toy_tokens / sizeof *toy_tokens };

static gb toy_base(void)
{
    gb b = {0};
    kv_str(&b, "general.architecture", "llama");
    kv_str(&b, "tokenizer.ggml.model", "llama");
    return b;
}

static void test_toy_vocab(void **state)
{
    (void)state;
    char err[256] = "";
    gb b = toy_base();
    kv_strs(&b, "tokenizer.ggml.tokens", toy_tokens, TOY_N);
    kv_f32s(&b, "tokenizer.ggml.scores", toy_scores, TOY_N);
    kv_i32s(&b, "tokenizer.ggml.token_type", toy_types, TOY_N);
    jq_vocab *v = load_built(&b, err, sizeof err);
    if (!v)
        fail_msg("%s", err);
    assert_int_equal(jq_vocab_bos(v), 1); /* llama.cpp's SPM defaults */
    assert_int_equal(jq_vocab_eos(v), 2);
    assert_int_equal(jq_vocab_unk(v), 0);
    assert_true(jq_vocab_add_bos(v));

    /* "▁abc": ▁a (-3) beats ab/bc (-5); then ▁a+bc is not a token, and
     * "bc" (-5) merges before "abc" could form (it can't: ▁a is taken). */
    static const int32_t w1[] = {10, 9};
    expect_ids(v, "abc", false, w1, 2);
    /* Ties go to the leftmost pair: "▁" "b" "c" "d": bc and cd both -5,
     * bc is left of cd, so bc wins and d stays alone. */
    static const int32_t w2[] = {3, 9, 7};
    expect_ids(v, "bcd", false, w2, 3);
    /* 'a' (0x61) is a token itself, so no fallback; 'z' has no byte token
     * and falls back to <unk>; '\n' uses <0x0A>. */
    static const int32_t w3[] = {3, 0, 13};
    expect_ids(v, "z\n", false, w3, 3);
    /* A user-defined token is cut out of the text first, and the text after
     * it gets the prefix space again. */
    static const int32_t w4[] = {10, 14, 10};
    expect_ids(v, "a<tool>a", false, w4, 3);
    static const int32_t w5[] = {1, 14, 10};
    expect_ids(v, "<tool>a", true, w5, 3);

    char buf[16];
    assert_int_equal(jq_token_to_piece(v, 14, buf, sizeof buf), 6);
    assert_memory_equal(buf, "<tool>", 6);
    assert_int_equal(jq_token_to_piece(v, 12, buf, sizeof buf), 1);
    assert_int_equal(buf[0], 'a');
    jq_vocab_free(v);

    /* add_space_prefix = false and add_bos_token = false are honoured. */
    b = toy_base();
    kv_strs(&b, "tokenizer.ggml.tokens", toy_tokens, TOY_N);
    kv_f32s(&b, "tokenizer.ggml.scores", toy_scores, TOY_N);
    kv_i32s(&b, "tokenizer.ggml.token_type", toy_types, TOY_N);
    kv_bool(&b, "tokenizer.ggml.add_space_prefix", false);
    kv_bool(&b, "tokenizer.ggml.add_bos_token", false);
    kv_u32(&b, "tokenizer.ggml.bos_token_id", 2);
    kv_u32(&b, "tokenizer.ggml.eos_token_id", 99); /* out of range: default */
    v = load_built(&b, err, sizeof err);
    if (!v)
        fail_msg("%s", err);
    assert_false(jq_vocab_add_bos(v));
    assert_false(jq_vocab_add_space_prefix(v));
    assert_int_equal(jq_vocab_bos(v), 2);
    assert_int_equal(jq_vocab_eos(v), 2);
    static const int32_t w6[] = {11};
    expect_ids(v, "abc", false, w6, 1);
    static const int32_t w7[] = {2, 10, 9}; /* "▁abc", no prefix */
    expect_ids(v, " abc", true, w7, 3);
    jq_vocab_free(v);
}

static void expect_load_error(gb *b, const char *needle)
{
    char err[256] = "";
    jq_vocab *v = load_built(b, err, sizeof err);
    if (v) {
        jq_vocab_free(v);
        fail_msg("a bad vocabulary loaded (expected an error with '%s')",
                 needle);
    }
    if (!strstr(err, needle))
        fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void test_bad_vocab(void **state)
{
    (void)state;
    gb b;

    b = toy_base(); /* no tokens at all */
    expect_load_error(&b, "tokenizer.ggml.tokens");

    b = (gb){0}; /* no model */
    kv_strs(&b, "tokenizer.ggml.tokens", toy_tokens, TOY_N);
    expect_load_error(&b, "tokenizer.ggml.model");

    b = (gb){0};
    kv_str(&b, "tokenizer.ggml.model", "t5");
    kv_strs(&b, "tokenizer.ggml.tokens", toy_tokens, TOY_N);
    expect_load_error(&b, "'t5'");

    b = (gb){0};
    kv_u32(&b, "tokenizer.ggml.model", 1);
    expect_load_error(&b, "tokenizer.ggml.model");

    b = toy_base(); /* tokens of the wrong type */
    kv_i32s(&b, "tokenizer.ggml.tokens", toy_types, TOY_N);
    expect_load_error(&b, "tokenizer.ggml.tokens");

    b = toy_base(); /* empty token list */
    kv_strs(&b, "tokenizer.ggml.tokens", toy_tokens, 0);
    expect_load_error(&b, "empty");

    b = toy_base(); /* scores count mismatch */
    kv_strs(&b, "tokenizer.ggml.tokens", toy_tokens, TOY_N);
    kv_f32s(&b, "tokenizer.ggml.scores", toy_scores, TOY_N - 1);
    expect_load_error(&b, "tokenizer.ggml.scores");

    b = toy_base(); /* scores not numbers */
    kv_strs(&b, "tokenizer.ggml.tokens", toy_tokens, TOY_N);
    kv_strs(&b, "tokenizer.ggml.scores", toy_tokens, TOY_N);
    expect_load_error(&b, "tokenizer.ggml.scores");

    b = toy_base(); /* token_type count mismatch */
    kv_strs(&b, "tokenizer.ggml.tokens", toy_tokens, TOY_N);
    kv_i32s(&b, "tokenizer.ggml.token_type", toy_types, 3);
    expect_load_error(&b, "tokenizer.ggml.token_type");

    b = toy_base(); /* token_type of floats */
    kv_strs(&b, "tokenizer.ggml.tokens", toy_tokens, TOY_N);
    kv_f32s(&b, "tokenizer.ggml.token_type", toy_scores, TOY_N);
    expect_load_error(&b, "tokenizer.ggml.token_type");

    b = toy_base(); /* duplicate token */
    static const char *const dup[] = {"<unk>", "<s>", "x", "x"};
    kv_strs(&b, "tokenizer.ggml.tokens", dup, 4);
    expect_load_error(&b, "duplicate");

    b = toy_base(); /* BOS wanted but none exists (default id 1 > size) */
    static const char *const one[] = {"<unk>"};
    kv_strs(&b, "tokenizer.ggml.tokens", one, 1);
    expect_load_error(&b, "bos");

    b = toy_base(); /* special id of the wrong type */
    kv_strs(&b, "tokenizer.ggml.tokens", toy_tokens, TOY_N);
    kv_str(&b, "tokenizer.ggml.bos_token_id", "1");
    expect_load_error(&b, "tokenizer.ggml.bos_token_id");

    b = toy_base();
    kv_strs(&b, "tokenizer.ggml.tokens", toy_tokens, TOY_N);
    kv_u32(&b, "tokenizer.ggml.add_bos_token", 1);
    expect_load_error(&b, "tokenizer.ggml.add_bos_token");

    /* A gpt2 vocabulary without merges loads and detokenizes but does not
     * tokenize (llama.cpp refuses such a file); test_tokenizer_bpe.c
     * covers BPE proper. */
    b = (gb){0};
    kv_str(&b, "tokenizer.ggml.model", "gpt2");
    static const char *const bpe[] = {"hello", "\xc4\xa0world", "!", "\xc4\x8a",
                                      "a\xffz"};
    kv_strs(&b, "tokenizer.ggml.tokens", bpe, 5);
    char err[256] = "";
    jq_vocab *v = load_built(&b, err, sizeof err);
    if (!v)
        fail_msg("gpt2 vocabulary: %s", err);
    assert_int_equal(jq_vocab_kind_of(v), JQ_VOCAB_BPE);
    assert_false(jq_vocab_add_bos(v));
    assert_int_equal(jq_vocab_bos(v), -1); /* default 11 is out of range */
    int32_t *ids = (int32_t *)1;
    size_t n = 7;
    err[0] = 0;
    assert_int_equal(jq_tokenize(v, "hi", 2, false, &ids, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "without tokenizer.ggml.merges"));
    assert_null(ids);
    assert_int_equal(n, 0);
    static const int32_t hw[] = {0, 1, 2, 3};
    char *s = jq_detokenize(v, hw, 4);
    assert_string_equal(s, "hello world!\n");
    free(s);
    /* A byte outside GPT-2's alphabet (here invalid UTF-8) is marked. */
    char piece[64];
    int pl = jq_token_to_piece(v, 4, piece, sizeof piece);
    assert_int_equal(pl, 21);
    assert_memory_equal(piece, "a[UNK_BYTE_0xefbfbd]z", 21);
    jq_vocab_free(v);
}

/* Truncating a valid vocabulary file anywhere must give an error, never a
 * crash, and a vocabulary that loads must tokenize. */
static void test_truncated(void **state)
{
    (void)state;
    gb b = toy_base();
    kv_strs(&b, "tokenizer.ggml.tokens", toy_tokens, TOY_N);
    kv_f32s(&b, "tokenizer.ggml.scores", toy_scores, TOY_N);
    kv_i32s(&b, "tokenizer.ggml.token_type", toy_types, TOY_N);
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
                assert_int_equal(jq_tokenize(v, "abcd z", 6, true, &ids, &n,
                                             err, sizeof err), 0);
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
        cmocka_unit_test(test_vectors_llama_spm),
        cmocka_unit_test(test_vectors_phi3),
        cmocka_unit_test(test_llama_spm_metadata),
        cmocka_unit_test(test_stories260k),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_byte_fallback),
        cmocka_unit_test(test_long_text),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_toy_vocab),
        cmocka_unit_test(test_bad_vocab),
        cmocka_unit_test(test_truncated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
