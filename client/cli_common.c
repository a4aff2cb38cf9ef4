/* cli_common.c — see cli.h. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void vsay(const jq_cmd_info *cmd, const char *fmt, va_list ap)
{
    fprintf(stderr, "judgeq %s: ", cmd->name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

noreturn void jq_cli_usage_error(const jq_cmd_info *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(cmd, fmt, ap);
    va_end(ap);
    fputs(cmd->usage, stderr);
    exit(JQ_EXIT_USAGE);
}

noreturn void jq_cli_fail(const jq_cmd_info *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(cmd, fmt, ap);
    va_end(ap);
    exit(JQ_EXIT_FAIL);
}

noreturn void jq_cli_bad_option(const jq_cmd_info *cmd, int c, char **argv)
{
    if (c == ':')
        jq_cli_usage_error(cmd, "option %s needs a value", argv[optind - 1]);
    jq_cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
}

noreturn void jq_cli_help(const jq_cmd_info *cmd)
{
    fputs(cmd->usage, stdout);
    exit(JQ_EXIT_OK);
}

long long jq_cli_int(const jq_cmd_info *cmd, const char *opt, const char *s,
                     long long lo, long long hi)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        jq_cli_usage_error(cmd, "%s expects an integer, got '%s'", opt, s);
    if (v < lo || v > hi)
        jq_cli_usage_error(cmd, "%s must be in [%lld, %lld], got %lld", opt,
                           lo, hi, v);
    return v;
}

uint64_t jq_cli_u64(const jq_cmd_info *cmd, const char *opt, const char *s)
{
    char *end;
    errno = 0;
    if (*s == '-')
        jq_cli_usage_error(cmd, "%s expects a non-negative integer, got '%s'",
                           opt, s);
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end)
        jq_cli_usage_error(cmd, "%s expects a non-negative integer, got '%s'",
                           opt, s);
    return v;
}

double jq_cli_float(const jq_cmd_info *cmd, const char *opt, const char *s,
                    double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        jq_cli_usage_error(cmd, "%s expects a number, got '%s'", opt, s);
    if (v < lo || v > hi)
        jq_cli_usage_error(cmd, "%s must be in [%g, %g], got %g", opt, lo, hi,
                           v);
    return v;
}

double jq_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

char *jq_cli_read_file(const jq_cmd_info *cmd, const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        jq_cli_fail(cmd, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf)
            jq_cli_fail(cmd, "out of memory reading %s", path);
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
        if (n + 1 == cap) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb)
                free(buf);
            buf = nb;
        }
    }
    if (ferror(f))
        jq_cli_fail(cmd, "cannot read %s: %s", path, strerror(errno));
    fclose(f);
    buf[n] = 0;
    if (len)
        *len = n;
    return buf;
}

char *jq_cli_text_arg(const jq_cmd_info *cmd, const char *text,
                      const char *file, size_t *len)
{
    if (file)
        return jq_cli_read_file(cmd, file, len);
    char *s = strdup(text);
    if (!s)
        jq_cli_fail(cmd, "out of memory");
    *len = strlen(s);
    return s;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. */
static size_t utf8_valid_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    else if ((c & 0xE0) == 0xC0)
        len = 2, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0)
        len = 3, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    /* overlong forms, surrogates and values past U+10FFFF are invalid */
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

char *jq_utf8_sanitize(const char *s, size_t n, size_t *out_len)
{
    char *out = malloc(n * 3 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_valid_len(u + i, n - i);
        if (len == 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += 1;
        } else {
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        }
    }
    out[o] = 0;
    if (out_len)
        *out_len = o;
    return out;
}
