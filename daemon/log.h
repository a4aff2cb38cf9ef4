/* log.h — judgeqd's log: lines on stderr with sd-daemon(3) priority
 * prefixes ("<6>listening on ..."), which journald turns into priorities.
 *
 * Safe from any thread (one write(2) per line). Never from a signal
 * handler: those only set flags (see server.c).
 */
#ifndef JQ_DAEMON_LOG_H
#define JQ_DAEMON_LOG_H

#include <stddef.h>

/* sd-daemon / syslog levels */
enum {
    JQ_LOG_EMERG = 0, JQ_LOG_ALERT, JQ_LOG_CRIT, JQ_LOG_ERR, JQ_LOG_WARNING,
    JQ_LOG_NOTICE, JQ_LOG_INFO, JQ_LOG_DEBUG
};

/* Names: emerg alert crit err warning notice info debug. -1 if unknown. */
int jq_log_level_from_name(const char *name);
const char *jq_log_level_name(int level);
void jq_log_set_level(int level);
int jq_log_level(void);
/* Sends stderr to path (appending) from now on; NULL keeps stderr as is.
 * Called again (SIGHUP) it reopens the file, for log rotation. 0, or -1
 * with a message. */
int jq_log_open(const char *path, char *err, size_t errlen);

void jq_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
