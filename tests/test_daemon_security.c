/* test_daemon_security.c — judgeqd's security promises, each held against
 * the real daemon (JUDGEQ_BUILD/bin/judgeqd):
 *
 *   - client-named files (Prefill.eviction.soft_path) are opened only under
 *     an --allow-path prefix, whatever "..", links or spelling the client
 *     tries, and never without one; refusals are clean replies;
 *   - the socket is born 0660, so its group decides who connects, and a
 *     session of one non-root uid is closed to another;
 *   - a frame built to make protobuf-c allocate 30 times its size is
 *     refused within the decode budget (frame.h);
 *   - the daemon serves everything (judgeq eviction, fork, sealed KV
 *     export, SIGHUP, SIGTERM) under judgeqd.service's own restrictions:
 *     the unit's SystemCallFilter= expanded by systemd-analyze into a
 *     seccomp filter, with MemoryDenyWriteExecute=, RestrictAddressFamilies=
 *     and RestrictNamespaces= as systemd installs them, NoNewPrivileges=,
 *     an empty CapabilityBoundingSet=, an unprivileged uid (DynamicUser=),
 *     PrivateNetwork= and ProtectSystem=strict (a read-only file system).
 *
 * The daemons run in a world-traversable directory under /tmp (other uids
 * must reach the socket), are started with PR_SET_PDEATHSIG and stopped
 * with bounded waits. Tests that change uids need root and say so when
 * they skip.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <linux/sched.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#include "judgeq.h"
#include "daemon.h"
#include "daemon_harness.h"
#include "judgeq.pb-c.h"
#include "paths.h"

#define MODEL "stories260K.gguf"
#define PROMPT                                                               \
    "Once upon a time there was a little girl named Lily. She loved to "     \
    "play outside in the park with her friends"
#define NOBODY 65534
#define OTHER_UID 65533

static char dir[64];        /* /tmp/judgeq-sec-XXXXXX, mode 0711 */
static char soft[160];      /* dir/soft.gguf: the daemon's --soft */
static char allowed[160];   /* dir/allowed: the --allow-path prefix */
/* copies of judgeqd and the model in dir: the sandboxed daemon runs as
 * nobody, who may not reach the build tree or ../shared (a clone in a
 * 0700 directory, as CI makes) */
static char sandbox_bin[160], sandbox_model[160];

static void sh_ok(const char *cmd)
{
    int rc;
    char *err = NULL;
    free(jqt_run(cmd, &rc, &err));
    if (rc != 0)
        fail_msg("%s: exit %d: %s", cmd, rc, err ? err : "");
    free(err);
}

/* ------------------------------------------------------------ daemons */

typedef struct sandbox sandbox;
static int sandbox_enter(const sandbox *sb);

