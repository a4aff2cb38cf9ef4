/* daemon_harness.c — see daemon_harness.h. */
#include "daemon_harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

double jqt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define JQT_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define JQT_ASAN 1
#endif

bool jqt_asan_build(void)
{
#ifdef JQT_ASAN
    return true;
#else
    return false;
#endif
}

int jqt_io_timeout_ms(void)
{
    const char *v = getenv("JQT_IO_TIMEOUT_MS");
    return v && atoi(v) > 0 ? atoi(v) : 60000;
}

/* ------------------------------------------------------------ process */

static char notify_socket[128];

void jqt_daemon_set_notify_socket(const char *path)
{
    snprintf(notify_socket, sizeof notify_socket, "%s", path ? path : "");
}

void jqt_daemon_spawn(jqt_daemon *d, const char *name, const char *model,
                      const char *const *extra)
{
    memset(d, 0, sizeof *d);
    snprintf(d->sock, sizeof d->sock, "%.90s/%.8s.sock", jqt_tmpdir(), name);
    snprintf(d->log, sizeof d->log, "%s/%s.log", jqt_tmpdir(), name);
    const char *b = getenv("JUDGEQ_BUILD");
    char *bin = jqt_fmt("%s/bin/judgeqd", b && *b ? b : "build");
    const char *argv[48];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--model";
    argv[n++] = model;
    argv[n++] = "--socket";
    argv[n++] = d->sock;
    argv[n++] = "--log-level";
    argv[n++] = "debug";
    for (int i = 0; extra && extra[i]; i++) {
        assert_true(n < 47);
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int lf = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (lf >= 0) {
            dup2(lf, 1);
            dup2(lf, 2);
            close(lf);
        }
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        if (notify_socket[0])
            setenv("NOTIFY_SOCKET", notify_socket, 1);
        else
            unsetenv("NOTIFY_SOCKET");
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    free(bin);
    notify_socket[0] = 0;
    d->pid = pid;
}

bool jqt_daemon_wait(jqt_daemon *d, double timeout_s)
{
    if (d->pid <= 0)
        return true;
    double t0 = jqt_now();
    for (;;) {
        pid_t r = waitpid(d->pid, &d->status, WNOHANG);
        if (r == d->pid) {
            d->pid = 0;
            return true;
        }
        if (jqt_now() - t0 > timeout_s)
            return false;
        usleep(5000);
    }
}

void jqt_daemon_start(jqt_daemon *d, const char *name, const char *model,
                      const char *const *extra)
{
    jqt_daemon_spawn(d, name, model, extra);
    double t0 = jqt_now();
    while (jqt_now() - t0 < 120) {
        int fd = jqt_wire_connect_try(d->sock);
        if (fd >= 0) {
            Judgeq__Request q = JUDGEQ__REQUEST__INIT;
            Judgeq__Ping p = JUDGEQ__PING__INIT;
            q.has_id = 1;
            q.id = 1;
            q.body_case = JUDGEQ__REQUEST__BODY_PING;
            q.ping = &p;
            Judgeq__Response *r = NULL;
            bool ok = jqt_wire_send_try(fd, &q) == 0 &&
                      jqt_wire_recv_try(fd, jqt_io_timeout_ms(), &r, NULL) ==
                          JQT_FRAME_OK;
            judgeq__response__free_unpacked(r, NULL);
            close(fd);
            if (ok)
                return;
        }
        if (jqt_daemon_wait(d, 0)) {
            jqt_daemon_print_log(d);
            fail_msg("judgeqd exited before serving (status 0x%x)",
                     d->status);
        }
        usleep(10000);
    }
    jqt_daemon_print_log(d);
    fail_msg("judgeqd did not answer a Ping within 120 s");
}

int jqt_daemon_stop(jqt_daemon *d)
{
    if (d->pid <= 0)
        fail_msg("jqt_daemon_stop: the daemon is not running");
    kill(d->pid, SIGTERM);
    if (!jqt_daemon_wait(d, 120)) {
        jqt_daemon_kill(d);
        jqt_daemon_print_log(d);
        fail_msg("judgeqd did not exit within 120 s of SIGTERM");
    }
    if (!WIFEXITED(d->status)) {
        jqt_daemon_print_log(d);
        fail_msg("judgeqd died of signal %d", WTERMSIG(d->status));
    }
    if (WEXITSTATUS(d->status) != 0)
        jqt_daemon_print_log(d);
    return WEXITSTATUS(d->status);
}

void jqt_daemon_kill(jqt_daemon *d)
{
    if (d->pid <= 0)
        return;
    kill(d->pid, SIGKILL);
    waitpid(d->pid, &d->status, 0);
    d->pid = 0;
}

char *jqt_daemon_log(const jqt_daemon *d)
{
    char *log = jqt_read_file(d->log, NULL);
    return log ? log : strdup("");
}

void jqt_daemon_print_log(const jqt_daemon *d)
{
    char *log = jqt_daemon_log(d);
    size_t n = strlen(log);
    fprintf(stderr, "---- %s (last bytes)\n%s\n----\n", d->log,
            n > 4000 ? log + n - 4000 : log);
    free(log);
}

bool jqt_daemon_log_wait(const jqt_daemon *d, const char *needle,
                         double timeout_s)
{
    double t0 = jqt_now();
    for (;;) {
        char *log = jqt_daemon_log(d);
        bool found = strstr(log, needle) != NULL;
        free(log);
        if (found)
            return true;
        if (jqt_now() - t0 > timeout_s)
            return false;
        usleep(10000);
    }
}

long jqt_proc_rss_kib(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    char *st = jqt_read_file(path, NULL);
    const char *p = st ? strstr(st, "VmRSS:") : NULL;
    long kib = p ? strtol(p + 6, NULL, 10) : -1;
    free(st);
    return kib;
}

int jqt_proc_fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *dir = opendir(path);
    if (!dir)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(dir));)
        if (e->d_name[0] != '.')
            n++;
    closedir(dir);
    return n;
}

