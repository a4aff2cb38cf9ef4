/* daemon_harness.h — what every test of the real judgeqd needs: the
 * daemon as a child process (started with options, in a socket directory,
 * socket-activated or under a sandbox hook; ready once it answers a Ping;
 * stopped with SIGTERM, its exit status and log kept), what the kernel
 * says about it (/proc), and a raw frame client that can do what libjudgeq
 * never does: send half a frame, stop reading, pipeline requests, send
 * garbage.
 *
 * Every wait is bounded, and every daemon is started with
 * PR_SET_PDEATHSIG, so a hung daemon fails a test instead of hanging the
 * suite. Functions named *_try never call cmocka (safe in threads and
 * forked children); the others fail the current test on error.
 *
 * daemon_harness.c holds the process and /proc parts, daemon_wire.c the
 * frames and sockets.
 */
#ifndef JQT_DAEMON_HARNESS_H
#define JQT_DAEMON_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "judgeq.h"
#include "judgeq.pb-c.h"

/* ---- the daemon process */

typedef struct {
    pid_t pid;      /* 0 once reaped */
    int status;     /* wait status once reaped */
    char sock[108]; /* DIR/NAME.sock (fits a sockaddr_un) */
    char log[512];  /* DIR/NAME.log: the daemon's stdout and stderr */
} jqt_daemon;

/* What a test may change about a start; NULL or all zero: judgeqd on
 * jqt_tmpdir()/NAME.sock with --log-level debug. */
typedef struct {
    const char *dir;       /* NAME.sock and NAME.log go here (NULL:
                              jqt_tmpdir()) */
    const char *log_level; /* --log-level (NULL: debug) */
    /* socket activation as judgeqd.socket does it: the harness binds
     * DIR/NAME.sock and passes it as fd 3 with LISTEN_FDS=1 instead of
     * --socket (the socket file is left for the test) */
    bool activate;
    /* "NAME=VALUE" for the daemon's environment (NULL-ended, may be NULL);
     * NOTIFY_SOCKET, LISTEN_PID and LISTEN_FDS are never inherited */
    const char *const *env;
    /* in the child after its log, fds and environment, before exec (the
     * parent-death signal is set after it, as a uid change clears it);
     * nonzero: the child exits 120 */
    int (*before_exec)(void *arg);
    void *arg;
    /* the judgeqd to exec (NULL: jqt_judgeqd_bin()), e.g. a copy that a
     * daemon dropping to another uid can reach */
    const char *bin;
} jqt_daemon_opts;

/* JUDGEQ_BUILD/bin/judgeqd (JUDGEQ_BUILD defaults to build). */
const char *jqt_judgeqd_bin(void);

/* Execs JUDGEQ_BUILD/bin/judgeqd --model MODEL --socket DIR/NAME.sock
 * --log-level LEVEL and extra (NULL-ended, may be NULL), its stdout and
 * stderr to DIR/NAME.log. Does not wait. */
void jqt_daemon_spawn(jqt_daemon *d, const char *name, const char *model,
                      const char *const *extra, const jqt_daemon_opts *opts);
/* spawn, then wait (bounded: 120 s) until the daemon answers a Ping; fails
 * the test, with the log's last bytes, when it exits or does not answer. */
void jqt_daemon_start(jqt_daemon *d, const char *name, const char *model,
                      const char *const *extra, const jqt_daemon_opts *opts);
/* Waits up to timeout_s for the daemon to exit. True when it did (status
 * in d->status). */
bool jqt_daemon_wait(jqt_daemon *d, double timeout_s);
/* SIGTERM and wait (bounded: 120 s, then SIGKILL and a failed test).
 * Returns the exit code (the log is printed when it is not 0); a death by
 * signal fails the test. */
int jqt_daemon_stop(jqt_daemon *d);
/* jqt_daemon_stop for a group teardown, which reports a result rather
 * than failing a test: 0 when the daemon exits 0, else -1 with a line on
 * stderr. */
int jqt_daemon_stop_teardown(jqt_daemon *d);
/* SIGKILL if still running (teardown after a failed test). */
void jqt_daemon_kill(jqt_daemon *d);
/* The log so far (malloc'd), never NULL. */
char *jqt_daemon_log(const jqt_daemon *d);
/* Prints the log's last bytes to stderr (after a failure). */
void jqt_daemon_print_log(const jqt_daemon *d);
/* True once the log contains needle (polled up to timeout_s). */
bool jqt_daemon_log_wait(const jqt_daemon *d, const char *needle,
                         double timeout_s);

/* ---- what the kernel says: /proc/PID, -1 when it is gone */

/* The number after key ("VmRSS:", "VmHWM:", "Seccomp:", ...) in
 * /proc/PID/status. */
long jqt_proc_status(pid_t pid, const char *key);
/* Resident set in KiB (VmRSS). */
long jqt_proc_rss_kib(pid_t pid);
/* Open file descriptors (for this process: not counting the one that
 * reads the list). */
int jqt_proc_fd_count(pid_t pid);

/* True in a sanitizer build (make SANITIZE=1 builds the tests and judgeqd
 * together): ASan keeps freed memory in quarantine, so RSS says nothing
 * about leaks there; LeakSanitizer at the daemon's exit does. */