/* the harness's before_exec hook: the unit's sandbox, entered by the child */
static int enter_hook(void *arg)
{
    /* LeakSanitizer stops the world with ptrace at exit, which
     * @system-service forbids; the other tests check leaks */
    const char *a = getenv("ASAN_OPTIONS");
    char *opts = jqt_fmt("%s%sdetect_leaks=0", a ? a : "", a && *a ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    free(opts);
    int step = sandbox_enter(arg);
    if (step != 0)
        fprintf(stderr, "sandbox step %d failed: %s\n", step, strerror(errno));
    return step;
}

/* judgeqd on dir/NAME.sock (2 threads, debug log) with extra args
 * (NULL-ended); with `activate` the socket comes as fd 3 through
 * LISTEN_FDS, and with sb the child enters that sandbox before exec.
 * Returns once it answers a Ping. */
static void start(jqt_daemon *dp, const char *name, const char *const *extra,
                  bool activate, sandbox *sb)
{
    const char *args[32] = {"--threads", "2"};
    int n = 2;
    for (int i = 0; extra && extra[i] && n < 31; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    const jqt_daemon_opts o = {.dir = dir,
                               .activate = activate,
                               .before_exec = sb ? enter_hook : NULL,
                               .arg = sb,
                               .bin = sb ? sandbox_bin : NULL};
    jqt_daemon_start(dp, name, sb ? sandbox_model : jqt_model_path(MODEL),
                     args, &o);
}

/* SIGTERM: the daemon must exit 0 (the harness shows the log when it
 * does not). */
static void stop_ok(jqt_daemon *dp)
{
    assert_int_equal(jqt_daemon_stop(dp), 0);
}

/* A prefill of PROMPT with judgeq eviction and the client's soft_path
 * (NULL: the daemon's own). Returns the library's code. */
static int prefill_judgeq(judgeq_conn *c, uint64_t sid, const char *path)
{
    judgeq_eviction ev;
    judgeq_eviction_init(&ev);
    ev.policy = JUDGEQ_POLICY_JUDGEQ;
    ev.budget = 8;
    ev.window = 4;
    ev.soft_path = path;
    judgeq_prefill_input in = {.text = PROMPT, .eviction = &ev};
    return judgeq_prefill(c, sid, &in, NULL);
}

static void expect_refused(judgeq_conn *c, const char *path, int code,
                           const char *needle)
{
    uint64_t sid;
    assert_int_equal(judgeq_session_create(c, NULL, &sid, NULL), JUDGEQ_OK);
    int rc = prefill_judgeq(c, sid, path);
    if (rc != code || !strstr(judgeq_errmsg(c), needle))
        fail_msg("soft_path %s: %s \"%s\" (want %s naming \"%s\")", path,
                 judgeq_status_name(rc), judgeq_errmsg(c),
                 judgeq_status_name(code), needle);
    /* the daemon keeps serving, this connection included */
    assert_int_equal(judgeq_ping(c, NULL), JUDGEQ_OK);
    assert_int_equal(judgeq_session_close(c, sid), JUDGEQ_OK);
}

/* The "tokens" of a judgeq CLI command's --json output. */
static size_t cli_tokens(const char *args, int32_t *out, size_t cap)
{
    json_t *root = jqt_judgeq_json(args);
    size_t n = jqt_json_tokens(root, out, cap);
    assert_true(n > 0);
    json_decref(root);
    return n;
}

/* `judgeq generate` through dp with judgeq eviction (the daemon's soft
 * tokens, or soft_arg's) equals `judgeq run` with offline_soft. */
static void check_judgeq_generation(const jqt_daemon *dp,
                                    const char *soft_arg,
                                    const char *offline_soft)
{
    const char *flags = "-n 16 --temp 0 --ignore-eos --evict judgeq "
                        "--budget 8 --window 4";
    char *on = jqt_fmt("--socket '%s' generate -p '%s' %s%s%s", dp->sock,
                       PROMPT, flags, soft_arg ? " --soft " : "",
                       soft_arg ? soft_arg : "");
    char *off = jqt_fmt("run -m '%s' -p '%s' %s --soft '%s'",
                        jqt_model_path(MODEL), PROMPT, flags, offline_soft);
    int32_t a[64], b[64];
    size_t na = cli_tokens(on, a, 64), nb = cli_tokens(off, b, 64);
    assert_int_equal(na, 16);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof *a);
    free(on);
    free(off);
}

/* ------------------------------------------------------------ fixture */

static int group_setup(void **state)
{
    (void)state;
    alarm(900); /* the whole binary, whatever hangs */
    snprintf(dir, sizeof dir, "/tmp/judgeq-sec-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    chmod(dir, 0711); /* other uids reach the sockets, and the daemon as
                         nobody its files, but nobody lists the directory */
    snprintf(soft, sizeof soft, "%s/soft.gguf", dir);
    snprintf(allowed, sizeof allowed, "%s/allowed", dir);
    snprintf(sandbox_bin, sizeof sandbox_bin, "%s/judgeqd", dir);
    snprintf(sandbox_model, sizeof sandbox_model, "%s/model.gguf", dir);
    const char *m = jqt_model_path(MODEL);
    char *cmd = jqt_fmt(
        "set -e; cd '%s'; mkdir -m 0755 allowed allowed/sub allowed-not; "
        "j='%s'; m='%s'; $j soft-init -m $m -o soft.gguf --n 2 --seed 1; "
        "$j soft-init -m $m -o allowed/client.gguf --n 3 --seed 7; "
        "$j soft-init -m $m -o outside.gguf --n 3 --seed 7; "
        "cp outside.gguf allowed-not/sibling.gguf; "
        "ln -s ../outside.gguf allowed/escape.gguf; "
        "ln -s ../allowed/client.gguf allowed-not/inward.gguf; "
        "ln -s /etc allowed/etc; mkfifo allowed/fifo.gguf; "
        "$j gen-model -o allowed/other-model.gguf --n-embd 64 --n-layer 1 "
        "--n-head 2 --n-head-kv 1 --n-ff 8 --n-vocab 512 --ctx 64; "
        "$j soft-init -m allowed/other-model.gguf -o allowed/wrong.gguf --n 2; "
        "cp '%s' judgeqd; cp $m model.gguf; chmod 0755 judgeqd; "
        "chmod 0644 *.gguf allowed/*.gguf allowed-not/*.gguf",
        dir, jqt_judgeq_bin(), m, jqt_judgeqd_bin());
    int rc;
    char *err = NULL;
    free(jqt_run(cmd, &rc, &err));
    if (rc != 0)
        fprintf(stderr, "setup failed: %s\n%s\n", cmd, err ? err : "");
    free(err);
    free(cmd);
    return rc == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    char *cmd = jqt_fmt("rm -rf '%s'", dir);
    int rc;
    free(jqt_run(cmd, &rc, NULL));
    free(cmd);
    return 0;
}

/* ------------------------------------------------------ --allow-path */

/* The prefix test is on whole components, on canonical names. */
static void test_path_under(void **state)
{
    (void)state;
    assert_true(jq_path_under("/srv/soft", "/srv/soft"));
    assert_true(jq_path_under("/srv/soft/a.gguf", "/srv/soft"));
    assert_true(jq_path_under("/srv/soft/x/y", "/srv/soft"));
    assert_false(jq_path_under("/srv/softer/a.gguf", "/srv/soft"));
    assert_false(jq_path_under("/srv/sof", "/srv/soft"));
    assert_false(jq_path_under("/srv", "/srv/soft"));
    assert_true(jq_path_under("/anything", "/"));
    assert_true(jq_path_under("/", "/"));
    /* a prefix that is a file allows that file alone */
    assert_true(jq_path_under("/srv/a.gguf", "/srv/a.gguf"));
    assert_false(jq_path_under("/srv/a.gguf.bak", "/srv/a.gguf"));
}

/* jq_allow_open itself, without a daemon: the errors and what they name. */
static void test_allow_open(void **state)
{
    (void)state;
    jq_str_list opt = {.v = {allowed}, .n = 1};
    jq_allow_list a;
    char err[256];
    assert_int_equal(jq_allow_list_init(&a, &opt, err, sizeof err), 0);
    assert_int_equal(a.n, 1);
    jq_wire_error we;
    uint64_t size = 0;
    const char *f = "prefill.eviction.soft_path";
    char *ok = jqt_fmt("%s/sub/../client.gguf", allowed);
    int fd = jq_allow_open(&a, f, ok, &size, &we);
    if (fd < 0)
        fail_msg("%s", we.message);
    struct stat st;
    assert_int_equal(stat(ok, &st), 0);
    assert_int_equal(size, (uint64_t)st.st_size);
    /* an O_PATH descriptor: it reads nothing until reopened */
    char b;
    assert_int_equal(read(fd, &b, 1), -1);
    assert_int_equal(errno, EBADF);
    close(fd);
    struct {
        const char *path;
        Judgeq__ErrorCode code;
        const char *needle;
    } bad[] = {
        {"%s/escape.gguf", JUDGEQ__ERROR_CODE__PERMISSION_DENIED,
         "after following links"},
        {"%s/../outside.gguf", JUDGEQ__ERROR_CODE__PERMISSION_DENIED,
         "not under an --allow-path prefix"},
        {"%s-not/sibling.gguf", JUDGEQ__ERROR_CODE__PERMISSION_DENIED,
         "not under"},
        {"%s/etc/passwd", JUDGEQ__ERROR_CODE__PERMISSION_DENIED, "not under"},
        {"%s/missing.gguf", JUDGEQ__ERROR_CODE__NOT_FOUND, "No such file"},
        /* missing and outside: the same answer as present and outside */
        {"%s/../missing.gguf", JUDGEQ__ERROR_CODE__PERMISSION_DENIED,
         "not under"},
        {"%s/sub", JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
         "not a regular file"},
        {"%s/fifo.gguf", JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
         "not a regular file"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *p = jqt_fmt(bad[i].path, allowed);
        memset(&we, 0, sizeof we);
        assert_int_equal(jq_allow_open(&a, f, p, &size, &we), -1);
        if (we.code != bad[i].code || !strstr(we.message, bad[i].needle) ||
            !strstr(we.message, p))
            fail_msg("%s: code %d \"%s\"", p, (int)we.code, we.message);
        free(p);
    }
    /* a link from outside into the prefix reaches an allowed file */
    char *in = jqt_fmt("%s-not/inward.gguf", allowed);
    fd = jq_allow_open(&a, f, in, &size, &we);
    assert_true(fd >= 0);
    close(fd);
    free(in);
    assert_int_equal(jq_allow_open(&a, f, "client.gguf", &size, &we), -1);
    assert_int_equal(we.code, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT);
    jq_allow_list_free(&a);
    /* no prefix: nothing at all */
    jq_str_list none = {.n = 0};
    assert_int_equal(jq_allow_list_init(&a, &none, err, sizeof err), 0);
    assert_int_equal(jq_allow_open(&a, f, ok, &size, &we), -1);
    assert_int_equal(we.code, JUDGEQ__ERROR_CODE__PERMISSION_DENIED);
    assert_non_null(strstr(we.message, "without --allow-path"));
    free(ok);
    /* a prefix that does not exist is an error at start */
    jq_str_list missing = {.v = {"/nonexistent/judgeq"}, .n = 1};
    assert_int_equal(jq_allow_list_init(&a, &missing, err, sizeof err), -1);
    assert_non_null(strstr(err, "--allow-path /nonexistent/judgeq"));
}

/* Without --allow-path the daemon opens no client path, not even one that
 * exists and would be valid. */
static void test_no_allow_path_opens_nothing(void **state)
{
    (void)state;
    jqt_daemon dp = {0};
    const char *extra[] = {"--soft", soft, NULL};
    start(&dp, "closed", extra, false, NULL);
    judgeq_conn *c = jqt_connect(&dp);
    char *p = jqt_fmt("%s/client.gguf", allowed);
    expect_refused(c, p, JUDGEQ_ERR_PERMISSION_DENIED, p);
    expect_refused(c, p, JUDGEQ_ERR_PERMISSION_DENIED, "without --allow-path");
    /* its own soft tokens still serve judgeq eviction */
    uint64_t sid;
    assert_int_equal(judgeq_session_create(c, NULL, &sid, NULL), JUDGEQ_OK);
    assert_int_equal(prefill_judgeq(c, sid, NULL), JUDGEQ_OK);
    judgeq_close(c);
    free(p);
    stop_ok(&dp);
}

/* With --allow-path: a file under the prefix serves judgeq eviction
 * exactly as `judgeq run --soft` does; everything else is refused with a
 * reply naming the path, and the daemon keeps serving. */
static void test_allow_path(void **state)
{
    (void)state;
    jqt_daemon dp = {0};
    const char *extra[] = {"--allow-path", allowed, NULL};
    start(&dp, "allow", extra, false, NULL);
    char *client = jqt_fmt("%s/client.gguf", allowed);
    /* relative --soft: the CLI sends it made absolute */
    char *rel = jqt_fmt("cd '%s' && '%s' --socket '%s' generate -p '%s' -n 4 "
                        "--temp 0 --evict judgeq --budget 8 --window 4 "
                        "--soft allowed/client.gguf >/dev/null",
                        dir, jqt_judgeq_bin(), dp.sock, PROMPT);
    sh_ok(rel);
    free(rel);
    check_judgeq_generation(&dp, client, client);

    judgeq_conn *c = jqt_connect(&dp);
    struct {
        const char *fmt;
        int code;
        const char *needle;
    } bad[] = {
        {"%s/../outside.gguf", JUDGEQ_ERR_PERMISSION_DENIED, "not under"},
        {"%s/escape.gguf", JUDGEQ_ERR_PERMISSION_DENIED, "following links"},
        {"%s-not/sibling.gguf", JUDGEQ_ERR_PERMISSION_DENIED, "not under"},
        {"%s/etc/passwd", JUDGEQ_ERR_PERMISSION_DENIED, "not under"},
        {"%s/missing.gguf", JUDGEQ_ERR_NOT_FOUND, "missing.gguf"},
        {"%s/sub", JUDGEQ_ERR_INVALID_ARGUMENT, "not a regular file"},
        /* O_PATH: a FIFO is judged without blocking the loop */
        {"%s/fifo.gguf", JUDGEQ_ERR_INVALID_ARGUMENT, "not a regular file"},
        /* allowed, but soft tokens of another model */
        {"%s/wrong.gguf", JUDGEQ_ERR_INVALID_ARGUMENT, "soft_path"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *p = jqt_fmt(bad[i].fmt, allowed);
        expect_refused(c, p, bad[i].code, bad[i].needle);
        free(p);
    }
    expect_refused(c, "/etc/shadow", JUDGEQ_ERR_PERMISSION_DENIED,
                   "/etc/shadow");
    expect_refused(c, "client.gguf", JUDGEQ_ERR_INVALID_ARGUMENT,
                   "not an absolute path");
    /* soft_path belongs to policy judgeq only */
    uint64_t sid;
    assert_int_equal(judgeq_session_create(c, NULL, &sid, NULL), JUDGEQ_OK);
    judgeq_eviction ev;
    judgeq_eviction_init(&ev);
    ev.policy = JUDGEQ_POLICY_SNAPKV;
    ev.budget = 8;
    ev.soft_path = client;
    judgeq_prefill_input in = {.text = PROMPT, .eviction = &ev};
    assert_int_equal(judgeq_prefill(c, sid, &in, NULL),
                     JUDGEQ_ERR_INVALID_ARGUMENT);
    /* a daemon without --soft still refuses judgeq without a path */
    assert_int_equal(prefill_judgeq(c, sid, NULL), JUDGEQ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(judgeq_errmsg(c), "--soft"));
    /* and after all that, an allowed file still works on this connection */
    assert_int_equal(prefill_judgeq(c, sid, client), JUDGEQ_OK);
    judgeq_close(c);
    free(client);
    stop_ok(&dp);
    /* the refusals are in the log for the administrator */
    char *log = jqt_read_file(dp.log, NULL);
    assert_non_null(log);
    assert_non_null(strstr(log, "clients may name files under"));
    assert_non_null(strstr(log, "/escape.gguf is not under"));
    free(log);
}

/* A prefix that does not exist stops the daemon at start (exit 1), with a
 * message naming it; too many prefixes are a usage error (exit 2). */
static void test_allow_path_startup_errors(void **state)
{
    (void)state;
    char *cmd = jqt_fmt("'%s' --model '%s' --socket '%s/x.sock' --allow-path "
                        "'%s/nonexistent' 2>&1",
                        jqt_judgeqd_bin(), jqt_model_path(MODEL), dir, dir);
    int rc;
    char *out = jqt_run(cmd, &rc, NULL);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "--allow-path"));
    assert_non_null(strstr(out, "nonexistent: No such file"));
    free(out);
    free(cmd);
    char *many = jqt_fmt("'%s' --model '%s' --socket '%s/x.sock'",
                         jqt_judgeqd_bin(), jqt_model_path(MODEL), dir);
    for (int i = 0; i <= JQ_STR_LIST_MAX; i++) {
        char *m = jqt_fmt("%s --allow-path /", many);
        free(many);
        many = m;
    }
    cmd = jqt_fmt("%s 2>&1", many);
    out = jqt_run(cmd, &rc, NULL);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "--allow-path is given more than 16 times"));
    free(out);
    free(cmd);
    free(many);
}

