/* daemon_proc.c — see daemon_proc.h. */
#include "daemon_proc.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "judgeq.h"
#include "testutil.h"

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void jqt_daemon_start(jqt_daemon *d, const char *name, const char *model,
                      const char *const *extra)
{
    jqt_daemon_start_opts(d, name, model, extra, NULL);
}

void jqt_daemon_start_opts(jqt_daemon *d, const char *name, const char *model,
                           const char *const *extra,
                           const jqt_daemon_opts *opts)
{
    static const jqt_daemon_opts none = {0};
    const jqt_daemon_opts *o = opts ? opts : &none;
    const char *dir = o->dir ? o->dir : jqt_tmpdir();
    const char *build = getenv("JUDGEQ_BUILD");
    char bin[4096];
    snprintf(bin, sizeof bin, "%s/bin/judgeqd", build && *build ? build : "build");
    snprintf(d->sock, sizeof d->sock, "%s/%s.sock", dir, name);
    snprintf(d->log, sizeof d->log, "%s/%s.log", dir, name);
    const char *argv[40];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--model";
    argv[n++] = model;
    if (o->listen_fd <= 0) {
        argv[n++] = "--socket";
        argv[n++] = d->sock;
    }
    for (int i = 0; extra && extra[i] && n < 39; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t parent = getpid();
    d->pid = fork();
    assert_true(d->pid >= 0);
    if (d->pid == 0) {
        int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        if (o->listen_fd > 0) {
            if (o->listen_fd != 3) {
                dup2(o->listen_fd, 3);
                close(o->listen_fd);
            }
            fcntl(3, F_SETFD, 0);
            char pid[32];
            snprintf(pid, sizeof pid, "%d", (int)getpid());
            setenv("LISTEN_PID", pid, 1);
            setenv("LISTEN_FDS", "1", 1);
        }
        if (o->before_exec && o->before_exec(o->arg) != 0)
            _exit(120);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        judgeq_conn *c;
        int rc = judgeq_connect(d->sock, 100, &c);
        if (rc == JUDGEQ_OK)
            rc = judgeq_ping(c, NULL);
        judgeq_close(c);
        if (rc == JUDGEQ_OK)
            return;
        if (waitpid(d->pid, NULL, WNOHANG) == d->pid) {
            d->pid = 0;
            break;
        }
        nap_ms(50);
    }
    char *log = jqt_read_file(d->log, NULL);
    fail_msg("judgeqd did not come up on %s; its log:\n%s", d->sock, log ? log : "(none)");
}

int jqt_daemon_stop(jqt_daemon *d)
{
    if (d->pid <= 0)
        return -1;
    kill(d->pid, SIGTERM);
    int status = -1;
    for (int i = 0; i < 200; i++) {
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            d->pid = 0;
            return status;
        }
        nap_ms(50);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    d->pid = 0;
    return -1;
}
