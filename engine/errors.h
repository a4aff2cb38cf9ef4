/* errors.h — how engine functions report errors: a message written into
 * the caller's buffer (err may be NULL or errlen 0: then nothing is
 * written), naming the input or limit at fault. */
#ifndef JQ_ERRORS_H
#define JQ_ERRORS_H

#include <stddef.h>

void jq_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* jq_set_err, then returns -1 (for `return jq_fail(...)`). */
int jq_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