/* ------------------------------------------------ socket and peer uids */

/* In a child: become uid/gid (groups: extra_gid when >= 0), connect, and
 * run fn; the child's exit status is fn's result (100+ for setup). */
typedef int (*as_user_fn)(judgeq_conn *c, uint64_t sid);

static int run_as(uid_t uid, gid_t gid, int extra_gid, const char *sock,
                  as_user_fn fn, uint64_t sid)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        gid_t g = (gid_t)extra_gid;
        if (setgroups(extra_gid >= 0 ? 1 : 0, &g) != 0 || setgid(gid) != 0 ||
            setuid(uid) != 0)
            _exit(100);
        judgeq_conn *c;
        int rc = judgeq_connect(sock, 2000, &c);
        if (rc != JUDGEQ_OK) {
            int e = strstr(judgeq_errmsg(c), "ermission denied") ? 101 : 102;
            judgeq_close(c);
            _exit(e);
        }
        judgeq_set_timeout(c, 20000);
        int r = fn(c, sid);
        judgeq_close(c);
        _exit(r);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static int ping_only(judgeq_conn *c, uint64_t sid)
{
    (void)sid;
    return judgeq_ping(c, NULL) == JUDGEQ_OK ? 0 : 1;
}

/* where create_kept reports its session id (a pipe to the test) */
static int report_fd = -1;

