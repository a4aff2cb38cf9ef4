/* kv_mem.c — session KV stores in memfds.
 *
 * A session's store lives in its own memfd rather than on the heap so that
 * (a) it can be bound to the session's NUMA node before first touch, and
 * (b) once it becomes a shared, immutable prefix (Fork) it can be sealed
 * against writes like any buffer the daemon hands out. Sealing needs every
 * writable mapping gone, and since Linux 6.7 a MAP_SHARED mapping of a
 * read-write fd counts as writable even when it is PROT_READ (it may be
 * mprotect'ed back: VM_MAYWRITE), so the seal would fail with EBUSY. The
 * store's arrays point into the mapping, so the range is first held by an
 * inaccessible anonymous mapping (MAP_FIXED: no other thread's mmap can
 * take the addresses meanwhile), the memfd is sealed, and its pages are
 * mapped back read-only at the same place; after the seal the kernel maps
 * them without VM_MAYWRITE. Any stray write now faults.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"

double jq_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int jq_kv_mem_create(jq_kv_mem *m, size_t size, const char *name, char *err,
                     size_t errlen)
{
    *m = (jq_kv_mem){.fd = -1};
    if (size == 0)
        size = 64;
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        snprintf(err, errlen, "memfd_create(%s): %s", name, strerror(errno));
        return -1;
    }
    if (ftruncate(fd, (off_t)size) != 0) {
        snprintf(err, errlen, "sizing %s to %zu bytes: %s", name, size,
                 strerror(errno));
        close(fd);
        return -1;
    }
    void *addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (addr == MAP_FAILED) {
        snprintf(err, errlen, "mapping %s (%zu bytes): %s", name, size,
                 strerror(errno));
        close(fd);
        return -1;
    }
    m->fd = fd;
    m->addr = addr;
    m->size = size;
    return 0;
}

int jq_kv_mem_seal(jq_kv_mem *m, char *err, size_t errlen)
{
    if (m->fd < 0 || m->sealed)
        return 0;
    void *hold = mmap(m->addr, m->size, PROT_NONE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (hold == MAP_FAILED) {
        snprintf(err, errlen, "unmapping a KV prefix for sealing: %s",
                 strerror(errno));
        return -1;
    }
    int sealed = fcntl(m->fd, F_ADD_SEALS,
                       F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE);
    int seal_errno = errno;
    /* back in place whatever the seal did: the store points here */
    void *ro = mmap(m->addr, m->size, PROT_READ, MAP_SHARED | MAP_FIXED,
                    m->fd, 0);
    if (ro == MAP_FAILED) {
        /* the addresses stay reserved; the session cannot go on */
        snprintf(err, errlen, "remapping a KV prefix read-only: %s",
                 strerror(errno));
        return -1;
    }
    if (sealed != 0) {
        snprintf(err, errlen, "sealing a KV prefix: %s",
                 strerror(seal_errno));
        return -1;
    }
    m->sealed = true;
    return 0;
}

void jq_kv_mem_release(jq_kv_mem *m)
{
    if (m->addr)
        munmap(m->addr, m->size);
    if (m->fd >= 0)
        close(m->fd);
    *m = (jq_kv_mem){.fd = -1};
}

void jq_soft_ref_put(jq_soft_ref *r)
{
    if (r && atomic_fetch_sub(&r->refs, 1) == 1) {
        jq_soft_tokens_free(r->soft);
        free(r);
    }
}
