/* conn.c — libjudgeq's transport: connecting, framing, fd passing, errors.
 *
 * A frame is a 4-byte little-endian length and that many bytes of a
 * serialized Response. The daemon passes at most one fd per frame
 * (ExportKV's memfd), as SCM_RIGHTS in the same sendmsg as the frame's
 * first byte. Linux delivers ancillary data with the first recvmsg that
 * reads a byte of the skb it was sent with and never merges it into an
 * earlier read, so the client reads a frame's header and body with
 * separate recvmsg calls and accepts an fd only on the first read of a
 * frame; an fd anywhere else, two fds, a truncated control buffer
 * (MSG_CTRUNC) or a control message of another kind is a protocol error.
 * Every fd received on an error path is closed before returning, so a
 * hostile peer cannot make the client leak descriptors.
 *
 * The socket is non-blocking; poll() before each retry implements the
 * per-call inactivity timeout.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* Control buffer for one fd. CMSG_SPACE rounds up to the alignment of
 * cmsghdr, so on LP64 it holds two ints: a peer sending two fds is caught
 * by counting, three or more by MSG_CTRUNC (the kernel then closes what
 * did not fit). */
#define JQC_CTRL_SIZE CMSG_SPACE(sizeof(int))
#define JQC_MAX_RECV_FDS 8

const char *judgeq_status_name(int code)
{
    switch (code) {
    case JUDGEQ_OK: return "OK";
    case JUDGEQ_ERR_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case JUDGEQ_ERR_NOT_FOUND: return "NOT_FOUND";
    case JUDGEQ_ERR_PERMISSION_DENIED: return "PERMISSION_DENIED";
    case JUDGEQ_ERR_RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case JUDGEQ_ERR_UNAVAILABLE: return "UNAVAILABLE";
    case JUDGEQ_ERR_INTERNAL: return "INTERNAL";
    case JUDGEQ_ERR_IO: return "IO";
    case JUDGEQ_ERR_TIMEOUT: return "TIMEOUT";
    case JUDGEQ_ERR_PROTOCOL: return "PROTOCOL";
    case JUDGEQ_ERR_CLOSED: return "CLOSED";
    case JUDGEQ_ERR_NOMEM: return "NOMEM";
    case JUDGEQ_ERR_ARG: return "ARG";
    case JUDGEQ_ERR_CANCELLED: return "CANCELLED";
    case JUDGEQ_ERR_BAD_FD: return "BAD_FD";
    case JUDGEQ_ERR_BUSY: return "BUSY";
    default: return "UNKNOWN";
    }
}

/* ------------------------------------------------------------ errors */

static void vset(judgeq_conn *c, int code, const char *fmt, va_list ap)
{
    c->last_code = code;
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
}

int jqc_fail(judgeq_conn *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(c, code, fmt, ap);
    va_end(ap);
    return code;
}

int jqc_break(judgeq_conn *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(c, code, fmt, ap);
    va_end(ap);
    /* After a partial frame the next byte is not a length prefix any more:
     * nothing later on this socket can be believed. */
    c->broken = true;
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    return code;
}

const char *judgeq_errmsg(const judgeq_conn *c)
{
    return c ? c->errmsg : "no connection handle (out of memory)";
}

int judgeq_errmsg_copy(judgeq_conn *c, char *buf, size_t size)
{
    if (!c) {
        if (size)
            snprintf(buf, size, "no connection handle (out of memory)");
        return JUDGEQ_ERR_NOMEM;
    }
    pthread_mutex_lock(&c->lock);
    if (size)
        snprintf(buf, size, "%s", c->errmsg);
    int code = c->last_code;
    pthread_mutex_unlock(&c->lock);
    return code;
}

/* ------------------------------------------------------------ handles */

static judgeq_conn *conn_new(void)
{
    judgeq_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    /* An error-checking mutex turns a token callback that calls back into
     * its own handle into EDEADLK (reported as JUDGEQ_ERR_BUSY) instead of
     * a silent deadlock. */
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    int rc = pthread_mutex_init(&c->lock, &a);
    pthread_mutexattr_destroy(&a);
    if (rc != 0) {
        free(c);
        return NULL;
    }
    c->fd = -1;
    c->broken = true; /* until connected */
    c->timeout_ms = -1;
    c->max_frame = JUDGEQ_DEFAULT_MAX_FRAME;
    c->next_id = 1;
    return c;
}

