/* gguf.h — GGUF v2/v3 reader (over mmap or a caller's buffer) and writer.
 *
 * The reader distrusts every count, size and offset in the file: a truncated
 * or corrupted file gives an error message that names what is wrong (which
 * key, which tensor, which limit), never a crash, a hang or an out-of-bounds
 * read. Strings point into the mapped file and are NOT NUL-terminated.
 */
#ifndef JQ_GGUF_H
#define JQ_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define JQ_GGUF_MAGIC "GGUF"
#define JQ_GGUF_DEFAULT_ALIGNMENT 32
#define JQ_GGUF_MAX_DIMS 4

typedef enum {
    JQ_GGUF_UINT8 = 0,
    JQ_GGUF_INT8 = 1,
    JQ_GGUF_UINT16 = 2,
    JQ_GGUF_INT16 = 3,
    JQ_GGUF_UINT32 = 4,
    JQ_GGUF_INT32 = 5,
    JQ_GGUF_FLOAT32 = 6,
    JQ_GGUF_BOOL = 7,
    JQ_GGUF_STRING = 8,
    JQ_GGUF_ARRAY = 9,
    JQ_GGUF_UINT64 = 10,
    JQ_GGUF_INT64 = 11,
    JQ_GGUF_FLOAT64 = 12,
    JQ_GGUF_TYPE_COUNT_
} jq_gguf_type;

typedef struct {
    const char *ptr; /* into the file; not NUL-terminated */
    uint64_t len;
} jq_str;

typedef struct {
    jq_str name;
    uint32_t n_dims;
    int64_t ne[JQ_GGUF_MAX_DIMS]; /* ne[0] fastest; unused dims are 1 */
    uint32_t type;                /* ggml type id (enum jq_type) */
    uint64_t offset;              /* relative to the data section */
    uint64_t nbytes;
    const void *data;             /* into the mapping */
} jq_gguf_tensor;

typedef struct jq_gguf jq_gguf;

/* Opens and validates a file (mmap, read-only). On error returns NULL and
 * writes a message to err (which may be NULL). */
jq_gguf *jq_gguf_open(const char *path, char *err, size_t errlen);
/* Same over a caller's buffer, which must outlive the handle (fuzzing,
 * tests). */
jq_gguf *jq_gguf_open_buffer(const void *data, size_t size, char *err,
                             size_t errlen);
void jq_gguf_close(jq_gguf *g);

uint32_t jq_gguf_version(const jq_gguf *g);
size_t jq_gguf_file_size(const jq_gguf *g);
const void *jq_gguf_file_data(const jq_gguf *g);
uint32_t jq_gguf_alignment(const jq_gguf *g);

/* ---- metadata */
int64_t jq_gguf_n_kv(const jq_gguf *g);
/* Index of key, or -1. */
int64_t jq_gguf_find_key(const jq_gguf *g, const char *key);
jq_str jq_gguf_kv_key(const jq_gguf *g, int64_t i);
jq_gguf_type jq_gguf_kv_type(const jq_gguf *g, int64_t i);

/* Typed getters by key. They return false when the key is absent or its
 * value cannot be represented in the requested type (wrong type, negative
 * for unsigned, out of range). Any integer type converts to any other when
 * the value fits; float getters accept FLOAT32/FLOAT64. */
bool jq_gguf_get_u32(const jq_gguf *g, const char *key, uint32_t *out);
bool jq_gguf_get_i32(const jq_gguf *g, const char *key, int32_t *out);
bool jq_gguf_get_u64(const jq_gguf *g, const char *key, uint64_t *out);
bool jq_gguf_get_i64(const jq_gguf *g, const char *key, int64_t *out);
bool jq_gguf_get_f32(const jq_gguf *g, const char *key, float *out);
bool jq_gguf_get_f64(const jq_gguf *g, const char *key, double *out);
bool jq_gguf_get_bool(const jq_gguf *g, const char *key, bool *out);
bool jq_gguf_get_str(const jq_gguf *g, const char *key, jq_str *out);

/* Arrays: element type and count. Nested arrays are parsed and validated
 * but their elements are not accessible through these getters. */
bool jq_gguf_get_arr(const jq_gguf *g, const char *key, jq_gguf_type *elem,
                     uint64_t *n);
