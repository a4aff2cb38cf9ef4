/* kv_store.c — see kv_store.h. */
#include "kv_store.h"

#include <stdlib.h>
#include <string.h>

#include "kernels.h"

#define ALIGN 64

static void *alloc_aligned(size_t bytes)
{
    bytes = (bytes + ALIGN - 1) / ALIGN * ALIGN;
    return aligned_alloc(ALIGN, bytes ? bytes : ALIGN);
}

/* The store's bookkeeping (capacities, lengths, offsets), without the
 * entry arrays. */
static jq_kv_store *new_header(int32_t n_layer, int32_t n_head_kv,
                               int32_t head_dim, uint32_t type,
                               const int32_t *caps)
{
    if (n_layer < 1 || n_head_kv < 1 || head_dim < 1 ||
        (type != JQ_TYPE_F32 && type != JQ_TYPE_F16))
        return NULL;
    jq_kv_store *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    size_t heads = (size_t)n_layer * (size_t)n_head_kv;
    s->n_layer = n_layer;
    s->n_head_kv = n_head_kv;
    s->head_dim = head_dim;
    s->type = type;
    s->elem_size = type == JQ_TYPE_F32 ? 4 : 2;
    s->cap = malloc(heads * sizeof(int32_t));
    s->len = calloc(heads, sizeof(int32_t));
    s->off = malloc(heads * sizeof(size_t));
    if (!s->cap || !s->len || !s->off) {
        jq_kv_store_free(s);
        return NULL;
    }
    size_t total = 0;
    for (size_t h = 0; h < heads; h++) {
        int32_t c = caps[h] > 0 ? caps[h] : 0;
        s->cap[h] = c;
        s->off[h] = total;
        total += (size_t)c;
    }
    s->n_entries = total;
    return s;
}

static uint64_t align_up(uint64_t x)
{
    return (x + ALIGN - 1) / ALIGN * ALIGN;
}

jq_kv_mem_layout jq_kv_store_mem_layout(int32_t n_layer, int32_t n_head_kv,
                                        int32_t head_dim, uint32_t type,
                                        const int32_t *caps)
{
    jq_kv_mem_layout L = {0};
    if (n_layer < 1 || n_head_kv < 1 || head_dim < 1)
        return L;
    uint64_t total = 0;
    for (size_t h = 0; h < (size_t)n_layer * (size_t)n_head_kv; h++)
        total += caps[h] > 0 ? (uint64_t)caps[h] : 0;
    uint64_t es = type == JQ_TYPE_F32 ? 4 : 2;
    if (total > (UINT64_MAX / 4) / ((uint64_t)head_dim * es + 8))
        return L;
    uint64_t kv = align_up(total * (uint64_t)head_dim * es);
    L.values_offset = kv;
    L.positions_offset = 2 * kv;
    L.total_bytes = align_up(2 * kv + total * sizeof(int32_t));
    if (L.total_bytes == 0)
        L.total_bytes = ALIGN;
    return L;
}

jq_kv_store *jq_kv_store_new_in(void *mem, size_t size, int32_t n_layer,
                                int32_t n_head_kv, int32_t head_dim,
                                uint32_t type, const int32_t *caps)
{
    jq_kv_mem_layout L = jq_kv_store_mem_layout(n_layer, n_head_kv, head_dim,
                                                type, caps);
    if (!mem || L.total_bytes == 0 || size < L.total_bytes ||
        ((uintptr_t)mem % ALIGN) != 0)
        return NULL;
    jq_kv_store *s = new_header(n_layer, n_head_kv, head_dim, type, caps);
    if (!s)
        return NULL;
    s->external = true;
    s->k = mem;
    s->v = (char *)mem + L.values_offset;
    s->pos = (int32_t *)(void *)((char *)mem + L.positions_offset);
    return s;
}

jq_kv_store *jq_kv_store_new_caps(int32_t n_layer, int32_t n_head_kv,
                                  int32_t head_dim, uint32_t type,
                                  const int32_t *caps)
{
    jq_kv_store *s = new_header(n_layer, n_head_kv, head_dim, type, caps);
    if (!s)
        return NULL;
    size_t total = s->n_entries;
    size_t row = (size_t)head_dim * s->elem_size;
    if (total && row > SIZE_MAX / 2 / total) {
        jq_kv_store_free(s);
        return NULL;
    }
    s->k = alloc_aligned(total * row);
    s->v = alloc_aligned(total * row);
    s->pos = alloc_aligned(total * sizeof(int32_t));
    if (!s->k || !s->v || !s->pos) {
        jq_kv_store_free(s);
        return NULL;
    }
    return s;
}

