/* daemon_harness.c — judgeqd as a child process of the test, and /proc;
 * see daemon_harness.h. */
#include "daemon_harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
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

const char *jqt_judgeqd_bin(void)
{
    static char path[4096];
    const char *b = getenv("JUDGEQ_BUILD");
    snprintf(path, sizeof path, "%s/bin/judgeqd", b && *b ? b : "build");
    return path;
}

/* The child's side of the spawn: never returns. */
static void exec_daemon(const jqt_daemon *d, const jqt_daemon_opts *o,
                        int listen_fd, pid_t parent, char *const *argv)
{
    int lf = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (lf >= 0) {
        dup2(lf, 1);
        dup2(lf, 2);
        close(lf);
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("NOTIFY_SOCKET");
    if (listen_fd >= 0) {
        if (listen_fd != 3) {
            dup2(listen_fd, 3); /* the copy is not close-on-exec */
            close(listen_fd);
        } else {
            fcntl(3, F_SETFD, 0);
        }
        char pid[32];
        snprintf(pid, sizeof pid, "%d", (int)getpid());
        setenv("LISTEN_PID", pid, 1);
        setenv("LISTEN_FDS", "1", 1);
    }
    for (int i = 0; o->env && o->env[i]; i++)
        putenv((char *)o->env[i]);
    if (o->before_exec && o->before_exec(o->arg) != 0)
        _exit(120);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) /* the test died before the line above */
        _exit(127);
    execv(argv[0], argv);
    _exit(127);
}

void jqt_daemon_spawn(jqt_daemon *d, const char *name, const char *model,
                      const char *const *extra, const jqt_daemon_opts *opts)
{
    static const jqt_daemon_opts defaults = {0};
    const jqt_daemon_opts *o = opts ? opts : &defaults;
    const char *dir = o->dir ? o->dir : jqt_tmpdir();
    memset(d, 0, sizeof *d);
    int n = snprintf(d->sock, sizeof d->sock, "%s/%s.sock", dir, name);
    if (n < 0 || (size_t)n >= sizeof d->sock)
        fail_msg("socket path %s/%s.sock is longer than a sockaddr_un holds",
                 dir, name);
    snprintf(d->log, sizeof d->log, "%s/%s.log", dir, name);
    const char *argv[48];
    n = 0;
    argv[n++] = o->bin ? o->bin : jqt_judgeqd_bin();
    argv[n++] = "--model";
    argv[n++] = model;
    if (!o->activate) {
        argv[n++] = "--socket";
        argv[n++] = d->sock;
    }
    argv[n++] = "--log-level";
    argv[n++] = o->log_level ? o->log_level : "debug";
    for (int i = 0; extra && extra[i]; i++) {
        assert_true(n < 47);
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    int listen_fd = o->activate ? jqt_unix_listen(d->sock, SOCK_STREAM) : -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        exec_daemon(d, o, listen_fd, parent, (char *const *)argv);
    if (listen_fd >= 0)
        close(listen_fd); /* the daemon's now */
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
                      const char *const *extra, const jqt_daemon_opts *opts)
{
    jqt_daemon_spawn(d, name, model, extra, opts);
    double t0 = jqt_now();
    while (jqt_now() - t0 < 120) {
        int fd = jqt_wire_connect_try(d->sock);
        if (fd >= 0) {
            Judgeq__Request q;
            Judgeq__Ping p;
            jqt_req_ping(&q, &p, 1, 0);
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
            fail_msg("judgeqd exited before serving on %s (status 0x%x)",
                     d->sock, d->status);
        }
        usleep(10000);
    }
    jqt_daemon_print_log(d);
    fail_msg("judgeqd did not answer a Ping on %s within 120 s", d->sock);
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

int jqt_daemon_stop_teardown(jqt_daemon *d)
{
    if (d->pid <= 0) {
        fprintf(stderr, "judgeqd %s is not running at teardown\n", d->sock);
        return -1;
    }
    int code = jqt_daemon_stop(d);
    if (code != 0) {
        fprintf(stderr, "judgeqd exit status %d after SIGTERM\n", code);
        return -1;
    }
    return 0;
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

int jqt_foreign_session_try(judgeq_conn *c, uint64_t sid,
                            const judgeq_prefill_input *in)
{
    judgeq_generate_opts go;
    judgeq_generate_opts_init(&go);
    go.max_tokens = 2;
    uint64_t f;
    int fd = -1;
    int rcs[5];
    rcs[0] = judgeq_prefill(c, sid, in, NULL);
    rcs[1] = judgeq_generate(c, sid, &go, NULL, NULL, NULL);
    rcs[2] = judgeq_fork(c, sid, &f);
    rcs[3] = judgeq_export_kv(c, sid, &fd, NULL);
    rcs[4] = judgeq_session_close(c, sid);
    for (int i = 0; i < 5; i++)
        if (rcs[i] != JUDGEQ_ERR_PERMISSION_DENIED) {
            fprintf(stderr, "uid %d, call %d on session %llu: %s %s\n",
                    (int)getuid(), i, (unsigned long long)sid,
                    judgeq_status_name(rcs[i]), judgeq_errmsg(c));
            return i;
        }
    if (fd != -1) {
        fprintf(stderr, "uid %d: an export refused, yet an fd came\n",
                (int)getuid());
        close(fd);
        return 5;
    }
    return -1;
}

/* ------------------------------------------------------------ /proc */

long jqt_proc_status(pid_t pid, const char *key)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    char *st = jqt_read_file(path, NULL);
    const char *p = st ? strstr(st, key) : NULL;
    long v = p ? strtol(p + strlen(key), NULL, 10) : -1;
    free(st);
    return v;
}

long jqt_proc_rss_kib(pid_t pid) { return jqt_proc_status(pid, "VmRSS:"); }

int jqt_proc_fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *dir = opendir(path);
    if (!dir)
        return -1;
    /* reading our own list opens one more */
    int own = pid == getpid() ? dirfd(dir) : -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(dir));)
        if (e->d_name[0] != '.' && atoi(e->d_name) != own)
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
    char *args_o = jqt_fmt("gen-model -o '%s' %s", paths[slot], args);
    free(jqt_judgeq_ok(args_o));
    free(args_o);
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

