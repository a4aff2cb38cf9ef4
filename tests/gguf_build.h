/* gguf_build.h — hand-built GGUF v3 buffers (metadata only) for tests
 * that need files the writer would refuse or a vocabulary made to order. */
#ifndef JQ_GGUF_BUILD_H
#define JQ_GGUF_BUILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

typedef struct {
    unsigned char *p;
    size_t n, cap;
    uint64_t n_kv;
} gb;

void gb_raw(gb *b, const void *d, size_t n);
void gb_u32(gb *b, uint32_t v);
void gb_u64(gb *b, uint64_t v);
void gb_str(gb *b, const char *s);
/* Starts key k of value type `type` (counts it). */
void gb_key(gb *b, const char *k, uint32_t type);
void kv_str(gb *b, const char *k, const char *v);
void kv_u32(gb *b, const char *k, uint32_t v);
void kv_bool(gb *b, const char *k, bool v);
void kv_strs(gb *b, const char *k, const char *const *v, size_t n);
void kv_f32s(gb *b, const char *k, const float *v, size_t n);
void kv_i32s(gb *b, const char *k, const int32_t *v, size_t n);
/* Wraps the key/values in a GGUF v3 header (no tensors); frees b's
 * buffer and returns a malloc'd file image of *size bytes. */
unsigned char *gb_finish(gb *b, size_t *size);
/* Loads a vocabulary from the built buffer (failing the test when the
 * GGUF itself does not open); NULL with err when the vocabulary is bad. */
jq_vocab *load_built(gb *b, char *err, size_t errlen);

#endif
