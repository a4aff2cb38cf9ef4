/* fuzz_util.c — what every fuzz target shares: the invariant failure and
 * where the reference files are. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"

void jq_fuzz_fail(const char *file, int line, const char *cond,
                  const char *fmt, ...)
{
    fprintf(stderr, "%s:%d: fuzz invariant failed: %s: ", file, line, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

static const char *path_in(const char *env, const char *fallback,
                           const char *rel)
{
    static char buf[4096];
    const char *dir = getenv(env);
    if (!dir || !*dir)
        dir = fallback;
    snprintf(buf, sizeof buf, "%s/%s", dir, rel);
    return buf;
}

const char *jq_fuzz_reference_path(const char *rel)
{
    return path_in("JUDGEQ_TEST_REFERENCE", "../shared/reference", rel);
}

const char *jq_fuzz_model_path(const char *rel)
{
    return path_in("JUDGEQ_TEST_MODELS", "../shared/models", rel);
}

const char *jq_fuzz_memfile(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("jq-fuzz-input", MFD_CLOEXEC);
        jq_fuzz_check(fd >= 0, "memfd_create: %s", strerror(errno));
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    /* shrink first: a shorter input must not keep the old tail */
    jq_fuzz_check(ftruncate(fd, 0) == 0, "ftruncate: %s", strerror(errno));
    size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(fd, data + done, size - done, (off_t)done);
        jq_fuzz_check(w > 0, "pwrite: %s", strerror(errno));
        done += (size_t)w;
    }
    return path;
}