static int create_kept(judgeq_conn *c, uint64_t sid)
{
    (void)sid;
    judgeq_session_opts so = {.keep_on_disconnect = true};
    judgeq_prefill_input in = {.text = "Once upon a time"};
    uint64_t own;
    if (judgeq_session_create(c, &so, &own, NULL) != JUDGEQ_OK ||
        judgeq_prefill(c, own, &in, NULL) != JUDGEQ_OK)
        return 1;
    return write(report_fd, &own, sizeof own) == sizeof own ? 0 : 2;
}

/* Another non-root uid: every access to the session is refused, and no
 * KV leaves through an export. */
static int try_foreign(judgeq_conn *c, uint64_t sid)
{
    judgeq_prefill_input in = {.text = "Once"};
    int failed = jqt_foreign_session_try(c, sid, &in);
    return failed < 0 ? 0 : 10 + failed;
}

/* The owner on a new connection may use its kept session. */
static int use_own(judgeq_conn *c, uint64_t sid)
{
    judgeq_generate_opts go;
    judgeq_generate_opts_init(&go);
    go.max_tokens = 3;
    judgeq_generate_result gr;
    if (judgeq_generate(c, sid, &go, NULL, NULL, &gr) != JUDGEQ_OK ||
        gr.n_tokens != 3)
        return 1;
    int fd;
    if (judgeq_export_kv(c, sid, &fd, NULL) != JUDGEQ_OK)
        return 2;
    close(fd);
    return judgeq_session_close(c, sid) == JUDGEQ_OK ? 0 : 3;
}

