/* errors.c — see errors.h. */
#include "errors.h"

#include <stdarg.h>
#include <stdio.h>

static void vset(char *err, size_t errlen, const char *fmt, va_list ap)
{
    if (err && errlen)
        vsnprintf(err, errlen, fmt, ap);
}

void jq_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(err, errlen, fmt, ap);
    va_end(ap);
}

int jq_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}
