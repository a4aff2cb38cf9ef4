/* test_daemon_e2e.c — the real judgeqd, the real client, a real socket.
 *
 * One daemon (stories260K, 2 threads) is started for the group on a
 * socket in a fresh world-traversable directory (the other-uid test
 * connects as nobody), and stopped with SIGTERM at the end, which must
 * exit 0. The tests hold the online path to the offline one: `judgeq
 * generate` equals `judgeq run` token for token with and without eviction,
 * eight clients at once get the right tokens while Pings stay prompt, Fork
 * shares its prefix, ExportKV maps read-only with the engine's own K/V
 * values, and a session of another uid is PERMISSION_DENIED.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#include "daemon_harness.h"
#include "judgeq.h"
#include "model.h"
#include "prefill.h"
#include "thread_pool.h"

#define PROMPT                                                                \
    "Once upon a time, there was a little girl named Lily. She loved to "     \
    "play outside in the park with her friends. One day, she saw a big red "  \
    "ball"

static char dir[64]; /* /tmp/judgeq-e2e-XXXXXX, world-traversable */
static jqt_daemon daemon_;

static int start_daemon(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/judgeq-e2e-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    chmod(dir, 0755); /* nobody must reach the socket */
    static const char *const extra[] = {"--threads", "2", NULL};
    const jqt_daemon_opts opts = {.dir = dir, .log_level = "info"};
    jqt_daemon_start(&daemon_, "judgeqd",
                     jqt_model_path("stories260K.gguf"), extra, &opts);
    chmod(daemon_.sock, 0666); /* for the other-uid client */
    return 0;
}

static int stop_daemon(void **state)
{
    (void)state;
    int ok = jqt_daemon_stop_teardown(&daemon_);
    char *cmd = jqt_fmt("rm -rf '%s'", dir);
    int rc;
    free(jqt_run(cmd, &rc, NULL));
    free(cmd);
    return ok;
}

/* ------------------------------------------------------------- tests */

static void test_generate_equals_run(void **state)
{
    (void)state;
    const char *flags[] = {
        "-n 40 --temp 0",
        "-n 40 --temp 0.9 --seed 7",
        "-n 32 --temp 0 --evict snapkv --budget 12 --window 4",
        "-n 32 --temp 0 --evict streaming --budget 10 --sink 2",
        "-n 32 --temp 0 --evict h2o --budget 12 --window 4 --kv-type f16",
        "-n 32 --temp 0 --evict pyramidkv --budget 12 --window 4",
        "-n 32 --temp 0.7 --seed 3 --evict adakv --budget 12 --window 4",
    };
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        char *on_args = jqt_fmt("--socket '%s' generate -p '%s' %s", daemon_.sock,
                                PROMPT, flags[i]);
        char *off_args = jqt_fmt("run -m '%s' -p '%s' %s --threads 2",
                                 jqt_model_path("stories260K.gguf"), PROMPT, flags[i]);
        json_t *on = jqt_judgeq_json(on_args);
        json_t *off = jqt_judgeq_json(off_args);
        const char *same[] = {"prompt_tokens", "tokens", "text", "kept",
                              "kv_bytes_full", "kv_bytes_kept", "policy", "budget"};
        for (size_t k = 0; k < sizeof same / sizeof same[0]; k++)
            if (!json_equal(json_object_get(on, same[k]), json_object_get(off, same[k]))) {
                char *a = json_dumps(json_object_get(on, same[k]), JSON_COMPACT | JSON_ENCODE_ANY);
                char *b = json_dumps(json_object_get(off, same[k]), JSON_COMPACT | JSON_ENCODE_ANY);
                fail_msg("flags '%s': %s differs\n online  %s\n offline %s", flags[i],
                         same[k], a, b);
            }
        json_decref(on);
        json_decref(off);
        free(on_args);
        free(off_args);
    }
}

/* The streamed text is what --json reports. */
static void test_generate_streams(void **state)
{
    (void)state;
    char *cmd = jqt_fmt("'%s' --socket '%s' generate -p '%s' -n 20 --temp 0",
                        jqt_judgeq_bin(), daemon_.sock, PROMPT);
    int rc;
    char *out = jqt_run(cmd, &rc, NULL);
    assert_int_equal(rc, 0);
    char *args = jqt_fmt("--socket '%s' generate -p '%s' -n 20 --temp 0", daemon_.sock, PROMPT);
    json_t *j = jqt_judgeq_json(args);
    char *want = jqt_fmt("%s\n", json_string_value(json_object_get(j, "text")));
    assert_string_equal(out, want);
    free(want);
    json_decref(j);
    free(args);
    free(out);
    free(cmd);
}

typedef struct {
    int32_t tokens[64];
    int n;
} token_list;