void judgeq_close(judgeq_conn *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    pthread_mutex_destroy(&c->lock);
    free(c->scratch);
    free(c);
}

int judgeq_fd(const judgeq_conn *c)
{
    return c ? c->fd : -1;
}

void judgeq_set_timeout(judgeq_conn *c, int timeout_ms)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->timeout_ms = timeout_ms < 0 ? -1 : timeout_ms;
    pthread_mutex_unlock(&c->lock);
}

void judgeq_set_max_frame(judgeq_conn *c, uint32_t max_bytes)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->max_frame = max_bytes < 64 ? 64 : max_bytes;
    pthread_mutex_unlock(&c->lock);
}

int jqc_begin(judgeq_conn *c)
{
    if (!c)
        return JUDGEQ_ERR_ARG;
    int rc = pthread_mutex_lock(&c->lock);
    if (rc == EDEADLK)
        /* this thread holds the lock already, so writing is safe; the outer
         * call overwrites the message when it ends */
        return jqc_fail(c, JUDGEQ_ERR_BUSY,
                        "libjudgeq called from a token callback on the handle "
                        "that is delivering the tokens");
    if (rc != 0)
        return JUDGEQ_ERR_INTERNAL;
    c->last_code = JUDGEQ_OK;
    c->errmsg[0] = 0;
    if (c->broken) {
        jqc_fail(c, JUDGEQ_ERR_CLOSED,
                 "the connection to judgeqd is closed (an earlier error "
                 "ended it)");
        pthread_mutex_unlock(&c->lock);
        return JUDGEQ_ERR_CLOSED;
    }
    return JUDGEQ_OK;
}

void jqc_end(judgeq_conn *c)
{
    pthread_mutex_unlock(&c->lock);
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int judgeq_connect(const char *path, int timeout_ms, judgeq_conn **out)
{
    judgeq_conn *c = conn_new();
    if (out)
        *out = c;
    if (!c)
        return JUDGEQ_ERR_NOMEM;
    if (!out)
        return jqc_fail(c, JUDGEQ_ERR_ARG, "judgeq_connect: out is NULL");
    if (!path)
        path = JUDGEQ_DEFAULT_SOCKET;

    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof sa.sun_path)
        return jqc_fail(c, JUDGEQ_ERR_ARG,
                        "socket path '%s' must have 1 to %zu bytes", path,
                        sizeof sa.sun_path - 1);
    memcpy(sa.sun_path, path, len);
    socklen_t sa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    if (path[0] == '@') {
        /* abstract namespace, as systemd writes it: no NUL terminator */
        sa.sun_path[0] = 0;
        sa_len--;
    }

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return jqc_fail(c, JUDGEQ_ERR_IO, "cannot create a socket for %s: %s",
                        path, strerror(errno));
    double deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    for (;;) {
        if (connect(fd, (struct sockaddr *)&sa, sa_len) == 0)
            break;
        int e = errno;
        if (e == EINTR)
            continue;
        if (e == EAGAIN || e == EINPROGRESS) {
            /* AF_UNIX answers EAGAIN while the listener's backlog is full
             * (it never says EINPROGRESS): retry until the deadline */
            double left = deadline < 0 ? 10 : deadline - now_ms();
            if (left <= 0) {
                close(fd);
                return jqc_fail(c, JUDGEQ_ERR_TIMEOUT,
                                "cannot connect to %s: no free slot in the "
                                "daemon's backlog within %d ms",
                                path, timeout_ms);
            }
            struct timespec ts = {0, (long)((left < 10 ? left : 10) * 1e6)};
            nanosleep(&ts, NULL);
            continue;
        }
        close(fd);
        return jqc_fail(c, e == ENOENT || e == ECONNREFUSED ? JUDGEQ_ERR_UNAVAILABLE
                                                            : JUDGEQ_ERR_IO,
                        "cannot connect to %s: %s%s", path, strerror(e),
                        e == ENOENT ? " (is judgeqd running?)"
                        : e == EACCES ? " (is this user in the judgeq group?)"
                                      : "");
    }
    c->fd = fd;
    c->broken = false;
    return JUDGEQ_OK;
}

