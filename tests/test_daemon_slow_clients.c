/* test_daemon_slow_clients.c — clients that stop reading or stop writing
 * in the middle of a frame cost the others nothing.
 *
 * A client that stops reading keeps its replies queued in the daemon (the
 * loop never blocks on a socket) up to --max-output-bytes, and is then
 * dropped with a log line; a client that sends half a frame, or trickles a
 * frame byte by byte, is answered with an error naming --frame-timeout-ms
 * and closed, with a log line; so is one that, closed that way, does not
 * read its last reply. Meanwhile another client pings and generates, and
 * a client that is merely idle between frames is left alone.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

#include "daemon_harness.h"

#define MODEL "stories260K.gguf"
#define N_TOKENIZE 200 /* ~1 MB of replies: far more than socket buffers */

/* A client that asks for ~1 MB of replies and reads none of them. */
static int stalled_reader(const jqt_daemon *d)
{
    int fd = jqt_wire_connect(d->sock);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    jqt_wire_tokenize_flood(fd, N_TOKENIZE, 1); /* stops if dropped */
    return fd;
}

/* The other client's work: a Ping, then a session that prefills and
 * generates 16 tokens. */
static void others_are_served(const jqt_daemon *d)
{
    judgeq_conn *c = jqt_connect(d);
    assert_int_equal(judgeq_ping(c, NULL), JUDGEQ_OK);
    uint64_t sid;
    assert_int_equal(judgeq_session_create(c, NULL, &sid, NULL), JUDGEQ_OK);
    judgeq_prefill_input in = {.text = "Once upon a time"};
    if (judgeq_prefill(c, sid, &in, NULL) != JUDGEQ_OK)
        fail_msg("prefill: %s", judgeq_errmsg(c));
    judgeq_generate_opts o;
    judgeq_generate_opts_init(&o);
    o.max_tokens = 16;
    o.ignore_eos = true;
    judgeq_generate_result res;
    if (judgeq_generate(c, sid, &o, NULL, NULL, &res) != JUDGEQ_OK)
        fail_msg("generate: %s", judgeq_errmsg(c));
    assert_int_equal(res.n_tokens, 16);
    judgeq_close(c);
}

/* Waits until Stats counts `n` connections (the caller's included). */
static void await_connections(judgeq_conn *obs, uint32_t n)
{
    double t0 = jqt_now();
    while (jqt_stats_get(obs).connections != n) {
        if (jqt_now() - t0 > 120)
            fail_msg("the daemon still counts other than %u connections", n);
        usleep(5000);
    }
}

/* Reads what the daemon sent before it closed: must end (EOF, or a frame
 * cut by the drop), never hang. Returns the whole frames read; *error_seen
 * is set when one was an error whose message contains needle. */
static int read_until_closed(int fd, const char *needle, bool *error_seen)
{
    int frames = 0;
    for (;;) {
        Judgeq__Response *r;
        jqt_frame_status st = jqt_wire_recv_try(fd, jqt_io_timeout_ms(), &r,
                                                NULL);
        if (st == JQT_FRAME_TIMEOUT)
            fail_msg("no close after %d frames: the daemon kept the "
                     "connection open",
                     frames);
        if (st != JQT_FRAME_OK)
            return frames;
        if (error_seen && r->code && r->message && strstr(r->message, needle))
            *error_seen = true;
        judgeq__response__free_unpacked(r, NULL);
        frames++;
    }
}

/* judgeqd on stories260K with 2 threads and `option value`; returns the
 * test's Stats connection. */
static judgeq_conn *start(jqt_daemon *d, const char *name, const char *option,
                          const char *value)
{
    const char *const extra[] = {"--threads", "2", option, value, NULL};
    jqt_daemon_start(d, name, jqt_model_path(MODEL), extra, NULL);
    return jqt_connect(d);
}

/* Below --max-output-bytes a client that does not read keeps its replies
 * (the daemon holds them) and nobody waits for it. */