/* The socket is born 0660 whatever the umask, so its group decides who
 * may connect; sessions are their creator's: another non-root uid in the
 * socket's group connects but cannot touch them. */
static void test_socket_mode_and_owners(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        fprintf(stderr, "SKIPPED: changing uids needs root\n");
        skip();
    }
    mode_t old = umask(0);
    jqt_daemon dp = {0};
    start(&dp, "owners", NULL, false, NULL);
    umask(old);
    struct stat st;
    assert_int_equal(lstat(dp.sock, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0660);
    /* the administrator's choice of group (judgeqd.socket: judgeq) */
    assert_int_equal(chown(dp.sock, (uid_t)-1, NOBODY), 0);

    /* outside the group: no connection at all */
    assert_int_equal(run_as(OTHER_UID, OTHER_UID, -1, dp.sock, ping_only, 0),
                     101);
    /* nobody (in the group) creates a session that outlives it */
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    report_fd = pfd[1];
    assert_int_equal(run_as(NOBODY, NOBODY, -1, dp.sock, create_kept, 0), 0);
    uint64_t sid = 0;
    assert_int_equal(read(pfd[0], &sid, sizeof sid), sizeof sid);
    close(pfd[0]);
    close(pfd[1]);
    assert_true(sid > 0);
    /* another uid in the group: connects, but the session is not its own */
    assert_int_equal(
        run_as(OTHER_UID, OTHER_UID, NOBODY, dp.sock, try_foreign, sid), 0);
    /* nobody again, on a new connection: still its own */
    assert_int_equal(run_as(NOBODY, NOBODY, -1, dp.sock, use_own, sid), 0);
    stop_ok(&dp);
}

/* ------------------------------------------------------ sealed memory */

/* A fork's shared prefix is sealed in place: the same addresses keep the
 * same bytes, read-only, and the memfd refuses writes and resizing (on
 * Linux >= 6.7 a PROT_READ shared mapping of the read-write fd alone made
 * the seal fail with EBUSY, and prefixes stayed writable). */
static void test_kv_prefix_sealed(void **state)
{
    (void)state;
    jq_kv_mem m;
    char err[256];
    const size_t size = 3 * 4096 + 100;
    assert_int_equal(jq_kv_mem_create(&m, size, "judgeq-test", err,
                                      sizeof err),
                     0);
    uint8_t *addr = m.addr;
    for (size_t i = 0; i < size; i++)
        addr[i] = (uint8_t)(i * 7);
    if (jq_kv_mem_seal(&m, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_true(m.sealed);
    assert_ptr_equal(m.addr, addr);
    for (size_t i = 0; i < size; i++)
        assert_int_equal(addr[i], (uint8_t)(i * 7));
    int seals = fcntl(m.fd, F_GET_SEALS);
    assert_int_equal(seals & (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW),
                     F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW);
    assert_int_equal(pwrite(m.fd, "x", 1, 0), -1);
    assert_int_equal(errno, EPERM);
    assert_int_equal(ftruncate(m.fd, 0), -1);
    assert_true(mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, m.fd,
                     0) == MAP_FAILED);
    /* the mapping itself is read-only: a write faults */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL);
        ((volatile uint8_t *)addr)[5] = 1;
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGSEGV);
    /* sealing twice is harmless */
    assert_int_equal(jq_kv_mem_seal(&m, err, sizeof err), 0);
    jq_kv_mem_release(&m);
}

/* ------------------------------------------------------ hostile frames */

/* Reads n bytes of a reply (bounded). */
static void read_all(int fd, uint8_t *p, size_t n)
{
    int r = jqt_wire_read_try(fd, p, n, jqt_io_timeout_ms(), NULL);
    if (r != 1)
        fail_msg("no reply (%s)", r == -2 ? "timeout" : "EOF");
}

/* 8 MiB of 3-byte unknown fields: protobuf-c would allocate ~240 MiB for
 * them; the daemon refuses the frame within its decode budget (6 bytes a
 * byte), answers, and keeps the connection. */
