/* test_gguf.c — the GGUF reader and writer.
 *
 * Round trips through the writer, every truncation and many byte flips of
 * small valid files (each opened from a malloc'd buffer of exactly the
 * file's length, so ASan catches any read past it), hand-crafted corrupt
 * files with the error each must give, the typed getters' conversions, and
 * the real model and vocabulary files.
 */
#include "testutil.h"

#include "gguf.h"
#include "kernels.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers */

/* A growable byte buffer to hand-craft files with. */
typedef struct {
    uint8_t *p;
    size_t len, cap;
} bb;

static void bb_raw(bb *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}
static void bb_u8(bb *b, uint8_t v) { bb_raw(b, &v, 1); }
static void bb_u16(bb *b, uint16_t v) { bb_raw(b, &v, 2); }
static void bb_u32(bb *b, uint32_t v) { bb_raw(b, &v, 4); }
static void bb_u64(bb *b, uint64_t v) { bb_raw(b, &v, 8); }
static void bb_i64(bb *b, int64_t v) { bb_raw(b, &v, 8); }
static void bb_f32(bb *b, float v) { bb_raw(b, &v, 4); }
static void bb_f64(bb *b, double v) { bb_raw(b, &v, 8); }
static void bb_str(bb *b, const char *s)
{
    bb_u64(b, strlen(s));
    bb_raw(b, s, strlen(s));
}
static void bb_header(bb *b, uint32_t version, uint64_t n_tensors,
                      uint64_t n_kv)
{
    bb_raw(b, "GGUF", 4);
    bb_u32(b, version);
    bb_u64(b, n_tensors);
    bb_u64(b, n_kv);
}
/* Key name + value type. */
static void bb_key(bb *b, const char *key, jq_gguf_type type)
{
    bb_str(b, key);
    bb_u32(b, type);
}
static void bb_tensor(bb *b, const char *name, uint32_t n_dims,
                      const int64_t *ne, uint32_t type, uint64_t offset)
{
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        bb_i64(b, ne[d]);
    bb_u32(b, type);
    bb_u64(b, offset);
}
static void bb_pad(bb *b, size_t align)
{
    while (b->len % align)
        bb_u8(b, 0);
}
static void bb_fill(bb *b, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        bb_u8(b, (uint8_t)(seed + i * 7));
}

/* A private copy of exactly len bytes, so reads past the end hit ASan's
 * redzone. */
static uint8_t *exact_copy(const void *p, size_t len)
{
    uint8_t *c = malloc(len ? len : 1);
    assert_non_null(c);
    if (len)
        memcpy(c, p, len);
    return c;
}

static void expect_fail_at(const void *data, size_t len, const char *frag,
                           int line)
{
    uint8_t *copy = exact_copy(data, len);
    char err[1024] = "";
    jq_gguf *g = jq_gguf_open_buffer(copy, len, err, sizeof err);
    if (g) {
        jq_gguf_close(g);
        free(copy);
        fail_msg("line %d: corrupt file opened (expected '%s')", line, frag);
    }
    free(copy);
    if (!strstr(err, frag))
        fail_msg("line %d: error \"%s\" does not contain \"%s\"", line, err,
                 frag);
}
#define expect_fail(b, frag) expect_fail_at((b)->p, (b)->len, frag, __LINE__)

static jq_gguf *open_ok_at(const bb *b, int line)
{
    char err[1024] = "";
    jq_gguf *g = jq_gguf_open_buffer(b->p, b->len, err, sizeof err);
    if (!g)
        fail_msg("line %d: open failed: %s", line, err);
    return g;
}
#define open_ok(b) open_ok_at(b, __LINE__)