/* Element i of a string array (checked; false when out of range or the
 * key is not a string array). O(1): offsets are indexed at open. */
bool jq_gguf_arr_str(const jq_gguf *g, const char *key, uint64_t i,
                     jq_str *out);
/* Raw element bytes of a numeric array (little-endian, possibly unaligned:
 * read with memcpy). NULL for non-numeric arrays. */
const void *jq_gguf_arr_data(const jq_gguf *g, const char *key);
/* Converts a numeric array to float / int32 into out[0..n) (n = its
 * length). False when absent, not numeric, or a value does not fit. */
bool jq_gguf_arr_to_f32(const jq_gguf *g, const char *key, float *out,
                        uint64_t n);
bool jq_gguf_arr_to_i32(const jq_gguf *g, const char *key, int32_t *out,
                        uint64_t n);

/* ---- tensors */
int64_t jq_gguf_n_tensors(const jq_gguf *g);
const jq_gguf_tensor *jq_gguf_tensor_at(const jq_gguf *g, int64_t i);
const jq_gguf_tensor *jq_gguf_find_tensor(const jq_gguf *g, const char *name);

/* True when s equals the NUL-terminated c. */
bool jq_str_eq(jq_str s, const char *c);

/* ---------------------------------------------------------------- writer
 *
 * Usage: w = jq_gguf_writer_new(); set metadata; add tensor infos (name,
 * type, shape); jq_gguf_writer_begin(w, path) writes the header; then
 * jq_gguf_writer_write_tensor(w, i, data) for i = 0, 1, ... in order (each
 * exactly the tensor's byte size); jq_gguf_writer_finish(w) pads, flushes and
 * closes. Streaming, so multi-GB models never sit in memory twice. All
 * functions return 0 on success, -1 on error with jq_gguf_writer_error(). */
typedef struct jq_gguf_writer jq_gguf_writer;

jq_gguf_writer *jq_gguf_writer_new(void);
void jq_gguf_writer_free(jq_gguf_writer *w); /* also closes/aborts a file */
const char *jq_gguf_writer_error(const jq_gguf_writer *w);

int jq_gguf_writer_set_u32(jq_gguf_writer *w, const char *key, uint32_t v);
int jq_gguf_writer_set_i32(jq_gguf_writer *w, const char *key, int32_t v);
int jq_gguf_writer_set_u64(jq_gguf_writer *w, const char *key, uint64_t v);
int jq_gguf_writer_set_f32(jq_gguf_writer *w, const char *key, float v);
int jq_gguf_writer_set_bool(jq_gguf_writer *w, const char *key, bool v);
int jq_gguf_writer_set_str(jq_gguf_writer *w, const char *key, const char *v);
int jq_gguf_writer_set_arr_str(jq_gguf_writer *w, const char *key,
                               const char *const *v, uint64_t n);
int jq_gguf_writer_set_arr_f32(jq_gguf_writer *w, const char *key,
                               const float *v, uint64_t n);
int jq_gguf_writer_set_arr_i32(jq_gguf_writer *w, const char *key,
                               const int32_t *v, uint64_t n);
/* Any scalar type (not STRING or ARRAY): v points to one value of that
 * type (a uint8_t 0 or 1 for BOOL). */
int jq_gguf_writer_set_scalar(jq_gguf_writer *w, const char *key,
                              jq_gguf_type type, const void *v);
/* An array of n values of any scalar element type (BOOL elements are
 * uint8_t 0 or 1). */
int jq_gguf_writer_set_arr(jq_gguf_writer *w, const char *key,
                           jq_gguf_type elem, const void *v, uint64_t n);

/* ne[0] is the fastest dimension; returns the tensor's index. */
int jq_gguf_writer_add_tensor(jq_gguf_writer *w, const char *name,
                              uint32_t type, uint32_t n_dims,
                              const int64_t *ne);
/* Byte size of tensor i as it will be written. */
uint64_t jq_gguf_writer_tensor_bytes(const jq_gguf_writer *w, int i);
int jq_gguf_writer_begin(jq_gguf_writer *w, const char *path);
int jq_gguf_writer_write_tensor(jq_gguf_writer *w, int i, const void *data);
int jq_gguf_writer_finish(jq_gguf_writer *w);

#endif