static void test_unknown_field_flood(void **state)
{
    (void)state;
    jqt_daemon dp = {0};
    start(&dp, "flood", NULL, false, NULL);
    long hwm0 = jqt_proc_status(dp.pid, "VmHWM:");
    int fd = jqt_wire_connect(dp.sock);
    const size_t n = (8u << 20) / 3 * 3;
    uint8_t *frame = malloc(n + 4);
    assert_non_null(frame);
    frame[0] = (uint8_t)n;
    frame[1] = (uint8_t)(n >> 8);
    frame[2] = (uint8_t)(n >> 16);
    frame[3] = (uint8_t)(n >> 24);
    for (size_t i = 0; i < n; i += 3) { /* field 30, varint 0 */
        frame[4 + i] = 0xf0;
        frame[5 + i] = 0x01;
        frame[6 + i] = 0x00;
    }
    jqt_wire_write(fd, frame, n + 4);
    free(frame);
    uint8_t hdr[4];
    read_all(fd, hdr, 4);
    uint32_t len = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 |
                   (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 24;
    assert_true(len < 4096);
    uint8_t body[4096];
    read_all(fd, body, len);
    Judgeq__Response *r = judgeq__response__unpack(NULL, len, body);
    assert_non_null(r);
    assert_int_equal(r->code, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT);
    if (!strstr(r->message, "needs more than"))
        fail_msg("reply: %s", r->message);
    judgeq__response__free_unpacked(r, NULL);
    long hwm1 = jqt_proc_status(dp.pid, "VmHWM:");
    printf("daemon peak RSS %ld KiB before an 8 MiB unknown-field frame, %ld "
           "KiB after\n", hwm0, hwm1);
    /* the frame is buffered (8 MiB) and decoding may spend 48 MiB before
     * it is refused; unbudgeted, protobuf-c took ~240 MiB */
    assert_true(hwm1 - hwm0 < 100 * 1024);
    /* the same connection still works */
    judgeq_conn *c;
    assert_int_equal(judgeq_connect_fd(fd, &c), JUDGEQ_OK);
    judgeq_set_timeout(c, 10000);
    assert_int_equal(judgeq_ping(c, NULL), JUDGEQ_OK);
    judgeq_close(c);
    stop_ok(&dp);
}

/* ------------------------------------------------- the unit's sandbox */

/* What judgeqd.service asks of systemd, rebuilt here without systemd as
 * PID 1: the syscall allow-list (the unit's SystemCallFilter= lines,
 * expanded with systemd-analyze's own set definitions, @default added as
 * systemd adds it), plus the filters that MemoryDenyWriteExecute=,
 * RestrictAddressFamilies=AF_UNIX and RestrictNamespaces=yes install. */
struct sandbox {
    int *allow;          /* syscall numbers allowed */
    size_t n_allow;
    int deny_errno;      /* SystemCallErrorNumber= */
    bool net_ns, mount_ns; /* PrivateNetwork=, ProtectSystem=strict here */
};

typedef struct {
    char name[64];
    char **items; /* syscalls and @sets */
    size_t n;
} syscall_set;

static syscall_set *sets;
static size_t n_sets;

/* Parses `systemd-analyze syscall-filter` (every set, its members
 * indented, comments after '#'). */
static void load_sets(void)
{
    if (sets)
        return;
    int rc;
    char *out = jqt_run("systemd-analyze syscall-filter --no-pager 2>/dev/null",
                        &rc, NULL);
    assert_int_equal(rc, 0);
    syscall_set *cur = NULL;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '@') {
            sets = realloc(sets, (n_sets + 1) * sizeof *sets);
            assert_non_null(sets);
            cur = &sets[n_sets++];
            memset(cur, 0, sizeof *cur);
            snprintf(cur->name, sizeof cur->name, "%s", line);
            continue;
        }
        if (line[0] != ' ' || !cur)
            continue;
        char *w = line + strspn(line, " ");
        if (*w == '#' || !*w)
            continue;
        cur->items = realloc(cur->items, (cur->n + 1) * sizeof *cur->items);
        assert_non_null(cur->items);
        cur->items[cur->n++] = strdup(w);
    }
    free(out);
    assert_true(n_sets > 10);
}

/* Adds (sign +1) or removes (-1) the syscalls of a name or @set. */
static void apply_item(const char *item, int sign, bool *in, int max_nr)
{
    if (item[0] == '@') {
        for (size_t i = 0; i < n_sets; i++)
            if (strcmp(sets[i].name, item) == 0) {
                for (size_t k = 0; k < sets[i].n; k++)
                    apply_item(sets[i].items[k], sign, in, max_nr);
                return;
            }
        fail_msg("systemd-analyze knows no set %s", item);
    }
    int nr = seccomp_syscall_resolve_name(item);
    if (nr >= 0 && nr < max_nr)
        in[nr] = sign > 0; /* names of other architectures resolve < 0 */
}

/* The unit's SystemCallFilter= lines in order: the first allow-list sets
 * the default (deny), "~" lines remove. */
static void build_sandbox(sandbox *sb, const char *unit_text)
{
    load_sets();
    enum { MAX_NR = 1024 };
    bool in[MAX_NR] = {false};
    apply_item("@default", +1, in, MAX_NR);
    int lines = 0;
    char *copy = strdup(unit_text);
    for (char *l = strtok(copy, "\n"); l; l = strtok(NULL, "\n")) {
        if (strncmp(l, "SystemCallFilter=", 17) == 0) {
            char *v = l + 17;
            int sign = *v == '~' ? -1 : +1;
            if (sign < 0)
                v++;
            for (char *t = strtok_r(v, " ", &v); t; t = strtok_r(NULL, " ", &v))
                apply_item(t, sign, in, MAX_NR);
            lines++;
        } else if (strncmp(l, "SystemCallErrorNumber=", 22) == 0) {
            assert_string_equal(l + 22, "EPERM");
            sb->deny_errno = EPERM;
        }
    }
    free(copy);
    assert_true(lines >= 1);
    sb->allow = calloc(MAX_NR, sizeof *sb->allow);
    assert_non_null(sb->allow);
    for (int nr = 0; nr < MAX_NR; nr++)
        if (in[nr])
            sb->allow[sb->n_allow++] = nr;
}

/* A filter whose default is allow, refusing what one directive forbids
 * (systemd installs each directive as a filter of its own). */
static int load_rules(void (*add)(scmp_filter_ctx))
{
    scmp_filter_ctx f = seccomp_init(SCMP_ACT_ALLOW);
    if (!f)
        return -1;
    add(f);
    int rc = seccomp_load(f);
    seccomp_release(f);
    return rc;
}

