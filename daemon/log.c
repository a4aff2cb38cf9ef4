/* log.c — see log.h. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static _Atomic int log_level = JQ_LOG_INFO;

static const char *const level_names[] = {
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
};

int jq_log_level_from_name(const char *name)
{
    for (int i = 0; i < 8; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

const char *jq_log_level_name(int level)
{
    return level >= 0 && level < 8 ? level_names[level] : "?";
}

void jq_log_set_level(int level) { atomic_store(&log_level, level); }
int jq_log_level(void) { return atomic_load(&log_level); }

int jq_log_open(const char *path, char *err, size_t errlen)
{
    if (!path)
        return 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        snprintf(err, errlen, "--log-file %s: %s", path, strerror(errno));
        return -1;
    }
    if (fd != STDERR_FILENO) {
        if (dup2(fd, STDERR_FILENO) < 0) {
            snprintf(err, errlen, "dup2(%s, stderr): %s", path,
                     strerror(errno));
            close(fd);
            return -1;
        }
        close(fd);
    }
    return 0;
}

void jq_log(int level, const char *fmt, ...)
{
    if (level > atomic_load(&log_level))
        return;
    char line[1024];
    int n = snprintf(line, sizeof line, "<%d>", level < 0 ? 0 : level & 7);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    /* one message, one line: a line break inside (from a file's or a
     * client's text) would forge a second entry with its own priority */
    for (size_t i = (size_t)n; i < len; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[len++] = '\n';
    /* one write per line, so lines from several threads never interleave;
     * a failing stderr has nowhere to report to */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