int judgeq_connect_fd(int fd, judgeq_conn **out)
{
    judgeq_conn *c = conn_new();
    if (out)
        *out = c;
    if (!c) {
        if (fd >= 0)
            close(fd);
        return JUDGEQ_ERR_NOMEM;
    }
    if (!out) {
        close(fd);
        return jqc_fail(c, JUDGEQ_ERR_ARG, "judgeq_connect_fd: out is NULL");
    }
    int type = 0;
    socklen_t tl = sizeof type;
    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 ||
        type != SOCK_STREAM) {
        if (fd >= 0)
            close(fd);
        return jqc_fail(c, JUDGEQ_ERR_ARG, "fd %d is not a stream socket", fd);
    }
    if (set_nonblock(fd) < 0) {
        int e = errno;
        close(fd);
        return jqc_fail(c, JUDGEQ_ERR_IO, "cannot make fd %d non-blocking: %s",
                        fd, strerror(e));
    }
    c->fd = fd;
    c->broken = false;
    return JUDGEQ_OK;
}

/* --------------------------------------------------------------- I/O */

/* Waits until the socket is ready for events; JUDGEQ_ERR_TIMEOUT after the
 * handle's inactivity limit. The caller decides whether a timeout breaks
 * the stream. */
static int wait_ready(judgeq_conn *c, short events)
{
    struct pollfd p = {.fd = c->fd, .events = events};
    for (;;) {
        int n = poll(&p, 1, c->timeout_ms);
        if (n > 0)
            return JUDGEQ_OK; /* errors and hangups show in the next call */
        if (n == 0)
            return JUDGEQ_ERR_TIMEOUT;
        if (errno != EINTR)
            return JUDGEQ_ERR_IO;
    }
}

static int write_frame(judgeq_conn *c, const uint8_t *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(c->fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        int e = errno;
        if (n < 0 && e == EINTR)
            continue;
        if (n < 0 && (e == EAGAIN || e == EWOULDBLOCK)) {
            int rc = wait_ready(c, POLLOUT);
            if (rc == JUDGEQ_OK)
                continue;
            if (off == 0 && rc == JUDGEQ_ERR_TIMEOUT)
                return jqc_fail(c, rc,
                                "timed out after %d ms sending a request (the "
                                "daemon is not reading)",
                                c->timeout_ms);
            /* half a request sits in the daemon's buffer now */
            return jqc_break(c, rc, "%s while sending a request",
                             rc == JUDGEQ_ERR_TIMEOUT ? "timed out" : strerror(errno));
        }
        if (e == EPIPE || e == ECONNRESET)
            return jqc_break(c, JUDGEQ_ERR_CLOSED,
                             "the daemon closed the connection");
        return jqc_break(c, JUDGEQ_ERR_IO, "send failed: %s", strerror(e));
    }
    return JUDGEQ_OK;
}

static void close_fds(const int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
}

/* Reads exactly len bytes. *started says whether any byte of the current
 * frame has been consumed (a failure then breaks the stream). fd_slot is
 * non-NULL only for the first read of a frame: an fd may arrive there and
 * nowhere else. */
