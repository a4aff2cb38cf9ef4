/* kv_map.c — checking and mapping an exported KV memfd.
 *
 * The order follows what Wayland's wl_shm and PipeWire do with memory from
 * a peer: check the seals first, then map read-only, then distrust every
 * number in the mapping. F_SEAL_SHRINK makes the size from fstat final, so
 * no later truncation can turn a read into SIGBUS; F_SEAL_WRITE makes the
 * contents final, so what is validated here stays valid for the life of
 * the mapping (F_SEAL_FUTURE_WRITE would not: the daemon could still
 * change lengths and offsets under us, so it is not accepted).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define REQUIRED_SEALS (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW)

static int bad(char *err, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(char *err, size_t size, const char *fmt, ...)
{
    if (err && size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, size, fmt, ap);
        va_end(ap);
    }
    return JUDGEQ_ERR_BAD_FD;
}

int jqc_check_seals(int fd, char *err, size_t size)
{
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0)
        return bad(err, size, "fd %d has no seals to check (%s): not a "
                   "sealable memfd", fd, strerror(errno));
    if ((seals & REQUIRED_SEALS) != REQUIRED_SEALS)
        return bad(err, size,
                   "fd %d lacks seals:%s%s%s (writable or resizable memory "
                   "cannot be trusted)",
                   fd, seals & F_SEAL_WRITE ? "" : " F_SEAL_WRITE",
                   seals & F_SEAL_SHRINK ? "" : " F_SEAL_SHRINK",
                   seals & F_SEAL_GROW ? "" : " F_SEAL_GROW");
    return JUDGEQ_OK;
}

int judgeq_kv_check_seals(int fd, char *err, size_t size)
{
    return jqc_check_seals(fd, err, size);
}

/* [off, off + bytes) inside [0, total) without overflow. */
static bool inside(uint64_t off, uint64_t bytes, uint64_t total)
{
    return off <= total && bytes <= total - off;
}

