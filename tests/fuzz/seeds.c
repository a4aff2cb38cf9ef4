/* seeds.c — seed files for the fuzzers that cannot be committed:
 * vocabulary-only GGUF files cut down from the tokenizer references
 * (../shared is never copied into the repository).
 *
 *   seeds OUT_DIR REFERENCE.gguf...
 *
 * writes OUT_DIR/vocab-NAME.gguf for each: every metadata key of the
 * original, with tokenizer.ggml.tokens / scores / token_type cut to the
 * first KEEP_TOKENS entries and tokenizer.ggml.merges to the first
 * KEEP_MERGES, and special-token ids beyond the cut dropped. A few
 * kilobytes each, so the GGUF fuzzer mutates a real vocabulary of each
 * tokenizer family and pre-tokenizer in microseconds rather than loading a
 * 100 000-token file on every run.
 */
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"

#define KEEP_TOKENS 320 /* the 256 byte tokens of SPM files and some more */
#define KEEP_MERGES 200
#define MAX_STRING 256  /* longer strings (chat templates) are dropped */

static const char *const per_token[] = {
    "tokenizer.ggml.tokens", "tokenizer.ggml.scores",
    "tokenizer.ggml.token_type",
};

static size_t scalar_bytes(jq_gguf_type t)
{
    switch (t) {
    case JQ_GGUF_UINT8: case JQ_GGUF_INT8: case JQ_GGUF_BOOL: return 1;
    case JQ_GGUF_UINT16: case JQ_GGUF_INT16: return 2;
    case JQ_GGUF_UINT32: case JQ_GGUF_INT32: case JQ_GGUF_FLOAT32: return 4;
    case JQ_GGUF_UINT64: case JQ_GGUF_INT64: case JQ_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* A C string copy of s, or NULL when it holds a NUL or is too long. */
static char *cstr(jq_str s, size_t max)
{
    if (s.len > max || memchr(s.ptr, 0, (size_t)s.len))
        return NULL;
    char *c = malloc((size_t)s.len + 1);
    if (!c)
        abort();
    memcpy(c, s.ptr, (size_t)s.len);
    c[s.len] = 0;
    return c;
}

static uint64_t keep_of(const char *key, uint64_t n)
{
    uint64_t keep = n;
    for (size_t i = 0; i < sizeof per_token / sizeof *per_token; i++)
        if (strcmp(key, per_token[i]) == 0 && keep > KEEP_TOKENS)
            keep = KEEP_TOKENS;
    if (strcmp(key, "tokenizer.ggml.merges") == 0 && keep > KEEP_MERGES)
        keep = KEEP_MERGES;
    return keep;
}

/* Copies key i of g into w (cut down as above); 0, or -1 on a writer
 * error. Keys the writer cannot take (nested arrays, long strings) are
 * skipped: these are seeds, not copies. */
static int copy_key(const jq_gguf *g, jq_gguf_writer *w, int64_t i)
{
    char *key = cstr(jq_gguf_kv_key(g, i), MAX_STRING);
    if (!key)
        return 0;
    int rc = 0;
    jq_gguf_type t = jq_gguf_kv_type(g, i);
    if (t == JQ_GGUF_STRING) {
        jq_str s;
        jq_gguf_get_str(g, key, &s);
        char *v = cstr(s, MAX_STRING);
        if (v)
            rc = jq_gguf_writer_set_str(w, key, v);
        free(v);
    } else if (t == JQ_GGUF_ARRAY) {
        jq_gguf_type elem;
        uint64_t n;
        jq_gguf_get_arr(g, key, &elem, &n);
        uint64_t keep = keep_of(key, n);
        if (elem == JQ_GGUF_STRING) {
            char **v = calloc(keep ? keep : 1, sizeof *v);
            uint64_t k = 0;
            for (uint64_t j = 0; j < keep; j++) {
                jq_str s;
                jq_gguf_arr_str(g, key, j, &s);
                /* a token the writer cannot take keeps its slot (ids
                 * must not shift) as a placeholder */
                v[k] = cstr(s, MAX_STRING);
                if (!v[k])
                    v[k] = strdup("?");
                k++;
            }
            rc = jq_gguf_writer_set_arr_str(w, key, (const char *const *)v,
                                            k);
            for (uint64_t j = 0; j < k; j++)
                free(v[j]);
            free(v);
        } else if (scalar_bytes(elem)) {
            rc = jq_gguf_writer_set_arr(w, key, elem,
                                        jq_gguf_arr_data(g, key), keep);
        }
    } else {
        /* special-token ids past the cut would make the vocabulary invalid */
        uint32_t id;
        if (strstr(key, "_token_id") && jq_gguf_get_u32(g, key, &id) &&
            id >= KEEP_TOKENS) {
            free(key);
            return 0;
        }
        uint8_t v[8] = {0};
        /* the scalar getters convert; the raw value is what to copy */
        switch (t) {
        case JQ_GGUF_FLOAT32: { float f; jq_gguf_get_f32(g, key, &f); memcpy(v, &f, 4); break; }
        case JQ_GGUF_FLOAT64: { double d; jq_gguf_get_f64(g, key, &d); memcpy(v, &d, 8); break; }
        case JQ_GGUF_BOOL: { bool b; jq_gguf_get_bool(g, key, &b); v[0] = b; break; }
        default: {
            int64_t s;
            uint64_t u;
            if (jq_gguf_get_i64(g, key, &s))
                memcpy(v, &s, 8);
            else if (jq_gguf_get_u64(g, key, &u))
                memcpy(v, &u, 8);
            /* little-endian: the low bytes hold the narrower value */
        }
        }
        rc = jq_gguf_writer_set_scalar(w, key, t, v);
    }
    free(key);
    return rc;
}

static int cut_vocab(const char *out_dir, const char *path)
{
    char err[512];
    jq_gguf *g = jq_gguf_open(path, err, sizeof err);
    if (!g) {
        fprintf(stderr, "seeds: %s\n", err);
        return -1;
    }
    char *copy = strdup(path);
    char *base = basename(copy);
    char *dot = strstr(base, ".gguf");
    if (dot)
        *dot = 0;
    char out[4096];
    snprintf(out, sizeof out, "%s/vocab-%s.gguf", out_dir, base);
    free(copy);

    jq_gguf_writer *w = jq_gguf_writer_new();
    int rc = w ? 0 : -1;
    for (int64_t i = 0; rc == 0 && i < jq_gguf_n_kv(g); i++)
        rc = copy_key(g, w, i);
    if (rc == 0)
        rc = jq_gguf_writer_begin(w, out);
    if (rc == 0)
        rc = jq_gguf_writer_finish(w);
    if (rc != 0)
        fprintf(stderr, "seeds: %s: %s\n", out,
                w ? jq_gguf_writer_error(w) : "out of memory");
    jq_gguf_writer_free(w);
    jq_gguf_close(g);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: seeds OUT_DIR REFERENCE.gguf...\n");
        return 2;
    }
    int rc = 0;
    for (int i = 2; i < argc; i++)
        if (cut_vocab(argv[1], argv[i]))
            rc = 1;
    return rc;
}
