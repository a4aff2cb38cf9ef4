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
    const char *build = getenv("JUDGEQ_BUILD");
    char bin[4096];
    snprintf(bin, sizeof bin, "%s/bin/judgeqd", build && *build ? build : "build");
    snprintf(d->sock, sizeof d->sock, "%s/%s.sock", jqt_tmpdir(), name);
    snprintf(d->log, sizeof d->log, "%s/%s.log", jqt_tmpdir(), name);
    const char *argv[40];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--model";
    argv[n++] = model;
    argv[n++] = "--socket";
    argv[n++] = d->sock;
    for (int i = 0; extra && extra[i] && n < 39; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t parent = getpid();
    d->pid = fork();
    assert_true(d->pid >= 0);
    if (d->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
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
