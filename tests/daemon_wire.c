/* daemon_wire.c — Unix sockets and raw protocol frames for the daemon
 * tests; see daemon_harness.h. A frame is a 4-byte little-endian length,
 * then a packed Request or Response; an fd (ExportKV's memfd) rides on
 * the first byte of its Response. */
#include "daemon_harness.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "testutil.h"

/* ------------------------------------------------------------ sockets */

static struct sockaddr_un unix_addr(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    return sa;
}

int jqt_unix_listen(const char *path, int type)
{
    struct sockaddr_un sa = unix_addr(path);
    if (strlen(path) >= sizeof sa.sun_path)
        fail_msg("socket path %s is longer than a sockaddr_un holds", path);
    unlink(path);
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        fail_msg("bind %s: %s", path, strerror(errno));
    if (type == SOCK_STREAM)
        assert_int_equal(listen(fd, 16), 0);
    return fd;
}

int jqt_wire_connect_try(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_un sa = unix_addr(path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int jqt_wire_connect(const char *path)
{
    int fd = jqt_wire_connect_try(path);
    if (fd < 0)
        fail_msg("connect %s: %s", path, strerror(errno));
    return fd;
}

int jqt_wire_write_try(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

void jqt_wire_write(int fd, const void *buf, size_t n)
{
    if (jqt_wire_write_try(fd, buf, n) != 0)
        fail_msg("send of %zu bytes: %s", n, strerror(errno));
}

int jqt_wire_read_try(int fd, void *buf, size_t n, int timeout_ms, int *rfd)
{
    uint8_t *p = buf;
    size_t got = 0;
    while (got < n) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, timeout_ms);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0)
            return -2;
        struct iovec iov = {p + got, n - got};
        union {
            char b[CMSG_SPACE(sizeof(int) * 4)];
            struct cmsghdr align;
        } ctl;
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1,
                             .msg_control = ctl.b,
                             .msg_controllen = sizeof ctl.b};
        ssize_t r = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) /* ECONNRESET counts as a close */
            return got == 0 ? 0 : -1;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm;
             cm = CMSG_NXTHDR(&msg, cm)) {
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                continue;
            int f;
            memcpy(&f, CMSG_DATA(cm), sizeof f);
            if (rfd)
                *rfd = f;
            else
                close(f);
        }
        if (msg.msg_flags & MSG_CTRUNC)
            return -3;
        got += (size_t)r;
    }
    return 1;
}

/* ------------------------------------------------------------ frames */

uint8_t *jqt_wire_frame(const Judgeq__Request *q, size_t *len)
{
    size_t n = judgeq__request__get_packed_size(q);
    uint8_t *buf = malloc(n + 4);
    if (!buf)
        return NULL;
    judgeq__request__pack(q, buf + 4);
    for (int i = 0; i < 4; i++)
        buf[i] = (uint8_t)(n >> (8 * i));
    *len = n + 4;
    return buf;
}

int jqt_wire_send_try(int fd, const Judgeq__Request *q)
{
    size_t n;
    uint8_t *buf = jqt_wire_frame(q, &n);
    int rc = buf ? jqt_wire_write_try(fd, buf, n) : -1;
    free(buf);
    return rc;
}

void jqt_wire_send(int fd, const Judgeq__Request *q)
{
    if (jqt_wire_send_try(fd, q) != 0)
        fail_msg("send of request %llu: %s", (unsigned long long)q->id,
                 strerror(errno));
}

