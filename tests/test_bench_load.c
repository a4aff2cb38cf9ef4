/* test_bench_load.c — `judgeq bench --socket PATH --clients N`, the load
 * generator, against a real judgeqd (stories260K, 2 threads) started for
 * the group: a short run (8 clients, 3 s) finishes without errors, its
 * JSON has every documented field with counts and percentiles that hold
 * together, and the daemon's descriptors return to where they were before
 * the load; failing requests are counted by status code and make the exit
 * status 1 (0 with --allow-errors); bad flags exit 2 with a message naming
 * the flag.
 *
 * Nothing about speed is asserted (the machine is shared).
 */
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon_harness.h"
#include "testutil.h"

static jqt_daemon daemon_;

static int start(void **state)
{
    (void)state;
    static const char *const extra[] = {"--threads", "2", NULL};
    const jqt_daemon_opts opts = {.log_level = "warning"};
    jqt_daemon_start(&daemon_, "load", jqt_model_path("stories260K.gguf"),
                     extra, &opts);
    return 0;
}

static int stop(void **state)
{
    (void)state;
    return jqt_daemon_stop_teardown(&daemon_);
}

/* Runs `judgeq ARGS`; the exit status in *rc, stderr in *err (may be
 * NULL); stdout parsed as JSON when json is true (failing the test when it
 * is not). */
static json_t *judgeq(const char *args, int *rc, char **err, bool json)
{
    char *cmd = jqt_fmt("'%s' %s", jqt_judgeq_bin(), args);
    char *e = NULL;
    char *out = jqt_run(cmd, rc, &e);
    json_t *j = NULL;
    if (json) {
        json_error_t je;
        j = json_loads(out, 0, &je);
        if (!j)
            fail_msg("%s: exit %d, stdout not JSON (%s): %s\nstderr: %s", cmd,
                     *rc, je.text, out, e);
    }
    if (err)
        *err = e;
    else
        free(e);
    free(out);
    free(cmd);
    return j;
}

static json_t *get(json_t *o, const char *path)
{
    json_t *cur = o;
    char *copy = strdup(path), *save = NULL;
    assert_non_null(copy);
    for (char *k = strtok_r(copy, ".", &save); k; k = strtok_r(NULL, ".", &save)) {
        cur = json_object_get(cur, k);
        if (!cur)
            fail_msg("the report has no %s (at %s)", path, k);
    }
    free(copy);
    return cur;
}

static json_int_t int_at(json_t *o, const char *path)
{
    json_t *v = get(o, path);
    if (!json_is_integer(v))
        fail_msg("%s is not an integer", path);
    return json_integer_value(v);
}

static double num_at(json_t *o, const char *path)
{
    json_t *v = get(o, path);
    if (!json_is_number(v))
        fail_msg("%s is not a number", path);
    return json_number_value(v);
}

/* requests = ok + errors, per_s > 0, and 0 < p50 <= p99 <= max. */
static void check_type(json_t *types, const char *name)
{
    json_t *t = get(types, name);
    json_int_t req = int_at(t, "requests"), ok = int_at(t, "ok");
    assert_int_equal(req, ok + int_at(t, "errors"));
    if (ok <= 0)
        fail_msg("no successful %s request", name);
    assert_true(num_at(t, "per_s") > 0);
    double p50 = num_at(t, "latency_ms.p50"), p99 = num_at(t, "latency_ms.p99");
    double max = num_at(t, "latency_ms.max");
    if (!(p50 > 0 && p50 <= p99 && p99 <= max))
        fail_msg("%s latency: p50 %g, p99 %g, max %g", name, p50, p99, max);
}