static int read_exact(judgeq_conn *c, uint8_t *buf, size_t len, int *fd_slot,
                      bool *started)
{
    size_t off = 0;
    while (off < len) {
        union {
            char buf[JQC_CTRL_SIZE];
            struct cmsghdr align;
        } ctrl;
        struct iovec iov = {.iov_base = buf + off, .iov_len = len - off};
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        memset(&ctrl, 0, sizeof ctrl);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl.buf;
        msg.msg_controllen = sizeof ctrl.buf;
        ssize_t n = recvmsg(c->fd, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            if (e == EAGAIN || e == EWOULDBLOCK) {
                int rc = wait_ready(c, POLLIN);
                if (rc == JUDGEQ_OK)
                    continue;
                if (!*started && rc == JUDGEQ_ERR_TIMEOUT)
                    return jqc_fail(c, rc,
                                    "no reply from the daemon within %d ms",
                                    c->timeout_ms);
                return jqc_break(c, rc, "%s in the middle of a reply frame",
                                 rc == JUDGEQ_ERR_TIMEOUT ? "timed out" : strerror(errno));
            }
            if (e == ECONNRESET)
                return jqc_break(c, JUDGEQ_ERR_CLOSED,
                                 "the daemon reset the connection");
            return jqc_break(c, JUDGEQ_ERR_IO, "recvmsg failed: %s", strerror(e));
        }

        /* Collect every fd before judging, so that each error path closes
         * all of them. */
        int fds[JQC_MAX_RECV_FDS];
        size_t nfds = 0;
        bool foreign = false;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
                cm->cmsg_len >= CMSG_LEN(0)) {
                size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < k; i++) {
                    int fd;
                    memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
                    if (nfds < JQC_MAX_RECV_FDS)
                        fds[nfds++] = fd;
                    else
                        close(fd);
                }
            } else {
                foreign = true;
            }
        }
        if (msg.msg_flags & MSG_CTRUNC) {
            close_fds(fds, nfds);
            return jqc_break(c, JUDGEQ_ERR_PROTOCOL,
                             "protocol error: the daemon attached more file "
                             "descriptors than a frame may carry (control "
                             "data truncated)");
        }
        if (foreign) {
            close_fds(fds, nfds);
            return jqc_break(c, JUDGEQ_ERR_PROTOCOL,
                             "protocol error: unexpected control message "
                             "from the daemon");
        }
        if (nfds > 0) {
            if (!fd_slot || nfds > 1 || *fd_slot >= 0) {
                close_fds(fds, nfds);
                return jqc_break(c, JUDGEQ_ERR_PROTOCOL,
                                 "protocol error: %zu file descriptor(s) not "
                                 "at the start of a frame",
                                 nfds);
            }
            *fd_slot = fds[0];
        }
        if (n == 0) {
            if (*started)
                return jqc_break(c, JUDGEQ_ERR_CLOSED,
                                 "the daemon closed the connection in the "
                                 "middle of a frame (%zu of %zu bytes read)",
                                 off, len);
            return jqc_break(c, JUDGEQ_ERR_CLOSED,
                             "the daemon closed the connection");
        }
        off += (size_t)n;
        *started = true;
        fd_slot = NULL; /* only the frame's first read may carry an fd */
    }
    return JUDGEQ_OK;
}

void jqc_frame_free(jqc_frame *f)
{
    if (f->resp)
        judgeq__response__free_unpacked(f->resp, NULL);
    if (f->fd >= 0)
        close(f->fd);
    f->resp = NULL;
    f->fd = -1;
}

