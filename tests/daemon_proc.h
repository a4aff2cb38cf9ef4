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
/* What a test may change about the start (all zero: jqt_daemon_start). */
typedef struct {
    const char *dir;   /* NAME.sock and NAME.log go here (NULL: jqt_tmpdir) */
    int listen_fd;     /* > 0: the caller's listening socket, bound at
                          DIR/NAME.sock, passed as fd 3 with LISTEN_FDS
                          (socket activation) instead of --socket */
    /* in the child after its log, fds and environment, before exec (the
     * parent-death signal is set after it, as a uid change clears it);
     * nonzero: the child exits 120 */
    int (*before_exec)(void *arg);
    void *arg;
} jqt_daemon_opts;
void jqt_daemon_start_opts(jqt_daemon *d, const char *name, const char *model,
                           const char *const *extra,
                           const jqt_daemon_opts *opts);

/* SIGTERM, then the exit status (as waitpid's, or -1 after a 10 s wait,
 * when the daemon is killed). */
int jqt_daemon_stop(jqt_daemon *d);

#endif
