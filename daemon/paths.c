/* paths.c — see paths.h. */
#include "paths.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int jq_allow_list_init(jq_allow_list *a, const jq_str_list *prefixes,
                       char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    for (size_t i = 0; i < prefixes->n; i++) {
        char *canon = realpath(prefixes->v[i], NULL);
        if (!canon) {
            snprintf(err, errlen, "--allow-path %s: %s", prefixes->v[i],
                     strerror(errno));
            jq_allow_list_free(a);
            return -1;
        }
        a->prefix[a->n++] = canon;
    }
    return 0;
}

void jq_allow_list_free(jq_allow_list *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->prefix[i]);
    a->n = 0;
}

bool jq_path_under(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);
    if (n == 1 && prefix[0] == '/')
        return path[0] == '/';
    return strncmp(path, prefix, n) == 0 && (path[n] == 0 || path[n] == '/');
}

static bool under_any(const jq_allow_list *a, const char *path)
{
    for (size_t i = 0; i < a->n; i++)
        if (jq_path_under(path, a->prefix[i]))
            return true;
    return false;
}

/* The path with "//", "." and ".." folded by spelling alone, no links
 * followed: what a path that cannot be opened claims to be. */
static void fold_lexically(const char *path, char *out, size_t cap)
{
    size_t n = 0; /* out[0..n) is "/a/b": every component after a '/' */
    const char *p = path;
    while (*p) {
        while (*p == '/')
            p++;
        const char *e = p;
        while (*e && *e != '/')
            e++;
        size_t len = (size_t)(e - p);
        if (len == 2 && p[0] == '.' && p[1] == '.') {
            while (n > 0 && out[n - 1] != '/')
                n--;
            if (n > 0)
                n--;
        } else if (len > 0 && !(len == 1 && p[0] == '.') &&
                   n + len + 2 <= cap) {
            out[n++] = '/';
            memcpy(out + n, p, len);
            n += len;
        }
        p = e;
    }
    if (n == 0)
        out[n++] = '/';
    out[n] = 0;
}

int jq_allow_open(const jq_allow_list *a, const char *field, const char *path,
                  uint64_t *size, jq_wire_error *err)
{
    if (a->n == 0)
        return jq_wire_fail(err, JUDGEQ__ERROR_CODE__PERMISSION_DENIED,
                    "%s %.160s: this daemon opens no client paths (it was "
                    "started without --allow-path)",
                    field, path);
    if (path[0] != '/')
        return jq_wire_fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                    "%s %.160s is not an absolute path", field, path);
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        char folded[PATH_MAX];
        fold_lexically(path, folded, sizeof folded);
        if (!under_any(a, folded))
            return jq_wire_fail(err, JUDGEQ__ERROR_CODE__PERMISSION_DENIED,
                        "%s %.160s is not under an --allow-path prefix",
                        field, path);
        return jq_wire_fail(err,
                    e == ENOENT || e == ENOTDIR
                        ? JUDGEQ__ERROR_CODE__NOT_FOUND
                        : JUDGEQ__ERROR_CODE__PERMISSION_DENIED,
                    "%s %.160s: %s", field, path, strerror(e));
    }
    char proc[64], real[PATH_MAX];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(proc, real, sizeof real - 1);
    if (n <= 0 || (size_t)n >= sizeof real - 1) {
        int e = n < 0 ? errno : ENAMETOOLONG;
        close(fd);
        return jq_wire_fail(err, JUDGEQ__ERROR_CODE__INTERNAL,
                    "%s %.160s: cannot tell where it leads (%s: %s)", field,
                    path, proc, strerror(e));
    }
    real[n] = 0;
    if (real[0] != '/' || !under_any(a, real)) {
        close(fd);
        /* the name it resolved to stays in the daemon: a client learns
         * nothing about files it could not name itself */
        return jq_wire_fail(err, JUDGEQ__ERROR_CODE__PERMISSION_DENIED,
                    "%s %.160s is not under an --allow-path prefix "
                    "(after following links)",
                    field, path);
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return jq_wire_fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                    "%s %.160s is not a regular file", field, path);
    }
    *size = (uint64_t)st.st_size;
    return fd;
}
