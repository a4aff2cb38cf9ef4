/* kv_export.h — the layout of an exported KV memfd (ExportKV).
 *
 * The memfd begins with jq_kv_export_header, then n_layer * n_head_kv
 * jq_kv_export_head records (layer-major), then the data: for each head its
 * keys (length x head_dim elements), values (the same) and positions
 * (length int32, the original prompt positions), each 64-byte aligned.
 * A session that extends a shared prefix (Fork) exports prefix entries
 * first, then its own, so a head reads as one sequence.
 *
 * The same facts travel in the ExportKVReply's KvLayout (protobuf), so a
 * client may use either. Little-endian, fixed-size fields, sizes pinned by
 * static_assert: the struct is a contract.
 *
 * NOTE for the client library: client/judgeq_kv_layout.h is meant to hold
 * this layout; until it lands on main this daemon-side definition is the
 * reference, and the two must stay byte-identical.
 */
#ifndef JQ_DAEMON_KV_EXPORT_H
#define JQ_DAEMON_KV_EXPORT_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "judgeq.pb-c.h"
#include "kernels.h"
#include "kv_store.h"

#define JQ_KV_EXPORT_MAGIC 0x564b514au /* "JQKV" little-endian */
#define JQ_KV_EXPORT_VERSION 1u
#define JQ_KV_EXPORT_ALIGN 64u

typedef struct {
    uint32_t magic;            /* JQ_KV_EXPORT_MAGIC */
    uint32_t version;          /* JQ_KV_EXPORT_VERSION */
    uint32_t header_bytes;     /* sizeof(jq_kv_export_header) */
    uint32_t head_record_bytes;/* sizeof(jq_kv_export_head) */
    uint32_t n_layer;
    uint32_t n_head_kv;
    uint32_t head_dim;
    uint32_t kv_type;          /* 0 = F32, 1 = F16 (KvType) */
    uint32_t elem_bytes;       /* 4 or 2 */
    uint32_t reserved;
    uint64_t heads_offset;     /* the head records */
    uint64_t total_bytes;      /* size of the memfd */
} jq_kv_export_header;
static_assert(sizeof(jq_kv_export_header) == 56, "KV export header layout");

typedef struct {
    uint32_t layer;
    uint32_t kv_head;
    uint32_t length;           /* entries */
    uint32_t reserved;
    uint64_t keys_offset;      /* bytes from the start of the memfd */
    uint64_t values_offset;
    uint64_t positions_offset;
} jq_kv_export_head;
static_assert(sizeof(jq_kv_export_head) == 40, "KV export head layout");

/* Copies every visible entry of s into a new sealed memfd named name
 * (MFD_CLOEXEC | MFD_ALLOW_SEALING; sealed F_SEAL_SHRINK | F_SEAL_GROW |
 * F_SEAL_WRITE | F_SEAL_SEAL after the writable mapping is gone). Returns the
 * fd and, when layout is non-NULL, the same layout as a protobuf KvLayout
 * (free with jq_kv_export_layout_free). -1 with a message on failure. */
int jq_kv_export(const jq_kv_store *s, const char *name,
                 Judgeq__KvLayout **layout, char *err, size_t errlen);
void jq_kv_export_layout_free(Judgeq__KvLayout *layout);

#endif