static int collect(void *user, const judgeq_token *t)
{
    token_list *l = user;
    if (l->n < 64)
        l->tokens[l->n++] = t->id;
    return 0;
}

/* One whole session on its own connection: create, prefill, generate. */
static int one_session(const char *prompt, uint64_t seed, float temp,
                       token_list *out)
{
    judgeq_conn *c;
    if (judgeq_connect(daemon_.sock, 2000, &c) != JUDGEQ_OK) {
        judgeq_close(c);
        return -1;
    }
    judgeq_set_timeout(c, 30000);
    uint64_t sid;
    judgeq_eviction ev;
    judgeq_eviction_init(&ev);
    ev.policy = JUDGEQ_POLICY_SNAPKV;
    ev.budget = 12;
    ev.window = 4;
    judgeq_prefill_input in = {.text = prompt, .eviction = &ev, .reserve = 32};
    judgeq_generate_opts go;
    judgeq_generate_opts_init(&go);
    go.max_tokens = 32;
    go.temp = temp;
    go.seed = seed;
    int rc = judgeq_session_create(c, NULL, &sid, NULL);
    if (!rc)
        rc = judgeq_prefill(c, sid, &in, NULL);
    if (!rc)
        rc = judgeq_generate(c, sid, &go, collect, out, NULL);
    if (!rc)
        rc = judgeq_session_close(c, sid);
    if (rc)
        fprintf(stderr, "session: %s\n", judgeq_errmsg(c));
    judgeq_close(c);
    return rc;
}

typedef struct {
    int index;
    token_list got;
    int rc;
} client_job;

static void *client_main(void *arg)
{
    client_job *j = arg;
    j->rc = one_session(PROMPT, 100 + (uint64_t)j->index, 0.8f, &j->got);
    return NULL;
}

static void test_eight_clients(void **state)
{
    (void)state;
    /* what each seed gives alone */
    token_list want[8];
    for (int i = 0; i < 8; i++) {
        want[i] = (token_list){0};
        assert_int_equal(one_session(PROMPT, 100 + (uint64_t)i, 0.8f, &want[i]), 0);
    }
    client_job jobs[8];
    pthread_t t[8];
    for (int i = 0; i < 8; i++) {
        jobs[i] = (client_job){.index = i};
        assert_int_equal(pthread_create(&t[i], NULL, client_main, &jobs[i]), 0);
    }
    /* the loop thread answers while the workers are busy */
    judgeq_conn *c = jqt_connect(&daemon_);
    double worst = 0;
    for (int i = 0; i < 50; i++) {
        double us;
        assert_int_equal(judgeq_ping(c, &us), JUDGEQ_OK);
        if (us > worst)
            worst = us;
    }
    judgeq_close(c);
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(jobs[i].rc, 0);
        assert_int_equal(jobs[i].got.n, want[i].n);
        assert_memory_equal(jobs[i].got.tokens, want[i].tokens,
                            sizeof(int32_t) * (size_t)want[i].n);
    }
    fprintf(stderr, "worst Ping under 8 clients: %.0f us\n", worst);
    assert_true(worst < 100000); /* 100 ms: the loop never computes */
}

static void test_fork(void **state)
{
    (void)state;
    judgeq_conn *c = jqt_connect(&daemon_);
    uint64_t sid, f1, f2;
    judgeq_stats st0, st1;
    assert_int_equal(judgeq_get_stats(c, &st0), JUDGEQ_OK);
    assert_int_equal(judgeq_session_create(c, NULL, &sid, NULL), JUDGEQ_OK);
    judgeq_eviction ev;
    judgeq_eviction_init(&ev);
    ev.policy = JUDGEQ_POLICY_SNAPKV;
    ev.budget = 12;
    ev.window = 4;
    judgeq_prefill_input in = {.text = PROMPT, .eviction = &ev, .reserve = 24};
    judgeq_prefill_result pr;
    assert_int_equal(judgeq_prefill(c, sid, &in, &pr), JUDGEQ_OK);
    if (judgeq_fork(c, sid, &f1) != JUDGEQ_OK || judgeq_fork(c, sid, &f2) != JUDGEQ_OK)
        fail_msg("fork: %s", judgeq_errmsg(c));
    assert_true(f1 != f2 && f1 != sid);
    assert_int_equal(judgeq_get_stats(c, &st1), JUDGEQ_OK);
    assert_true(st1.shared_prefix_bytes > st0.shared_prefix_bytes);
    /* the prefix is held once: two forks cost less than two more copies
     * of the kept K/V */
    assert_true(st1.memory_used - st0.memory_used < 3 * pr.kv_bytes_kept + 2 * 24 * 4096);

    judgeq_generate_opts go;
    judgeq_generate_opts_init(&go);
    go.max_tokens = 24;
    go.temp = 1.0f;
    token_list a = {0}, b = {0};
    go.seed = 1;
    assert_int_equal(judgeq_generate(c, f1, &go, collect, &a, NULL), JUDGEQ_OK);
    go.seed = 2;
    assert_int_equal(judgeq_generate(c, f2, &go, collect, &b, NULL), JUDGEQ_OK);
    assert_true(a.n > 0 && b.n > 0);
    assert_true(a.n != b.n || memcmp(a.tokens, b.tokens, sizeof(int32_t) * (size_t)a.n));
    assert_int_equal(judgeq_session_close(c, f1), JUDGEQ_OK);
    assert_int_equal(judgeq_session_close(c, f2), JUDGEQ_OK);
    assert_int_equal(judgeq_session_close(c, sid), JUDGEQ_OK);
    judgeq_prefill_result_free(&pr);
    judgeq_stats_free(&st0);
    judgeq_stats_free(&st1);
    judgeq_close(c);
}