/* One whole frame, decoded. */
static int read_frame(judgeq_conn *c, jqc_frame *f)
{
    f->resp = NULL;
    f->fd = -1;
    uint8_t hdr[4];
    bool started = false;
    int rc = read_exact(c, hdr, sizeof hdr, &f->fd, &started);
    if (rc != JUDGEQ_OK) {
        jqc_frame_free(f);
        return rc;
    }
    uint32_t len = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 |
                   (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 24;
    if (len > c->max_frame) {
        jqc_frame_free(f);
        return jqc_break(c, JUDGEQ_ERR_PROTOCOL,
                         "protocol error: a frame of %u bytes exceeds the "
                         "limit of %u bytes (judgeq_set_max_frame)",
                         len, c->max_frame);
    }
    uint8_t *body = malloc(len ? len : 1);
    if (!body) {
        jqc_frame_free(f);
        return jqc_break(c, JUDGEQ_ERR_NOMEM, "out of memory for a %u-byte frame", len);
    }
    rc = read_exact(c, body, len, NULL, &started);
    if (rc != JUDGEQ_OK) {
        free(body);
        jqc_frame_free(f);
        return rc;
    }
    f->resp = judgeq__response__unpack(NULL, len, body);
    free(body);
    if (!f->resp) {
        jqc_frame_free(f);
        /* the frame boundary is intact, but a daemon that sends what does
         * not decode is not one to keep talking to */
        return jqc_break(c, JUDGEQ_ERR_PROTOCOL,
                         "protocol error: a %u-byte frame is not a Response", len);
    }
    return JUDGEQ_OK;
}

int jqc_send(judgeq_conn *c, Judgeq__Request *req, uint64_t *id)
{
    req->has_id = 1;
    req->id = c->next_id++;
    if (id)
        *id = req->id;
    size_t len = judgeq__request__get_packed_size(req);
    if (len > UINT32_MAX - 4)
        return jqc_fail(c, JUDGEQ_ERR_ARG,
                        "the request (%zu bytes) does not fit a frame", len);
    uint8_t *buf = malloc(4 + len);
    if (!buf)
        return jqc_fail(c, JUDGEQ_ERR_NOMEM, "out of memory for a %zu-byte request", len);
    buf[0] = (uint8_t)len;
    buf[1] = (uint8_t)(len >> 8);
    buf[2] = (uint8_t)(len >> 16);
    buf[3] = (uint8_t)(len >> 24);
    judgeq__request__pack(req, buf + 4);
    int rc = write_frame(c, buf, 4 + len);
    free(buf);
    return rc;
}

/* Copies a daemon's message for display: control characters become '?'
 * so that a hostile peer cannot drive the user's terminal. */
static void clean_copy(char *dst, size_t size, const char *src)
{
    size_t i = 0;
    for (; src && src[i] && i + 1 < size; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    dst[i] = 0;
}

int jqc_recv(judgeq_conn *c, uint64_t id, jqc_frame *f)
{
    for (;;) {
        int rc = read_frame(c, f);
        if (rc != JUDGEQ_OK)
            return rc;
        Judgeq__Response *r = f->resp;
        uint64_t rid = r->has_id ? r->id : 0;
        int code = r->has_code ? (int)r->code : JUDGEQ_OK;
        if (rid != id && !(rid == 0 && code != JUDGEQ_OK)) {
            if (rid < id) {
                /* the reply to a call that timed out or was cancelled */
                jqc_frame_free(f);
                continue;
            }
            jqc_frame_free(f);
            return jqc_break(c, JUDGEQ_ERR_PROTOCOL,
                             "protocol error: a reply to request %llu, which "
                             "was never sent (waiting for %llu)",
                             (unsigned long long)rid, (unsigned long long)id);
        }
        if (code != JUDGEQ_OK) {
            /* id 0: an error about the connection itself (a framing
             * error the daemon detected); it answers the pending call */
            char msg[JQC_ERRMSG_SIZE - 64];
            clean_copy(msg, sizeof msg, r->message);
            if (code < 0)
                code = JUDGEQ_ERR_PROTOCOL; /* not a daemon code */
            jqc_fail(c, code, "judgeqd: %s: %s", judgeq_status_name(code),
                     msg[0] ? msg : "(no message)");
            jqc_frame_free(f);
            return code;
        }
        return JUDGEQ_OK;
    }
}

int jqc_call(judgeq_conn *c, Judgeq__Request *req,
             Judgeq__Response__BodyCase want, jqc_frame *f)
{
    f->resp = NULL;
    f->fd = -1;
    uint64_t id;
    int rc = jqc_send(c, req, &id);
    if (rc != JUDGEQ_OK)
        return rc;
    rc = jqc_recv(c, id, f);
    if (rc != JUDGEQ_OK)
        return rc;
    if (f->resp->body_case != want) {
        int got = (int)f->resp->body_case;
        jqc_frame_free(f);
        /* one whole frame answered the wrong thing: the stream is in sync,
         * but the daemon and this library disagree on the protocol */
        return jqc_fail(c, JUDGEQ_ERR_PROTOCOL,
                        "protocol error: reply body %d to a request that "
                        "expects %d",
                        got, (int)want);
    }
    return JUDGEQ_OK;
}
