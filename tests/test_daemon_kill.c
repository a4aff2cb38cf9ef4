/* test_daemon_kill.c — a client killed with SIGKILL in the middle of its
 * work costs the daemon nothing afterwards.
 *
 * The client is a forked process (a raw frame client) that connects,
 * starts an operation and tells the test through a pipe when it is under
 * way; the test then SIGKILLs it. Operations: a long prefill (with a fork,
 * an export and a generation queued behind it), a generation, a generation
 * on a fork whose prefix two other sessions share (with a fork request
 * queued behind it), an export queued behind a long prefill, and a client
 * that dies holding an exported memfd mapped.
 *
 * Afterwards, within a liveness bound: the daemon's Stats show the
 * sessions, connections, accounted KV bytes and shared-prefix bytes of
 * before; /proc/PID/fd counts the same descriptors; and after two rounds
 * of every kill, VmRSS is within RSS_MARGIN_KIB of its level after a
 * warm-up round in which the same clients ran to completion (the warm-up
 * sizes the workers' scratch and the allocator's arenas, which stay).
 *
 * Sessions created keep_on_disconnect (and their forks) outlive the
 * killed client until --idle-timeout, usable from another connection of
 * the same uid meanwhile.
 */
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#include "daemon_harness.h"

/* 4 layers x 4 KV heads x 64 dims: 8 KiB of f32 K+V per position, so a
 * leaked 1800-token prompt would be ~14 MiB of RSS. */
#define BIG_MODEL                                                            \
    "--n-embd 256 --n-layer 4 --n-head 4 --n-head-kv 4 --n-ff 512 --ctx 4096"
#define LONG_PROMPT 1800  /* ~0.5 s of prefill with AVX-512, 5 s scalar */
#define SHORT_PROMPT 200
/* ~20 MiB of K/V to copy: an export that takes long enough (tens of ms)
 * for the kill to land while it runs */
#define EXPORT_PROMPT 2600
#define LONG_GEN 3000     /* never finishes before the kill */
/* What RSS may differ by after the kills: allocator noise (per-thread
 * arenas, freed chunks not yet trimmed), far below one leaked store. */
#define RSS_MARGIN_KIB 4096
/* A kill that came after the operation ended is tried again (a loaded
 * machine may deschedule the test between its check and its kill). */
#define MAX_TRIES 5

static int32_t *prompt_tokens(size_t n)
{
    int32_t *t = malloc(n * sizeof *t);
    if (!t)
        _exit(90);
    for (size_t i = 0; i < n; i++)
        t[i] = 3 + (int32_t)((i * 37) % 500);
    return t;
}

/* ------------------------------------------------------------ the client */

typedef enum {
    SC_PREFILL,        /* prefill running, fork/export/generate queued */
    SC_GENERATE,       /* generation running */
    SC_FORK,           /* generation on a fork running, fork queued */
    SC_EXPORT_QUEUED,  /* export queued behind a running prefill */
    SC_EXPORT_RUNNING, /* export copying a large store */
    SC_EXPORT_HELD,    /* exported memfd received and mapped */
    SC_KEEP,           /* keep_on_disconnect session + fork, generating */
    SC_COUNT
} scenario;

static const char *const scenario_names[SC_COUNT] = {
    "prefill", "generate", "fork", "export (queued)", "export (running)",
    "export (held)", "keep_on_disconnect"};

/* Requests the client sends before its sync byte, for the scenarios whose
 * operation runs without streaming anything back (the test then waits
 * until the daemon has read them all). */
static const int requests_before_sync[SC_COUNT] = {5, 0, 0, 3, 3, 0, 0};

typedef struct {
    int fd, sync;
    uint64_t next_id;
} client;

static void sync_parent(client *c, const void *msg, size_t n)
{
    if (write(c->sync, msg, n) != (ssize_t)n)
        _exit(91);
}

static void send_or_die(client *c, Judgeq__Request *q)
{
    if (jqt_wire_send_try(c->fd, q) != 0)
        _exit(92);
}

/* The next response; exits on anything but a whole frame. */
static Judgeq__Response *recv_or_die(client *c)
{
    Judgeq__Response *r;
    int mfd = -1;
    if (jqt_wire_recv_try(c->fd, jqt_io_timeout_ms(), &r, &mfd) !=
        JQT_FRAME_OK)
        _exit(93);
    if (mfd >= 0)
        close(mfd);
    return r;
}

/* Reads until n requests have ended (done); exits on a protocol error. */
static void drain(client *c, int n)
{
    while (n > 0) {
        Judgeq__Response *r = recv_or_die(c);
        if (r->done)
            n--;
        judgeq__response__free_unpacked(r, NULL);
    }
}

