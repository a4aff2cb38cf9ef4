/* test_daemon_budget.c — a flood of large prefills against --memory-budget.
 *
 * Twelve clients at once each prefill 1500 tokens into a session of 2048
 * positions. The daemon admits a prefill when its estimate (the prompt's
 * scratch plus the kept store with its decode reserve, ~28 MiB here) fits
 * in what the budget has left, and answers RESOURCE_EXHAUSTED naming
 * --memory-budget otherwise. Checked: what is admitted completes (and its
 * session generates), what is refused is refused cleanly, the accounted KV
 * bytes (Stats memory_used, sampled throughout) never exceed the budget,
 * and the daemon's RSS never grows past the most it accounted (so past the
 * budget) plus RSS_MARGIN_KIB over its level before the flood. The budget frees up when the sessions
 * close.
 *
 * The margin, and why: the budget accounts for KV (each session's memfd
 * store, and a prompt-sized scratch estimate per admitted prefill), not
 * for the engine's per-prefill temporaries (activations, attention rows,
 * eviction scores) of the prefill running on each pool, nor for the
 * reply buffers and allocator slack; those are bounded by one prompt per
 * pool, and 16 MiB covers them for this model with room to spare. The
 * budget overestimates too: the decode reserve of a store is not touched
 * (and so not resident) until tokens are generated.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#include "daemon_harness.h"

#define N_CLIENTS 12
#define PROMPT 1500
#define BUDGET_MIB 64
#define RSS_MARGIN_KIB (16 * 1024)

typedef struct {
    const char *sock;
    pthread_barrier_t *go;
    _Atomic int *finished;
    judgeq_conn *c;
    uint64_t sid;
    int rc;
    char msg[512];
} flood_client;

static int32_t prompt[PROMPT];

static void *flood_main(void *arg)
{
    flood_client *fc = arg;
    fc->rc = judgeq_connect(fc->sock, jqt_io_timeout_ms(), &fc->c);
    if (fc->rc == JUDGEQ_OK) {
        judgeq_set_timeout(fc->c, jqt_io_timeout_ms());
        fc->rc = judgeq_session_create(fc->c, NULL, &fc->sid, NULL);
    }
    pthread_barrier_wait(fc->go);
    if (fc->rc == JUDGEQ_OK) {
        judgeq_prefill_input in = {.tokens = prompt, .n_tokens = PROMPT};
        judgeq_prefill_result res;
        fc->rc = judgeq_prefill(fc->c, fc->sid, &in, &res);
        if (fc->rc == JUDGEQ_OK) {
            if (res.prompt_tokens != PROMPT)
                fc->rc = -100;
            judgeq_prefill_result_free(&res);
        }
    }
    if (fc->c)
        snprintf(fc->msg, sizeof fc->msg, "%s", judgeq_errmsg(fc->c));
    atomic_fetch_add(fc->finished, 1);
    return NULL;
}

static void test_prefill_flood(void **state)
{
    (void)state;
    for (int i = 0; i < PROMPT; i++)
        prompt[i] = 3 + (i * 37) % 500;
    const char *model = jqt_gen_model(
        "big", "--n-embd 256 --n-layer 4 --n-head 4 --n-head-kv 4 "
               "--n-ff 512 --ctx 4096");
    char budget[16];
    snprintf(budget, sizeof budget, "%dM", BUDGET_MIB);
    const char *const extra[] = {"--threads",       "2",    "--max-context",
                                 "2048",            "--memory-budget",
                                 budget,            NULL};
    jqt_daemon d;
    jqt_daemon_start(&d, "budget", model, extra, NULL);
    judgeq_conn *obs = jqt_connect(&d);

    /* warm-up: one admitted prefill sizes the pool's scratch */
    uint64_t sid;
    assert_int_equal(judgeq_session_create(obs, NULL, &sid, NULL), 0);
    judgeq_prefill_input in = {.tokens = prompt, .n_tokens = PROMPT};
    if (judgeq_prefill(obs, sid, &in, NULL) != JUDGEQ_OK)
        fail_msg("warm-up prefill: %s", judgeq_errmsg(obs));
    assert_int_equal(judgeq_session_close(obs, sid), 0);
    jqt_stats base = jqt_stats_get(obs);
    assert_int_equal(base.memory_used, 0);
    assert_int_equal(base.memory_budget, (uint64_t)BUDGET_MIB << 20);
    long rss0 = jqt_proc_rss_kib(d.pid);

    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, N_CLIENTS + 1);
    _Atomic int finished = 0;
    flood_client fc[N_CLIENTS];
    pthread_t th[N_CLIENTS];
    for (int i = 0; i < N_CLIENTS; i++) {
        fc[i] = (flood_client){.sock = d.sock, .go = &go,
                               .finished = &finished};
        assert_int_equal(pthread_create(&th[i], NULL, flood_main, &fc[i]), 0);
    }
    pthread_barrier_wait(&go);
    uint64_t mem_max = 0;
    long rss_max = rss0;
    int samples = 0;
    double t0 = jqt_now();
    while (atomic_load(&finished) < N_CLIENTS) {
        jqt_stats s = jqt_stats_get(obs);
        long rss = jqt_proc_rss_kib(d.pid);
        mem_max = s.memory_used > mem_max ? s.memory_used : mem_max;
        rss_max = rss > rss_max ? rss : rss_max;
        samples++;
        if (jqt_now() - t0 > 600)
            fail_msg("the flood did not end within 600 s");
        usleep(1000);
    }
    for (int i = 0; i < N_CLIENTS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);

    int admitted = 0, refused = 0;
    for (int i = 0; i < N_CLIENTS; i++) {
        if (fc[i].rc == JUDGEQ_OK) {
            /* admitted work is whole: the session generates */
            judgeq_generate_opts o;
            judgeq_generate_opts_init(&o);
            o.max_tokens = 4;
            o.ignore_eos = true;
            judgeq_generate_result res;
            if (judgeq_generate(fc[i].c, fc[i].sid, &o, NULL, NULL, &res) !=
                    JUDGEQ_OK ||
                res.n_tokens != 4)
                fail_msg("client %d: generate after its prefill: %s", i,
                         judgeq_errmsg(fc[i].c));
            admitted++;
        } else if (fc[i].rc == JUDGEQ_ERR_RESOURCE_EXHAUSTED) {
            if (!strstr(fc[i].msg, "--memory-budget"))
                fail_msg("client %d refused with \"%s\"", i, fc[i].msg);
            refused++;
        } else {
            jqt_daemon_print_log(&d);
            fail_msg("client %d: status %d: %s", i, fc[i].rc, fc[i].msg);
        }
    }
    jqt_stats held = jqt_stats_get(obs);
    mem_max = held.memory_used > mem_max ? held.memory_used : mem_max;
    printf("flood of %d prefills of %d tokens, budget %d MiB: %d admitted, "
           "%d RESOURCE_EXHAUSTED; accounted KV at most %.1f MiB (%d "
           "samples), %.1f MiB held after; RSS %ld KiB before, at most %ld "
           "KiB during (+%.1f MiB)\n",
           N_CLIENTS, PROMPT, BUDGET_MIB, admitted, refused,
           (double)mem_max / (1 << 20), samples,
           (double)held.memory_used / (1 << 20), rss0, rss_max,
           (double)(rss_max - rss0) / 1024);
    assert_true(admitted >= 1);
    assert_true(refused >= 1);
    assert_true(mem_max <= (uint64_t)BUDGET_MIB << 20);
    /* real memory follows the accounting (and so the budget) */
    if (jqt_asan_build())
        printf("(an ASan build: RSS not checked)\n");
    else if (rss_max - rss0 > (long)(mem_max >> 10) + RSS_MARGIN_KIB)
        fail_msg("RSS grew by %ld KiB: more than the %llu KiB accounted + "
                 "%d KiB",
                 rss_max - rss0, (unsigned long long)(mem_max >> 10),
                 RSS_MARGIN_KIB);

    /* closing the sessions gives the budget back */
    for (int i = 0; i < N_CLIENTS; i++)
        judgeq_close(fc[i].c);
    double t1 = jqt_now();
    while (jqt_stats_get(obs).memory_used != 0) {
        assert_true(jqt_now() - t1 < 120);
        usleep(2000);
    }
    assert_int_equal(judgeq_session_create(obs, NULL, &sid, NULL), 0);
    if (judgeq_prefill(obs, sid, &in, NULL) != JUDGEQ_OK)
        fail_msg("prefill after the flood: %s", judgeq_errmsg(obs));
    judgeq_close(obs);
    assert_int_equal(jqt_daemon_stop(&d), 0);
}

int main(void)
{
    alarm(1800);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefill_flood),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