static void test_stalled_reader_does_not_block(void **state)
{
    (void)state;
    jqt_daemon d;
    judgeq_conn *obs = start(&d, "stall", "--max-output-bytes", "256M");
    int fd = stalled_reader(&d);
    others_are_served(&d);
    others_are_served(&d);
    assert_int_equal(jqt_stats_get(obs).connections, 2);
    /* it is still there, and everything it asked for arrives whole */
    for (int i = 0; i < N_TOKENIZE; i++) {
        Judgeq__Response *r;
        assert_int_equal(jqt_wire_recv_try(fd, jqt_io_timeout_ms(), &r, NULL),
                         JQT_FRAME_OK);
        assert_int_equal(r->id, 1u + (uint64_t)i);
        assert_int_equal(r->code, 0);
        judgeq__response__free_unpacked(r, NULL);
    }
    close(fd);
    judgeq_close(obs);
    assert_int_equal(jqt_daemon_stop(&d), 0);
}

/* Past --max-output-bytes the client is dropped, with a log line naming
 * it; the others carry on. */
static void test_stalled_reader_dropped(void **state)
{
    (void)state;
    jqt_daemon d;
    judgeq_conn *obs = start(&d, "drop", "--max-output-bytes", "64K");
    int fd = stalled_reader(&d);
    others_are_served(&d);
    if (!jqt_daemon_log_wait(&d, "more than --max-output-bytes 65536; "
                                 "dropping it", 120)) {
        jqt_daemon_print_log(&d);
        fail_msg("no log line for the dropped client");
    }
    await_connections(obs, 1);
    others_are_served(&d);
    int frames = read_until_closed(fd, NULL, NULL);
    printf("the stalled client was dropped after %d of %d replies\n",
           frames, N_TOKENIZE);
    assert_true(frames < N_TOKENIZE);
    close(fd);
    judgeq_close(obs);
    assert_int_equal(jqt_daemon_stop(&d), 0);
}

/* A Ping frame, serialized with its length prefix (malloc'd, *n bytes). */
static uint8_t *ping_frame(size_t *n)
{
    Judgeq__Request q;
    Judgeq__Ping p;
    jqt_req_ping(&q, &p, 77, 0x0123456789abcdefull);
    uint8_t *frame = jqt_wire_frame(&q, n);
    assert_non_null(frame);
    return frame;
}

typedef struct {
    int fd;
    const uint8_t *frame; /* what to send, n bytes */
    size_t n;
    bool cut; /* a send failed: the daemon had closed */
} trickle_arg;

/* One byte of a Ping frame every 100 ms: progress, but no whole frame
 * within the timeout. */
static void *trickle_main(void *p)
{
    trickle_arg *t = p;
    for (size_t i = 0; i < t->n; i++) {
        if (send(t->fd, t->frame + i, 1, MSG_NOSIGNAL) != 1) {
            t->cut = true;
            break;
        }
        usleep(100 * 1000);
    }
    return NULL;
}

/* The first frame after a stall must be the timeout error, then the
 * close. */
static void expect_timed_out(int fd, const char *who)
{
    Judgeq__Response *r;
    jqt_frame_status st = jqt_wire_recv_try(fd, jqt_io_timeout_ms(), &r,
                                            NULL);
    if (st != JQT_FRAME_OK)
        fail_msg("%s: frame status %d instead of the timeout error", who,
                 (int)st);
    if (r->code != JUDGEQ__ERROR_CODE__INVALID_ARGUMENT || !r->message ||
        !strstr(r->message, "--frame-timeout-ms 500"))
        fail_msg("%s: code %d, \"%s\"", who, (int)r->code,
                 r->message ? r->message : "");
    judgeq__response__free_unpacked(r, NULL);
    assert_int_equal(jqt_wire_recv_try(fd, jqt_io_timeout_ms(), &r, NULL),
                     JQT_FRAME_EOF);
}