static uint64_t create(client *c, bool keep)
{
    Judgeq__Request q;
    Judgeq__CreateSession cs;
    jqt_req_create(&q, &cs, ++c->next_id, keep);
    send_or_die(c, &q);
    Judgeq__Response *r = recv_or_die(c);
    if (r->code || !r->create_session)
        _exit(94);
    uint64_t sid = r->create_session->session_id;
    judgeq__response__free_unpacked(r, NULL);
    return sid;
}

static void send_prefill(client *c, uint64_t sid, size_t n)
{
    int32_t *t = prompt_tokens(n);
    Judgeq__Request q;
    Judgeq__Prefill p;
    jqt_req_prefill_tokens(&q, &p, ++c->next_id, sid, t, n);
    send_or_die(c, &q);
    free(t);
}

static void send_generate(client *c, uint64_t sid, uint32_t n)
{
    Judgeq__Request q;
    Judgeq__Generate g;
    jqt_req_generate(&q, &g, ++c->next_id, sid, n);
    send_or_die(c, &q);
}

static void send_fork(client *c, uint64_t sid)
{
    Judgeq__Request q;
    Judgeq__Fork f;
    jqt_req_fork(&q, &f, ++c->next_id, sid);
    send_or_die(c, &q);
}

static void send_export(client *c, uint64_t sid)
{
    Judgeq__Request q;
    Judgeq__ExportKV x;
    jqt_req_export(&q, &x, ++c->next_id, sid);
    send_or_die(c, &q);
}

static uint64_t fork_now(client *c, uint64_t sid)
{
    send_fork(c, sid);
    Judgeq__Response *r = recv_or_die(c);
    if (r->code || !r->fork)
        _exit(95);
    uint64_t f = r->fork->session_id;
    judgeq__response__free_unpacked(r, NULL);
    return f;
}

/* Reads the generation's first token, tells the parent, reads the rest. */
static void stream_with_sync(client *c, int requests_left)
{
    Judgeq__Response *r = recv_or_die(c);
    if (r->code || r->body_case != JUDGEQ__RESPONSE__BODY_CHUNK)
        _exit(96);
    bool done = r->done;
    judgeq__response__free_unpacked(r, NULL);
    sync_parent(c, "g", 1);
    drain(c, requests_left - (done ? 1 : 0));
}

/* The killed client. `warm`: the same requests, short generations, run to
 * the end (the warm-up round). Exits 0 after the last reply. */
static void client_main(const char *sock, scenario sc, bool warm, int sync)
{
    client c = {.fd = jqt_wire_connect_try(sock), .sync = sync};
    if (c.fd < 0)
        _exit(97);
    uint32_t gen = warm ? 8 : LONG_GEN;
    uint64_t sid = create(&c, sc == SC_KEEP);
    switch (sc) {
    case SC_PREFILL:
        send_prefill(&c, sid, LONG_PROMPT);
        send_fork(&c, sid);
        send_export(&c, sid);
        send_generate(&c, sid, gen);
        sync_parent(&c, "s", 1);
        drain(&c, 4);
        break;
    case SC_GENERATE:
        send_prefill(&c, sid, SHORT_PROMPT);
        drain(&c, 1);
        send_generate(&c, sid, gen);
        stream_with_sync(&c, 1);
        break;
    case SC_FORK: {
        send_prefill(&c, sid, SHORT_PROMPT);
        drain(&c, 1);
        uint64_t f1 = fork_now(&c, sid);
        fork_now(&c, sid);
        send_generate(&c, f1, gen);
        send_fork(&c, f1); /* waits for the generation on f1 */
        stream_with_sync(&c, 2);
        break;
    }
    case SC_EXPORT_QUEUED:
        send_prefill(&c, sid, LONG_PROMPT);
        send_export(&c, sid);
        sync_parent(&c, "s", 1);
        drain(&c, 2);
        break;
    case SC_EXPORT_RUNNING:
        send_prefill(&c, sid, EXPORT_PROMPT);
        drain(&c, 1);
        send_export(&c, sid);
        sync_parent(&c, "s", 1);
        drain(&c, 1);
        break;
    case SC_EXPORT_HELD: {
        send_prefill(&c, sid, LONG_PROMPT / 2);
        drain(&c, 1);
        send_export(&c, sid);
        Judgeq__Response *r;
        int mfd = -1;
        if (jqt_wire_recv_try(c.fd, jqt_io_timeout_ms(), &r, &mfd) !=
                JQT_FRAME_OK ||
            r->code || mfd < 0 || !r->export_kv || !r->export_kv->layout)
            _exit(98);
        size_t size = r->export_kv->layout->total_bytes;
        judgeq__response__free_unpacked(r, NULL);
        const volatile uint8_t *map =
            mmap(NULL, size, PROT_READ, MAP_SHARED, mfd, 0);
        if (map == MAP_FAILED)
            _exit(99);
        uint8_t sum = 0;
        for (size_t i = 0; i < size; i += 4096)
            sum = (uint8_t)(sum + map[i]); /* fault every page in */
        sync_parent(&c, &sum, 1);
        if (!warm)
            pause(); /* holds the mapping until SIGKILL */
        break;
    }
    case SC_KEEP: {
        send_prefill(&c, sid, SHORT_PROMPT);
        drain(&c, 1);
        uint64_t ids[2] = {sid, fork_now(&c, sid)};
        sync_parent(&c, ids, sizeof ids);
        send_generate(&c, sid, gen);
        stream_with_sync(&c, 1);
        break;
    }
    default: _exit(100);
    }
    _exit(0);
}