static void test_short_load_clean(void **state)
{
    (void)state;
    enum { CLIENTS = 8, GEN = 16, PROMPT = 96 };
    char *args = jqt_fmt("bench --socket '%s' --clients %d --duration 3 "
                         "--prompt-len %d --gen %d --fork-rate 1 --export-rate 1",
                         daemon_.sock, CLIENTS, PROMPT, GEN);
    int rc;
    char *err;
    json_t *j = judgeq(args, &rc, &err, true);
    if (rc != 0)
        fail_msg("exit %d: %s", rc, err);
    free(err);
    free(args);

    assert_int_equal(int_at(j, "clients"), CLIENTS);
    assert_int_equal(int_at(j, "errors.total"), 0);
    assert_int_equal(json_object_size(get(j, "errors.by_code")), 0);
    assert_int_equal(json_array_size(get(j, "errors.first")), 0);
    assert_int_equal(int_at(j, "requests.errors"), 0);
    assert_true(num_at(j, "elapsed_s") >= 3.0);

    /* every kind of request happened (fork and export on every life) */
    json_t *types = get(j, "by_type");
    const char *names[] = {"connect", "create", "prefill", "generate",
                           "fork", "export", "close", "stats"};
    json_int_t total = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        check_type(types, names[i]);
        total += int_at(get(types, names[i]), "requests");
    }
    assert_int_equal(total, int_at(j, "requests.total"));
    assert_int_equal(int_at(types, "connect.requests"), CLIENTS);
    json_int_t lives = int_at(j, "sessions_completed");
    assert_true(lives >= CLIENTS);
    assert_int_equal(int_at(types, "create.ok"), lives);
    assert_int_equal(int_at(types, "fork.ok"), lives);
    assert_int_equal(int_at(types, "export.ok"), lives);
    /* a fork and its parent each generate and are closed */
    assert_int_equal(int_at(types, "generate.ok"), 2 * lives);
    assert_int_equal(int_at(types, "close.ok"), 2 * lives);
    double ft50 = num_at(types, "generate.first_token_ms.p50");
    assert_true(ft50 > 0 && ft50 <= num_at(types, "generate.latency_ms.p50"));

    /* every generation runs to --gen (EOS ignored); prompts are [N/2, N] */
    assert_int_equal(int_at(j, "tokens.generated"), 2 * lives * GEN);
    json_int_t prompt = int_at(j, "tokens.prompt");
    assert_true(prompt >= lives * (PROMPT / 2) && prompt <= lives * PROMPT);
    assert_true(num_at(j, "tokens.generated_per_s") > 0);

    /* the default mix: each policy the daemon offers (no soft tokens here) */
    json_t *mix = get(j, "mix");
    assert_int_equal(json_object_size(mix), 6);
    assert_null(json_object_get(mix, "judgeq"));
    json_t *pol = get(j, "prefill_by_policy");
    json_int_t by_policy = 0;
    const char *key;
    json_t *v;
    json_object_foreach(pol, key, v)
    {
        assert_non_null(json_object_get(mix, key));
        by_policy += int_at(v, "requests");
    }
    assert_int_equal(by_policy, int_at(types, "prefill.requests"));

    /* the daemon: reported, sampled in both windows, no descriptor left */
    json_t *d = get(j, "daemon");
    assert_true(int_at(d, "first.samples") > 0);
    assert_true(int_at(d, "last.samples") > 0);
    assert_true(int_at(d, "first.rss_bytes.max") > 0);
    assert_true(int_at(d, "last.open_fds.max") >= CLIENTS);
    (void)int_at(d, "growth.rss_bytes");
    (void)int_at(d, "growth.open_fds");
    assert_true(json_array_size(get(d, "samples")) >= 2);
    assert_int_equal(int_at(d, "after.sessions"), 0);
    assert_int_equal(int_at(d, "after.connections"), 1); /* the sampler's */
    assert_int_equal(int_at(d, "after.open_fds"), int_at(d, "before.open_fds"));
    json_decref(j);
}

/* --mix: only the policies listed, with their weights. */
static void test_mix(void **state)
{
    (void)state;
    char *args = jqt_fmt("bench --socket '%s' --clients 2 --duration 0.5 "
                         "--mix full:3,snapkv --budget 40 --window 8",
                         daemon_.sock);
    int rc;
    json_t *j = judgeq(args, &rc, NULL, true);
    assert_int_equal(rc, 0);
    free(args);
    json_t *mix = get(j, "mix");
    assert_int_equal(json_object_size(mix), 2);
    assert_int_equal(int_at(mix, "full"), 3);
    assert_int_equal(int_at(mix, "snapkv"), 1);
    assert_int_equal(int_at(j, "budget"), 40);
    json_t *pol = get(j, "prefill_by_policy");
    assert_int_equal(json_object_size(pol), 2);
    assert_int_equal(int_at(pol, "full.requests") + int_at(pol, "snapkv.requests"),
                     int_at(j, "by_type.prefill.requests"));
    json_decref(j);
}

/* Failing requests: counted by code with the daemon's message, exit 1;
 * --allow-errors exits 0 with the same report. The daemon opens no client
 * paths (no --allow-path), so every judgeq prefill naming --soft is
 * PERMISSION_DENIED, and the rest of the life is skipped. */