static void mdwe_rules(scmp_filter_ctx f) /* MemoryDenyWriteExecute=yes */
{
    const uint64_t wx = PROT_WRITE | PROT_EXEC;
    seccomp_rule_add(f, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(mmap), 1,
                     SCMP_A2(SCMP_CMP_MASKED_EQ, wx, wx));
    seccomp_rule_add(f, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(mprotect), 1,
                     SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC));
    seccomp_rule_add(f, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(pkey_mprotect), 1,
                     SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC));
    seccomp_rule_add(f, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(shmat), 1,
                     SCMP_A2(SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC));
}

static void family_rules(scmp_filter_ctx f) /* RestrictAddressFamilies=AF_UNIX */
{
    seccomp_rule_add(f, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1,
                     SCMP_A0(SCMP_CMP_NE, AF_UNIX));
}

static void namespace_rules(scmp_filter_ctx f) /* RestrictNamespaces=yes */
{
    const uint64_t ns = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS |
                        CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
                        CLONE_NEWNET;
    for (unsigned b = 0; b < 64; b++)
        if (ns & (1ull << b)) {
            seccomp_rule_add(f, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(unshare), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, 1ull << b, 1ull << b));
            seccomp_rule_add(f, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, 1ull << b, 1ull << b));
        }
    seccomp_rule_add(f, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(setns), 0);
    /* clone3's flags are behind a pointer: systemd answers ENOSYS, and
     * glibc falls back to clone */
    seccomp_rule_add(f, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
}

/* Every mount read-only (ProtectSystem=strict with no ReadWritePaths=:
 * the daemon writes nothing, its socket comes from systemd). */
static int remount_all_readonly(void)
{
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return -1;
    char *mi = jqt_read_file("/proc/self/mountinfo", NULL);
    if (!mi)
        return -1;
    int failures = 0;
    for (char *l = strtok(mi, "\n"); l; l = strtok(NULL, "\n")) {
        char mp[1024];
        if (sscanf(l, "%*s %*s %*s %*s %1023s", mp) != 1)
            continue;
        if (mount(NULL, mp, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) != 0)
            failures += strcmp(mp, "/") == 0;
    }
    free(mi);
    return failures ? -1 : 0;
}

/* In the child, in systemd's order: namespaces, the dynamic user with no
 * capabilities, no new privileges, then the filters (the allow-list last:
 * it forbids seccomp() itself). Returns 0 or the failed step. */
static int sandbox_enter(const sandbox *sb)
{
    if (sb->net_ns && unshare(CLONE_NEWNET) != 0)
        return 1;
    if (sb->mount_ns &&
        (unshare(CLONE_NEWNS) != 0 || remount_all_readonly() != 0))
        return 2;
    for (int cap = 0; cap <= 63; cap++) /* CapabilityBoundingSet= */
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
            return 3;
    if (setgroups(0, NULL) != 0 || setresgid(NOBODY, NOBODY, NOBODY) != 0 ||
        setresuid(NOBODY, NOBODY, NOBODY) != 0)
        return 4;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return 5;
    if (load_rules(namespace_rules) != 0 || load_rules(family_rules) != 0 ||
        load_rules(mdwe_rules) != 0)
        return 6;
    scmp_filter_ctx f = seccomp_init(SCMP_ACT_ERRNO((uint32_t)sb->deny_errno));
    if (!f)
        return 7;
    for (size_t i = 0; i < sb->n_allow; i++)
        seccomp_rule_add(f, SCMP_ACT_ALLOW, sb->allow[i], 0);
    int rc = seccomp_load(f);
    seccomp_release(f);
    return rc == 0 ? 0 : 8;
}

/* Whether this machine lets a root test make namespaces (containers may
 * not): probed in a throw-away child. */
static bool can_unshare(int flags)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(unshare(flags) == 0 &&
                      (!(flags & CLONE_NEWNS) ||
                       mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0)
                  ? 0
                  : 1);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* In a sandboxed child: what the unit forbids is refused with the unit's
 * errors (the filter is in force, not merely loaded). */
static int probe_forbidden(const sandbox *sb)
{
    if (socket(AF_INET, SOCK_STREAM, 0) >= 0 || errno != EAFNOSUPPORT)
        return 1;
    if (setuid(0) == 0 || errno != EPERM) /* ~@privileged */
        return 2;
    if (mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED ||
        errno != EPERM)
        return 3;
    if (unshare(CLONE_NEWUSER) == 0 || errno != EPERM)
        return 4;
    if (chroot("/") == 0 || errno != EPERM)
        return 5;
    if (sb->mount_ns &&
        (open("/tmp/judgeq-sandbox-probe", O_WRONLY | O_CREAT, 0600) >= 0 ||
         errno != EROFS))
        return 6;
    return 0;
}

