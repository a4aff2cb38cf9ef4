/* daemon_proc.h — a real judgeqd for a test: started from
 * JUDGEQ_BUILD/bin/judgeqd on a socket in jqt_tmpdir(), killed with the
 * test process (PR_SET_PDEATHSIG), ready once it answers a Ping.
 */
#ifndef JQT_DAEMON_PROC_H
#define JQT_DAEMON_PROC_H

#include <sys/types.h>

typedef struct {
    pid_t pid;
    char sock[512];
    char log[512];
} jqt_daemon;

/* Starts judgeqd --model MODEL --socket DIR/NAME.sock plus extra (NULL-
 * ended, may be NULL), logging to DIR/NAME.log. Fails the test when it
 * does not answer within 10 s (the message quotes the log). */
void jqt_daemon_start(jqt_daemon *d, const char *name, const char *model,
                      const char *const *extra);
/* SIGTERM, then the exit status (as waitpid's, or -1 after a 10 s wait,
 * when the daemon is killed). */
int jqt_daemon_stop(jqt_daemon *d);

#endif
