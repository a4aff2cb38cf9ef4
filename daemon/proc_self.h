/* proc_self.h — the daemon's own resident memory and open descriptors, as
 * the Stats reply reports them, so that a load test can watch for leaks
 * from the outside (through the socket, whatever uid it runs as).
 */
#ifndef JQ_DAEMON_PROC_SELF_H
#define JQ_DAEMON_PROC_SELF_H

#include <stdbool.h>
#include <stdint.h>

/* Resident set size in bytes (/proc/self/statm); false when unreadable. */
bool jq_proc_rss_bytes(uint64_t *out);
/* Open file descriptors (entries of /proc/self/fd, not counting the one
 * used to read it); false when unreadable. */
bool jq_proc_open_fds(uint32_t *out);

#endif