const char *jqt_gen_model(const char *name, const char *args)
{
    static char paths[4][512];
    static char names[4][32];
    int slot = 0;
    for (; slot < 4 && names[slot][0]; slot++)
        if (strcmp(names[slot], name) == 0)
            return paths[slot];
    assert_true(slot < 4);
    snprintf(paths[slot], sizeof paths[slot], "%s/%s.gguf", jqt_tmpdir(),
             name);
    char *cmd = jqt_fmt("'%s' gen-model -o '%s' %s", jqt_judgeq_bin(),
                        paths[slot], args);
    int st;
    char *err = NULL;
    free(jqt_run(cmd, &st, &err));
    if (st != 0)
        fail_msg("%s: exit %d: %s", cmd, st, err ? err : "");
    free(err);
    free(cmd);
    snprintf(names[slot], sizeof names[slot], "%s", name);
    return paths[slot];
}

judgeq_conn *jqt_connect(const jqt_daemon *d)
{
    judgeq_conn *c = NULL;
    if (judgeq_connect(d->sock, jqt_io_timeout_ms(), &c) != JUDGEQ_OK)
        fail_msg("connect %s: %s", d->sock, c ? judgeq_errmsg(c) : "no memory");
    judgeq_set_timeout(c, jqt_io_timeout_ms());
    return c;
}

jqt_stats jqt_stats_get(judgeq_conn *c)
{
    judgeq_stats st;
    int rc = judgeq_get_stats(c, &st);
    if (rc != JUDGEQ_OK)
        fail_msg("Stats: %s", judgeq_errmsg(c));
    jqt_stats s = {
        .sessions = st.sessions,
        .connections = st.connections,
        .memory_used = st.memory_used,
        .memory_budget = st.memory_budget,
        .shared_prefix_bytes = st.shared_prefix_bytes,
        .requests = st.requests,
    };
    judgeq_stats_free(&st);
    return s;
}

/* ------------------------------------------------------------ frames */

int jqt_wire_connect_try(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int jqt_wire_send_try(int fd, const Judgeq__Request *q)
{
    size_t n = judgeq__request__get_packed_size(q);
    uint8_t *buf = malloc(n + 4);
    if (!buf)
        return -1;
    judgeq__request__pack(q, buf + 4);
    for (int i = 0; i < 4; i++)
        buf[i] = (uint8_t)(n >> (8 * i));
    size_t off = 0;
    while (off < n + 4) {
        ssize_t w = send(fd, buf + off, n + 4 - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    free(buf);
    return off == n + 4 ? 0 : -1;
}

/* Reads n bytes. 1: all of them; 0: EOF before the first; -1: EOF inside;
 * -2: timeout. */
static int read_n(int fd, uint8_t *buf, size_t n, int timeout_ms, int *rfd)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, timeout_ms);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0)
            return -2;
        struct iovec iov = {buf + got, n - got};
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
        got += (size_t)r;
    }
    return 1;
}

jqt_frame_status jqt_wire_recv_try(int fd, int timeout_ms,
                                   Judgeq__Response **out, int *rfd)
{
    *out = NULL;
    uint8_t hdr[4];
    int r = read_n(fd, hdr, 4, timeout_ms, rfd);
    if (r == 0)
        return JQT_FRAME_EOF;
    if (r == -2)
        return JQT_FRAME_TIMEOUT;
    if (r < 0)
        return JQT_FRAME_TORN;
    uint32_t n = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 |
                 (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 24;
    if (n > (64u << 20))
        return JQT_FRAME_BAD;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return JQT_FRAME_BAD;
    r = n ? read_n(fd, buf, n, timeout_ms, rfd) : 1;
    if (r != 1) {
        free(buf);
        return r == -2 ? JQT_FRAME_TIMEOUT : JQT_FRAME_TORN;
    }
    *out = judgeq__response__unpack(NULL, n, buf);
    free(buf);
    return *out ? JQT_FRAME_OK : JQT_FRAME_BAD;
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
