/* kv_export.c — see kv_export.h.
 *
 * The export is a copy, not the session's own memory: a session keeps
 * appending to its store, while an exported buffer must be immutable
 * (F_SEAL_WRITE), and the copy flattens a fork's prefix and tail into one
 * sequence per head. Sealing follows the rule of memfd_create(2): no
 * writable shared mapping may exist when F_SEAL_WRITE is applied, so the
 * buffer is filled through a mapping that is unmapped first.
 */
#include "kv_export.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static uint64_t align_up(uint64_t x)
{
    return (x + JQ_KV_EXPORT_ALIGN - 1) / JQ_KV_EXPORT_ALIGN *
           JQ_KV_EXPORT_ALIGN;
}

void jq_kv_export_layout_free(Judgeq__KvLayout *layout)
{
    if (!layout)
        return;
    if (layout->heads) {
        for (size_t i = 0; i < layout->n_heads; i++)
            free(layout->heads[i]);
        free(layout->heads);
    }
    free(layout);
}

/* Copies entries [0, n) of head h of store s (its own part only). */
static void copy_head(const jq_kv_store *s, size_t h, int32_t n, uint8_t *k,
                      uint8_t *v, int32_t *pos)
{
    size_t row = (size_t)s->head_dim * s->elem_size;
    size_t first = s->off[h];
    memcpy(k, (const uint8_t *)s->k + first * row, (size_t)n * row);
    memcpy(v, (const uint8_t *)s->v + first * row, (size_t)n * row);
    memcpy(pos, s->pos + first, (size_t)n * sizeof(int32_t));
}

/* Lays out the export of s: fills rec (one per head) when non-NULL and
 * returns the total size in bytes. */
static uint64_t layout_heads(const jq_kv_store *s, jq_kv_export_head *rec)
{
    size_t heads = (size_t)s->n_layer * (size_t)s->n_head_kv;
    size_t row = (size_t)s->head_dim * s->elem_size;
    uint64_t off = align_up(sizeof(jq_kv_export_header) +
                            heads * sizeof(jq_kv_export_head));
    for (size_t h = 0; h < heads; h++) {
        int32_t own = s->len[h];
        int32_t pre = s->prefix ? s->prefix->len[h] : 0;
        uint64_t n = (uint64_t)own + (uint64_t)pre;
        jq_kv_export_head e = {
            .layer = (uint32_t)(h / (size_t)s->n_head_kv),
            .kv_head = (uint32_t)(h % (size_t)s->n_head_kv),
            .length = (uint32_t)n,
        };
        e.keys_offset = off;
        off = align_up(off + n * row);
        e.values_offset = off;
        off = align_up(off + n * row);
        e.positions_offset = off;
        off = align_up(off + n * sizeof(int32_t));
        if (rec)
            rec[h] = e;
    }
    return off;
}

uint64_t jq_kv_export_bytes(const jq_kv_store *s)
{
    return layout_heads(s, NULL);
}

int jq_kv_export(const jq_kv_store *s, const char *name, uint64_t session_id,
                 Judgeq__KvLayout **layout_out, char *err, size_t errlen)
{
    size_t heads = (size_t)s->n_layer * (size_t)s->n_head_kv;
    size_t row = (size_t)s->head_dim * s->elem_size;
    jq_kv_export_head *rec = calloc(heads, sizeof *rec);
    Judgeq__KvLayout *layout = NULL;
    if (!rec) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    uint64_t total = layout_heads(s, rec);

    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        snprintf(err, errlen, "memfd_create(%s): %s", name, strerror(errno));
        free(rec);
        return -1;
    }
    if (ftruncate(fd, (off_t)total) != 0) {
        snprintf(err, errlen, "sizing the KV export to %llu bytes: %s",
                 (unsigned long long)total, strerror(errno));
        goto fail;
    }
    uint8_t *map = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                        0);
    if (map == MAP_FAILED) {
        snprintf(err, errlen, "mapping the KV export: %s", strerror(errno));
        goto fail;
    }
    jq_kv_export_header hdr = {
        .magic = JQ_KV_EXPORT_MAGIC,
        .version = JQ_KV_EXPORT_VERSION,
        .header_bytes = sizeof(jq_kv_export_header),
        .entry_bytes = sizeof(jq_kv_export_head),
        .n_layer = (uint32_t)s->n_layer,
        .n_head_kv = (uint32_t)s->n_head_kv,
        .head_dim = (uint32_t)s->head_dim,
        .elem_type = s->type == JQ_TYPE_F16 ? JUDGEQ_KV_F16 : JUDGEQ_KV_F32,
        .table_offset = sizeof(jq_kv_export_header),
        .total_bytes = total,
        .session_id = session_id,
    };
    memcpy(map, &hdr, sizeof hdr);
    memcpy(map + hdr.table_offset, rec, heads * sizeof *rec);
    for (size_t h = 0; h < heads; h++) {
        int32_t pre = s->prefix ? s->prefix->len[h] : 0;
        uint8_t *k = map + rec[h].keys_offset;
        uint8_t *v = map + rec[h].values_offset;
        int32_t *pos = (int32_t *)(void *)(map + rec[h].positions_offset);
        if (pre)
            copy_head(s->prefix, h, pre, k, v, pos);
        copy_head(s, h, s->len[h], k + (size_t)pre * row,
                  v + (size_t)pre * row, pos + pre);
    }
    munmap(map, total);
    if (fcntl(fd, F_ADD_SEALS,
              F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
        snprintf(err, errlen, "sealing the KV export: %s", strerror(errno));
        goto fail;
    }

    if (layout_out) {
        layout = malloc(sizeof *layout);
        if (!layout)
            goto oom;
        judgeq__kv_layout__init(layout);
        layout->has_version = layout->has_n_layer = layout->has_n_head_kv =
            layout->has_head_dim = layout->has_kv_type =
                layout->has_total_bytes = 1;
        layout->version = JQ_KV_EXPORT_VERSION;
        layout->n_layer = hdr.n_layer;
        layout->n_head_kv = hdr.n_head_kv;
        layout->head_dim = hdr.head_dim;
        layout->kv_type = hdr.elem_type ? JUDGEQ__KV_TYPE__KV_F16
                                      : JUDGEQ__KV_TYPE__KV_F32;
        layout->total_bytes = total;
        layout->heads = calloc(heads, sizeof *layout->heads);
        if (!layout->heads)
            goto oom;
        for (size_t h = 0; h < heads; h++) {
            Judgeq__KvHeadLayout *hl = malloc(sizeof *hl);
            if (!hl)
                goto oom;
            judgeq__kv_head_layout__init(hl);
            layout->heads[h] = hl;
            layout->n_heads = h + 1;
            hl->has_layer = hl->has_kv_head = hl->has_length =
                hl->has_keys_offset = hl->has_values_offset =
                    hl->has_positions_offset = 1;
            hl->layer = rec[h].layer;
            hl->kv_head = rec[h].kv_head;
            hl->length = rec[h].length;
            hl->keys_offset = rec[h].keys_offset;
            hl->values_offset = rec[h].values_offset;
            hl->positions_offset = rec[h].positions_offset;
        }
        *layout_out = layout;
    }
    free(rec);
    return fd;
oom:
    snprintf(err, errlen, "out of memory");
    jq_kv_export_layout_free(layout);
fail:
    close(fd);
    free(rec);
    return -1;
}
