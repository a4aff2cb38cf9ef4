/* daemon_harness.h — a judgeqd process for tests that must watch the
 * daemon from outside (fault injection: signals, dead and stalled clients,
 * resource limits), and a raw frame client that can do what libjudgeq
 * never does: send half a frame, stop reading, pipeline requests.
 *
 * Every wait is bounded, and every daemon is started with
 * PR_SET_PDEATHSIG, so a hung daemon fails a test instead of hanging the
 * suite. Functions named *_try never call cmocka (safe in threads and
 * forked children); the others fail the current test on error.
 */
#ifndef JQT_DAEMON_HARNESS_H
#define JQT_DAEMON_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "judgeq.h"
#include "judgeq.pb-c.h"

typedef struct {
    pid_t pid;          /* 0 once reaped */
    int status;         /* wait status once reaped */
    char sock[108];
    char log[512];
} jqt_daemon;

/* Execs JUDGEQ_BUILD/bin/judgeqd --model model --socket TMP/name.sock
 * --log-level debug and extra (NULL-terminated), stderr and stdout to
 * TMP/name.log. Does not wait. */
void jqt_daemon_spawn(jqt_daemon *d, const char *name, const char *model,
                      const char *const *extra);
/* NOTIFY_SOCKET for the next spawn only (a datagram socket of the test
 * that receives sd_notify messages); otherwise the daemon gets none. */
void jqt_daemon_set_notify_socket(const char *path);
/* spawn, then wait (bounded) until the daemon answers a Ping. */
void jqt_daemon_start(jqt_daemon *d, const char *name, const char *model,
                      const char *const *extra);
/* Waits up to timeout_s for the daemon to exit. True when it did (status
 * in d->status). */
bool jqt_daemon_wait(jqt_daemon *d, double timeout_s);
/* SIGTERM and wait (bounded: 120 s, then SIGKILL and a failed test).
 * Returns the exit code; a death by signal fails the test. */
int jqt_daemon_stop(jqt_daemon *d);
/* SIGKILL if still running (teardown after a failed test). */
void jqt_daemon_kill(jqt_daemon *d);
/* The log so far (malloc'd), never NULL. */
char *jqt_daemon_log(const jqt_daemon *d);
/* Prints the log's last bytes to stderr (after a failure). */
void jqt_daemon_print_log(const jqt_daemon *d);
/* True once the log contains needle (polled up to timeout_s). */
bool jqt_daemon_log_wait(const jqt_daemon *d, const char *needle,
                         double timeout_s);

/* /proc/PID: resident set (KiB) and open file descriptors; -1 if gone. */
long jqt_proc_rss_kib(pid_t pid);
int jqt_proc_fd_count(pid_t pid);

/* True in a sanitizer build (make SANITIZE=1 builds the tests and judgeqd
 * together): ASan keeps freed memory in quarantine, so RSS says nothing
 * about leaks there; LeakSanitizer at the daemon's exit does. */
bool jqt_asan_build(void);

double jqt_now(void);
/* Liveness bound for one reply: JQT_IO_TIMEOUT_MS or 60 s (a loaded
 * 2-core machine, sanitizers, the scalar kernels). */
int jqt_io_timeout_ms(void);

/* A model made by `judgeq gen-model ARGS` in the test's temporary
 * directory (made once per name; the same args always give the same
 * file). Returns a static path per name (up to 4 names). */
const char *jqt_gen_model(const char *name, const char *args);

/* ---- through libjudgeq */

/* A connection with a 60 s (jqt_io_timeout_ms) call timeout. */
judgeq_conn *jqt_connect(const jqt_daemon *d);

typedef struct {
    uint32_t sessions, connections;
    uint64_t memory_used, memory_budget, shared_prefix_bytes, requests;
} jqt_stats;

/* One Stats round trip (counts as one request itself). */
jqt_stats jqt_stats_get(judgeq_conn *c);

/* ---- raw frames */

/* A connected socket, or -1. */
int jqt_wire_connect_try(const char *path);
/* Sends one Request frame (id as set in q). 0, or -1. */
int jqt_wire_send_try(int fd, const Judgeq__Request *q);

typedef enum {
    JQT_FRAME_OK,      /* *out holds a Response */
    JQT_FRAME_EOF,     /* the peer closed between frames */
    JQT_FRAME_TORN,    /* the peer closed inside a frame */
    JQT_FRAME_TIMEOUT, /* nothing for timeout_ms */
    JQT_FRAME_BAD,     /* a frame that is not a Response */
} jqt_frame_status;

/* Reads the next frame; a memfd passed with it goes to *rfd when rfd is
 * non-NULL (else it is closed). */
jqt_frame_status jqt_wire_recv_try(int fd, int timeout_ms,
                                   Judgeq__Response **out, int *rfd);

/* Sends n Tokenize requests (ids first_id, first_id + 1, ...) of ~9 KB of
 * text each, without reading: ~1 MB of replies for n = 200, far more than
 * the socket buffers hold. Returns how many were sent before a send
 * failed (the daemon closed). */
int jqt_wire_tokenize_flood(int fd, int n, uint64_t first_id);

/* Requests with the fields the fault tests use. */
void jqt_req_create(Judgeq__Request *q, Judgeq__CreateSession *cs,
                    uint64_t id, bool keep_on_disconnect);
void jqt_req_prefill_tokens(Judgeq__Request *q, Judgeq__Prefill *p,
                            uint64_t id, uint64_t sid, int32_t *tokens,
                            size_t n);
void jqt_req_generate(Judgeq__Request *q, Judgeq__Generate *g, uint64_t id,
                      uint64_t sid, uint32_t max_tokens);
void jqt_req_fork(Judgeq__Request *q, Judgeq__Fork *f, uint64_t id,
                  uint64_t sid);
void jqt_req_export(Judgeq__Request *q, Judgeq__ExportKV *x, uint64_t id,
                    uint64_t sid);

#endif
