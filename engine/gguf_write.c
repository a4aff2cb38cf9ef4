/* gguf_write.c — the streaming GGUF v3 writer (see gguf.h).
 *
 * Metadata is serialized into memory as it is set (it is small: the largest
 * is a vocabulary of a few MB); tensor infos are kept as records until
 * jq_gguf_writer_begin() knows all of them and can assign offsets. Tensor
 * data is then streamed straight to the file, one tensor at a time, so a
 * multi-GB model is never held twice.
 *
 * The file is written to PATH.tmp and renamed over PATH by finish() after an
 * fsync, so a reader never sees a half-written model under the final name.
 * Any failed write (ENOSPC, EFBIG, EIO) makes the writer fail for good: the
 * temporary file is removed and every later call returns -1 with the first
 * error.
 */
#include "gguf.h"
#include "kernels.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf_write.c writes host integers as GGUF's little-endian fields"
#endif

#define WRITER_VERSION 3
#define WRITER_BUFFER (1u << 20) /* stdio buffer: few syscalls per tensor */

typedef struct {
    char *name;
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[JQ_GGUF_MAX_DIMS];
    uint64_t nbytes;
    uint64_t offset; /* relative to the data section; set by begin() */
} tensor_rec;

enum writer_state { W_SETUP, W_WRITING, W_DONE, W_FAILED };

struct jq_gguf_writer {
    enum writer_state state;
    char err[512];

    uint8_t *meta; /* serialized KV pairs, in the order they were set */
    size_t meta_len, meta_cap;
    char **keys; /* for duplicate detection */
    int64_t n_kv, keys_cap;
    uint32_t alignment;

    tensor_rec *tensors;
    int n_tensors, tensors_cap;

    FILE *f;
    char *path, *tmp_path;
    uint64_t data_pos; /* bytes of the data section written so far */
    int next_tensor;
};