static void test_errors_counted(void **state)
{
    (void)state;
    for (int allow = 0; allow < 2; allow++) {
        char *args = jqt_fmt("bench --socket '%s' --clients 2 --duration 0.5 "
                             "--mix judgeq --soft /nonexistent.gguf%s",
                             daemon_.sock, allow ? " --allow-errors" : "");
        int rc;
        char *err;
        json_t *j = judgeq(args, &rc, &err, true);
        free(args);
        assert_int_equal(rc, allow ? 0 : 1);
        if (!allow)
            assert_non_null(strstr(err, "requests failed"));
        free(err);
        json_int_t n = int_at(j, "errors.total");
        assert_true(n > 0);
        assert_int_equal(int_at(j, "errors.by_code.PERMISSION_DENIED"), n);
        assert_int_equal(int_at(j, "by_type.prefill.errors"), n);
        assert_int_equal(int_at(j, "by_type.prefill.ok"), 0);
        assert_int_equal(int_at(j, "by_type.generate.requests"), 0);
        assert_int_equal(int_at(j, "sessions_completed"), 0);
        /* the sessions were still closed */
        assert_int_equal(int_at(j, "by_type.close.ok"), int_at(j, "by_type.create.ok"));
        json_t *first = get(j, "errors.first");
        assert_true(json_array_size(first) >= 1 && json_array_size(first) <= 5);
        json_t *e0 = json_array_get(first, 0);
        assert_string_equal(json_string_value(json_object_get(e0, "request")), "prefill");
        assert_string_equal(json_string_value(json_object_get(e0, "code")),
                            "PERMISSION_DENIED");
        assert_non_null(strstr(json_string_value(json_object_get(e0, "message")),
                               "soft_path"));
        json_decref(j);
    }
}

/* The global form `judgeq --socket PATH bench` is a load run too. */
static void test_global_socket(void **state)
{
    (void)state;
    char *args = jqt_fmt("--socket '%s' bench --clients 1 --duration 0.3", daemon_.sock);
    int rc;
    json_t *j = judgeq(args, &rc, NULL, true);
    free(args);
    assert_int_equal(rc, 0);
    assert_int_equal(int_at(j, "clients"), 1);
    assert_true(int_at(j, "by_type.generate.ok") > 0);
    json_decref(j);
}

/* Usage errors exit 2 naming the flag; an absent daemon exits 1 naming
 * the socket. */
static void test_bad_flags(void **state)
{
    (void)state;
    struct {
        const char *args;
        int status;
        const char *says;
    } cases[] = {
        {"bench --socket S --clients 0", 2, "--clients must be in [1, 4096]"},
        {"bench --clients 4", 2, "--clients needs --socket PATH"},
        {"bench --socket S --duration 0", 2, "--duration must be in"},
        {"bench --socket S --duration x", 2, "--duration expects a number"},
        {"bench -m M --duration 5", 2, "--duration is for a load run"},
        {"bench -m M --mix full", 2, "--mix is for a load run"},
        {"bench --socket S -m M", 2, "-m is for the offline bench"},
        {"bench --socket S --reps 2", 2, "--reps is for the offline bench"},
        {"bench --socket S --evict h2o --budget 8", 2, "give a load run's policies with --mix"},
        {"bench --socket S --mix oracle", 2, "--mix: oracle"},
        {"bench --socket S --mix full,bogus", 2, "unknown policy 'bogus' in --mix"},
        {"bench --socket S --mix full,full", 2, "--mix lists 'full' twice"},
        {"bench --socket S --mix full:0", 2, "a --mix weight must be in [1, 1000]"},
        {"bench --socket S --mix snapkv --budget 8 --window 8", 2, "--window 8 must be smaller"},
        {"bench --socket S --mix full --soft F", 2, "--soft is only used with judgeq in --mix"},
        {"bench --socket S --fork-rate 1.5", 2, "--fork-rate must be in [0, 1]"},
        {"bench --socket S --gen 0", 2, "--gen must be at least 1"},
        {"bench --socket /nonexistent/judgeqd.sock --clients 1", 1, "/nonexistent/judgeqd.sock"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc;
        char *err;
        judgeq(cases[i].args, &rc, &err, false);
        if (rc != cases[i].status || !strstr(err, cases[i].says))
            fail_msg("judgeq %s: exit %d (want %d), stderr: %s (want \"%s\")",
                     cases[i].args, rc, cases[i].status, err, cases[i].says);
        free(err);
    }
    /* $JUDGEQ_SOCKET does not turn `bench` into a load run */
    int rc;
    char *err;
    setenv("JUDGEQ_SOCKET", daemon_.sock, 1);
    judgeq("bench --clients 2", &rc, &err, false);
    unsetenv("JUDGEQ_SOCKET");
    assert_int_equal(rc, 2);
    assert_non_null(strstr(err, "--clients needs --socket PATH"));
    free(err);
    /* --help documents the load run */
    char *help = jqt_fmt("'%s' bench --help", jqt_judgeq_bin());
    char *out = jqt_run(help, &rc, NULL);
    free(help);
    assert_int_equal(rc, 0);
    for (const char *const *f = (const char *const[]){"--clients", "--duration", "--mix",
                                                      "--fork-rate", "--export-rate",
                                                      "--allow-errors", "open_fds", NULL};
         *f; f++)
        if (!strstr(out, *f))
            fail_msg("bench --help does not mention %s", *f);
    free(out);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_short_load_clean),
        cmocka_unit_test(test_mix),
        cmocka_unit_test(test_errors_counted),
        cmocka_unit_test(test_global_socket),
        cmocka_unit_test(test_bad_flags),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