static size_t elem_size(jq_gguf_type t)
{
    switch (t) {
    case JQ_GGUF_UINT8: case JQ_GGUF_INT8: case JQ_GGUF_BOOL: return 1;
    case JQ_GGUF_UINT16: case JQ_GGUF_INT16: return 2;
    case JQ_GGUF_UINT32: case JQ_GGUF_INT32: case JQ_GGUF_FLOAT32: return 4;
    case JQ_GGUF_UINT64: case JQ_GGUF_INT64: case JQ_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* Every pointer an accessor returns must lie inside the file. Reading the
 * bytes (summed so the compiler keeps the loads) lets ASan check it too. */
static uint64_t touch(const jq_gguf *g, const void *p, uint64_t n)
{
    const uint8_t *lo = jq_gguf_file_data(g);
    size_t size = jq_gguf_file_size(g);
    uintptr_t a = (uintptr_t)p, base = (uintptr_t)lo;
    assert_true(n == 0 || (a >= base && a - base <= size &&
                           n <= size - (a - base)));
    uint64_t s = 0;
    for (uint64_t i = 0; i < n; i++)
        s += ((const uint8_t *)p)[i];
    return s;
}

static char *cstr(jq_str s)
{
    char *c = malloc(s.len + 1);
    assert_non_null(c);
    if (s.len)
        memcpy(c, s.ptr, s.len);
    c[s.len] = '\0';
    return c;
}

/* Calls every accessor on every key and tensor. */
static uint64_t walk_all(const jq_gguf *g)
{
    uint64_t sum = 0;
    int64_t n_kv = jq_gguf_n_kv(g);
    assert_true(n_kv >= 0);
    for (int64_t i = 0; i < n_kv; i++) {
        jq_str k = jq_gguf_kv_key(g, i);
        sum += touch(g, k.ptr, k.len);
        jq_gguf_type type = jq_gguf_kv_type(g, i);
        assert_true(type < JQ_GGUF_TYPE_COUNT_);
        char *key = cstr(k);
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        float f;
        bool b;
        jq_str s;
        sum += jq_gguf_get_u32(g, key, &u32) ? u32 : 0;
        sum += jq_gguf_get_i32(g, key, &i32) ? (uint64_t)i32 : 0;
        sum += jq_gguf_get_u64(g, key, &u64) ? u64 : 0;
        sum += jq_gguf_get_f32(g, key, &f) ? (f > 0) : 0;
        sum += jq_gguf_get_bool(g, key, &b) ? b : 0;
        if (jq_gguf_get_str(g, key, &s))
            sum += touch(g, s.ptr, s.len);
        jq_gguf_type elem;
        uint64_t n;
        if (jq_gguf_get_arr(g, key, &elem, &n)) {
            assert_true(elem < JQ_GGUF_TYPE_COUNT_);
            if (elem == JQ_GGUF_STRING) {
                for (uint64_t j = 0; j < n; j++) {
                    assert_true(jq_gguf_arr_str(g, key, j, &s));
                    sum += touch(g, s.ptr, s.len);
                }
            }
            assert_false(jq_gguf_arr_str(g, key, n, &s));
            const void *data = jq_gguf_arr_data(g, key);
            if (data) {
                assert_true(elem_size(elem) > 0);
                sum += touch(g, data, n * elem_size(elem));
                float *fo = malloc(n * sizeof *fo + 1);
                int32_t *io = malloc(n * sizeof *io + 1);
                sum += jq_gguf_arr_to_f32(g, key, fo, n);
                sum += jq_gguf_arr_to_i32(g, key, io, n);
                free(fo);
                free(io);
            } else {
                assert_true(elem == JQ_GGUF_STRING || elem == JQ_GGUF_ARRAY);
                assert_false(jq_gguf_arr_to_f32(g, key, NULL, n));
            }
        }
        free(key);
    }
    assert_int_equal(jq_gguf_kv_key(g, n_kv).len, 0);
    assert_null(jq_gguf_kv_key(g, -1).ptr);

    int64_t n_t = jq_gguf_n_tensors(g);
    assert_true(n_t >= 0);
    for (int64_t i = 0; i < n_t; i++) {
        const jq_gguf_tensor *t = jq_gguf_tensor_at(g, i);
        assert_non_null(t);
        sum += touch(g, t->name.ptr, t->name.len);
        assert_true(t->n_dims <= JQ_GGUF_MAX_DIMS);
        int64_t nel = 1;
        for (int d = 0; d < JQ_GGUF_MAX_DIMS; d++) {
            assert_true(t->ne[d] >= 0);
            assert_false(__builtin_mul_overflow(nel, t->ne[d], &nel));
        }
        assert_non_null(jq_type_traits_get(t->type));
        assert_int_equal(t->offset % jq_gguf_alignment(g), 0);
        sum += touch(g, t->data, t->nbytes);
        char *name = cstr(t->name);
        const jq_gguf_tensor *ft = jq_gguf_find_tensor(g, name);
        if (strlen(name) == t->name.len)
            assert_ptr_equal(ft, t);
        free(name);
    }
    assert_null(jq_gguf_tensor_at(g, n_t));
    assert_null(jq_gguf_tensor_at(g, -1));
    return sum;
}

/* A small file with every value type, nested arrays, string arrays and two
 * tensors, the last ending exactly at the end of the file (so no proper
 * prefix is a valid file). */
static void build_rich(bb *b)
{
    bb_header(b, 3, 2, 19);
    bb_key(b, "general.architecture", JQ_GGUF_STRING);
    bb_str(b, "llama");
    bb_key(b, "a.u8", JQ_GGUF_UINT8);
    bb_u8(b, 200);
    bb_key(b, "a.i8", JQ_GGUF_INT8);
    bb_u8(b, (uint8_t)-100);
    bb_key(b, "a.u16", JQ_GGUF_UINT16);
    bb_u16(b, 60000);
    bb_key(b, "a.i16", JQ_GGUF_INT16);
    bb_u16(b, (uint16_t)-30000);
    bb_key(b, "a.u32", JQ_GGUF_UINT32);
    bb_u32(b, 4000000000u);
    bb_key(b, "a.i32", JQ_GGUF_INT32);
    bb_u32(b, (uint32_t)-2000000000);
    bb_key(b, "a.f32", JQ_GGUF_FLOAT32);
    bb_f32(b, 0.5f);
    bb_key(b, "a.bool", JQ_GGUF_BOOL);
    bb_u8(b, 1);
    bb_key(b, "a.u64", JQ_GGUF_UINT64);
    bb_u64(b, UINT64_MAX);
    bb_key(b, "a.i64", JQ_GGUF_INT64);
    bb_i64(b, INT64_MIN);
    bb_key(b, "a.f64", JQ_GGUF_FLOAT64);
    bb_f64(b, -0.25);
    bb_key(b, "a.empty", JQ_GGUF_STRING);
    bb_str(b, "");
    bb_key(b, "tokenizer.ggml.tokens", JQ_GGUF_ARRAY);
    bb_u32(b, JQ_GGUF_STRING);
    bb_u64(b, 4);
    bb_str(b, "<unk>");
    bb_str(b, "<s>");
    bb_str(b, "");
    bb_str(b, "hello");
    bb_key(b, "a.arr_i16", JQ_GGUF_ARRAY);
    bb_u32(b, JQ_GGUF_INT16);
    bb_u64(b, 3);
    bb_u16(b, 1);
    bb_u16(b, (uint16_t)-2);
    bb_u16(b, 3);
    bb_key(b, "a.arr_bool", JQ_GGUF_ARRAY);
    bb_u32(b, JQ_GGUF_BOOL);
    bb_u64(b, 3);
    bb_u8(b, 0);
    bb_u8(b, 1);
    bb_u8(b, 1);
    bb_key(b, "a.nested", JQ_GGUF_ARRAY);
    bb_u32(b, JQ_GGUF_ARRAY);
    bb_u64(b, 2);
    bb_u32(b, JQ_GGUF_UINT8);
    bb_u64(b, 2);
    bb_u8(b, 1);
    bb_u8(b, 2);
    bb_u32(b, JQ_GGUF_STRING);
    bb_u64(b, 1);
    bb_str(b, "x");
    bb_key(b, "a.empty_arr", JQ_GGUF_ARRAY);
    bb_u32(b, JQ_GGUF_FLOAT64);
    bb_u64(b, 0);
    bb_key(b, "general.alignment", JQ_GGUF_UINT32);
    bb_u32(b, 32);
    bb_tensor(b, "t0", 2, (int64_t[]){4, 2}, JQ_TYPE_F32, 0);
    bb_tensor(b, "t1", 1, (int64_t[]){32}, JQ_TYPE_Q8_0, 32);
    bb_pad(b, 32);
    bb_fill(b, 32, 1);
    bb_fill(b, 34, 2);
}

/* ------------------------------------------------------------ writer */

static char *tmp_file(const char *name)
{
    return jqt_fmt("%s/%s", jqt_tmpdir(), name);
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

typedef struct {
    const char *name;
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[4];
} tspec;

static const tspec rt_tensors[] = {
    {"token_embd.weight", JQ_TYPE_F32, 2, {8, 3, 1, 1}},
    {"a.f16", JQ_TYPE_F16, 1, {13, 1, 1, 1}}, /* 26 bytes: padding after */
    {"blk.0.bf16", JQ_TYPE_BF16, 3, {4, 2, 3, 1}},
    {"empty", JQ_TYPE_F32, 2, {0, 5, 1, 1}},
    {"q8", JQ_TYPE_Q8_0, 2, {64, 3, 1, 1}},
    {"four.d", JQ_TYPE_F32, 4, {2, 3, 1, 2}},
    {"odd", JQ_TYPE_F32, 1, {5, 1, 1, 1}},
};
#define N_RT (sizeof rt_tensors / sizeof rt_tensors[0])

static uint8_t *tensor_bytes(size_t n, unsigned seed)
{
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed * 31 + i * 13 + (i >> 8));
    return p;
}

static const char *const rt_strs[] = {"alpha", "", "gamma with space",
                                      "\xe2\x96\x81utf8"};
static const float rt_f32[] = {1.5f, -2.25f, 0.0f, 1e30f};
static const int32_t rt_i32[] = {INT32_MIN, -1, 0, INT32_MAX};

/* Writes every metadata type and the rt_tensors; returns the path. */
static char *write_roundtrip(const char *file, uint32_t alignment)
{
    char *path = tmp_file(file);
    jq_gguf_writer *w = jq_gguf_writer_new();
    assert_non_null(w);
#define OK(call) \
    do { if ((call) != 0) fail_msg("%s: %s", #call, jq_gguf_writer_error(w)); } while (0)
    OK(jq_gguf_writer_set_str(w, "general.architecture", "llama"));
    if (alignment)
        OK(jq_gguf_writer_set_u32(w, "general.alignment", alignment));
    uint8_t u8 = 250, bl = 1;
    int8_t i8 = -7;
    uint16_t u16 = 65535;
    int16_t i16 = -32768;
    int64_t i64 = INT64_MIN + 1;
    double f64 = 3.141592653589793;
    OK(jq_gguf_writer_set_scalar(w, "v.u8", JQ_GGUF_UINT8, &u8));
    OK(jq_gguf_writer_set_scalar(w, "v.i8", JQ_GGUF_INT8, &i8));
    OK(jq_gguf_writer_set_scalar(w, "v.u16", JQ_GGUF_UINT16, &u16));
    OK(jq_gguf_writer_set_scalar(w, "v.i16", JQ_GGUF_INT16, &i16));
    OK(jq_gguf_writer_set_u32(w, "v.u32", 4294967295u));
    OK(jq_gguf_writer_set_i32(w, "v.i32", -5));
    OK(jq_gguf_writer_set_f32(w, "v.f32", 0.1f));
    OK(jq_gguf_writer_set_bool(w, "v.bool", true));
    OK(jq_gguf_writer_set_scalar(w, "v.bool2", JQ_GGUF_BOOL, &bl));
    OK(jq_gguf_writer_set_bool(w, "v.false", false));
    OK(jq_gguf_writer_set_u64(w, "v.u64", UINT64_MAX));
    OK(jq_gguf_writer_set_scalar(w, "v.i64", JQ_GGUF_INT64, &i64));
    OK(jq_gguf_writer_set_scalar(w, "v.f64", JQ_GGUF_FLOAT64, &f64));
    OK(jq_gguf_writer_set_str(w, "v.str", "hello, world"));
    OK(jq_gguf_writer_set_str(w, "v.empty_str", ""));
    OK(jq_gguf_writer_set_arr_str(w, "v.arr_str", rt_strs, 4));
    OK(jq_gguf_writer_set_arr_str(w, "v.arr_str_empty", NULL, 0));
    OK(jq_gguf_writer_set_arr_f32(w, "v.arr_f32", rt_f32, 4));
    OK(jq_gguf_writer_set_arr_f32(w, "v.arr_f32_empty", NULL, 0));
    OK(jq_gguf_writer_set_arr_i32(w, "v.arr_i32", rt_i32, 4));
    uint16_t a16[3] = {1, 2, 65535};
    uint8_t abool[2] = {1, 0};
    double af64[2] = {-1.0, 2.5};
    OK(jq_gguf_writer_set_arr(w, "v.arr_u16", JQ_GGUF_UINT16, a16, 3));
    OK(jq_gguf_writer_set_arr(w, "v.arr_bool", JQ_GGUF_BOOL, abool, 2));
    OK(jq_gguf_writer_set_arr(w, "v.arr_f64", JQ_GGUF_FLOAT64, af64, 2));
    for (size_t i = 0; i < N_RT; i++) {
        const tspec *t = &rt_tensors[i];
        assert_int_equal(jq_gguf_writer_add_tensor(w, t->name, t->type,
                                                   t->n_dims, t->ne),
                         (int)i);
    }
    char *tmp = jqt_fmt("%s.tmp", path);
    OK(jq_gguf_writer_begin(w, path));
    assert_true(file_exists(tmp));
    for (size_t i = 0; i < N_RT; i++) {
        size_t n = jq_gguf_writer_tensor_bytes(w, (int)i);
        uint8_t *data = tensor_bytes(n, (unsigned)i);
        OK(jq_gguf_writer_write_tensor(w, (int)i, data));
        free(data);
    }
    assert_false(file_exists(path)); /* appears only when complete */
    OK(jq_gguf_writer_finish(w));
#undef OK
    assert_true(file_exists(path));
    assert_false(file_exists(tmp));
    free(tmp);
    jq_gguf_writer_free(w);
    return path;
}

static void check_roundtrip(const jq_gguf *g, uint32_t alignment)
{
    assert_int_equal(jq_gguf_version(g), 3);
    assert_int_equal(jq_gguf_alignment(g), alignment);
    jq_str s;
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    float f;
    bool b;

    assert_true(jq_gguf_get_str(g, "general.architecture", &s));
    assert_true(jq_str_eq(s, "llama"));
    /* key order preserved */
    const char *order[] = {"general.architecture", "v.u8", "v.i8", "v.u16"};
    int first = alignment != 32 ? 2 : 1; /* general.alignment is #1 */
    assert_true(jq_str_eq(jq_gguf_kv_key(g, 0), order[0]));
    for (int i = 1; i < 4; i++) {
        assert_true(jq_str_eq(jq_gguf_kv_key(g, first + i - 1), order[i]));
        assert_int_equal(jq_gguf_find_key(g, order[i]), first + i - 1);
    }
    assert_int_equal(jq_gguf_n_kv(g), 24 + (alignment != 32));

    assert_int_equal(jq_gguf_kv_type(g, jq_gguf_find_key(g, "v.u8")),
                     JQ_GGUF_UINT8);
    assert_true(jq_gguf_get_u32(g, "v.u8", &u32) && u32 == 250);
    assert_int_equal(jq_gguf_kv_type(g, jq_gguf_find_key(g, "v.i8")),
                     JQ_GGUF_INT8);
    assert_true(jq_gguf_get_i32(g, "v.i8", &i32) && i32 == -7);
    assert_int_equal(jq_gguf_kv_type(g, jq_gguf_find_key(g, "v.u16")),
                     JQ_GGUF_UINT16);
    assert_true(jq_gguf_get_u32(g, "v.u16", &u32) && u32 == 65535);
    assert_int_equal(jq_gguf_kv_type(g, jq_gguf_find_key(g, "v.i16")),
                     JQ_GGUF_INT16);
    assert_true(jq_gguf_get_i32(g, "v.i16", &i32) && i32 == -32768);
    assert_true(jq_gguf_get_u32(g, "v.u32", &u32) && u32 == 4294967295u);
    assert_true(jq_gguf_get_i32(g, "v.i32", &i32) && i32 == -5);
    assert_true(jq_gguf_get_f32(g, "v.f32", &f) && f == 0.1f);
    assert_true(jq_gguf_get_bool(g, "v.bool", &b) && b);
    assert_true(jq_gguf_get_bool(g, "v.bool2", &b) && b);
    assert_true(jq_gguf_get_bool(g, "v.false", &b) && !b);
    assert_true(jq_gguf_get_u64(g, "v.u64", &u64) && u64 == UINT64_MAX);
    assert_int_equal(jq_gguf_kv_type(g, jq_gguf_find_key(g, "v.i64")),
                     JQ_GGUF_INT64);
    assert_false(jq_gguf_get_i32(g, "v.i64", &i32));
    int64_t i64;
    assert_true(jq_gguf_get_i64(g, "v.i64", &i64) && i64 == INT64_MIN + 1);
    assert_int_equal(jq_gguf_kv_type(g, jq_gguf_find_key(g, "v.f64")),
                     JQ_GGUF_FLOAT64);
    double d;
    assert_true(jq_gguf_get_f64(g, "v.f64", &d) && d == 3.141592653589793);
    assert_true(jq_gguf_get_f32(g, "v.f64", &f) &&
                f == (float)3.141592653589793);
    assert_true(jq_gguf_get_str(g, "v.str", &s) &&
                jq_str_eq(s, "hello, world"));
    assert_true(jq_gguf_get_str(g, "v.empty_str", &s) && s.len == 0);

    jq_gguf_type elem;
    uint64_t n;
    assert_true(jq_gguf_get_arr(g, "v.arr_str", &elem, &n));
    assert_int_equal(elem, JQ_GGUF_STRING);
    assert_int_equal(n, 4);
    for (uint64_t i = 0; i < 4; i++) {
        assert_true(jq_gguf_arr_str(g, "v.arr_str", i, &s));
        assert_true(jq_str_eq(s, rt_strs[i]));
    }
    assert_true(jq_gguf_get_arr(g, "v.arr_str_empty", &elem, &n));
    assert_int_equal(elem, JQ_GGUF_STRING);
    assert_int_equal(n, 0);
    assert_false(jq_gguf_arr_str(g, "v.arr_str_empty", 0, &s));

    float fo[4];
    int32_t io[4];
    assert_true(jq_gguf_get_arr(g, "v.arr_f32", &elem, &n));
    assert_int_equal(elem, JQ_GGUF_FLOAT32);
    assert_int_equal(n, 4);
    assert_true(jq_gguf_arr_to_f32(g, "v.arr_f32", fo, 4));
    assert_memory_equal(fo, rt_f32, sizeof rt_f32);
    assert_memory_equal(jq_gguf_arr_data(g, "v.arr_f32"), rt_f32,
                        sizeof rt_f32);
    assert_true(jq_gguf_get_arr(g, "v.arr_f32_empty", &elem, &n));
    assert_int_equal(n, 0);
    assert_true(jq_gguf_arr_to_f32(g, "v.arr_f32_empty", fo, 0));
    assert_true(jq_gguf_get_arr(g, "v.arr_i32", &elem, &n));
    assert_int_equal(elem, JQ_GGUF_INT32);
    assert_true(jq_gguf_arr_to_i32(g, "v.arr_i32", io, 4));
    assert_memory_equal(io, rt_i32, sizeof rt_i32);
    assert_true(jq_gguf_get_arr(g, "v.arr_u16", &elem, &n));
    assert_int_equal(elem, JQ_GGUF_UINT16);
    assert_true(jq_gguf_arr_to_i32(g, "v.arr_u16", io, 3));
    assert_true(io[0] == 1 && io[1] == 2 && io[2] == 65535);
    assert_true(jq_gguf_get_arr(g, "v.arr_bool", &elem, &n));
    assert_int_equal(elem, JQ_GGUF_BOOL);
    assert_true(jq_gguf_arr_to_i32(g, "v.arr_bool", io, 2));
    assert_true(io[0] == 1 && io[1] == 0);
    assert_true(jq_gguf_arr_to_f32(g, "v.arr_f64", fo, 2));
    assert_true(fo[0] == -1.0f && fo[1] == 2.5f);

    /* tensors: shapes, types, aligned offsets, data */
    assert_int_equal(jq_gguf_n_tensors(g), N_RT);
    const uint8_t *base = jq_gguf_file_data(g);
    uint64_t end = 0;
    for (size_t i = 0; i < N_RT; i++) {
        const tspec *ts = &rt_tensors[i];
        const jq_gguf_tensor *t = jq_gguf_tensor_at(g, (int64_t)i);
        assert_non_null(t);
        assert_ptr_equal(jq_gguf_find_tensor(g, ts->name), t);
        assert_true(jq_str_eq(t->name, ts->name));
        assert_int_equal(t->n_dims, ts->n_dims);
        assert_int_equal(t->type, ts->type);
        for (int d = 0; d < 4; d++)
            assert_int_equal(t->ne[d], ts->ne[d]);
        int64_t nel = ts->ne[0] * ts->ne[1] * ts->ne[2] * ts->ne[3];
        const jq_type_traits *tt = jq_type_traits_get(ts->type);
        assert_int_equal(t->nbytes,
                         (uint64_t)nel / tt->block_size * tt->type_size);
        assert_int_equal(t->offset % alignment, 0);
        assert_int_equal(((const uint8_t *)t->data - base) % alignment, 0);
        assert_true(t->offset >= end); /* in order, no overlap */
        end = t->offset + t->nbytes;
        uint8_t *want = tensor_bytes(t->nbytes, (unsigned)i);
        if (t->nbytes)
            assert_memory_equal(t->data, want, t->nbytes);
        free(want);
    }
    /* the data section ends padded to the alignment */
    const jq_gguf_tensor *last = jq_gguf_tensor_at(g, N_RT - 1);
    size_t data_end = (size_t)((const uint8_t *)last->data - base) +
                      last->nbytes;
    assert_int_equal(jq_gguf_file_size(g),
                     (data_end + alignment - 1) / alignment * alignment);
    assert_null(jq_gguf_find_tensor(g, "nope"));
    walk_all(g);
}

static void test_roundtrip(void **state)
{
    (void)state;
    char err[512];
    char *path = write_roundtrip("rt.gguf", 0);
    jq_gguf *g = jq_gguf_open(path, err, sizeof err);
    if (!g)
        fail_msg("%s", err);
    check_roundtrip(g, 32);
    jq_gguf_close(g);

    /* the same bytes through a caller's buffer, and as version 2 */
    size_t len;
    char *bytes = jqt_read_file(path, &len);
    assert_non_null(bytes);
    g = jq_gguf_open_buffer(bytes, len, err, sizeof err);
    if (!g)
        fail_msg("%s", err);
    check_roundtrip(g, 32);
    jq_gguf_close(g);
    bytes[4] = 2;
    g = jq_gguf_open_buffer(bytes, len, err, sizeof err);
    if (!g)
        fail_msg("%s", err);
    assert_int_equal(jq_gguf_version(g), 2);
    jq_gguf_close(g);
    free(bytes);
    free(path);

    path = write_roundtrip("rt64.gguf", 64);
    g = jq_gguf_open(path, err, sizeof err);
    if (!g)
        fail_msg("%s", err);
    check_roundtrip(g, 64);
    jq_gguf_close(g);
    free(path);
}

/* A writer file with no tensors and no metadata is still valid. */
static void test_write_empty(void **state)
{
    (void)state;
    char *path = tmp_file("empty.gguf");
    jq_gguf_writer *w = jq_gguf_writer_new();
    assert_int_equal(jq_gguf_writer_begin(w, path), 0);
    assert_int_equal(jq_gguf_writer_finish(w), 0);
    jq_gguf_writer_free(w);
    char err[512];
    jq_gguf *g = jq_gguf_open(path, err, sizeof err);
    if (!g)
        fail_msg("%s", err);
    assert_int_equal(jq_gguf_n_kv(g), 0);
    assert_int_equal(jq_gguf_n_tensors(g), 0);
    assert_int_equal(jq_gguf_file_size(g), 32); /* 24 header + padding */
    jq_gguf_close(g);
    free(path);
}

static void test_writer_errors(void **state)
{
    (void)state;
    jq_gguf_writer *w = jq_gguf_writer_new();
    assert_int_equal(jq_gguf_writer_set_u32(w, "k", 1), 0);
    assert_int_equal(jq_gguf_writer_set_str(w, "k", "x"), -1);
    assert_non_null(strstr(jq_gguf_writer_error(w), "duplicate key 'k'"));
    assert_int_equal(jq_gguf_writer_set_u32(w, "general.alignment", 3), -1);
    assert_non_null(strstr(jq_gguf_writer_error(w), "power of two"));
    assert_int_equal(jq_gguf_writer_set_u32(w, "general.alignment", 0), -1);
    assert_int_equal(jq_gguf_writer_set_u64(w, "general.alignment", 64),
                     -1);
    assert_non_null(strstr(jq_gguf_writer_error(w), "must be a uint32"));
    uint8_t two = 2;
    assert_int_equal(
        jq_gguf_writer_set_scalar(w, "b", JQ_GGUF_BOOL, &two), -1);
    assert_int_equal(
        jq_gguf_writer_set_scalar(w, "s", JQ_GGUF_STRING, "x"), -1);
    assert_int_equal(jq_gguf_writer_set_arr(w, "s", JQ_GGUF_ARRAY, NULL, 0),
                     -1);

    int64_t ne[2] = {33, 2};
    assert_int_equal(jq_gguf_writer_add_tensor(w, "q", JQ_TYPE_Q8_0, 2, ne),
                     -1);
    assert_non_null(strstr(jq_gguf_writer_error(w), "block size 32"));
    assert_int_equal(jq_gguf_writer_add_tensor(w, "u", 99, 2, ne), -1);
    assert_non_null(strstr(jq_gguf_writer_error(w), "unknown type id 99"));
    assert_int_equal(jq_gguf_writer_add_tensor(w, "x", JQ_TYPE_F32, 5, ne),
                     -1);
    int64_t neg[2] = {4, -1};
    assert_int_equal(jq_gguf_writer_add_tensor(w, "n", JQ_TYPE_F32, 2, neg),
                     -1);
    assert_int_equal(jq_gguf_writer_add_tensor(w, "a", JQ_TYPE_F32, 2, ne),
                     0);
    assert_int_equal(jq_gguf_writer_add_tensor(w, "b", JQ_TYPE_F32, 2, ne),
                     1);
    assert_int_equal(jq_gguf_writer_add_tensor(w, "a", JQ_TYPE_F16, 2, ne),
                     -1);
    assert_non_null(strstr(jq_gguf_writer_error(w), "duplicate tensor"));
    assert_int_equal(jq_gguf_writer_tensor_bytes(w, 0), 33 * 2 * 4);
    assert_int_equal(jq_gguf_writer_tensor_bytes(w, 2), 0);

    /* order of calls */
    assert_int_equal(jq_gguf_writer_write_tensor(w, 0, ne), -1);
    assert_int_equal(jq_gguf_writer_finish(w), -1);
    char *path = tmp_file("errors.gguf");
    char *tmp = jqt_fmt("%s.tmp", path);
    assert_int_equal(jq_gguf_writer_begin(w, path), 0);
    assert_int_equal(jq_gguf_writer_set_u32(w, "late", 1), -1);
    assert_non_null(strstr(jq_gguf_writer_error(w), "before"));
    assert_int_equal(jq_gguf_writer_add_tensor(w, "late", JQ_TYPE_F32, 2, ne),
                     -1);
    uint8_t *data = tensor_bytes(33 * 2 * 4, 1);
    assert_int_equal(jq_gguf_writer_write_tensor(w, 1, data), -1);
    assert_non_null(strstr(jq_gguf_writer_error(w), "in order"));
    assert_int_equal(jq_gguf_writer_write_tensor(w, 0, data), 0);
    assert_int_equal(jq_gguf_writer_finish(w), -1);
    assert_non_null(strstr(jq_gguf_writer_error(w), "1 of 2 tensors"));
    /* abandoning the writer leaves no file behind */
    assert_true(file_exists(tmp));
    jq_gguf_writer_free(w);
    assert_false(file_exists(tmp));
    assert_false(file_exists(path));
    free(data);
    free(tmp);
    free(path);

    /* a directory that does not exist */
    w = jq_gguf_writer_new();
    assert_int_equal(jq_gguf_writer_begin(w, "/nonexistent/dir/x.gguf"), -1);
    assert_non_null(strstr(jq_gguf_writer_error(w), "/nonexistent/dir"));
    jq_gguf_writer_free(w);
}

/* A write error (here EFBIG from RLIMIT_FSIZE, standing in for ENOSPC) is
 * reported, and the partial file removed. */
static void test_writer_write_error(void **state)
{
    (void)state;
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);

    char *path = tmp_file("toolarge.gguf");
    char *tmp = jqt_fmt("%s.tmp", path);
    jq_gguf_writer *w = jq_gguf_writer_new();
    int64_t ne[1] = {1 << 16};
    assert_int_equal(jq_gguf_writer_add_tensor(w, "big", JQ_TYPE_F32, 1, ne),
                     0);
    assert_int_equal(jq_gguf_writer_begin(w, path), 0);
    uint8_t *data = tensor_bytes(4 << 16, 3);

    struct rlimit lim = old;
    lim.rlim_cur = 4096;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = jq_gguf_writer_write_tensor(w, 0, data);
    if (rc == 0)
        rc = jq_gguf_writer_finish(w);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);

    assert_int_equal(rc, -1);
    const char *e = jq_gguf_writer_error(w);
    if (!strstr(e, strerror(EFBIG)) || !strstr(e, tmp))
        fail_msg("unexpected error: %s", e);
    assert_false(file_exists(tmp));
    assert_false(file_exists(path));
    assert_int_equal(jq_gguf_writer_finish(w), -1); /* stays failed */
    jq_gguf_writer_free(w);
    free(data);
    free(tmp);
    free(path);
}

/* ------------------------------------------------------------ corruption */

static void check_all_prefixes(const uint8_t *file, size_t size)
{
    char err[1024];
    for (size_t len = 0; len < size; len++) {
        uint8_t *copy = exact_copy(file, len);
        err[0] = '\0';
        jq_gguf *g = jq_gguf_open_buffer(len ? copy : NULL, len, err,
                                         sizeof err);
        if (g) {
            jq_gguf_close(g);
            free(copy);
            fail_msg("prefix of %zu of %zu bytes opened", len, size);
        }
        if (strncmp(err, "gguf: ", 6) != 0 || strlen(err) < 16)
            fail_msg("prefix %zu: bad error \"%s\"", len, err);
        free(copy);
    }
    uint8_t *copy = exact_copy(file, size);
    jq_gguf *g = jq_gguf_open_buffer(copy, size, err, sizeof err);
    if (!g)
        fail_msg("whole file: %s", err);
    walk_all(g);
    jq_gguf_close(g);
    free(copy);
}

static void test_truncation(void **state)
{
    (void)state;
    bb b = {0};
    build_rich(&b);
    check_all_prefixes(b.p, b.len);
    free(b.p);

    /* writer output whose last tensor fills whole alignment units, so the
     * file has no trailing padding */
    char *path = tmp_file("trunc.gguf");
    jq_gguf_writer *w = jq_gguf_writer_new();
    const char *toks[] = {"a", "bb", ""};
    assert_int_equal(jq_gguf_writer_set_str(w, "general.name", "t"), 0);
    assert_int_equal(jq_gguf_writer_set_arr_str(w, "toks", toks, 3), 0);
    assert_int_equal(jq_gguf_writer_set_arr_f32(w, "f", (float[]){1, 2}, 2),
                     0);
    int64_t ne0[1] = {3}, ne1[2] = {8, 1};
    assert_int_equal(jq_gguf_writer_add_tensor(w, "x", JQ_TYPE_F16, 1, ne0),
                     0);
    assert_int_equal(jq_gguf_writer_add_tensor(w, "y", JQ_TYPE_F32, 2, ne1),
                     1);
    assert_int_equal(jq_gguf_writer_begin(w, path), 0);
    uint8_t data[32];
    memset(data, 0x5a, sizeof data);
    assert_int_equal(jq_gguf_writer_write_tensor(w, 0, data), 0);
    assert_int_equal(jq_gguf_writer_write_tensor(w, 1, data), 0);
    assert_int_equal(jq_gguf_writer_finish(w), 0);
    jq_gguf_writer_free(w);
    size_t len;
    char *bytes = jqt_read_file(path, &len);
    assert_non_null(bytes);
    assert_int_equal(len % 32, 0);
    check_all_prefixes((const uint8_t *)bytes, len);
    free(bytes);
    free(path);
}

/* Flips each byte of the header, metadata and tensor infos with several
 * masks: open either fails with a message or every accessor stays within
 * the file. */
static void test_flipped_bytes(void **state)
{
    (void)state;
    bb b = {0};
    build_rich(&b);
    const jq_gguf_tensor *t;
    jq_gguf *g0 = open_ok(&b);
    t = jq_gguf_tensor_at(g0, 0);
    size_t region = (size_t)((const uint8_t *)t->data - b.p);
    jq_gguf_close(g0);

    static const uint8_t masks[] = {0xff, 0x01, 0x80, 0x10, 0x7f, 0x40,
                                    0x02};
    int opened = 0, failed = 0;
    char err[1024];
    for (size_t i = 0; i < region; i++) {
        for (size_t m = 0; m < sizeof masks; m++) {
            uint8_t *copy = exact_copy(b.p, b.len);
            copy[i] ^= masks[m];
            err[0] = '\0';
            jq_gguf *g = jq_gguf_open_buffer(copy, b.len, err, sizeof err);
            if (g) {
                walk_all(g);
                jq_gguf_close(g);
                opened++;
            } else {
                if (strncmp(err, "gguf: ", 6) != 0 || strlen(err) < 16)
                    fail_msg("byte %zu ^ 0x%02x: bad error \"%s\"", i,
                             masks[m], err);
                failed++;
            }
            free(copy);
        }
    }
    /* both outcomes must occur, or the test is not testing much */
    assert_true(opened > 0);
    assert_true(failed > 0);
    free(b.p);
}

/* Random multi-byte damage to the header, metadata and tensor infos: a few
 * random bytes, or a 4- or 8-byte field overwritten with a value that
 * stresses the checks (0, 1, sizes near the file size, maxima). */
static void fuzz_region(const uint8_t *file, size_t size, size_t region,
                        uint64_t seed, int iterations)
{
    const uint64_t interesting[] = {
        0, 1, 2, 3, 4, 5, 8, 12, 13, 24, 31, 32, 33, 64, 255, 256,
        0x7fffffff, 0x80000000u, 0xffffffffu, (uint64_t)1 << 32,
        (uint64_t)INT64_MAX, (uint64_t)INT64_MIN, UINT64_MAX,
        UINT64_MAX - 7, size, size - 8, size / 8, size / 13};
    const size_t n_int = sizeof interesting / sizeof interesting[0];
    jqt_rng rng;
    jqt_rng_seed(&rng, seed);
    char err[1024];
    for (int it = 0; it < iterations; it++) {
        uint8_t *copy = exact_copy(file, size);
        int edits = 1 + (int)(jqt_rng_u64(&rng) % 4);
        for (int e = 0; e < edits; e++) {
            size_t pos = (size_t)(jqt_rng_u64(&rng) % region);
            uint64_t r = jqt_rng_u64(&rng);
            size_t width = r % 3 == 0 ? 8 : r % 3 == 1 ? 4 : 1;
            if (width > 1 && pos + width <= size) {
                uint64_t v = interesting[(r >> 8) % n_int];
                memcpy(copy + pos, &v, width);
            } else {
                copy[pos] = (uint8_t)(r >> 16);
            }
        }
        err[0] = '\0';
        jq_gguf *g = jq_gguf_open_buffer(copy, size, err, sizeof err);
        if (g) {
            walk_all(g);
            jq_gguf_close(g);
        } else if (strncmp(err, "gguf: ", 6) != 0 || strlen(err) < 16) {
            fail_msg("iteration %d: bad error \"%s\"", it, err);
        }
        free(copy);
    }
}

static void test_random_mutations(void **state)
{
    (void)state;
    bb b = {0};
    build_rich(&b);
    jq_gguf *g = open_ok(&b);
    size_t region =
        (size_t)((const uint8_t *)jq_gguf_tensor_at(g, 0)->data - b.p);
    jq_gguf_close(g);
    fuzz_region(b.p, b.len, region, 1, 20000);
    free(b.p);

    /* the real model's header region (vocabulary and all tensor infos) */
    size_t len;
    char *bytes = jqt_read_file(jqt_model_path("stories260K.gguf"), &len);
    assert_non_null(bytes);
    g = jq_gguf_open_buffer(bytes, len, NULL, 0);
    assert_non_null(g);
    region = (size_t)((const uint8_t *)jq_gguf_tensor_at(g, 0)->data -
                      (const uint8_t *)bytes);
    jq_gguf_close(g);
    fuzz_region((const uint8_t *)bytes, len, region, 2, 300);
    free(bytes);
}

static void test_corrupt_files(void **state)
{
    (void)state;
    bb b = {0};

#define RESET() (b.len = 0)
    /* magic, version */
    RESET();
    bb_raw(&b, "GGU", 3);
    expect_fail(&b, "too short");
    RESET();
    bb_header(&b, 3, 0, 0);
    memcpy(b.p, "GGML", 4);
    expect_fail(&b, "not a GGUF file");
    RESET();
    bb_header(&b, 1, 0, 0);
    expect_fail(&b, "version 1 is not supported");
    RESET();
    bb_header(&b, 0x03000000u, 0, 0);
    expect_fail(&b, "big-endian");
    RESET();
    bb_header(&b, 4, 0, 0);
    expect_fail(&b, "unsupported GGUF version 4");

    /* counts */
    RESET();
    bb_header(&b, 3, 0, UINT64_MAX);
    expect_fail(&b, "18446744073709551615 metadata keys cannot fit");
    RESET();
    bb_header(&b, 3, (uint64_t)1 << 40, 1);
    bb_key(&b, "k", JQ_GGUF_UINT8);
    bb_u8(&b, 1);
    expect_fail(&b, "1099511627776 tensor infos cannot fit");

    /* strings */
    RESET();
    bb_header(&b, 3, 0, 1);
    bb_u64(&b, (uint64_t)1 << 60);
    bb_raw(&b, "abcdefgh", 8);
    expect_fail(&b, "key #0: name length 1152921504606846976 exceeds");
    RESET();
    bb_header(&b, 3, 0, 1);
    bb_key(&b, "general.name", JQ_GGUF_STRING);
    bb_u64(&b, UINT64_MAX);
    bb_raw(&b, "abcdefgh", 8);
    expect_fail(&b, "key 'general.name' (#0): string value length "
                    "18446744073709551615 exceeds the 8 bytes left");

    /* arrays */
    RESET();
    bb_header(&b, 3, 0, 1);
    bb_key(&b, "a", JQ_GGUF_ARRAY);
    bb_u32(&b, JQ_GGUF_UINT32);
    bb_u64(&b, (uint64_t)1 << 62);
    bb_u32(&b, 0);
    expect_fail(&b, "array of 4611686018427387904 uint32 (4 bytes each) "
                    "exceeds the 4 bytes left");
    RESET();
    bb_header(&b, 3, 0, 1);
    bb_key(&b, "tokenizer.ggml.tokens", JQ_GGUF_ARRAY);
    bb_u32(&b, JQ_GGUF_STRING);
    bb_u64(&b, UINT64_MAX / 2);
    bb_str(&b, "a");
    expect_fail(&b, "array of 9223372036854775807 strings cannot fit");
    RESET();
    bb_header(&b, 3, 0, 2);
    bb_key(&b, "x", JQ_GGUF_UINT8);
    bb_u8(&b, 0);
    bb_key(&b, "tokenizer.ggml.tokens", JQ_GGUF_ARRAY);
    bb_u32(&b, JQ_GGUF_STRING);
    bb_u64(&b, 5);
    bb_str(&b, "<unk>");
    bb_str(&b, "<s>");
    bb_u64(&b, 100);
    bb_raw(&b, "short", 5);
    bb_str(&b, "");
    bb_str(&b, "");
    expect_fail(&b, "key 'tokenizer.ggml.tokens' (#1): array of 5 strings "
                    "truncated at element 2 (length 100, 21 bytes left)");
    RESET();
    bb_header(&b, 3, 0, 1);
    bb_key(&b, "a", JQ_GGUF_ARRAY);
    bb_u32(&b, 42);
    bb_u64(&b, 0);
    expect_fail(&b, "array element type 42 is not a GGUF type");
    RESET();
    bb_header(&b, 3, 0, 1);
    bb_key(&b, "a", JQ_GGUF_ARRAY);
    bb_u32(&b, JQ_GGUF_BOOL);
    bb_u64(&b, 3);
    bb_u8(&b, 0);
    bb_u8(&b, 1);
    bb_u8(&b, 7);
    expect_fail(&b, "element 2 is 7, not 0 or 1");
    /* nested array depth bomb: 10000 levels */
    RESET();
    bb_header(&b, 3, 0, 1);
    bb_key(&b, "bomb", JQ_GGUF_ARRAY);
    for (int i = 0; i < 10000; i++) {
        bb_u32(&b, JQ_GGUF_ARRAY);
        bb_u64(&b, 1);
    }
    bb_u32(&b, JQ_GGUF_UINT8);
    bb_u64(&b, 0);
    expect_fail(&b, "key 'bomb' (#0): arrays nested deeper than 8 levels");
    RESET();
    bb_header(&b, 3, 0, 1);
    bb_key(&b, "a", JQ_GGUF_ARRAY);
    bb_u32(&b, JQ_GGUF_ARRAY);
    bb_u64(&b, (uint64_t)1 << 50);
    bb_u32(&b, JQ_GGUF_UINT8);
    bb_u64(&b, 0);
    expect_fail(&b, "array of 1125899906842624 arrays cannot fit");

    /* values */
    RESET();
    bb_header(&b, 3, 0, 1);
    bb_key(&b, "t", 13);
    bb_u8(&b, 0);
    expect_fail(&b, "key 't' (#0): value type 13 is not a GGUF type");
    RESET();
    bb_header(&b, 3, 0, 1);
    bb_key(&b, "b", JQ_GGUF_BOOL);
    bb_u8(&b, 2);
    expect_fail(&b, "bool value is 2, not 0 or 1");
    RESET();
    bb_header(&b, 3, 0, 1);
    bb_key(&b, "f", JQ_GGUF_FLOAT64);
    bb_u32(&b, 0);
    expect_fail(&b, "float64 value truncated");
    RESET();
    bb_header(&b, 3, 0, 2);
    bb_key(&b, "general.name", JQ_GGUF_STRING);
    bb_str(&b, "a");
    bb_key(&b, "general.name", JQ_GGUF_STRING);
    bb_str(&b, "b");
    expect_fail(&b, "key 'general.name' (#1): duplicate key name (first "
                    "defined as #0) (file offset 57, file size 90)");
    /* names from the file are printed safely */
    RESET();
    bb_header(&b, 3, 0, 2);
    bb_key(&b, "bad\n\x01'", JQ_GGUF_UINT8);
    bb_u8(&b, 0);
    bb_key(&b, "bad\n\x01'", JQ_GGUF_UINT8);
    bb_u8(&b, 0);
    expect_fail(&b, "key 'bad\\x0a\\x01\\x27' (#1): duplicate key");

    /* alignment */
    for (uint32_t a = 0; a < 4; a += 3) {
        RESET();
        bb_header(&b, 3, 0, 1);
        bb_key(&b, "general.alignment", JQ_GGUF_UINT32);
        bb_u32(&b, a);
        char *frag = jqt_fmt("general.alignment %u is not a non-zero power "
                             "of two", a);
        expect_fail(&b, frag);
        free(frag);
    }
    RESET();
    bb_header(&b, 3, 0, 1);
    bb_key(&b, "general.alignment", JQ_GGUF_UINT64);
    bb_u64(&b, 32);
    expect_fail(&b, "key 'general.alignment' has type uint64, expected "
                    "uint32");

    /* tensor infos */
#define ONE_TENSOR(name, n_dims, ne, type, off, data_bytes)                  \
    do {                                                                   \
        RESET();                                                           \
        bb_header(&b, 3, 1, 0);                                            \
        bb_tensor(&b, name, n_dims, ne, type, off);                        \
        bb_pad(&b, 32);                                                    \
        bb_fill(&b, data_bytes, 9);                                        \
    } while (0)
    ONE_TENSOR("w", 2, ((int64_t[]){4, 4}), JQ_TYPE_F32, 0, 64);
    jq_gguf_close(open_ok(&b)); /* the template itself is valid */
    ONE_TENSOR("w", 5, ((int64_t[]){1, 1, 1, 1, 1}), JQ_TYPE_F32, 0, 64);
    expect_fail(&b, "tensor 'w' (#0): n_dims 5 exceeds the maximum 4");
    ONE_TENSOR("w", 2, ((int64_t[]){4, -3}), JQ_TYPE_F32, 0, 64);
    expect_fail(&b, "tensor 'w' (#0): ne[1] = -3 is negative");
    ONE_TENSOR("w", 3, ((int64_t[]){(int64_t)1 << 32, (int64_t)1 << 31, 2}),
               JQ_TYPE_F32, 0, 64);
    expect_fail(&b, "element count overflows int64 (ne = [4294967296, "
                    "2147483648, 2, 1])");
    ONE_TENSOR("w", 2, ((int64_t[]){(int64_t)1 << 62, 1}), JQ_TYPE_F64, 0,
               64);
    expect_fail(&b, "tensor 'w' (#0): byte size overflows");
    /* a zero dimension: no overflow whatever the others say, 0 bytes */
    ONE_TENSOR("w", 3, ((int64_t[]){INT64_MAX, 0, INT64_MAX}), JQ_TYPE_F32,
               0, 64);
    jq_gguf *g = open_ok(&b);
    assert_int_equal(jq_gguf_tensor_at(g, 0)->nbytes, 0);
    jq_gguf_close(g);
    ONE_TENSOR("w", 1, ((int64_t[]){33}), JQ_TYPE_Q8_0, 0, 64);
    expect_fail(&b, "ne[0] = 33 is not a multiple of the block size 32 of "
                    "type q8_0");
    ONE_TENSOR("w", 1, ((int64_t[]){4}), 99, 0, 64);
    expect_fail(&b, "tensor 'w' (#0): unknown tensor type id 99");
    ONE_TENSOR("w", 1, ((int64_t[]){4}), 4, 0, 64); /* removed Q4_2 */
    expect_fail(&b, "unknown tensor type id 4");
    ONE_TENSOR("blk.0.attn_q.weight", 1, ((int64_t[]){4}), JQ_TYPE_F32, 4,
               64);
    expect_fail(&b, "tensor 'blk.0.attn_q.weight' (#0): data offset 4 is "
                    "not a multiple of the alignment 32");
    ONE_TENSOR("blk.0.attn_q.weight", 1, ((int64_t[]){1024}), JQ_TYPE_F32,
               0, 64);
    char *frag = jqt_fmt("tensor 'blk.0.attn_q.weight' (#0): data [offset "
                         "0, 4096 bytes] exceeds file size %zu", b.len);
    expect_fail(&b, frag);
    free(frag);
    ONE_TENSOR("w", 1, ((int64_t[]){4}), JQ_TYPE_F32, (uint64_t)-32, 64);
    expect_fail(&b, "data [offset 18446744073709551584, 16 bytes] exceeds");
    /* the data section itself past the end of the file */
    RESET();
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "w", 1, (int64_t[]){0}, JQ_TYPE_F32, 0);
    expect_fail(&b, "data section would start at file offset 64");
    /* truncated inside a tensor info */
    RESET();
    bb_header(&b, 3, 1, 0);
    bb_str(&b, "w");
    bb_u32(&b, 2);
    bb_i64(&b, 4);
    bb_raw(&b, "\0\0\0\0\0\0", 6); /* 27 bytes: over the 24-byte
                                          minimum, short of ne[1] */
    expect_fail(&b, "tensor 'w' (#0): ne[1] truncated");

    /* duplicate tensor names */
    RESET();
    bb_header(&b, 3, 2, 0);
    bb_tensor(&b, "w", 1, (int64_t[]){8}, JQ_TYPE_F32, 0);
    bb_tensor(&b, "w", 1, (int64_t[]){8}, JQ_TYPE_F32, 32);
    bb_pad(&b, 32);
    bb_fill(&b, 64, 1);
    expect_fail(&b, "tensor 'w' (#1): duplicate tensor name (first defined "
                    "as #0)");

    /* a custom alignment applies to the offsets */
    RESET();
    bb_header(&b, 3, 1, 1);
    bb_key(&b, "general.alignment", JQ_GGUF_UINT32);
    bb_u32(&b, 64);
    bb_tensor(&b, "w", 1, (int64_t[]){4}, JQ_TYPE_F32, 32);
    bb_pad(&b, 64);
    bb_fill(&b, 128, 1);
    expect_fail(&b, "not a multiple of the alignment 64");
#undef ONE_TENSOR
#undef RESET
    free(b.p);
}

static void test_open_errors(void **state)
{
    (void)state;
    char err[512];
    assert_null(jq_gguf_open("/nonexistent/x.gguf", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/x.gguf"));
    assert_null(jq_gguf_open(jqt_tmpdir(), err, sizeof err));
    assert_non_null(strstr(err, "not a regular file"));
    char *path = tmp_file("zero.gguf");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fclose(f);
    assert_null(jq_gguf_open(path, err, sizeof err));
    assert_non_null(strstr(err, "empty"));
    /* parse errors from a file name the file */
    f = fopen(path, "wb");
    fwrite("GGUF\x01\0\0\0", 1, 8, f);
    fclose(f);
    assert_null(jq_gguf_open(path, err, sizeof err));
    char *want = jqt_fmt("gguf: %s: header: GGUF version 1", path);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("got \"%s\"", err);
    free(want);
    /* err may be NULL or tiny */
    assert_null(jq_gguf_open(path, NULL, 0));
    char tiny[8];
    assert_null(jq_gguf_open(path, tiny, sizeof tiny));
    assert_string_equal(tiny, "gguf: /");
    free(path);
}

/* ------------------------------------------------------------ getters */

static void test_getters(void **state)
{
    (void)state;
    bb b = {0};
    build_rich(&b);
    jq_gguf *g = open_ok(&b);
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    float f;
    bool bo;
    jq_str s;

    /* u8 200 */
    assert_true(jq_gguf_get_u32(g, "a.u8", &u32) && u32 == 200);
    assert_true(jq_gguf_get_i32(g, "a.u8", &i32) && i32 == 200);
    assert_true(jq_gguf_get_u64(g, "a.u8", &u64) && u64 == 200);
    assert_false(jq_gguf_get_f32(g, "a.u8", &f));
    assert_false(jq_gguf_get_bool(g, "a.u8", &bo));
    assert_false(jq_gguf_get_str(g, "a.u8", &s));
    /* i8 -100: no unsigned */
    assert_false(jq_gguf_get_u32(g, "a.i8", &u32));
    assert_false(jq_gguf_get_u64(g, "a.i8", &u64));
    assert_true(jq_gguf_get_i32(g, "a.i8", &i32) && i32 == -100);
    assert_true(jq_gguf_get_u32(g, "a.u16", &u32) && u32 == 60000);
    assert_true(jq_gguf_get_i32(g, "a.i16", &i32) && i32 == -30000);
    /* u32 4e9 does not fit int32 */
    assert_true(jq_gguf_get_u32(g, "a.u32", &u32) && u32 == 4000000000u);
    assert_false(jq_gguf_get_i32(g, "a.u32", &i32));
    assert_true(jq_gguf_get_u64(g, "a.u32", &u64) && u64 == 4000000000u);
    assert_true(jq_gguf_get_i32(g, "a.i32", &i32) && i32 == -2000000000);
    assert_false(jq_gguf_get_u32(g, "a.i32", &u32));
    /* u64 max: only u64 */
    assert_true(jq_gguf_get_u64(g, "a.u64", &u64) && u64 == UINT64_MAX);
    assert_false(jq_gguf_get_u32(g, "a.u64", &u32));
    assert_false(jq_gguf_get_i32(g, "a.u64", &i32));
    /* i64 min: only i64 */
    int64_t i64;
    assert_true(jq_gguf_get_i64(g, "a.i64", &i64) && i64 == INT64_MIN);
    assert_false(jq_gguf_get_i64(g, "a.u64", &i64));
    assert_false(jq_gguf_get_u64(g, "a.i64", &u64));
    assert_false(jq_gguf_get_i32(g, "a.i64", &i32));
    assert_false(jq_gguf_get_u32(g, "a.i64", &u32));
    /* floats */
    assert_true(jq_gguf_get_f32(g, "a.f32", &f) && f == 0.5f);
    assert_true(jq_gguf_get_f32(g, "a.f64", &f) && f == -0.25f);
    assert_false(jq_gguf_get_u32(g, "a.f32", &u32));
    assert_false(jq_gguf_get_i32(g, "a.f64", &i32));
    assert_true(jq_gguf_get_bool(g, "a.bool", &bo) && bo);
    assert_false(jq_gguf_get_u32(g, "a.bool", &u32));
    assert_true(jq_gguf_get_str(g, "a.empty", &s) && s.len == 0);
    assert_true(jq_str_eq(s, ""));
    assert_true(jq_gguf_get_str(g, "general.architecture", &s));
    assert_true(jq_str_eq(s, "llama"));
    assert_false(jq_str_eq(s, "llam"));
    assert_false(jq_str_eq(s, "llama2"));
    /* absent key */
    assert_int_equal(jq_gguf_find_key(g, "nope"), -1);
    assert_false(jq_gguf_get_u32(g, "nope", &u32));
    assert_false(jq_gguf_get_str(g, "nope", &s));
    assert_false(jq_gguf_get_arr(g, "nope", NULL, NULL));
    assert_null(jq_gguf_arr_data(g, "nope"));
    assert_int_equal(jq_gguf_find_key(g, "a.u8"), 1);
    assert_int_equal(jq_gguf_kv_type(g, 99), JQ_GGUF_TYPE_COUNT_);

    /* arrays */
    jq_gguf_type elem;
    uint64_t n;
    assert_false(jq_gguf_get_arr(g, "a.u8", &elem, &n));
    assert_true(jq_gguf_get_arr(g, "tokenizer.ggml.tokens", &elem, &n));
    assert_int_equal(elem, JQ_GGUF_STRING);
    assert_int_equal(n, 4);
    assert_true(jq_gguf_arr_str(g, "tokenizer.ggml.tokens", 1, &s));
    assert_true(jq_str_eq(s, "<s>"));
    assert_true(jq_gguf_arr_str(g, "tokenizer.ggml.tokens", 2, &s));
    assert_int_equal(s.len, 0);
    assert_true(jq_gguf_arr_str(g, "tokenizer.ggml.tokens", 3, &s));
    assert_true(jq_str_eq(s, "hello"));
    assert_false(jq_gguf_arr_str(g, "tokenizer.ggml.tokens", 4, &s));
    assert_false(jq_gguf_arr_str(g, "a.arr_i16", 0, &s));
    assert_null(jq_gguf_arr_data(g, "tokenizer.ggml.tokens"));
    float fo[3];
    int32_t io[3];
    assert_false(jq_gguf_arr_to_f32(g, "tokenizer.ggml.tokens", fo, 4));

    assert_true(jq_gguf_arr_to_f32(g, "a.arr_i16", fo, 3));
    assert_true(fo[0] == 1.0f && fo[1] == -2.0f && fo[2] == 3.0f);
    assert_true(jq_gguf_arr_to_i32(g, "a.arr_i16", io, 3));
    assert_true(io[0] == 1 && io[1] == -2 && io[2] == 3);
    assert_false(jq_gguf_arr_to_i32(g, "a.arr_i16", io, 2)); /* n != len */
    assert_false(jq_gguf_arr_to_f32(g, "a.arr_i16", fo, 4));
    int16_t raw[3];
    memcpy(raw, jq_gguf_arr_data(g, "a.arr_i16"), sizeof raw);
    assert_true(raw[1] == -2);
    assert_true(jq_gguf_arr_to_i32(g, "a.arr_bool", io, 3));
    assert_true(io[0] == 0 && io[1] == 1 && io[2] == 1);

    /* nested arrays: visible as arrays of arrays, elements not exposed */
    assert_true(jq_gguf_get_arr(g, "a.nested", &elem, &n));
    assert_int_equal(elem, JQ_GGUF_ARRAY);
    assert_int_equal(n, 2);
    assert_null(jq_gguf_arr_data(g, "a.nested"));
    assert_false(jq_gguf_arr_to_i32(g, "a.nested", io, 2));
    assert_false(jq_gguf_arr_str(g, "a.nested", 0, &s));
    assert_true(jq_gguf_get_arr(g, "a.empty_arr", &elem, &n));
    assert_int_equal(elem, JQ_GGUF_FLOAT64);
    assert_int_equal(n, 0);
    assert_true(jq_gguf_arr_to_f32(g, "a.empty_arr", fo, 0));

    /* tensors */
    assert_int_equal(jq_gguf_n_tensors(g), 2);
    const jq_gguf_tensor *t1 = jq_gguf_find_tensor(g, "t1");
    assert_non_null(t1);
    assert_ptr_equal(t1, jq_gguf_tensor_at(g, 1));
    assert_int_equal(t1->type, JQ_TYPE_Q8_0);
    assert_int_equal(t1->nbytes, 34);
    assert_int_equal(t1->ne[0], 32);
    assert_int_equal(t1->ne[1], 1);
    assert_int_equal(t1->n_dims, 1);
    assert_null(jq_gguf_find_tensor(g, "t"));
    assert_null(jq_gguf_find_tensor(g, "t10"));
    jq_gguf_close(g);
    free(b.p);

    /* values that convert, and those that do not */
    bb c = {0};
    bb_header(&c, 3, 0, 9);
    bb_key(&c, "i64.small", JQ_GGUF_INT64);
    bb_i64(&c, -5);
    bb_key(&c, "u64.small", JQ_GGUF_UINT64);
    bb_u64(&c, 7);
    bb_key(&c, "i32.minus1", JQ_GGUF_INT32);
    bb_u32(&c, (uint32_t)-1);
    bb_key(&c, "f64.huge", JQ_GGUF_FLOAT64);
    bb_f64(&c, 1e300);
    bb_key(&c, "f64.inf", JQ_GGUF_FLOAT64);
    bb_f64(&c, INFINITY);
    bb_key(&c, "arr.u32", JQ_GGUF_ARRAY);
    bb_u32(&c, JQ_GGUF_UINT32);
    bb_u64(&c, 2);
    bb_u32(&c, 1);
    bb_u32(&c, 0x80000000u);
    bb_key(&c, "arr.f32", JQ_GGUF_ARRAY);
    bb_u32(&c, JQ_GGUF_FLOAT32);
    bb_u64(&c, 2);
    bb_f32(&c, 3.0f);
    bb_f32(&c, -7.0f);
    bb_key(&c, "arr.f32frac", JQ_GGUF_ARRAY);
    bb_u32(&c, JQ_GGUF_FLOAT32);
    bb_u64(&c, 1);
    bb_f32(&c, 1.5f);
    bb_key(&c, "arr.f64huge", JQ_GGUF_ARRAY);
    bb_u32(&c, JQ_GGUF_FLOAT64);
    bb_u64(&c, 1);
    bb_f64(&c, -1e300);
    g = open_ok(&c);
    assert_true(jq_gguf_get_i32(g, "i64.small", &i32) && i32 == -5);
    assert_false(jq_gguf_get_u32(g, "i64.small", &u32));
    assert_true(jq_gguf_get_u32(g, "u64.small", &u32) && u32 == 7);
    assert_true(jq_gguf_get_i32(g, "u64.small", &i32) && i32 == 7);
    assert_false(jq_gguf_get_u32(g, "i32.minus1", &u32));
    assert_false(jq_gguf_get_u64(g, "i32.minus1", &u64));
    assert_true(jq_gguf_get_i32(g, "i32.minus1", &i32) && i32 == -1);
    assert_false(jq_gguf_get_f32(g, "f64.huge", &f));
    assert_true(jq_gguf_get_f32(g, "f64.inf", &f) && isinf(f));
    int32_t i2[2];
    float f2[2];
    assert_false(jq_gguf_arr_to_i32(g, "arr.u32", i2, 2));
    assert_true(jq_gguf_arr_to_f32(g, "arr.u32", f2, 2));
    assert_true(f2[0] == 1.0f && f2[1] == 2147483648.0f);
    assert_true(jq_gguf_arr_to_i32(g, "arr.f32", i2, 2));
    assert_true(i2[0] == 3 && i2[1] == -7);
    assert_false(jq_gguf_arr_to_i32(g, "arr.f32frac", i2, 1));
    assert_false(jq_gguf_arr_to_f32(g, "arr.f64huge", f2, 1));
    jq_gguf_close(g);
    free(c.p);
}

/* ------------------------------------------------------------ real files */

static void test_real_model(void **state)
{
    (void)state;
    char err[512];
    jq_gguf *g = jq_gguf_open(jqt_model_path("stories260K.gguf"), err,
                              sizeof err);
    if (!g)
        fail_msg("%s", err);
    assert_int_equal(jq_gguf_n_tensors(g), 48);
    jq_str s;
    assert_true(jq_gguf_get_str(g, "general.architecture", &s));
    assert_true(jq_str_eq(s, "llama"));
    uint32_t blocks;
    assert_true(jq_gguf_get_u32(g, "llama.block_count", &blocks));
    assert_int_equal(blocks, 5);
    jq_gguf_type elem;
    uint64_t n;
    assert_true(jq_gguf_get_arr(g, "tokenizer.ggml.tokens", &elem, &n));
    assert_int_equal(elem, JQ_GGUF_STRING);
    assert_int_equal(n, 512);
    assert_true(jq_gguf_arr_str(g, "tokenizer.ggml.tokens", 1, &s));
    assert_true(jq_str_eq(s, "<s>"));
    const jq_gguf_tensor *t = jq_gguf_find_tensor(g, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->ne[0], 64);
    assert_int_equal(t->ne[1], 512);
    walk_all(g);
    jq_gguf_close(g);
}

static void test_real_vocab(void **state)
{
    (void)state;
    char err[512];
    jq_gguf *g = jq_gguf_open(
        jqt_reference_path("tokenizers/ggml-vocab-llama-spm.gguf"), err,
        sizeof err);
    if (!g)
        fail_msg("%s", err);
    assert_int_equal(jq_gguf_n_tensors(g), 0);
    jq_gguf_type elem;
    uint64_t n;
    assert_true(jq_gguf_get_arr(g, "tokenizer.ggml.tokens", &elem, &n));
    assert_int_equal(n, 32000);
    float *scores = malloc(n * sizeof *scores);
    assert_true(jq_gguf_arr_to_f32(g, "tokenizer.ggml.scores", scores, n));
    free(scores);
    walk_all(g);
    jq_gguf_close(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_write_empty),
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_writer_write_error),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_flipped_bytes),
        cmocka_unit_test(test_random_mutations),
        cmocka_unit_test(test_corrupt_files),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_getters),
        cmocka_unit_test(test_real_model),
        cmocka_unit_test(test_real_vocab),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