/* Validates the header and table of a mapping of size bytes. */
static int check_layout(const uint8_t *base, size_t size,
                        const judgeq_kv_export *expect, char *err, size_t es)
{
    const judgeq_kv_layout_header *h = (const judgeq_kv_layout_header *)base;
    if (h->magic != JUDGEQ_KV_LAYOUT_MAGIC)
        return bad(err, es, "no judgeq KV layout header (magic 0x%08x)", h->magic);
    if (h->version != JUDGEQ_KV_LAYOUT_VERSION)
        return bad(err, es, "KV layout version %u; this library reads %u",
                   h->version, JUDGEQ_KV_LAYOUT_VERSION);
    if (h->header_bytes < sizeof *h || h->header_bytes > size)
        return bad(err, es, "header_bytes %u out of range", h->header_bytes);
    /* entries are read in place: their size keeps the uint64 fields of
     * every entry 8-byte aligned */
    if (h->entry_bytes < sizeof(judgeq_kv_head_entry) || h->entry_bytes > 4096 ||
        h->entry_bytes % 8)
        return bad(err, es, "entry_bytes %u is not a multiple of 8 in [%zu, 4096]",
                   h->entry_bytes, sizeof(judgeq_kv_head_entry));
    if (h->n_layer == 0 || h->n_layer > JUDGEQ_KV_MAX_LAYERS ||
        h->n_head_kv == 0 || h->n_head_kv > JUDGEQ_KV_MAX_HEADS_KV ||
        h->head_dim == 0 || h->head_dim > JUDGEQ_KV_MAX_HEAD_DIM)
        return bad(err, es, "shape %u layers x %u KV heads x %u dims out of range",
                   h->n_layer, h->n_head_kv, h->head_dim);
    uint32_t esz = judgeq_kv_elem_size(h->elem_type);
    if (!esz)
        return bad(err, es, "unknown element type %u", h->elem_type);
    if (h->total_bytes > size)
        return bad(err, es, "total_bytes %llu exceeds the memfd's %zu bytes",
                   (unsigned long long)h->total_bytes, size);
    uint64_t total = h->total_bytes;
    uint64_t n = (uint64_t)h->n_layer * h->n_head_kv; /* <= 2^24 */
    if (h->table_offset % 8 || h->table_offset < h->header_bytes ||
        !inside(h->table_offset, n * h->entry_bytes, total))
        return bad(err, es, "head table at %llu (%llu entries) outside the file",
                   (unsigned long long)h->table_offset, (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++) {
        const judgeq_kv_head_entry *e =
            (const judgeq_kv_head_entry *)(base + h->table_offset + i * h->entry_bytes);
        if (e->layer != i / h->n_head_kv || e->kv_head != i % h->n_head_kv)
            return bad(err, es, "table entry %llu names layer %u head %u",
                       (unsigned long long)i, e->layer, e->kv_head);
        uint64_t kv_bytes = (uint64_t)e->length * h->head_dim * esz; /* < 2^50 */
        if (!inside(e->keys_offset, kv_bytes, total) ||
            !inside(e->values_offset, kv_bytes, total) ||
            !inside(e->positions_offset, (uint64_t)e->length * 4, total))
            return bad(err, es, "layer %u head %u: %u entries reach past the "
                       "file's %llu bytes",
                       e->layer, e->kv_head, e->length, (unsigned long long)total);
        if (e->keys_offset % esz || e->values_offset % esz || e->positions_offset % 4)
            return bad(err, es, "layer %u head %u: misaligned arrays",
                       e->layer, e->kv_head);
    }
    if (!expect)
        return JUDGEQ_OK;
    /* The reply and the header are two descriptions of one thing: a
     * mismatch means one of them is wrong, and we cannot tell which. */
    if (expect->version != h->version || expect->n_layer != h->n_layer ||
        expect->n_head_kv != h->n_head_kv || expect->head_dim != h->head_dim ||
        (uint32_t)expect->kv_type != h->elem_type ||
        expect->total_bytes != h->total_bytes || expect->n_heads != n)
        return bad(err, es, "the ExportKV reply's layout differs from the memfd's header");
    for (uint64_t i = 0; i < n; i++) {
        const judgeq_kv_head_entry *e =
            (const judgeq_kv_head_entry *)(base + h->table_offset + i * h->entry_bytes);
        const judgeq_kv_head_entry *x = &expect->heads[i];
        if (x->layer != e->layer || x->kv_head != e->kv_head ||
            x->length != e->length || x->keys_offset != e->keys_offset ||
            x->values_offset != e->values_offset ||
            x->positions_offset != e->positions_offset)
            return bad(err, es, "the ExportKV reply's head %llu differs from "
                       "the memfd's table", (unsigned long long)i);
    }
    return JUDGEQ_OK;
}

int judgeq_kv_map(int fd, const judgeq_kv_export *expect,
                  judgeq_kv_mapping *map, char *err, size_t err_size)
{
    if (!map)
        return bad(err, err_size, "judgeq_kv_map: map is NULL");
    memset(map, 0, sizeof *map);
    int rc = jqc_check_seals(fd, err, err_size);
    if (rc)
        return rc;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return bad(err, err_size, "fstat of fd %d: %s", fd, strerror(errno));
    if (!S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof(judgeq_kv_layout_header) ||
        (uint64_t)st.st_size > SIZE_MAX)
        return bad(err, err_size, "fd %d is %lld bytes: too small for a KV layout",
                   fd, (long long)st.st_size);
    size_t size = (size_t)st.st_size;
    void *base = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED)
        return bad(err, err_size, "mmap of %zu bytes: %s", size, strerror(errno));
    rc = check_layout(base, size, expect, err, err_size);
    if (rc) {
        munmap(base, size);
        return rc;
    }
    const judgeq_kv_layout_header *h = base;
    map->base = base;
    map->size = size;
    map->header = h;
    map->table = (const uint8_t *)base + h->table_offset;
    if (err && err_size)
        err[0] = 0;
    return JUDGEQ_OK;
}

void judgeq_kv_unmap(judgeq_kv_mapping *map)
{
    if (!map)
        return;
    if (map->base)
        munmap((void *)map->base, map->size);
    memset(map, 0, sizeof *map);
}

const judgeq_kv_head_entry *judgeq_kv_head(const judgeq_kv_mapping *map,
                                           uint32_t layer, uint32_t kv_head)
{
    if (!map || !map->header || layer >= map->header->n_layer ||
        kv_head >= map->header->n_head_kv)
        return NULL;
    size_t i = (size_t)layer * map->header->n_head_kv + kv_head;
    return (const judgeq_kv_head_entry *)(map->table + i * map->header->entry_bytes);
}

const void *judgeq_kv_keys(const judgeq_kv_mapping *map, uint32_t layer,
                           uint32_t kv_head)
{
    const judgeq_kv_head_entry *e = judgeq_kv_head(map, layer, kv_head);
    return e ? (const uint8_t *)map->base + e->keys_offset : NULL;
}

const void *judgeq_kv_values(const judgeq_kv_mapping *map, uint32_t layer,
                             uint32_t kv_head)
{
    const judgeq_kv_head_entry *e = judgeq_kv_head(map, layer, kv_head);
    return e ? (const uint8_t *)map->base + e->values_offset : NULL;
}

const int32_t *judgeq_kv_positions(const judgeq_kv_mapping *map,
                                   uint32_t layer, uint32_t kv_head)
{
    const judgeq_kv_head_entry *e = judgeq_kv_head(map, layer, kv_head);
    return e ? (const int32_t *)((const uint8_t *)map->base + e->positions_offset)
             : NULL;
}
