/* kv_store.h — the key/value cache of one sequence.
 *
 * Per (layer, KV head): keys, values, the original position of every
 * entry, a length and a capacity. Heads may hold different numbers of
 * entries (per-head budgets after eviction), so each head owns a
 * contiguous slice [off, off + cap) of the entry arrays. Keys are stored
 * after RoPE, so a kept key never moves when its neighbours are evicted.
 * Elements are F32 or F16 (JQ_TYPE_F32 / JQ_TYPE_F16).
 */
#ifndef JQ_KV_STORE_H
#define JQ_KV_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct jq_kv_store_s {
    int32_t n_layer, n_head_kv, head_dim;
    uint32_t type;       /* JQ_TYPE_F32 or JQ_TYPE_F16 */
    size_t elem_size;    /* 4 or 2 */
    int32_t *cap;        /* (n_layer, n_head_kv) entries each head can hold */
    int32_t *len;        /* (n_layer, n_head_kv) entries each head holds */
    size_t *off;         /* (n_layer, n_head_kv) first entry of the head */
    size_t n_entries;    /* sum of cap */
    void *k;             /* (n_entries, head_dim) of type */
    void *v;             /* (n_entries, head_dim) of type */
    int32_t *pos;        /* (n_entries) original positions */
    int32_t next_pos;    /* the position the next appended token takes */
    /* A read-only prefix shared with other stores (Fork), or NULL. Each
     * head sees prefix->len[h] prefix entries first, then its own len[h]
     * entries; appends go to the own entries only. The prefix must outlive
     * this store and must not change while it is shared. */
    const struct jq_kv_store_s *prefix;
    bool external;       /* k, v, pos live in caller memory (not freed) */
} jq_kv_store;

/* A store where every head has the same capacity. */
jq_kv_store *jq_kv_store_new(int32_t n_layer, int32_t n_head_kv,
                             int32_t head_dim, uint32_t type, int32_t cap);
/* A store with per-head capacities caps[(l * n_head_kv + g)]. */
jq_kv_store *jq_kv_store_new_caps(int32_t n_layer, int32_t n_head_kv,
                                  int32_t head_dim, uint32_t type,
                                  const int32_t *caps);
void jq_kv_store_free(jq_kv_store *s);
/* Empties every head (capacities kept). */
void jq_kv_store_clear(jq_kv_store *s);

static inline size_t jq_kv_head(const jq_kv_store *s, int32_t l, int32_t g)
{
    return (size_t)l * (size_t)s->n_head_kv + (size_t)g;
}
/* Address of entry i of head (l, g) in the key or value array. */
void *jq_kv_key(const jq_kv_store *s, int32_t l, int32_t g, int32_t i);
void *jq_kv_value(const jq_kv_store *s, int32_t l, int32_t g, int32_t i);
/* Stores head_dim F32 values of k and v as entry i of head (l, g),
 * converting to the store's type. */
void jq_kv_put(jq_kv_store *s, int32_t l, int32_t g, int32_t i,
               const float *k, const float *v, int32_t pos);
/* Forgets the last n entries appended to every head (the own entries;
 * each head must hold at least n) and moves next_pos back by n: undoes n
 * decode steps, or drops observer rows after scoring. */
void jq_kv_store_drop_last(jq_kv_store *s, int32_t n);
/* Smallest free capacity over all heads (how many tokens may still be
 * appended to every head). */
int32_t jq_kv_store_room(const jq_kv_store *s);

/* Bytes of keys and values held (sum of len) and allocated (sum of cap);
 * positions are not counted. */
uint64_t jq_kv_store_bytes_held(const jq_kv_store *s);
uint64_t jq_kv_store_bytes_allocated(const jq_kv_store *s);
/* Bytes of K and V for n entries per head in every head. */
uint64_t jq_kv_bytes_for(int32_t n_layer, int32_t n_head_kv,
                         int32_t head_dim, uint32_t type, int64_t n);

/* Memory layout of a store's arrays in one buffer (for a memfd or a
 * NUMA-bound region): keys at 0, values at values_offset, positions at
 * positions_offset, total bytes (each part 64-byte aligned). Per head, entry
 * i of head h is at entry index off[h] + i as in any store. */
typedef struct {
    uint64_t values_offset, positions_offset, total_bytes;
} jq_kv_mem_layout;
/* The layout for these capacities; 0 total_bytes on overflow. */
jq_kv_mem_layout jq_kv_store_mem_layout(int32_t n_layer, int32_t n_head_kv,
                                        int32_t head_dim, uint32_t type,
                                        const int32_t *caps);
/* A store whose arrays are placed in mem (at least the layout's
 * total_bytes, 64-byte aligned); the caller keeps mem alive and frees it
 * after jq_kv_store_free. NULL on bad arguments. */
jq_kv_store *jq_kv_store_new_in(void *mem, size_t size, int32_t n_layer,
                                int32_t n_head_kv, int32_t head_dim,
                                uint32_t type, const int32_t *caps);
/* A store that extends prefix (read-only, shared) with `cap` own entries
 * per head, same shape and type; next_pos continues the prefix. */
jq_kv_store *jq_kv_store_new_tail(const jq_kv_store *prefix, int32_t cap);
/* Entries head (l, g) shows to attention: prefix entries + own entries. */
int32_t jq_kv_visible(const jq_kv_store *s, int32_t l, int32_t g);

/* Allocates stores for jq_kv_store_gather (a daemon puts them in memfds
 * or NUMA-bound memory); NULL = jq_kv_store_new_caps. */
typedef jq_kv_store *(*jq_kv_alloc_fn)(void *ud, int32_t n_layer,
                                       int32_t n_head_kv, int32_t head_dim,
                                       uint32_t type, const int32_t *caps);

/* A new store holding, for every head (l, g), the entries of src at the
 * ascending entry indices keep[(l*n_head_kv+g)*stride + i], i < counts[...],
 * with room for `reserve` more entries per head, in `type`. next_pos is
 * copied. NULL on allocation failure. */
jq_kv_store *jq_kv_store_gather(const jq_kv_store *src, const int32_t *counts,
                                const int32_t *keep, int32_t stride,
                                int32_t reserve, uint32_t type);
/* The same, allocating the new store with alloc(ud, ...) when non-NULL. */
jq_kv_store *jq_kv_store_gather_with(const jq_kv_store *src,
                                     const int32_t *counts,
                                     const int32_t *keep, int32_t stride,
                                     int32_t reserve, uint32_t type,
                                     jq_kv_alloc_fn alloc, void *ud);

#endif