/* ------------------------------------------------------------ the test */

typedef struct {
    jqt_daemon d;
    judgeq_conn *obs; /* the test's own connection, for Stats */
} fixture;

static fixture fx;

static pid_t start_client(scenario sc, bool warm, int *sync_rd)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        client_main(fx.d.sock, sc, warm, p[1]);
    }
    close(p[1]);
    *sync_rd = p[0];
    return pid;
}

/* Reads n sync bytes from the client (bounded); fails if it died. */
static void await_sync(int rd, pid_t pid, void *buf, size_t n)
{
    struct pollfd pfd = {.fd = rd, .events = POLLIN};
    if (poll(&pfd, 1, 2 * jqt_io_timeout_ms()) != 1) {
        kill(pid, SIGKILL);
        fail_msg("the client did not reach its operation in time");
    }
    ssize_t got = read(rd, buf, n);
    if (got != (ssize_t)n) {
        int st = 0;
        waitpid(pid, &st, 0);
        jqt_daemon_print_log(&fx.d);
        fail_msg("the client died before its operation (status 0x%x)", st);
    }
}

/* Waits until the daemon has read `n` requests besides the test's own
 * Stats calls since `base` (a Stats snapshot). */
static void await_requests(const jqt_stats *base, int n)
{
    double t0 = jqt_now();
    for (uint64_t own = 1;; own++) {
        jqt_stats s = jqt_stats_get(fx.obs);
        if (s.requests >= base->requests + own + (uint64_t)n)
            return;
        if (jqt_now() - t0 > 120)
            fail_msg("the daemon did not read the client's %d requests", n);
        usleep(1000);
    }
}

static bool same_state(const jqt_stats *a, const jqt_stats *b)
{
    return a->sessions == b->sessions && a->connections == b->connections &&
           a->memory_used == b->memory_used &&
           a->shared_prefix_bytes == b->shared_prefix_bytes;
}

/* Waits (bounded) for the daemon's sessions, connections, KV accounting
 * and descriptors to be as in `base` / `fds`. */
static void await_back_to(const jqt_stats *base, int fds, const char *what)
{
    double t0 = jqt_now();
    jqt_stats s;
    int n;
    for (;;) {
        s = jqt_stats_get(fx.obs);
        n = jqt_proc_fd_count(fx.d.pid);
        if (same_state(&s, base) && n == fds)
            return;
        if (jqt_now() - t0 > 120)
            break;
        usleep(2000);
    }
    jqt_daemon_print_log(&fx.d);
    fail_msg("after %s: sessions %u (was %u), connections %u (was %u), KV "
             "bytes %llu (was %llu), shared prefix %llu (was %llu), fds %d "
             "(was %d)",
             what, s.sessions, base->sessions, s.connections,
             base->connections, (unsigned long long)s.memory_used,
             (unsigned long long)base->memory_used,
             (unsigned long long)s.shared_prefix_bytes,
             (unsigned long long)base->shared_prefix_bytes, n, fds);
}

/* One client of scenario sc; killed at its sync point unless warm.
 * Returns false when the kill came too late to land inside the
 * operation (only checkable for the non-streaming ones). */
static bool run_client(scenario sc, bool warm)
{
    jqt_stats base = jqt_stats_get(fx.obs);
    int fds = jqt_proc_fd_count(fx.d.pid);
    int rd;
    pid_t pid = start_client(sc, warm, &rd);
    uint8_t sync;
    await_sync(rd, pid, &sync, 1);
    close(rd);
    if (requests_before_sync[sc])
        await_requests(&base, requests_before_sync[sc]);
    int st;
    if (warm) {
        assert_int_equal(waitpid(pid, &st, 0), pid);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fail_msg("warm-up client '%s' failed (status 0x%x)",
                     scenario_names[sc], st);
        await_back_to(&base, fds, scenario_names[sc]);
        return true;
    }
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    bool inside = true;
    if (requests_before_sync[sc]) {
        /* once the daemon has seen the connection go, a session still
         * counted means its prefill was still running: the kill landed
         * inside it */
        jqt_stats s;
        do
            s = jqt_stats_get(fx.obs);
        while (s.connections != base.connections);
        inside = s.sessions > base.sessions;
    }
    char what[64];
    snprintf(what, sizeof what, "SIGKILL of a client in '%s'",
             scenario_names[sc]);
    await_back_to(&base, fds, what);
    return inside;
}

