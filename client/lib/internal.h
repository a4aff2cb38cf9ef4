/* internal.h — what the files of libjudgeq share; not installed.
 *
 * Internal functions carry the jqc_ prefix and hidden visibility, so the
 * shared library exports only judgeq_* and the static library does not
 * collide with the daemon's or the engine's names.
 */
#ifndef JQC_INTERNAL_H
#define JQC_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "judgeq.h"
#include "judgeq.pb-c.h"

#define JQC_HIDDEN __attribute__((visibility("hidden")))
#define JQC_ERRMSG_SIZE 512

struct judgeq_conn {
    pthread_mutex_t lock; /* held for a whole request/response exchange */
    pthread_t owner;      /* the thread holding lock (valid when locked) */
    bool locked;
    int fd;               /* -1 once closed or broken */
    bool broken;          /* stream out of sync: every call fails */
    int timeout_ms;       /* inactivity limit per call, < 0 none */
    uint32_t max_frame;
    uint64_t next_id;     /* request ids, from 1; replies to older ids are
                             stale (a timed-out or cancelled call) */
    int last_code;
    char errmsg[JQC_ERRMSG_SIZE];
    char *scratch;        /* token piece + NUL for the callback */
    size_t scratch_cap;
};

/* One received frame: the decoded Response and the fd that rode with its
 * first bytes (-1 if none). */
typedef struct {
    Judgeq__Response *resp;
    int fd;
} jqc_frame;

/* Records code + message on the handle and returns code. */
JQC_HIDDEN int jqc_fail(judgeq_conn *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* jqc_fail + marks the connection broken (the byte stream cannot be
 * trusted any more) and closes the socket. */
JQC_HIDDEN int jqc_break(judgeq_conn *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Locks the handle for one exchange; JUDGEQ_ERR_BUSY when the calling
 * thread already holds it (a token callback calling back in),
 * JUDGEQ_ERR_CLOSED when the handle is broken (still locked then? no:
 * unlocked on any error). */
JQC_HIDDEN int jqc_begin(judgeq_conn *c);
JQC_HIDDEN void jqc_end(judgeq_conn *c);

/* Serializes req (its id is set here to a fresh one, returned in *id) and
 * writes the frame. */
JQC_HIDDEN int jqc_send(judgeq_conn *c, Judgeq__Request *req, uint64_t *id);
/* Reads frames until one answers id (stale ones are dropped, their fds
 * closed). On JUDGEQ_OK, *f holds a Response the caller frees with
 * jqc_frame_free. A Response with a non-OK code is turned into that
 * code and message (and freed) here. */
JQC_HIDDEN int jqc_recv(judgeq_conn *c, uint64_t id, jqc_frame *f);
JQC_HIDDEN void jqc_frame_free(jqc_frame *f);

/* Send + receive of a request answered by one Response carrying body
 * case want; the caller frees *f. */
JQC_HIDDEN int jqc_call(judgeq_conn *c, Judgeq__Request *req,
                        Judgeq__Response__BodyCase want, jqc_frame *f);

/* Checks the seals of an exported fd (shared by export_kv and kv_map). */
JQC_HIDDEN int jqc_check_seals(int fd, char *err, size_t err_size);

#endif