static int fail(jq_gguf_writer *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int fail(jq_gguf_writer *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(w->err, sizeof w->err, "gguf writer: ");
    vsnprintf(w->err + n, sizeof w->err - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* Closes and removes the temporary file after an error; the writer stays
 * failed. */
static int fail_io(jq_gguf_writer *w, const char *what, int errnum)
{
    fail(w, "%s '%s': %s", what, w->tmp_path, strerror(errnum));
    if (w->f) {
        fclose(w->f);
        w->f = NULL;
    }
    unlink(w->tmp_path);
    w->state = W_FAILED;
    return -1;
}

jq_gguf_writer *jq_gguf_writer_new(void)
{
    jq_gguf_writer *w = calloc(1, sizeof *w);
    if (w)
        w->alignment = JQ_GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void jq_gguf_writer_free(jq_gguf_writer *w)
{
    if (!w)
        return;
    if (w->f) { /* abandoned mid-write: leave nothing behind */
        fclose(w->f);
        unlink(w->tmp_path);
    }
    for (int64_t i = 0; i < w->n_kv; i++)
        free(w->keys[i]);
    free(w->keys);
    free(w->meta);
    for (int i = 0; i < w->n_tensors; i++)
        free(w->tensors[i].name);
    free(w->tensors);
    free(w->path);
    free(w->tmp_path);
    free(w);
}

const char *jq_gguf_writer_error(const jq_gguf_writer *w)
{
    return w ? w->err : "gguf writer: NULL writer";
}

/* ------------------------------------------------------------ metadata */

static int meta_put(jq_gguf_writer *w, const void *p, size_t n)
{
    if (n > SIZE_MAX - w->meta_len)
        return fail(w, "metadata larger than memory");
    if (w->meta_len + n > w->meta_cap) {
        size_t cap = w->meta_cap ? w->meta_cap : 4096;
        while (cap < w->meta_len + n)
            cap = cap > SIZE_MAX / 2 ? w->meta_len + n : cap * 2;
        uint8_t *m = realloc(w->meta, cap);
        if (!m)
            return fail(w, "out of memory for %zu bytes of metadata", cap);
        w->meta = m;
        w->meta_cap = cap;
    }
    if (n)
        memcpy(w->meta + w->meta_len, p, n);
    w->meta_len += n;
    return 0;
}

static int meta_u32(jq_gguf_writer *w, uint32_t v)
{
    return meta_put(w, &v, 4);
}

static int meta_u64(jq_gguf_writer *w, uint64_t v)
{
    return meta_put(w, &v, 8);
}

static int meta_str(jq_gguf_writer *w, const char *s)
{
    size_t n = strlen(s);
    return meta_u64(w, n) || meta_put(w, s, n) ? -1 : 0;
}

/* Checks that a key can be added (writer state, NULL, duplicates),
 * records it and writes its name and type. On failure the metadata buffer
 * is rolled back by the caller through *mark. */
static int begin_kv(jq_gguf_writer *w, const char *key, jq_gguf_type type,
                    size_t *mark)
{
    if (w->state != W_SETUP)
        return fail(w, "key '%s': metadata must be set before "
                    "jq_gguf_writer_begin", key ? key : "(null)");
    if (!key)
        return fail(w, "NULL key");
    for (int64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0)
            return fail(w, "duplicate key '%s'", key);
    if (strcmp(key, "general.alignment") == 0 && type != JQ_GGUF_UINT32)
        return fail(w, "key 'general.alignment' must be a uint32");
    if (w->n_kv == w->keys_cap) {
        int64_t cap = w->keys_cap ? w->keys_cap * 2 : 32;
        char **k = realloc(w->keys, (size_t)cap * sizeof *k);
        if (!k)
            return fail(w, "out of memory for keys");
        w->keys = k;
        w->keys_cap = cap;
    }
    char *copy = strdup(key);
    if (!copy)
        return fail(w, "out of memory for key '%s'", key);
    *mark = w->meta_len;
    if (meta_str(w, key) || meta_u32(w, (uint32_t)type)) {
        free(copy);
        w->meta_len = *mark;
        return -1;
    }
    w->keys[w->n_kv++] = copy;
    return 0;
}

/* Undoes begin_kv after a failure writing the value. */
static int abort_kv(jq_gguf_writer *w, size_t mark)
{
    w->meta_len = mark;
    free(w->keys[--w->n_kv]);
    return -1;
}

static int set_scalar(jq_gguf_writer *w, const char *key, jq_gguf_type type,
                      const void *v, size_t n)
{
    size_t mark;
    if (begin_kv(w, key, type, &mark))
        return -1;
    return meta_put(w, v, n) ? abort_kv(w, mark) : 0;
}

int jq_gguf_writer_set_u32(jq_gguf_writer *w, const char *key, uint32_t v)
{
    if (key && strcmp(key, "general.alignment") == 0) {
        /* The reader needs it to be a power of two; the writer aligns its
         * own offsets to it. */
        if (v == 0 || (v & (v - 1)) != 0)
            return fail(w, "general.alignment %" PRIu32 " is not a non-zero "
                        "power of two", v);
        if (set_scalar(w, key, JQ_GGUF_UINT32, &v, 4))
            return -1;
        w->alignment = v;
        return 0;
    }
    return set_scalar(w, key, JQ_GGUF_UINT32, &v, 4);
}

int jq_gguf_writer_set_i32(jq_gguf_writer *w, const char *key, int32_t v)
{
    return set_scalar(w, key, JQ_GGUF_INT32, &v, 4);
}

int jq_gguf_writer_set_u64(jq_gguf_writer *w, const char *key, uint64_t v)
{
    return set_scalar(w, key, JQ_GGUF_UINT64, &v, 8);
}

int jq_gguf_writer_set_f32(jq_gguf_writer *w, const char *key, float v)
{
    return set_scalar(w, key, JQ_GGUF_FLOAT32, &v, 4);
}

int jq_gguf_writer_set_bool(jq_gguf_writer *w, const char *key, bool v)
{
    uint8_t b = v ? 1 : 0;
    return set_scalar(w, key, JQ_GGUF_BOOL, &b, 1);
}

int jq_gguf_writer_set_str(jq_gguf_writer *w, const char *key, const char *v)
{
    if (!v)
        return fail(w, "key '%s': NULL string", key ? key : "(null)");
    size_t mark;
    if (begin_kv(w, key, JQ_GGUF_STRING, &mark))
        return -1;
    return meta_str(w, v) ? abort_kv(w, mark) : 0;
}

int jq_gguf_writer_set_arr_str(jq_gguf_writer *w, const char *key,
                               const char *const *v, uint64_t n)
{
    if (n && !v)
        return fail(w, "key '%s': NULL array", key ? key : "(null)");
    for (uint64_t i = 0; i < n; i++)
        if (!v[i])
            return fail(w, "key '%s': element %" PRIu64 " is NULL",
                        key ? key : "(null)", i);
    size_t mark;
    if (begin_kv(w, key, JQ_GGUF_ARRAY, &mark))
        return -1;
    if (meta_u32(w, JQ_GGUF_STRING) || meta_u64(w, n))
        return abort_kv(w, mark);
    for (uint64_t i = 0; i < n; i++)
        if (meta_str(w, v[i]))
            return abort_kv(w, mark);
    return 0;
}

static int set_arr_num(jq_gguf_writer *w, const char *key, jq_gguf_type elem,
                       const void *v, uint64_t n, size_t esz)
{
    if (n && !v)
        return fail(w, "key '%s': NULL array", key ? key : "(null)");
    if (n > SIZE_MAX / esz)
        return fail(w, "key '%s': array of %" PRIu64 " elements is too "
                    "large", key ? key : "(null)", n);
    size_t mark;
    if (begin_kv(w, key, JQ_GGUF_ARRAY, &mark))
        return -1;
    if (meta_u32(w, (uint32_t)elem) || meta_u64(w, n) ||
        meta_put(w, v, (size_t)n * esz))
        return abort_kv(w, mark);
    return 0;
}

/* Bytes of one scalar value; 0 for STRING, ARRAY and invalid ids. */
static size_t scalar_size(jq_gguf_type t)
{
    switch (t) {
    case JQ_GGUF_UINT8:
    case JQ_GGUF_INT8:
    case JQ_GGUF_BOOL:
        return 1;
    case JQ_GGUF_UINT16:
    case JQ_GGUF_INT16:
        return 2;
    case JQ_GGUF_UINT32:
    case JQ_GGUF_INT32:
    case JQ_GGUF_FLOAT32:
        return 4;
    case JQ_GGUF_UINT64:
    case JQ_GGUF_INT64:
    case JQ_GGUF_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

int jq_gguf_writer_set_scalar(jq_gguf_writer *w, const char *key,
                              jq_gguf_type type, const void *v)
{
    size_t esz = scalar_size(type);
    if (!esz)
        return fail(w, "key '%s': type %d is not a scalar GGUF type",
                    key ? key : "(null)", (int)type);
    if (!v)
        return fail(w, "key '%s': NULL value", key ? key : "(null)");
    if (type == JQ_GGUF_BOOL && *(const uint8_t *)v > 1)
        return fail(w, "key '%s': bool value %u is not 0 or 1",
                    key ? key : "(null)", *(const uint8_t *)v);
    if (type == JQ_GGUF_UINT32) { /* general.alignment goes through here */
        uint32_t u;
        memcpy(&u, v, 4);
        return jq_gguf_writer_set_u32(w, key, u);
    }
    return set_scalar(w, key, type, v, esz);
}

int jq_gguf_writer_set_arr(jq_gguf_writer *w, const char *key,
                           jq_gguf_type elem, const void *v, uint64_t n)
{
    size_t esz = scalar_size(elem);
    if (!esz)
        return fail(w, "key '%s': array element type %d is not a scalar "
                    "GGUF type", key ? key : "(null)", (int)elem);
    if (elem == JQ_GGUF_BOOL)
        for (uint64_t i = 0; i < n && v; i++)
            if (((const uint8_t *)v)[i] > 1)
                return fail(w, "key '%s': bool element %" PRIu64 " is %u, "
                            "not 0 or 1", key ? key : "(null)", i,
                            ((const uint8_t *)v)[i]);
    return set_arr_num(w, key, elem, v, n, esz);
}

int jq_gguf_writer_set_arr_f32(jq_gguf_writer *w, const char *key,
                               const float *v, uint64_t n)
{
    return set_arr_num(w, key, JQ_GGUF_FLOAT32, v, n, 4);
}

int jq_gguf_writer_set_arr_i32(jq_gguf_writer *w, const char *key,
                               const int32_t *v, uint64_t n)
{
    return set_arr_num(w, key, JQ_GGUF_INT32, v, n, 4);
}

/* ------------------------------------------------------------ tensors */

int jq_gguf_writer_add_tensor(jq_gguf_writer *w, const char *name,
                              uint32_t type, uint32_t n_dims,
                              const int64_t *ne)
{
    if (w->state != W_SETUP)
        return fail(w, "tensor '%s': tensors must be added before "
                    "jq_gguf_writer_begin", name ? name : "(null)");
    if (!name)
        return fail(w, "NULL tensor name");
    if (n_dims > JQ_GGUF_MAX_DIMS)
        return fail(w, "tensor '%s': n_dims %" PRIu32 " exceeds %d", name,
                    n_dims, JQ_GGUF_MAX_DIMS);
    if (n_dims && !ne)
        return fail(w, "tensor '%s': NULL shape", name);
    const jq_type_traits *tt = jq_type_traits_get(type);
    if (!tt || !tt->block_size || !tt->type_size)
        return fail(w, "tensor '%s': unknown type id %" PRIu32, name, type);
    for (int i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return fail(w, "duplicate tensor name '%s'", name);
    if (w->n_tensors == INT_MAX)
        return fail(w, "too many tensors");

    tensor_rec t = {.type = type, .n_dims = n_dims};
    for (int d = 0; d < JQ_GGUF_MAX_DIMS; d++)
        t.ne[d] = d < (int)n_dims ? ne[d] : 1;
    uint64_t nbytes;
    for (int d = 0; d < JQ_GGUF_MAX_DIMS; d++) {
        if (t.ne[d] < 0)
            return fail(w, "tensor '%s': ne[%d] = %" PRId64 " is negative",
                        name, d, t.ne[d]);
    }
    if (t.ne[0] % tt->block_size)
        return fail(w, "tensor '%s': ne[0] = %" PRId64 " is not a multiple "
                    "of the block size %" PRIu32 " of %s",
                    name, t.ne[0], tt->block_size, tt->name);
    /* Same arithmetic as the reader: blocks per row times rows, checked. */
    int64_t nelem = 1;
    bool zero = false, overflow = false;
    for (int d = 0; d < JQ_GGUF_MAX_DIMS; d++) {
        zero |= t.ne[d] == 0;
        overflow |= __builtin_mul_overflow(nelem, t.ne[d], &nelem);
    }
    if (zero) {
        nbytes = 0;
    } else if (overflow ||
               __builtin_mul_overflow((uint64_t)t.ne[0] / tt->block_size,
                                      (uint64_t)tt->type_size, &nbytes) ||
               __builtin_mul_overflow(nbytes,
                                      (uint64_t)(t.ne[1] * t.ne[2] * t.ne[3]),
                                      &nbytes)) {
        return fail(w, "tensor '%s': size overflows", name);
    }
    t.nbytes = nbytes;

    if (w->n_tensors == w->tensors_cap) {
        int cap = !w->tensors_cap              ? 64
                  : w->tensors_cap > INT_MAX / 2 ? INT_MAX
                                                 : w->tensors_cap * 2;
        tensor_rec *tr = realloc(w->tensors, (size_t)cap * sizeof *tr);
        if (!tr)
            return fail(w, "out of memory for tensor infos");
        w->tensors = tr;
        w->tensors_cap = cap;
    }
    t.name = strdup(name);
    if (!t.name)
        return fail(w, "out of memory for tensor '%s'", name);
    w->tensors[w->n_tensors] = t;
    return w->n_tensors++;
}

uint64_t jq_gguf_writer_tensor_bytes(const jq_gguf_writer *w, int i)
{
    if (!w || i < 0 || i >= w->n_tensors)
        return 0;
    return w->tensors[i].nbytes;
}

/* ------------------------------------------------------------ file */

static int put(jq_gguf_writer *w, const void *p, size_t n)
{
    errno = 0;
    if (n && fwrite(p, 1, n, w->f) != n)
        return fail_io(w, "writing", errno ? errno : EIO);
    return 0;
}

static int put_zeros(jq_gguf_writer *w, uint64_t n)
{
    static const uint8_t zeros[256];
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (put(w, zeros, k))
            return -1;
        n -= k;
    }
    return 0;
}

static uint64_t align_up(uint64_t x, uint32_t a)
{
    return (x + a - 1) & ~(uint64_t)(a - 1);
}

int jq_gguf_writer_begin(jq_gguf_writer *w, const char *path)
{
    if (w->state != W_SETUP)
        return fail(w, "jq_gguf_writer_begin called twice");
    if (!path)
        return fail(w, "NULL path");

    /* Offsets: each tensor starts at the next aligned position. */
    uint64_t off = 0;
    for (int i = 0; i < w->n_tensors; i++) {
        tensor_rec *t = &w->tensors[i];
        t->offset = off;
        if (t->nbytes > UINT64_MAX - off - w->alignment)
            return fail(w, "tensor '%s': data section exceeds 2^64 bytes",
                        t->name);
        off = align_up(off + t->nbytes, w->alignment);
    }

    size_t plen = strlen(path);
    w->path = strdup(path);
    w->tmp_path = malloc(plen + 5);
    if (!w->path || !w->tmp_path)
        return fail(w, "out of memory");
    memcpy(w->tmp_path, path, plen);
    memcpy(w->tmp_path + plen, ".tmp", 5);

    w->f = fopen(w->tmp_path, "wb");
    if (!w->f)
        return fail_io(w, "creating", errno);
    setvbuf(w->f, NULL, _IOFBF, WRITER_BUFFER);
    w->state = W_WRITING;

    uint32_t version = WRITER_VERSION;
    uint64_t n_tensors = (uint64_t)w->n_tensors, n_kv = (uint64_t)w->n_kv;
    uint64_t header_len = 4 + 4 + 8 + 8 + w->meta_len;
    if (put(w, JQ_GGUF_MAGIC, 4) || put(w, &version, 4) ||
        put(w, &n_tensors, 8) || put(w, &n_kv, 8) ||
        put(w, w->meta, w->meta_len))
        return -1;
    for (int i = 0; i < w->n_tensors; i++) {
        const tensor_rec *t = &w->tensors[i];
        uint64_t nlen = strlen(t->name);
        if (put(w, &nlen, 8) || put(w, t->name, (size_t)nlen) ||
            put(w, &t->n_dims, 4) || put(w, t->ne, 8 * (size_t)t->n_dims) ||
            put(w, &t->type, 4) || put(w, &t->offset, 8))
            return -1;
        header_len += 8 + nlen + 4 + 8 * (uint64_t)t->n_dims + 4 + 8;
    }
    if (put_zeros(w, align_up(header_len, w->alignment) - header_len))
        return -1;
    w->data_pos = 0;
    w->next_tensor = 0;
    return 0;
}

int jq_gguf_writer_write_tensor(jq_gguf_writer *w, int i, const void *data)
{
    if (w->state != W_WRITING)
        return fail(w, "write_tensor(%d): %s", i,
                    w->state == W_SETUP ? "jq_gguf_writer_begin not called"
                    : w->state == W_DONE ? "writer already finished"
                                         : "writer failed earlier");
    if (i != w->next_tensor)
        return fail(w, "write_tensor(%d): tensors must be written in order; "
                    "expected %d", i, w->next_tensor);
    if (i >= w->n_tensors)
        return fail(w, "write_tensor(%d): only %d tensors", i, w->n_tensors);
    const tensor_rec *t = &w->tensors[i];
    if (!data && t->nbytes)
        return fail(w, "tensor '%s': NULL data", t->name);
    if (put_zeros(w, t->offset - w->data_pos) ||
        put(w, data, (size_t)t->nbytes))
        return -1;
    w->data_pos = t->offset + t->nbytes;
    w->next_tensor++;
    return 0;
}

int jq_gguf_writer_finish(jq_gguf_writer *w)
{
    if (w->state != W_WRITING)
        return fail(w, "finish: %s",
                    w->state == W_SETUP ? "jq_gguf_writer_begin not called"
                    : w->state == W_DONE ? "writer already finished"
                                         : "writer failed earlier");
    if (w->next_tensor != w->n_tensors)
        return fail(w, "finish: %d of %d tensors written (next '%s')",
                    w->next_tensor, w->n_tensors,
                    w->tensors[w->next_tensor].name);
    /* ggml pads after the last tensor too, so the data section is a whole
     * number of alignment units. */
    if (put_zeros(w, align_up(w->data_pos, w->alignment) - w->data_pos))
        return -1;
    if (fflush(w->f) != 0)
        return fail_io(w, "writing", errno);
    if (fsync(fileno(w->f)) != 0 && errno != EINVAL)
        return fail_io(w, "syncing", errno);
    int rc = fclose(w->f);
    w->f = NULL;
    if (rc != 0)
        return fail_io(w, "closing", errno);
    if (rename(w->tmp_path, w->path) != 0) {
        int e = errno;
        unlink(w->tmp_path);
        w->state = W_FAILED;
        return fail(w, "renaming '%s' to '%s': %s", w->tmp_path, w->path,
                    strerror(e));
    }
    w->state = W_DONE;
    return 0;
}