bool jqt_asan_build(void);

double jqt_now(void);
/* Liveness bound for one reply: JQT_IO_TIMEOUT_MS or 60 s (a loaded
 * 2-core machine, sanitizers, the scalar kernels, valgrind). */
int jqt_io_timeout_ms(void);

/* A model made by `judgeq gen-model ARGS` in the test's temporary
 * directory (made once per name; the same args always give the same
 * file). Returns a static path per name (up to 4 names). */
const char *jqt_gen_model(const char *name, const char *args);

/* ---- through libjudgeq */

/* A connection with a jqt_io_timeout_ms() connect and call timeout. */
judgeq_conn *jqt_connect(const jqt_daemon *d);

typedef struct {
    uint32_t sessions, connections;
    uint64_t memory_used, memory_budget, shared_prefix_bytes, requests;
} jqt_stats;

/* One Stats round trip (counts as one request itself). */
jqt_stats jqt_stats_get(judgeq_conn *c);

/* Every call a client can make on a session that is not its own, in this
 * order: Prefill of `in`, Generate, Fork, ExportKV, CloseSession. -1 when
 * each was PERMISSION_DENIED and no fd came back; else the index of the
 * first that was not (5: an fd), named on stderr. No cmocka: for forked
 * children that changed their uid. */
int jqt_foreign_session_try(judgeq_conn *c, uint64_t sid,
                            const judgeq_prefill_input *in);

/* ---- sockets and raw frames (daemon_wire.c) */

/* A socket of `type` (SOCK_STREAM: listening, SOCK_DGRAM: to receive
 * sd_notify messages) bound at path (an old file there is removed). */
int jqt_unix_listen(const char *path, int type);

/* A connected socket, or -1. */
int jqt_wire_connect_try(const char *path);
/* The same; fails the test when the daemon does not accept. */
int jqt_wire_connect(const char *path);
/* Writes all n bytes (no SIGPIPE). 0, or -1 when the peer closed. */
int jqt_wire_write_try(int fd, const void *buf, size_t n);
void jqt_wire_write(int fd, const void *buf, size_t n);
/* Reads exactly n bytes within timeout_ms (per wait). 1: all of them; 0:
 * EOF before the first; -1: EOF or a reset inside; -2: timeout; -3:
 * truncated ancillary data (MSG_CTRUNC). An fd passed with them goes to
 * *rfd when rfd is non-NULL, else it is closed. */
int jqt_wire_read_try(int fd, void *buf, size_t n, int timeout_ms,
                      int *rfd);

/* q as a frame: the 4-byte little-endian length, then the packed
 * Request (malloc'd, *len bytes; NULL without memory). */
uint8_t *jqt_wire_frame(const Judgeq__Request *q, size_t *len);
/* Sends one Request frame (id as set in q). 0, or -1. */
int jqt_wire_send_try(int fd, const Judgeq__Request *q);
void jqt_wire_send(int fd, const Judgeq__Request *q);

typedef enum {
    JQT_FRAME_OK,      /* *out holds a Response */
    JQT_FRAME_EOF,     /* the peer closed between frames */
    JQT_FRAME_TORN,    /* the peer closed inside a frame */
    JQT_FRAME_TIMEOUT, /* nothing for timeout_ms */
    JQT_FRAME_BAD,     /* not a Response, or ancillary data cut short */
} jqt_frame_status;

/* Reads the next frame; a memfd passed with it goes to *rfd when rfd is
 * non-NULL (else it is closed). */
jqt_frame_status jqt_wire_recv_try(int fd, int timeout_ms,
                                   Judgeq__Response **out, int *rfd);
/* The next Response, or NULL when the daemon closed between frames; fails
 * the test on anything else within jqt_io_timeout_ms(), and when an fd
 * comes with it while rfd is NULL. */
Judgeq__Response *jqt_wire_recv(int fd, int *rfd);

/* Sends n Tokenize requests (ids first_id, first_id + 1, ...) of ~9 KB of
 * text each, without reading: ~1 MB of replies for n = 200, far more than
 * the socket buffers hold. Returns how many were sent before a send
 * failed (the daemon closed). */
int jqt_wire_tokenize_flood(int fd, int n, uint64_t first_id);

/* Requests with the fields the tests use (q and the body are filled in;
 * they live in the caller's variables). */
void jqt_req_ping(Judgeq__Request *q, Judgeq__Ping *p, uint64_t id,
                  uint64_t nonce);
void jqt_req_create(Judgeq__Request *q, Judgeq__CreateSession *cs,
                    uint64_t id, bool keep_on_disconnect);
void jqt_req_prefill_tokens(Judgeq__Request *q, Judgeq__Prefill *p,
                            uint64_t id, uint64_t sid, int32_t *tokens,
                            size_t n);
/* max_tokens with ignore_eos, default sampling */
void jqt_req_generate(Judgeq__Request *q, Judgeq__Generate *g, uint64_t id,
                      uint64_t sid, uint32_t max_tokens);
void jqt_req_fork(Judgeq__Request *q, Judgeq__Fork *f, uint64_t id,
                  uint64_t sid);
void jqt_req_export(Judgeq__Request *q, Judgeq__ExportKV *x, uint64_t id,
                    uint64_t sid);

#endif