static int setup(void **state)
{
    (void)state;
    alarm(1800);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (fx.obs)
        judgeq_close(fx.obs);
    fx.obs = NULL;
    jqt_daemon_kill(&fx.d);
    return 0;
}

static void test_kill9_mid_operation(void **state)
{
    (void)state;
    static const char *const extra[] = {"--threads", "2", NULL};
    jqt_daemon_start(&fx.d, "kill", jqt_gen_model("big", BIG_MODEL), extra,
                     NULL);
    fx.obs = jqt_connect(&fx.d);

    for (scenario sc = 0; sc < SC_KEEP; sc++)
        run_client(sc, true);
    long rss0 = jqt_proc_rss_kib(fx.d.pid);
    int fds0 = jqt_proc_fd_count(fx.d.pid);

    for (int round = 0; round < 2; round++)
        for (scenario sc = 0; sc < SC_KEEP; sc++) {
            int tries = 1;
            while (!run_client(sc, false))
                if (++tries > MAX_TRIES)
                    fail_msg("the '%s' client was never killed inside its "
                             "operation in %d tries",
                             scenario_names[sc], MAX_TRIES);
            if (tries > 1)
                printf("'%s': the kill landed inside the operation at try "
                       "%d\n", scenario_names[sc], tries);
        }
    long rss1 = jqt_proc_rss_kib(fx.d.pid);
    int fds1 = jqt_proc_fd_count(fx.d.pid);
    printf("judgeqd after the warm-up: RSS %ld KiB, %d fds; after 2 rounds "
           "of %d SIGKILLed clients: RSS %ld KiB (%+ld), %d fds\n",
           rss0, fds0, (int)SC_KEEP, rss1, rss1 - rss0, fds1);
    assert_int_equal(fds1, fds0);
    if (jqt_asan_build())
        printf("(an ASan build: RSS not checked; LeakSanitizer checks the "
               "exit)\n");
    else if (rss1 > rss0 + RSS_MARGIN_KIB)
        fail_msg("RSS grew by %ld KiB (margin %d KiB)", rss1 - rss0,
                 RSS_MARGIN_KIB);
    judgeq_close(fx.obs);
    fx.obs = NULL;
    assert_int_equal(jqt_daemon_stop(&fx.d), 0);
}

/* A session created keep_on_disconnect, and its fork, survive the killed
 * client: another connection of the uid uses them, and --idle-timeout
 * frees them. */
static void test_kill9_keep_on_disconnect(void **state)
{
    (void)state;
    static const char *const extra[] = {"--threads", "2", "--idle-timeout",
                                        "5", NULL};
    jqt_daemon_start(&fx.d, "keep", jqt_gen_model("big", BIG_MODEL), extra,
                     NULL);
    fx.obs = jqt_connect(&fx.d);
    jqt_stats base = jqt_stats_get(fx.obs);
    int fds = jqt_proc_fd_count(fx.d.pid);

    int rd;
    pid_t pid = start_client(SC_KEEP, false, &rd);
    uint64_t ids[2];
    await_sync(rd, pid, ids, sizeof ids);
    uint8_t g;
    await_sync(rd, pid, &g, 1);
    close(rd);
    kill(pid, SIGKILL);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);

    jqt_stats s;
    do
        s = jqt_stats_get(fx.obs);
    while (s.connections != base.connections);
    assert_int_equal(s.sessions, base.sessions + 2);
    assert_true(s.memory_used > base.memory_used);
    /* both continue for the same uid on another connection */
    for (int i = 0; i < 2; i++) {
        judgeq_generate_opts o;
        judgeq_generate_opts_init(&o);
        o.max_tokens = 4;
        o.ignore_eos = true;
        judgeq_generate_result res;
        if (judgeq_generate(fx.obs, ids[i], &o, NULL, NULL, &res) !=
            JUDGEQ_OK)
            fail_msg("session %llu after its client died: %s",
                     (unsigned long long)ids[i], judgeq_errmsg(fx.obs));
        assert_int_equal(res.n_tokens, 4);
    }
    /* then the idle timeout ends them */
    await_back_to(&base, fds, "the idle timeout of kept sessions");
    char *log = jqt_daemon_log(&fx.d);
    char *want = jqt_fmt("closing session %llu: idle timeout",
                         (unsigned long long)ids[1]);
    assert_non_null(strstr(log, want));
    free(want);
    free(log);
    judgeq_close(fx.obs);
    fx.obs = NULL;
    assert_int_equal(jqt_daemon_stop(&fx.d), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kill9_mid_operation, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_kill9_keep_on_disconnect, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