jqt_frame_status jqt_wire_recv_try(int fd, int timeout_ms,
                                   Judgeq__Response **out, int *rfd)
{
    *out = NULL;
    uint8_t hdr[4];
    int r = jqt_wire_read_try(fd, hdr, 4, timeout_ms, rfd);
    if (r == 0)
        return JQT_FRAME_EOF;
    if (r == -2)
        return JQT_FRAME_TIMEOUT;
    if (r == -3)
        return JQT_FRAME_BAD;
    if (r < 0)
        return JQT_FRAME_TORN;
    uint32_t n = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 |
                 (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 24;
    if (n > (64u << 20))
        return JQT_FRAME_BAD;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return JQT_FRAME_BAD;
    r = n ? jqt_wire_read_try(fd, buf, n, timeout_ms, rfd) : 1;
    if (r != 1) {
        free(buf);
        return r == -2   ? JQT_FRAME_TIMEOUT
               : r == -3 ? JQT_FRAME_BAD
                         : JQT_FRAME_TORN;
    }
    *out = judgeq__response__unpack(NULL, n, buf);
    free(buf);
    return *out ? JQT_FRAME_OK : JQT_FRAME_BAD;
}

Judgeq__Response *jqt_wire_recv(int fd, int *rfd)
{
    Judgeq__Response *r;
    int got_fd = -1;
    jqt_frame_status st = jqt_wire_recv_try(fd, jqt_io_timeout_ms(), &r,
                                            &got_fd);
    if (st != JQT_FRAME_OK && got_fd >= 0)
        close(got_fd);
    if (st == JQT_FRAME_EOF)
        return NULL;
    if (st != JQT_FRAME_OK)
        fail_msg("no whole Response within %d ms: %s", jqt_io_timeout_ms(),
                 st == JQT_FRAME_TIMEOUT ? "timeout"
                 : st == JQT_FRAME_TORN  ? "closed inside a frame"
                                         : "not a Response, or MSG_CTRUNC");
    if (got_fd >= 0 && !rfd) {
        close(got_fd);
        fail_msg("response %llu came with an fd nobody asked for",
                 (unsigned long long)r->id);
    }
    if (rfd && got_fd >= 0)
        *rfd = got_fd;
    return r;
}

int jqt_wire_tokenize_flood(int fd, int n, uint64_t first_id)
{
    enum { TEXT = 9000 };
    char *text = malloc(TEXT);
    if (!text)
        return 0;
    size_t len = 0;
    while (len + 20 < TEXT)
        len += (size_t)sprintf(text + len, "Once upon a time, ");
    int sent = 0;
    for (; sent < n; sent++) {
        Judgeq__Request q = JUDGEQ__REQUEST__INIT;
        Judgeq__Tokenize t = JUDGEQ__TOKENIZE__INIT;
        t.text = text;
        q.has_id = 1;
        q.id = first_id + (uint64_t)sent;
        q.body_case = JUDGEQ__REQUEST__BODY_TOKENIZE;
        q.tokenize = &t;
        if (jqt_wire_send_try(fd, &q) != 0)
            break;
    }
    free(text);
    return sent;
}

/* ------------------------------------------------------------ requests */

void jqt_req_ping(Judgeq__Request *q, Judgeq__Ping *p, uint64_t id,
                  uint64_t nonce)
{
    judgeq__request__init(q);
    judgeq__ping__init(p);
    p->has_nonce = 1;
    p->nonce = nonce;
    q->has_id = 1;
    q->id = id;
    q->body_case = JUDGEQ__REQUEST__BODY_PING;
    q->ping = p;
}

void jqt_req_create(Judgeq__Request *q, Judgeq__CreateSession *cs,
                    uint64_t id, bool keep_on_disconnect)
{
    judgeq__request__init(q);
    judgeq__create_session__init(cs);
    cs->has_keep_on_disconnect = keep_on_disconnect;
    cs->keep_on_disconnect = keep_on_disconnect;
    q->has_id = 1;
    q->id = id;
    q->body_case = JUDGEQ__REQUEST__BODY_CREATE_SESSION;
    q->create_session = cs;
}

void jqt_req_prefill_tokens(Judgeq__Request *q, Judgeq__Prefill *p,
                            uint64_t id, uint64_t sid, int32_t *tokens,
                            size_t n)
{
    judgeq__request__init(q);
    judgeq__prefill__init(p);
    p->has_session_id = 1;
    p->session_id = sid;
    p->tokens = tokens;
    p->n_tokens = n;
    q->has_id = 1;
    q->id = id;
    q->body_case = JUDGEQ__REQUEST__BODY_PREFILL;
    q->prefill = p;
}

void jqt_req_generate(Judgeq__Request *q, Judgeq__Generate *g, uint64_t id,
                      uint64_t sid, uint32_t max_tokens)
{
    judgeq__request__init(q);
    judgeq__generate__init(g);
    g->has_session_id = g->has_max_tokens = g->has_ignore_eos = 1;
    g->session_id = sid;
    g->max_tokens = max_tokens;
    g->ignore_eos = 1;
    q->has_id = 1;
    q->id = id;
    q->body_case = JUDGEQ__REQUEST__BODY_GENERATE;
    q->generate = g;
}

void jqt_req_fork(Judgeq__Request *q, Judgeq__Fork *f, uint64_t id,
                  uint64_t sid)
{
    judgeq__request__init(q);
    judgeq__fork__init(f);
    f->has_session_id = 1;
    f->session_id = sid;
    q->has_id = 1;
    q->id = id;
    q->body_case = JUDGEQ__REQUEST__BODY_FORK;
    q->fork = f;
}

void jqt_req_export(Judgeq__Request *q, Judgeq__ExportKV *x, uint64_t id,
                    uint64_t sid)
{
    judgeq__request__init(q);
    judgeq__export_kv__init(x);
    x->has_session_id = 1;
    x->session_id = sid;
    q->has_id = 1;
    q->id = id;
    q->body_case = JUDGEQ__REQUEST__BODY_EXPORT_KV;
    q->export_kv = x;
}