jq_kv_store *jq_kv_store_new_tail(const jq_kv_store *prefix, int32_t cap)
{
    jq_kv_store *s = jq_kv_store_new(prefix->n_layer, prefix->n_head_kv,
                                     prefix->head_dim, prefix->type, cap);
    if (!s)
        return NULL;
    s->prefix = prefix;
    s->next_pos = prefix->next_pos;
    return s;
}

int32_t jq_kv_visible(const jq_kv_store *s, int32_t l, int32_t g)
{
    size_t h = jq_kv_head(s, l, g);
    return (s->prefix ? s->prefix->len[h] : 0) + s->len[h];
}

jq_kv_store *jq_kv_store_new(int32_t n_layer, int32_t n_head_kv,
                             int32_t head_dim, uint32_t type, int32_t cap)
{
    if (n_layer < 1 || n_head_kv < 1)
        return NULL;
    size_t heads = (size_t)n_layer * (size_t)n_head_kv;
    int32_t *caps = malloc(heads * sizeof(int32_t));
    if (!caps)
        return NULL;
    for (size_t h = 0; h < heads; h++)
        caps[h] = cap;
    jq_kv_store *s = jq_kv_store_new_caps(n_layer, n_head_kv, head_dim, type,
                                          caps);
    free(caps);
    return s;
}

void jq_kv_store_free(jq_kv_store *s)
{
    if (!s)
        return;
    free(s->cap);
    free(s->len);
    free(s->off);
    if (!s->external) {
        free(s->k);
        free(s->v);
        free(s->pos);
    }
    free(s);
}

void jq_kv_store_clear(jq_kv_store *s)
{
    /* the own entries only: a shared prefix is never changed */
    memset(s->len, 0,
           (size_t)s->n_layer * (size_t)s->n_head_kv * sizeof(int32_t));
    s->next_pos = 0;
}

void *jq_kv_key(const jq_kv_store *s, int32_t l, int32_t g, int32_t i)
{
    size_t e = s->off[jq_kv_head(s, l, g)] + (size_t)i;
    return (char *)s->k + e * (size_t)s->head_dim * s->elem_size;
}

void *jq_kv_value(const jq_kv_store *s, int32_t l, int32_t g, int32_t i)
{
    size_t e = s->off[jq_kv_head(s, l, g)] + (size_t)i;
    return (char *)s->v + e * (size_t)s->head_dim * s->elem_size;
}

void jq_kv_put(jq_kv_store *s, int32_t l, int32_t g, int32_t i,
               const float *k, const float *v, int32_t pos)
{
    void *kd = jq_kv_key(s, l, g, i), *vd = jq_kv_value(s, l, g, i);
    if (s->type == JQ_TYPE_F32) {
        memcpy(kd, k, (size_t)s->head_dim * sizeof(float));
        memcpy(vd, v, (size_t)s->head_dim * sizeof(float));
    } else {
        jq_quantize_row(s->type, k, kd, s->head_dim);
        jq_quantize_row(s->type, v, vd, s->head_dim);
    }
    s->pos[s->off[jq_kv_head(s, l, g)] + (size_t)i] = pos;
}

void jq_kv_store_drop_last(jq_kv_store *s, int32_t n)
{
    size_t heads = (size_t)s->n_layer * (size_t)s->n_head_kv;
    for (size_t h = 0; h < heads; h++)
        s->len[h] = s->len[h] > n ? s->len[h] - n : 0;
    s->next_pos -= n;
}

int32_t jq_kv_store_room(const jq_kv_store *s)
{
    size_t heads = (size_t)s->n_layer * (size_t)s->n_head_kv;
    int32_t room = INT32_MAX;
    for (size_t h = 0; h < heads; h++)
        if (s->cap[h] - s->len[h] < room)
            room = s->cap[h] - s->len[h];
    return room;
}

