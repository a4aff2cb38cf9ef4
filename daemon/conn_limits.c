/* conn_limits.c — how long one connection may hold the daemon's resources
 * without making progress.
 *
 * A request frame must arrive whole within --frame-timeout-ms of its first
 * byte. A client that sends half a frame and waits (a bug, a hung
 * process, or slowloris on purpose) would otherwise keep its input buffer,
 * its connection slot and its sessions for ever; it is answered with an
 * error naming the limit and closed. The clock runs from the frame's first
 * byte, not from the last byte received, so trickling one byte at a time
 * does not reset it. A connection that is idle between frames is fine:
 * sessions may live long.
 *
 * A connection being closed after an error (or at shutdown) keeps its
 * socket until its last reply is out; one that does not read that reply
 * within the same time is closed without it.
 *
 * (The other per-connection limit, --max-output-bytes of queued replies,
 * is checked where replies are queued, in server.c.)
 *
 * One timer scans every connection a few times per timeout instead of one
 * timer per connection: the scan is a pointer walk, and idle connections
 * cost nothing between frames.
 */
#include <inttypes.h>

#include "daemon.h"
#include "log.h"

/* The scan period: a quarter of the timeout, within these bounds, so a
 * stalled frame is caught within 1.25 timeouts (plus loop latency). */
#define SCAN_MIN_MS 10
#define SCAN_MAX_MS 1000

static void on_scan(uv_timer_t *t)
{
    jq_daemon *d = t->data;
    uint64_t now = uv_now(d->loop), limit = d->cfg.frame_timeout_ms;
    for (jq_conn *c = d->conns, *nx; c; c = nx) {
        nx = c->next; /* closing unlinks c */
        if (c->closing || (c->in_len == 0 && !c->close_after_flush))
            continue;
        if (now - c->frame_started_ms < limit)
            continue;
        if (c->close_after_flush) {
            jq_log(JQ_LOG_WARNING,
                   "connection %" PRIu64 " (pid %d) did not read its last "
                   "reply within --frame-timeout-ms %" PRIu64
                   "; closing it",
                   c->id, (int)c->pid, limit);
            jq_conn_close(c, "last reply not read");
            continue;
        }
        jq_conn_abort(c, JQ_LOG_WARNING,
                      "no complete request frame within --frame-timeout-ms "
                      "%" PRIu64 " (%zu bytes of it arrived)",
                      limit, c->in_len);
    }
}

void jq_conn_limits_init(jq_daemon *d)
{
    uv_timer_init(d->loop, &d->stall_scan);
    d->stall_scan.data = d;
}

void jq_conn_limits_start(jq_daemon *d)
{
    uint64_t limit = d->cfg.frame_timeout_ms;
    if (limit == 0)
        return;
    uint64_t period = limit / 4;
    if (period < SCAN_MIN_MS)
        period = SCAN_MIN_MS;
    if (period > SCAN_MAX_MS)
        period = SCAN_MAX_MS;
    uv_timer_start(&d->stall_scan, on_scan, period, period);
}

void jq_conn_limits_close(jq_daemon *d)
{
    if (!uv_is_closing((uv_handle_t *)&d->stall_scan))
        uv_close((uv_handle_t *)&d->stall_scan, NULL);
}

void jq_conn_frame_progress(jq_conn *c, size_t before, bool consumed)
{
    if (c->in_len > 0 && (before == 0 || consumed))
        c->frame_started_ms = uv_now(c->d->loop);
}