static void test_export_kv(void **state)
{
    (void)state;
    judgeq_conn *c = jqt_connect(&daemon_);
    uint64_t sid;
    assert_int_equal(judgeq_session_create(c, NULL, &sid, NULL), JUDGEQ_OK);
    judgeq_prefill_input in = {.text = PROMPT};
    judgeq_prefill_result pr;
    assert_int_equal(judgeq_prefill(c, sid, &in, &pr), JUDGEQ_OK);
    int fd;
    judgeq_kv_export x;
    if (judgeq_export_kv(c, sid, &fd, &x) != JUDGEQ_OK)
        fail_msg("export: %s", judgeq_errmsg(c));
    int seals = fcntl(fd, F_GET_SEALS);
    assert_int_equal(seals & (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW),
                     F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW);
    judgeq_kv_mapping m;
    char err[256];
    if (judgeq_kv_map(fd, &x, &m, err, sizeof err) != JUDGEQ_OK)
        fail_msg("map: %s", err);
    /* no way to write: not through the fd, not through the mapping */
    assert_true(write(fd, "x", 1) < 0);
    assert_int_not_equal(mprotect((void *)m.base, m.size, PROT_READ | PROT_WRITE), 0);
    assert_true(mmap(NULL, m.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED);
    assert_true(ftruncate(fd, 0) < 0);
    close(fd);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL);
        ((volatile uint8_t *)m.base)[100] = 1;
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    assert_false(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* the same K/V the engine computes for this prompt */
    char e[512];
    jq_model *model = jq_model_load(jqt_model_path("stories260K.gguf"), e, sizeof e);
    assert_non_null(model);
    jq_pool *pool = jq_thread_pool_new(2);
    int32_t L = (int32_t)pr.n_prompt_token_ids;
    jq_ctx *ctx = jq_ctx_new(model, L + 1, L, pool, e, sizeof e);
    assert_non_null(ctx);
    jq_prefill_params pp = {.spec = jq_evict_spec_default(JQ_EVICT_FULL, 0)};
    jq_prefill_result r;
    if (jq_prefill(ctx, pr.prompt_token_ids, L, &pp, NULL, &r, e, sizeof e) != 0)
        fail_msg("offline prefill: %s", e);
    const jq_kv_store *kv = jq_ctx_kv(ctx);
    assert_int_equal(m.header->n_layer, (uint32_t)kv->n_layer);
    assert_int_equal(m.header->n_head_kv, (uint32_t)kv->n_head_kv);
    assert_int_equal(m.header->head_dim, (uint32_t)kv->head_dim);
    assert_int_equal(m.header->elem_type, JUDGEQ_KV_F32);
    double worst = 0;
    for (int32_t l = 0; l < kv->n_layer; l++)
        for (int32_t g = 0; g < kv->n_head_kv; g++) {
            const judgeq_kv_head_entry *h = judgeq_kv_head(&m, (uint32_t)l, (uint32_t)g);
            assert_int_equal(h->length, (uint32_t)L);
            const float *k = judgeq_kv_keys(&m, (uint32_t)l, (uint32_t)g);
            const float *v = judgeq_kv_values(&m, (uint32_t)l, (uint32_t)g);
            const int32_t *p = judgeq_kv_positions(&m, (uint32_t)l, (uint32_t)g);
            for (int32_t i = 0; i < L; i++) {
                assert_int_equal(p[i], i);
                const float *ek = jq_kv_key(kv, l, g, i);
                const float *ev = jq_kv_value(kv, l, g, i);
                for (int32_t d = 0; d < kv->head_dim; d++) {
                    double dk = fabs(k[i * kv->head_dim + d] - ek[d]);
                    double dv = fabs(v[i * kv->head_dim + d] - ev[d]);
                    worst = fmax(worst, fmax(dk, dv));
                }
            }
        }
    fprintf(stderr, "exported K/V vs offline engine: max |diff| %.3g\n", worst);
    assert_true(worst < 1e-4);
    jq_prefill_result_free(&r);
    jq_ctx_free(ctx);
    jq_thread_pool_free(pool);
    jq_model_free(model);
    judgeq_kv_unmap(&m);
    judgeq_kv_export_free(&x);
    judgeq_prefill_result_free(&pr);
    assert_int_equal(judgeq_session_close(c, sid), JUDGEQ_OK);
    judgeq_close(c);
}

/* A child that becomes nobody tries root's session: every access is
 * PERMISSION_DENIED, and its own session works. Exit code = first failed
 * check + 1. */
static int as_nobody(uint64_t sid)
{
    if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
        return 100;
    judgeq_conn *c;
    if (judgeq_connect(daemon_.sock, 2000, &c) != JUDGEQ_OK) {
        fprintf(stderr, "nobody: %s\n", judgeq_errmsg(c));
        return 101;
    }
    judgeq_set_timeout(c, 10000);
    int32_t toks[3] = {1, 403, 407};
    judgeq_prefill_input in = {.tokens = toks, .n_tokens = 3};
    int failed = jqt_foreign_session_try(c, sid, &in);
    if (failed >= 0)
        return failed + 1;
    uint64_t own;
    if (judgeq_session_create(c, NULL, &own, NULL) != JUDGEQ_OK ||
        judgeq_prefill(c, own, &in, NULL) != JUDGEQ_OK)
        return 10;
    judgeq_close(c);
    return 0;
}

static void test_other_uid_denied(void **state)
{
    (void)state;
    if (getuid() != 0) {
        fprintf(stderr, "SKIPPED: the other-uid test needs root to become nobody\n");
        skip();
    }
    judgeq_conn *c = jqt_connect(&daemon_);
    uint64_t sid;
    assert_int_equal(judgeq_session_create(c, NULL, &sid, NULL), JUDGEQ_OK);
    judgeq_prefill_input in = {.text = "Once upon a time"};
    assert_int_equal(judgeq_prefill(c, sid, &in, NULL), JUDGEQ_OK);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(as_nobody(sid));
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("the nobody client failed check %d", WEXITSTATUS(status));
    /* root's session is intact */
    judgeq_generate_opts go;
    judgeq_generate_opts_init(&go);
    go.max_tokens = 4;
    assert_int_equal(judgeq_generate(c, sid, &go, NULL, NULL, NULL), JUDGEQ_OK);
    assert_int_equal(judgeq_session_close(c, sid), JUDGEQ_OK);
    judgeq_close(c);
}

/* Errors leave the connection usable. */
static void test_errors_keep_connection(void **state)
{
    (void)state;
    judgeq_conn *c = jqt_connect(&daemon_);
    assert_int_equal(judgeq_session_close(c, 987654321), JUDGEQ_ERR_NOT_FOUND);
    assert_non_null(strstr(judgeq_errmsg(c), "987654321"));
    uint64_t sid;
    assert_int_equal(judgeq_session_create(c, NULL, &sid, NULL), JUDGEQ_OK);
    int32_t bad[2] = {1, 1 << 30};
    judgeq_prefill_input in = {.tokens = bad, .n_tokens = 2};
    assert_int_equal(judgeq_prefill(c, sid, &in, NULL), JUDGEQ_ERR_INVALID_ARGUMENT);
    judgeq_server_info info;
    assert_int_equal(judgeq_hello(c, "e2e", &info), JUDGEQ_OK);
    assert_string_equal(info.model.architecture, "llama");
    assert_int_equal(info.model.n_vocab, 512);
    judgeq_server_info_free(&info);
    int32_t *toks;
    size_t n;
    assert_int_equal(judgeq_tokenize(c, "Once upon a time", true, &toks, &n), JUDGEQ_OK);
    assert_true(n >= 2);
    assert_int_equal(toks[0], 1);
    char *text;
    size_t tl;
    assert_int_equal(judgeq_detokenize(c, toks + 1, n - 1, &text, &tl), JUDGEQ_OK);
    assert_non_null(strstr(text, "upon a time"));
    free(text);
    free(toks);
    assert_int_equal(judgeq_session_close(c, sid), JUDGEQ_OK);
    judgeq_close(c);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_equals_run),
        cmocka_unit_test(test_generate_streams),
        cmocka_unit_test(test_eight_clients),
        cmocka_unit_test(test_fork),
        cmocka_unit_test(test_export_kv),
        cmocka_unit_test(test_other_uid_denied),
        cmocka_unit_test(test_errors_keep_connection),
    };
    return cmocka_run_group_tests(tests, start_daemon, stop_daemon);
}