uint64_t jq_kv_bytes_for(int32_t n_layer, int32_t n_head_kv,
                         int32_t head_dim, uint32_t type, int64_t n)
{
    uint64_t es = type == JQ_TYPE_F32 ? 4 : 2;
    return 2ull * (uint64_t)n_layer * (uint64_t)n_head_kv *
           (uint64_t)head_dim * es * (uint64_t)n;
}

static uint64_t sum_bytes(const jq_kv_store *s, const int32_t *counts)
{
    size_t heads = (size_t)s->n_layer * (size_t)s->n_head_kv;
    uint64_t n = 0;
    for (size_t h = 0; h < heads; h++)
        n += (uint64_t)counts[h];
    return 2ull * n * (uint64_t)s->head_dim * s->elem_size;
}

uint64_t jq_kv_store_bytes_held(const jq_kv_store *s)
{
    return sum_bytes(s, s->len);
}

uint64_t jq_kv_store_bytes_allocated(const jq_kv_store *s)
{
    return sum_bytes(s, s->cap);
}

/* Copies visible entry si of head (l, g) of src (prefix entries first)
 * to entry di of dst, converting the element type. */
static void copy_entry(const jq_kv_store *src, int32_t l, int32_t g,
                       int32_t si, jq_kv_store *dst, int32_t di, float *tmp)
{
    size_t h = jq_kv_head(src, l, g);
    if (src->prefix) {
        int32_t np = src->prefix->len[h];
        if (si < np) {
            copy_entry(src->prefix, l, g, si, dst, di, tmp);
            return;
        }
        si -= np;
    }
    int32_t d = src->head_dim;
    int32_t pos = src->pos[src->off[h] + (size_t)si];
    if (src->type == dst->type) {
        memcpy(jq_kv_key(dst, l, g, di), jq_kv_key(src, l, g, si),
               (size_t)d * src->elem_size);
        memcpy(jq_kv_value(dst, l, g, di), jq_kv_value(src, l, g, si),
               (size_t)d * src->elem_size);
        dst->pos[dst->off[jq_kv_head(dst, l, g)] + (size_t)di] = pos;
        return;
    }
    float *kf = tmp, *vf = tmp + d;
    jq_dequantize_row(src->type, jq_kv_key(src, l, g, si), kf, d);
    jq_dequantize_row(src->type, jq_kv_value(src, l, g, si), vf, d);
    jq_kv_put(dst, l, g, di, kf, vf, pos);
}

jq_kv_store *jq_kv_store_gather_with(const jq_kv_store *src,
                                     const int32_t *counts,
                                     const int32_t *keep, int32_t stride,
                                     int32_t reserve, uint32_t type,
                                     jq_kv_alloc_fn alloc, void *ud)
{
    size_t heads = (size_t)src->n_layer * (size_t)src->n_head_kv;
    int32_t *caps = malloc(heads * sizeof(int32_t));
    float *tmp = malloc(2 * (size_t)src->head_dim * sizeof(float));
    if (!caps || !tmp) {
        free(caps);
        free(tmp);
        return NULL;
    }
    for (size_t h = 0; h < heads; h++)
        caps[h] = counts[h] + reserve;
    jq_kv_store *dst =
        alloc ? alloc(ud, src->n_layer, src->n_head_kv, src->head_dim, type, caps)
              : jq_kv_store_new_caps(src->n_layer, src->n_head_kv,
                                     src->head_dim, type, caps);
    free(caps);
    if (!dst) {
        free(tmp);
        return NULL;
    }
    for (int32_t l = 0; l < src->n_layer; l++) {
        for (int32_t g = 0; g < src->n_head_kv; g++) {
            size_t h = jq_kv_head(src, l, g);
            const int32_t *idx = keep + h * (size_t)stride;
            for (int32_t i = 0; i < counts[h]; i++)
                copy_entry(src, l, g, idx[i], dst, i, tmp);
            dst->len[h] = counts[h];
        }
    }
    dst->next_pos = src->next_pos;
    free(tmp);
    return dst;
}

jq_kv_store *jq_kv_store_gather(const jq_kv_store *src, const int32_t *counts,
                                const int32_t *keep, int32_t stride,
                                int32_t reserve, uint32_t type)
{
    return jq_kv_store_gather_with(src, counts, keep, stride, reserve, type,
                                   NULL, NULL);
}
