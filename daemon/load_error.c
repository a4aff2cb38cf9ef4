/* load_error.c — see load_error.h. */
#include "load_error.h"

#include <stdio.h>
#include <string.h>

/* Skips `prefix` followed by ": " at *s, if it is there. */
static bool skip_prefix(const char **s, const char *prefix)
{
    size_t n = strlen(prefix);
    if (n == 0 || strncmp(*s, prefix, n) != 0 || strncmp(*s + n, ": ", 2) != 0)
        return false;
    *s += n + 2;
    return true;
}

void jq_load_error(char *out, size_t size, const char *option,
                   const char *path, const char *err)
{
    const char *detail = err;
    while (skip_prefix(&detail, path) || skip_prefix(&detail, "gguf"))
        ;
    if (!*detail)
        detail = err;
    snprintf(out, size, "cannot load --%s %s: %s", option, path, detail);
    for (char *p = out; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
}