static void test_runs_under_unit_sandbox(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        fprintf(stderr, "SKIPPED: the sandbox test needs root to build the "
                        "sandbox systemd would\n");
        skip();
    }
    int rc;
    free(jqt_run("command -v systemd-analyze", &rc, NULL));
    if (rc != 0) {
        fprintf(stderr, "SKIPPED: systemd-analyze is not installed (make "
                        "deps installs Debian's systemd)\n");
        skip();
    }
    char *unit_path = jqt_fmt("%s/systemd/judgeqd.service",
                              getenv("JUDGEQ_ROOT"));
    char *unit = jqt_read_file(unit_path, NULL);
    assert_non_null(unit);
    const char *must[] = {"\nNoNewPrivileges=yes\n", "\nCapabilityBoundingSet=\n",
                          "\nDynamicUser=yes\n", "\nMemoryDenyWriteExecute=yes\n",
                          "\nRestrictAddressFamilies=AF_UNIX\n",
                          "\nRestrictNamespaces=yes\n", "\nPrivateNetwork=yes\n",
                          "\nProtectSystem=strict\n"};
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++)
        if (!strstr(unit, must[i]))
            fail_msg("%s lacks %s: this test rebuilds those settings and "
                     "must change with the unit", unit_path, must[i] + 1);
    sandbox sb = {.deny_errno = EPERM};
    build_sandbox(&sb, unit);
    sb.net_ns = can_unshare(CLONE_NEWNET);
    sb.mount_ns = can_unshare(CLONE_NEWNS);
    printf("sandbox: %zu syscalls allowed (the unit's SystemCallFilter=), "
           "PrivateNetwork %s, read-only file system %s\n",
           sb.n_allow, sb.net_ns ? "on" : "NOT VERIFIED (no namespaces here)",
           sb.mount_ns ? "on" : "NOT VERIFIED (no namespaces here)");

    /* the filter bites */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int step = sandbox_enter(&sb);
        _exit(step ? 100 + step : probe_forbidden(&sb));
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) != 0)
        fail_msg("sandboxed probe: exit %d", WEXITSTATUS(st));

    /* socket activation, as judgeqd.socket does it */
    jqt_daemon dp = {0};
    const char *extra[] = {"--soft", soft, "--allow-path", allowed, NULL};
    start(&dp, "sandbox", extra, true, &sb);

    /* what the kernel says about the daemon */
    assert_int_equal(jqt_proc_status(dp.pid, "Seccomp:"), 2);
    assert_true(jqt_proc_status(dp.pid, "Seccomp_filters:") >= 4);
    assert_int_equal(jqt_proc_status(dp.pid, "NoNewPrivs:"), 1);
    char *sp = jqt_fmt("/proc/%d/status", (int)dp.pid);
    char *status = jqt_read_file(sp, NULL);
    assert_non_null(strstr(status, "\nCapEff:\t0000000000000000\n"));
    assert_non_null(strstr(status, "\nCapBnd:\t0000000000000000\n"));
    assert_non_null(strstr(status, "\nUid:\t65534\t65534\t65534\t65534\n"));
    free(status);
    free(sp);

    /* everything it serves, served */
    check_judgeq_generation(&dp, NULL, soft);
    char *client = jqt_fmt("%s/client.gguf", allowed);
    check_judgeq_generation(&dp, client, client);
    free(client);
    judgeq_conn *c = jqt_connect(&dp);
    judgeq_server_info info;
    assert_int_equal(judgeq_hello(c, "sandbox", &info), JUDGEQ_OK);
    assert_int_equal(info.model.n_soft_tokens, 2);
    judgeq_server_info_free(&info);
    uint64_t sid, fk;
    assert_int_equal(judgeq_session_create(c, NULL, &sid, NULL), JUDGEQ_OK);
    judgeq_eviction ev;
    judgeq_eviction_init(&ev);
    ev.policy = JUDGEQ_POLICY_SNAPKV;
    ev.budget = 12;
    ev.window = 4;
    judgeq_prefill_input in = {.text = PROMPT, .eviction = &ev};
    if (judgeq_prefill(c, sid, &in, NULL) != JUDGEQ_OK)
        fail_msg("prefill: %s", judgeq_errmsg(c));
    assert_int_equal(judgeq_fork(c, sid, &fk), JUDGEQ_OK); /* seals */
    judgeq_generate_opts go;
    judgeq_generate_opts_init(&go);
    go.max_tokens = 8;
    go.ignore_eos = true;
    assert_int_equal(judgeq_generate(c, fk, &go, NULL, NULL, NULL), JUDGEQ_OK);
    int mfd;
    judgeq_kv_export x;
    assert_int_equal(judgeq_export_kv(c, sid, &mfd, &x), JUDGEQ_OK);
    judgeq_kv_mapping map;
    char err[256];
    if (judgeq_kv_map(mfd, &x, &map, err, sizeof err) != JUDGEQ_OK)
        fail_msg("export from the sandbox: %s", err);
    judgeq_kv_unmap(&map);
    judgeq_kv_export_free(&x);
    close(mfd);
    int32_t *toks;
    size_t nt;
    assert_int_equal(judgeq_tokenize(c, PROMPT, true, &toks, &nt), JUDGEQ_OK);
    free(toks);
    judgeq_stats stats;
    assert_int_equal(judgeq_get_stats(c, &stats), JUDGEQ_OK);
    assert_int_equal(stats.sessions, 2);
    judgeq_stats_free(&stats);
    /* SIGHUP: the soft tokens are read again, from the read-only disk */
    kill(dp.pid, SIGHUP);
    assert_true(
        jqt_daemon_log_wait(&dp, "SIGHUP: reloaded 2 soft tokens", 10));
    assert_int_equal(judgeq_ping(c, NULL), JUDGEQ_OK);
    judgeq_close(c);
    stop_ok(&dp);
    char *log = jqt_read_file(dp.log, NULL);
    assert_non_null(log);
    /* nothing the sandbox refused went unnoticed in the log */
    const char *bad[] = {"<3>", "<4>", "Operation not permitted"};
    for (size_t i = 0; i < 3; i++)
        if (strstr(log, bad[i]))
            fail_msg("under the sandbox the daemon logged:\n%s", log);
    free(log);
    free(sb.allow);
    free(unit);
    free(unit_path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_under),
        cmocka_unit_test(test_allow_open),
        cmocka_unit_test(test_no_allow_path_opens_nothing),
        cmocka_unit_test(test_allow_path),
        cmocka_unit_test(test_allow_path_startup_errors),
        cmocka_unit_test(test_socket_mode_and_owners),
        cmocka_unit_test(test_kv_prefix_sealed),
        cmocka_unit_test(test_unknown_field_flood),
        cmocka_unit_test(test_runs_under_unit_sandbox),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
