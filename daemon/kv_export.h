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
 * The header and the head records are those of client/judgeq_kv_layout.h,
 * shared with libjudgeq (which checks them before a client reads a byte).
 */
#ifndef JQ_DAEMON_KV_EXPORT_H
#define JQ_DAEMON_KV_EXPORT_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "judgeq.pb-c.h"
#include "judgeq_kv_layout.h"
#include "kernels.h"
#include "kv_store.h"

#define JQ_KV_EXPORT_MAGIC JUDGEQ_KV_LAYOUT_MAGIC
#define JQ_KV_EXPORT_VERSION JUDGEQ_KV_LAYOUT_VERSION
#define JQ_KV_EXPORT_ALIGN JUDGEQ_KV_ALIGN

typedef judgeq_kv_layout_header jq_kv_export_header;
typedef judgeq_kv_head_entry jq_kv_export_head;

/* Copies every visible entry of s into a new sealed memfd named name
 * (MFD_CLOEXEC | MFD_ALLOW_SEALING; sealed F_SEAL_SHRINK | F_SEAL_GROW |
 * F_SEAL_WRITE | F_SEAL_SEAL after the writable mapping is gone). Returns the
 * fd and, when layout is non-NULL, the same layout as a protobuf KvLayout
 * (free with jq_kv_export_layout_free). -1 with a message on failure. */
int jq_kv_export(const jq_kv_store *s, const char *name, uint64_t session_id,
                 Judgeq__KvLayout **layout, char *err, size_t errlen);
void jq_kv_export_layout_free(Judgeq__KvLayout *layout);
/* The size of the memfd jq_kv_export would make of s (what an export
 * costs the daemon's memory until the reply carrying it is queued). */
uint64_t jq_kv_export_bytes(const jq_kv_store *s);

#endif
