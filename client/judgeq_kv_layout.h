/* judgeq_kv_layout.h — the binary layout of an exported KV memfd.
 *
 * ExportKV hands a client a sealed, read-only memfd (SCM_RIGHTS). The
 * reply's KvLayout message describes it, and so does this header, written
 * by the daemon at offset 0 of the memfd itself: a mapping is then
 * self-describing and can be handed on (to another process, a debugger, a
 * file) without the protobuf reply. The two descriptions must agree; the
 * client library checks that they do.
 *
 * Shared by judgeqd (writer) and libjudgeq (reader) and installed with
 * judgeq.h, so every field has a fixed width and offset (pinned below with
 * static_assert) and the file uses nothing but <stdint.h>/<assert.h>.
 *
 * The memfd:
 *
 *   offset 0            judgeq_kv_layout_header   (header_bytes)
 *   table_offset        judgeq_kv_head_entry[n_layer * n_head_kv]
 *                       (entry_bytes each; layer-major: entry l*n_head_kv+h
 *                        describes layer l, KV head h)
 *   anywhere after      per head: keys, values (length x head_dim elements
 *                       of elem_type, row major: entry i's head_dim
 *                       elements are contiguous), positions (length int32)
 *
 * Keys are stored after RoPE; positions[i] is the original prompt (or
 * decode) position of entry i, ascending. Entries are in the order the
 * session attends to them: for a forked session, the shared prefix first,
 * then its own tail.
 *
 * Byte order is the host's (a memfd never leaves the machine). Offsets are
 * bytes from the start of the memfd. The writer aligns keys and values to
 * JUDGEQ_KV_ALIGN bytes; a reader needs (and the library checks) only the
 * element alignment, so that typed access through the mapping is defined.
 *
 * Compatibility: a reader accepts the same major version; header_bytes and
 * entry_bytes let a later minor version append fields (readers skip what
 * they do not know). A new element type or a reinterpretation of a field
 * is a new major version.
 */
#ifndef JUDGEQ_KV_LAYOUT_H
#define JUDGEQ_KV_LAYOUT_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

/* "JQKV" read as bytes at offset 0 on a little-endian host. */
#define JUDGEQ_KV_LAYOUT_MAGIC UINT32_C(0x564b514a)
/* Equal to KvLayout.version in the ExportKV reply. */
#define JUDGEQ_KV_LAYOUT_VERSION 1u
/* Alignment the daemon gives keys and values (a cache line; an AVX-512
 * load of 16 floats never splits two lines). */
#define JUDGEQ_KV_ALIGN 64u
/* Upper bounds a reader applies before it trusts the shape (far above any
 * real model: they only keep size arithmetic in range). */
#define JUDGEQ_KV_MAX_LAYERS 4096u
#define JUDGEQ_KV_MAX_HEADS_KV 4096u
#define JUDGEQ_KV_MAX_HEAD_DIM 65536u

/* Element type of keys and values; the same numbers as the protocol's
 * KvType enum. */
typedef enum {
    JUDGEQ_KV_F32 = 0, /* IEEE binary32 */
    JUDGEQ_KV_F16 = 1, /* IEEE binary16 */
} judgeq_kv_elem_type;

/* Offset 0 of the memfd. 64 bytes. */
typedef struct judgeq_kv_layout_header {
    uint32_t magic;        /* JUDGEQ_KV_LAYOUT_MAGIC */
    uint32_t version;      /* JUDGEQ_KV_LAYOUT_VERSION */
    uint32_t header_bytes; /* sizeof(judgeq_kv_layout_header) when written */
    uint32_t entry_bytes;  /* sizeof(judgeq_kv_head_entry) when written */
    uint32_t n_layer;
    uint32_t n_head_kv;
    uint32_t head_dim;
    uint32_t elem_type;    /* judgeq_kv_elem_type */
    uint64_t total_bytes;  /* size of the memfd */
    uint64_t table_offset; /* first judgeq_kv_head_entry */
    uint64_t session_id;   /* the exported session (informational) */
    uint32_t flags;        /* 0; reserved for later minor versions */
    uint32_t reserved;     /* 0 */
} judgeq_kv_layout_header;

/* One (layer, KV head). 48 bytes. */
typedef struct judgeq_kv_head_entry {
    uint32_t layer;            /* equals the entry's index / n_head_kv */
    uint32_t kv_head;          /* equals the entry's index % n_head_kv */
    uint32_t length;           /* entries held */
    uint32_t reserved;         /* 0 */
    uint64_t keys_offset;      /* length * head_dim elements */
    uint64_t values_offset;    /* length * head_dim elements */
    uint64_t positions_offset; /* length int32 */
    uint64_t reserved2;        /* 0 */
} judgeq_kv_head_entry;

static_assert(sizeof(judgeq_kv_layout_header) == 64, "header is 64 bytes");
static_assert(offsetof(judgeq_kv_layout_header, magic) == 0, "magic at 0");
static_assert(offsetof(judgeq_kv_layout_header, version) == 4, "version");
static_assert(offsetof(judgeq_kv_layout_header, header_bytes) == 8, "hdr");
static_assert(offsetof(judgeq_kv_layout_header, entry_bytes) == 12, "ent");
static_assert(offsetof(judgeq_kv_layout_header, n_layer) == 16, "n_layer");
static_assert(offsetof(judgeq_kv_layout_header, n_head_kv) == 20, "heads");
static_assert(offsetof(judgeq_kv_layout_header, head_dim) == 24, "dim");
static_assert(offsetof(judgeq_kv_layout_header, elem_type) == 28, "type");
static_assert(offsetof(judgeq_kv_layout_header, total_bytes) == 32, "total");
static_assert(offsetof(judgeq_kv_layout_header, table_offset) == 40, "table");
static_assert(offsetof(judgeq_kv_layout_header, session_id) == 48, "sid");
static_assert(offsetof(judgeq_kv_layout_header, flags) == 56, "flags");
static_assert(sizeof(judgeq_kv_head_entry) == 48, "entry is 48 bytes");
static_assert(offsetof(judgeq_kv_head_entry, length) == 8, "length");
static_assert(offsetof(judgeq_kv_head_entry, keys_offset) == 16, "keys");
static_assert(offsetof(judgeq_kv_head_entry, values_offset) == 24, "values");
static_assert(offsetof(judgeq_kv_head_entry, positions_offset) == 32, "pos");

/* Bytes of one key or value element; 0 for an unknown type. */
static inline uint32_t judgeq_kv_elem_size(uint32_t elem_type)
{
    return elem_type == JUDGEQ_KV_F32 ? 4u : elem_type == JUDGEQ_KV_F16 ? 2u : 0u;
}

/* Rounds n up to JUDGEQ_KV_ALIGN (writers placing arrays). */
static inline uint64_t judgeq_kv_align(uint64_t n)
{
    return (n + (JUDGEQ_KV_ALIGN - 1)) & ~(uint64_t)(JUDGEQ_KV_ALIGN - 1);
}

#endif