/* Half a header, half a payload, and a frame trickled byte by byte are
 * all timed out; an idle connection and a working one are not. */
static void test_half_frame_timed_out(void **state)
{
    (void)state;
    jqt_daemon d;
    judgeq_conn *obs = start(&d, "half", "--frame-timeout-ms", "500");
    size_t n;
    uint8_t *frame = ping_frame(&n);

    int idle = jqt_wire_connect(d.sock);
    int half_header = jqt_wire_connect(d.sock);
    int half_payload = jqt_wire_connect(d.sock);
    trickle_arg trickle = {.fd = jqt_wire_connect(d.sock), .frame = frame,
                           .n = n};
    jqt_wire_write(half_header, frame, 2);
    jqt_wire_write(half_payload, frame, n - 3);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, trickle_main, &trickle), 0);
    double t0 = jqt_now();
    others_are_served(&d);
    expect_timed_out(half_header, "half a header");
    expect_timed_out(half_payload, "half a payload");
    double took = jqt_now() - t0;
    pthread_join(th, NULL);
    expect_timed_out(trickle.fd, "a trickled frame");
    others_are_served(&d);
    printf("stalled frames closed %.2f s after they began (--frame-timeout-ms "
           "500); the trickle %s\n",
           took, trickle.cut ? "was cut off" : "ended unanswered");
    assert_true(took >= 0.5);
    if (!jqt_daemon_log_wait(&d, "<4>connection", 60) ||
        !jqt_daemon_log_wait(&d, "no complete request frame within "
                                 "--frame-timeout-ms 500",
                             60)) {
        jqt_daemon_print_log(&d);
        fail_msg("no log line for the timed-out frames");
    }

    /* idle between frames for well over the timeout: still served */
    usleep(1500 * 1000);
    jqt_wire_write(idle, frame, n);
    Judgeq__Response *r;
    assert_int_equal(jqt_wire_recv_try(idle, jqt_io_timeout_ms(), &r, NULL),
                     JQT_FRAME_OK);
    assert_int_equal(r->body_case, JUDGEQ__RESPONSE__BODY_PONG);
    judgeq__response__free_unpacked(r, NULL);
    await_connections(obs, 2);
    close(idle);
    close(half_header);
    close(half_payload);
    close(trickle.fd);
    free(frame);
    judgeq_close(obs);
    assert_int_equal(jqt_daemon_stop(&d), 0);
}

/* A client closed for a stalled frame that does not read its last reply
 * (queued behind ~1 MB it never read) is closed without it after the same
 * timeout. */
static void test_unread_last_reply(void **state)
{
    (void)state;
    jqt_daemon d;
    judgeq_conn *obs = start(&d, "unread", "--frame-timeout-ms", "500");
    int fd = stalled_reader(&d);
    size_t n;
    uint8_t *frame = ping_frame(&n);
    jqt_wire_write(fd, frame, 3);
    free(frame);
    if (!jqt_daemon_log_wait(&d, "did not read its last reply within "
                                 "--frame-timeout-ms 500; closing it",
                             120)) {
        jqt_daemon_print_log(&d);
        fail_msg("no log line for the connection that did not read");
    }
    await_connections(obs, 1);
    others_are_served(&d);
    bool timeout_error = false;
    int frames = read_until_closed(fd, "--frame-timeout-ms", &timeout_error);
    assert_true(frames < N_TOKENIZE);
    assert_false(timeout_error); /* it was queued behind what it never read */
    close(fd);
    judgeq_close(obs);
    assert_int_equal(jqt_daemon_stop(&d), 0);
}

int main(void)
{
    alarm(1800);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stalled_reader_does_not_block),
        cmocka_unit_test(test_stalled_reader_dropped),
        cmocka_unit_test(test_half_frame_timed_out),
        cmocka_unit_test(test_unread_last_reply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
