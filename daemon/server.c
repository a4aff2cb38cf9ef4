/* server.c — judgeqd's loop thread: listeners, connections, framing, the
 * session table, memory admission, completions from the workers, systemd
 * notifications, signals and shutdown.
 *
 * This thread never computes. Anything proportional to a prompt or a
 * vocabulary (tokenizing, prefill, decoding, copying KV for an export) is a
 * job for a worker pool; what happens here is bounded bookkeeping, so a
 * Ping is answered within microseconds however busy the workers are.
 *
 * Client sockets are driven with uv_poll_t and the daemon's own
 * recvmsg/sendmsg, because replies may carry a file descriptor (ExportKV's
 * memfd), which libuv's stream writes cannot send. Replies are queued on
 * the connection and written from a uv_prepare_t callback just before the
 * loop blocks (Redis's beforeSleep): one sendmsg carries every reply made
 * during the iteration, and the writable event is armed only after a short
 * write.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "daemon.h"
#include "kv_export.h"
#include "log.h"
#include "proc_self.h"

#define READ_CHUNK (64u << 10)
#define READS_PER_EVENT 16
#define CHUNK_MIN (16u << 10)
#define MAX_IOV 64
/* How long, after the last job, the daemon keeps sending queued replies
 * to clients that read slowly before it exits (see maybe_finish_shutdown),
 * when --frame-timeout-ms does not say (0). */
#define SHUTDOWN_LINGER_MS 10000

static void conn_close(jq_conn *c, const char *why);
static void session_kick(jq_daemon *d, jq_session *s);
static void maybe_finish_shutdown(jq_daemon *d);
static void shutdown_teardown(jq_daemon *d);

/* ------------------------------------------------------------ output */

static void want_flush(jq_conn *c)
{
    if (c->want_flush || c->closing)
        return;
    c->want_flush = true;
    c->flush_next = c->d->flush_list;
    c->d->flush_list = c;
}

/* Queues one reply frame (and the fd that must travel with its first
 * byte, whose ownership passes to the connection). A client that lets
 * more than --max-output-bytes pile up is dropped, as Redis drops a client
 * past its output buffer limit: the daemon's memory is not the client's
 * to hold hostage. */
static void conn_send_fd(jq_conn *c, const Judgeq__Response *r, int fd)
{
    if (c->closing) {
        if (fd >= 0)
            close(fd);
        return;
    }
    size_t n = jq_response_frame_size(r);
    jq_out_chunk *t = c->out_tail;
    if (fd < 0 && t && t->cap - t->len >= n) {
        t->len += jq_response_frame_write(r, t->data + t->len);
    } else {
        size_t cap = n > CHUNK_MIN ? n : CHUNK_MIN;
        jq_out_chunk *ch = malloc(sizeof *ch + cap);
        if (!ch) {
            if (fd >= 0)
                close(fd);
            conn_close(c, "out of memory for a reply");
            return;
        }
        ch->next = NULL;
        ch->off = 0;
        ch->cap = cap;
        ch->fd = fd;
        ch->len = jq_response_frame_write(r, ch->data);
        if (c->out_tail)
            c->out_tail->next = ch;
        else
            c->out = ch;
        c->out_tail = ch;
    }
    c->out_bytes += n;
    if (c->out_bytes > c->d->cfg.max_output_bytes) {
        jq_log(JQ_LOG_WARNING,
               "connection %" PRIu64 " (pid %d): %zu reply bytes unread, "
               "more than --max-output-bytes %" PRIu64 "; dropping it",
               c->id, (int)c->pid, c->out_bytes, c->d->cfg.max_output_bytes);
        conn_close(c, "output buffer limit");
        return;
    }
    want_flush(c);
}

static void conn_send(jq_conn *c, const Judgeq__Response *r)
{
    conn_send_fd(c, r, -1);
}

static void send_error(jq_conn *c, uint64_t id, Judgeq__ErrorCode code,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void send_error(jq_conn *c, uint64_t id, Judgeq__ErrorCode code,
                       const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    Judgeq__Response r = JUDGEQ__RESPONSE__INIT;
    r.has_id = 1;
    r.id = id;
    r.has_code = 1;
    r.code = code;
    r.message = msg;
    r.has_done = 1;
    r.done = 1;
    c->d->errors++;
    jq_log(JQ_LOG_DEBUG, "connection %" PRIu64 " request %" PRIu64 ": %s",
           c->id, id, msg);
    conn_send(c, &r);
}

static void update_poll(jq_conn *c);

static void conn_free_cb(uv_handle_t *h)
{
    jq_conn *c = h->data;
    close(c->fd);
    for (jq_out_chunk *ch = c->out, *nx; ch; ch = nx) {
        nx = ch->next;
        if (ch->fd >= 0)
            close(ch->fd);
        free(ch);
    }
    free(c->in);
    free(c);
}

/* Writes as much queued output as the socket takes. A chunk's fd rides in
 * the sendmsg that carries the chunk's first byte (SCM_RIGHTS, as CRIU
 * does), and never shares a sendmsg with another fd-bearing chunk. */
static void conn_flush(jq_conn *c)
{
    while (c->out && !c->closing) {
        struct iovec iov[MAX_IOV];
        int n_iov = 0;
        jq_out_chunk *first = c->out;
        for (jq_out_chunk *ch = first; ch && n_iov < MAX_IOV; ch = ch->next) {
            if (ch != first && ch->fd >= 0)
                break;
            iov[n_iov].iov_base = ch->data + ch->off;
            iov[n_iov].iov_len = ch->len - ch->off;
            n_iov++;
        }
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = iov;
        msg.msg_iovlen = (size_t)n_iov;
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } ctl;
        bool with_fd = first->fd >= 0 && first->off == 0;
        if (with_fd) {
            memset(&ctl, 0, sizeof ctl);
            msg.msg_control = ctl.buf;
            msg.msg_controllen = sizeof ctl.buf;
            struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(cm), &first->fd, sizeof(int));
        }
        ssize_t w = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            conn_close(c, strerror(errno));
            return;
        }
        if (with_fd) {
            close(first->fd);
            first->fd = -1;
        }
        size_t left = (size_t)w;
        c->out_bytes -= left;
        while (left && c->out) {
            jq_out_chunk *ch = c->out;
            size_t avail = ch->len - ch->off;
            size_t take = left < avail ? left : avail;
            ch->off += take;
            left -= take;
            if (ch->off == ch->len) {
                c->out = ch->next;
                if (!c->out)
                    c->out_tail = NULL;
                if (ch->fd >= 0)
                    close(ch->fd);
                free(ch);
            }
        }
    }
    if (!c->out && c->close_after_flush && !c->closing) {
        conn_close(c, "last reply sent");
        return;
    }
    update_poll(c);
}

/* uv_prepare_t: runs once per loop iteration, right before it blocks. */
static void on_prepare(uv_prepare_t *h)
{
    jq_daemon *d = h->data;
    while (d->flush_list) {
        jq_conn *c = d->flush_list;
        d->flush_list = c->flush_next;
        c->want_flush = false;
        c->flush_next = NULL;
        if (!c->closing)
            conn_flush(c);
    }
}

/* ------------------------------------------------------------ sessions */

static jq_session *session_find(jq_daemon *d, uint64_t id)
{
    for (jq_session *s = d->sessions; s; s = s->next)
        if (s->id == id && !s->closing)
            return s;
    return NULL;
}

static jq_conn *conn_find(jq_daemon *d, uint64_t id)
{
    for (jq_conn *c = d->conns; c; c = c->next)
        if (c->id == id && !c->closing)
            return c;
    return NULL;
}

static void prefix_put(jq_daemon *d, jq_prefix *p)
{
    if (!p || --p->refs > 0)
        return;
    jq_kv_store_free(p->store);
    jq_kv_mem_release(&p->mem);
    d->memory_used -= p->bytes;
    d->shared_prefix_bytes -= p->bytes;
    free(p);
}

/* Frees a session's KV (its own store, then its share of a prefix: the
 * tail points into the prefix, so the order matters). Only while nothing
 * runs on the session. */
static void session_drop_store(jq_daemon *d, jq_session *s)
{
    if (s->store)
        jq_kv_store_free(s->store);
    s->store = NULL;
    jq_kv_mem_release(&s->mem);
    d->memory_used -= s->bytes;
    s->bytes = 0;
    prefix_put(d, s->prefix);
    s->prefix = NULL;
    s->has_logits = false;
    s->pending = -1;
}

static void session_free(jq_daemon *d, jq_session *s)
{
    session_drop_store(d, s);
    if (s->prev)
        s->prev->next = s->next;
    else
        d->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    d->pools[s->node].sessions--;
    d->n_sessions--;
    jq_log(JQ_LOG_DEBUG, "session %" PRIu64 " freed", s->id);
    free(s->logits);
    free(s);
}

static void job_abandon(jq_daemon *d, jq_job *job, const char *why)
{
    jq_conn *c = conn_find(d, job->conn_id);
    if (c) {
        send_error(c, job->req_id, JUDGEQ__ERROR_CODE__UNAVAILABLE, "%s",
                   why);
        c->inflight--;
    }
    d->memory_used -= job->admitted;
    jq_job_free(job);
}

/* Ends a session: queued requests are answered UNAVAILABLE, a running one
 * is cancelled (a generation stops at its next token; a prefill cannot be
 * interrupted and finishes first), and the memory goes as soon as no
 * worker holds the session. */
static void session_close(jq_daemon *d, jq_session *s, const char *why)
{
    if (s->closing)
        return;
    s->closing = true;
    jq_log(JQ_LOG_DEBUG, "closing session %" PRIu64 ": %s", s->id, why);
    char msg[128];
    snprintf(msg, sizeof msg, "session %" PRIu64 " was closed (%s)", s->id,
             why);
    while (s->queue) {
        jq_job *j = s->queue;
        s->queue = j->next;
        job_abandon(d, j, msg);
    }
    s->queue_tail = NULL;
    if (s->running)
        atomic_store(&s->running->cancel, true);
    else
        session_free(d, s);
}

static jq_session *session_new(jq_daemon *d, uid_t owner, uint64_t conn_id,
                               unsigned node, int32_t max_context,
                               uint32_t kv_type)
{
    jq_session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->logits = malloc(sizeof(float) * (size_t)d->model->hp.n_vocab);
    if (!s->logits) {
        free(s);
        return NULL;
    }
    s->id = ++d->next_session_id;
    s->owner = owner;
    s->conn_id = conn_id;
    s->node = node;
    s->max_context = max_context;
    s->kv_type = kv_type;
    s->pending = -1;
    s->mem.fd = -1;
    s->last_used = jq_now_s();
    s->next = d->sessions;
    if (d->sessions)
        d->sessions->prev = s;
    d->sessions = s;
    d->n_sessions++;
    d->pools[node].sessions++;
    return s;
}

/* Starts the session's next queued request when nothing runs on it. Fork
 * needs no compute (a new tail store and a seal), so it completes here. */
static void do_fork(jq_daemon *d, jq_session *s, jq_job *job);
static bool admit_export(jq_daemon *d, jq_session *s, jq_job *j);

static void session_kick(jq_daemon *d, jq_session *s)
{
    while (!s->running && s->queue && !s->closing) {
        jq_job *j = s->queue;
        s->queue = j->next;
        if (!s->queue)
            s->queue_tail = NULL;
        j->next = NULL;
        if (j->kind == JQ_JOB_FORK) {
            do_fork(d, s, j);
            continue;
        }
        if (j->kind == JQ_JOB_EXPORT && !admit_export(d, s, j))
            continue;
        s->running = j;
        d->jobs_inflight++;
        jq_pool_submit(&d->pools[s->node], j);
    }
}

static void session_enqueue(jq_daemon *d, jq_session *s, jq_job *j)
{
    j->next = NULL;
    if (s->queue_tail)
        s->queue_tail->next = j;
    else
        s->queue = j;
    s->queue_tail = j;
    s->last_used = jq_now_s();
    session_kick(d, s);
}

static uint64_t store_bytes_estimate(const jq_daemon *d, uint32_t type,
                                     int64_t entries)
{
    const jq_hparams *hp = &d->model->hp;
    uint64_t heads = (uint64_t)hp->n_layer * (uint64_t)hp->n_head_kv;
    return jq_kv_bytes_for(hp->n_layer, hp->n_head_kv, hp->head_dim, type,
                           entries) +
           heads * (uint64_t)entries * sizeof(int32_t) + 3 * 64;
}

static bool admit(jq_daemon *d, jq_conn *c, uint64_t id, uint64_t bytes,
                  const char *what)
{
    uint64_t budget = d->cfg.memory_budget;
    if (budget && (bytes > budget || d->memory_used > budget - bytes)) {
        send_error(c, id, JUDGEQ__ERROR_CODE__RESOURCE_EXHAUSTED,
                   "%s needs %" PRIu64 " bytes of KV memory; %" PRIu64
                   " of --memory-budget %" PRIu64 " are in use",
                   what, bytes, d->memory_used, budget);
        return false;
    }
    d->memory_used += bytes;
    return true;
}

/* An export copies the session's KV into a new memfd, held by the daemon
 * until the reply carrying it is queued: counted against the budget for
 * that time. Sized here, when the job reaches the head of the session's
 * queue, because a prefill queued before it may change the store. */
static bool admit_export(jq_daemon *d, jq_session *s, jq_job *j)
{
    jq_conn *c = conn_find(d, j->conn_id);
    uint64_t bytes = s->store ? jq_kv_export_bytes(s->store) : 0;
    if (c && admit(d, c, j->req_id, bytes, "export_kv")) {
        j->admitted = bytes;
        return true;
    }
    if (c)
        c->inflight--;
    jq_job_free(j);
    return false;
}

static void do_fork(jq_daemon *d, jq_session *s, jq_job *job)
{
    jq_conn *c = conn_find(d, job->conn_id);
    char err[256];
    if (!c)
        goto out;
    if (!s->store || !s->has_logits) {
        send_error(c, job->req_id, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                   "session %" PRIu64 " has no prompt to share: Prefill it "
                   "before fork",
                   s->id);
        goto out;
    }
    if (s->prefix) {
        size_t heads = (size_t)s->store->n_layer * (size_t)s->store->n_head_kv;
        for (size_t h = 0; h < heads; h++)
            if (s->store->len[h] > 0) {
                send_error(c, job->req_id,
                           JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                           "session %" PRIu64 " has decoded past the prefix "
                           "it shares; fork.session_id must be a session "
                           "that has not generated since its own fork",
                           s->id);
                goto out;
            }
    }
    if (d->n_sessions >= d->cfg.max_sessions) {
        send_error(c, job->req_id, JUDGEQ__ERROR_CODE__RESOURCE_EXHAUSTED,
                   "--max-sessions %" PRIu64 " sessions exist",
                   d->cfg.max_sessions);
        goto out;
    }
    int32_t cap = jq_kv_store_room(s->store);
    uint64_t tail = store_bytes_estimate(d, s->kv_type, cap);
    if (!admit(d, c, job->req_id, s->prefix ? tail : 2 * tail, "fork"))
        goto out;
    d->memory_used -= s->prefix ? tail : 2 * tail; /* re-added as made */

    if (!s->prefix) {
        /* the parent's store becomes the shared, sealed prefix and the
         * parent continues in a tail of its own */
        jq_prefix *p = calloc(1, sizeof *p);
        jq_kv_store *ptail = p ? jq_kv_store_new_tail(s->store, cap) : NULL;
        if (!ptail) {
            free(p);
            send_error(c, job->req_id, JUDGEQ__ERROR_CODE__RESOURCE_EXHAUSTED,
                       "out of memory for a fork");
            goto out;
        }
        if (jq_kv_mem_seal(&s->mem, err, sizeof err) != 0)
            jq_log(JQ_LOG_WARNING, "session %" PRIu64 ": %s", s->id, err);
        p->refs = 1;
        p->store = s->store;
        p->mem = s->mem;
        p->bytes = s->bytes;
        d->shared_prefix_bytes += p->bytes;
        s->prefix = p;
        s->store = ptail;
        s->mem = (jq_kv_mem){.fd = -1};
        s->bytes = jq_kv_store_bytes_allocated(ptail);
        d->memory_used += s->bytes;
    }
    jq_session *f = session_new(d, job->uid, job->conn_id, s->node,
                                s->max_context, s->kv_type);
    jq_kv_store *ftail = f ? jq_kv_store_new_tail(s->prefix->store, cap)
                           : NULL;
    if (!ftail) {
        if (f)
            session_free(d, f);
        send_error(c, job->req_id, JUDGEQ__ERROR_CODE__RESOURCE_EXHAUSTED,
                   "out of memory for a fork");
        goto out;
    }
    f->store = ftail;
    /* a fork outlives its connection when its parent does: the client
     * that keeps a session means to keep the branches it makes of it */
    f->keep_on_disconnect = s->keep_on_disconnect;
    f->prefix = s->prefix;
    f->prefix->refs++;
    f->bytes = jq_kv_store_bytes_allocated(ftail);
    d->memory_used += f->bytes;
    memcpy(f->logits, s->logits, sizeof(float) * (size_t)d->model->hp.n_vocab);
    f->has_logits = true;
    f->pending = s->pending;

    Judgeq__ForkReply fr = JUDGEQ__FORK_REPLY__INIT;
    fr.has_session_id = 1;
    fr.session_id = f->id;
    Judgeq__Response r = JUDGEQ__RESPONSE__INIT;
    r.has_id = 1;
    r.id = job->req_id;
    r.body_case = JUDGEQ__RESPONSE__BODY_FORK;
    r.fork = &fr;
    conn_send(c, &r);
out:
    if (c)
        c->inflight--;
    jq_job_free(job);
}

/* ------------------------------------------------------------ requests */

static jq_job *job_new(jq_conn *c, uint64_t req_id, jq_job_kind kind,
                       jq_session *s)
{
    jq_job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->kind = kind;
    j->session = s;
    j->conn_id = c->id;
    j->req_id = req_id;
    j->uid = c->uid;
    j->t_submit = jq_now_s();
    j->export_fd = -1;
    j->soft_fd = -1;
    j->mem.fd = -1;
    j->reserve = -1;
    return j;
}

/* The session named by a request, when it exists and the requester may
 * use it (its owner, or root); otherwise answers the error and NULL. */
static jq_session *session_for(jq_conn *c, uint64_t req_id, uint64_t sid,
                               const char *field)
{
    jq_session *s = session_find(c->d, sid);
    if (!s) {
        send_error(c, req_id, JUDGEQ__ERROR_CODE__NOT_FOUND,
                   "%s %" PRIu64 " does not exist (never created, closed, "
                   "or timed out)",
                   field, sid);
        return NULL;
    }
    if (s->owner != c->uid && c->uid != 0) {
        send_error(c, req_id, JUDGEQ__ERROR_CODE__PERMISSION_DENIED,
                   "%s %" PRIu64 " belongs to another user (uid %u; you are "
                   "uid %u)",
                   field, sid, (unsigned)s->owner, (unsigned)c->uid);
        return NULL;
    }
    return s;
}

static void reply_hello(jq_conn *c, uint64_t id)
{
    jq_daemon *d = c->d;
    const jq_hparams *hp = &d->model->hp;
    Judgeq__ModelInfo mi = JUDGEQ__MODEL_INFO__INIT;
    mi.path = d->model->path ? d->model->path : (char *)d->cfg.model;
    mi.architecture = (char *)hp->arch;
    mi.has_n_vocab = mi.has_n_ctx_train = mi.has_n_embd = mi.has_n_layer =
        mi.has_n_head = mi.has_n_head_kv = mi.has_head_dim = mi.has_n_ff =
            mi.has_weight_bytes = mi.has_n_soft_tokens = mi.has_bos =
                mi.has_eos = 1;
    mi.n_vocab = (uint32_t)hp->n_vocab;
    mi.n_ctx_train = (uint32_t)hp->n_ctx_train;
    mi.n_embd = (uint32_t)hp->n_embd;
    mi.n_layer = (uint32_t)hp->n_layer;
    mi.n_head = (uint32_t)hp->n_head;
    mi.n_head_kv = (uint32_t)hp->n_head_kv;
    mi.head_dim = (uint32_t)hp->head_dim;
    mi.n_ff = (uint32_t)hp->n_ff;
    mi.weight_bytes = jq_model_weight_bytes(d->model);
    mi.n_soft_tokens = d->soft ? (uint32_t)d->soft->soft->n : 0;
    mi.bos = jq_vocab_bos(d->model->vocab);
    mi.eos = jq_vocab_eos(d->model->vocab);
    char *caps[16];
    size_t n = 0;
    caps[n++] = "evict:full";
    caps[n++] = "evict:streaming";
    caps[n++] = "evict:h2o";
    caps[n++] = "evict:snapkv";
    caps[n++] = "evict:pyramidkv";
    caps[n++] = "evict:adakv";
    if (d->soft)
        caps[n++] = "evict:judgeq";
    caps[n++] = "fork";
    caps[n++] = "export_kv";
    caps[n++] = "kv:f16";
    caps[n++] = "tokenize";
    Judgeq__HelloReply hr = JUDGEQ__HELLO_REPLY__INIT;
    hr.has_protocol_version = 1;
    hr.protocol_version = JQ_PROTOCOL_VERSION;
    hr.server_version = (char *)jq_daemon_version();
    hr.model = &mi;
    hr.n_capabilities = n;
    hr.capabilities = caps;
    Judgeq__Response r = JUDGEQ__RESPONSE__INIT;
    r.has_id = 1;
    r.id = id;
    r.body_case = JUDGEQ__RESPONSE__BODY_HELLO;
    r.hello = &hr;
    conn_send(c, &r);
}

static void reply_stats(jq_conn *c, uint64_t id)
{
    jq_daemon *d = c->d;
    Judgeq__PoolStats *ps = calloc(d->n_pools, sizeof *ps);
    Judgeq__PoolStats **pp = calloc(d->n_pools, sizeof *pp);
    if (!ps || !pp) {
        free(ps);
        free(pp);
        send_error(c, id, JUDGEQ__ERROR_CODE__INTERNAL, "out of memory");
        return;
    }
    for (unsigned i = 0; i < d->n_pools; i++) {
        judgeq__pool_stats__init(&ps[i]);
        ps[i].has_node = ps[i].has_threads = ps[i].has_sessions =
            ps[i].has_busy_ms = 1;
        ps[i].node = i;
        ps[i].cpuset = d->plan->pools[i].cpuset;
        ps[i].threads = d->pools[i].n_threads;
        ps[i].sessions = d->pools[i].sessions;
        ps[i].busy_ms = atomic_load(&d->pools[i].busy_ns) / 1000000u;
        pp[i] = &ps[i];
    }
    Judgeq__StatsReply sr = JUDGEQ__STATS_REPLY__INIT;
    sr.has_sessions = sr.has_connections = sr.has_memory_used =
        sr.has_memory_budget = sr.has_requests = sr.has_errors =
            sr.has_uptime_s = sr.has_shared_prefix_bytes = 1;
    sr.sessions = d->n_sessions;
    sr.connections = d->n_conns;
    sr.memory_used = d->memory_used;
    sr.memory_budget = d->cfg.memory_budget;
    sr.n_pools = d->n_pools;
    sr.pools = pp;
    sr.requests = d->requests;
    sr.errors = d->errors;
    sr.uptime_s = jq_now_s() - d->t_start;
    sr.shared_prefix_bytes = d->shared_prefix_bytes;
    sr.has_rss_bytes = jq_proc_rss_bytes(&sr.rss_bytes);
    sr.has_open_fds = jq_proc_open_fds(&sr.open_fds);
    Judgeq__Response r = JUDGEQ__RESPONSE__INIT;
    r.has_id = 1;
    r.id = id;
    r.body_case = JUDGEQ__RESPONSE__BODY_STATS;
    r.stats = &sr;
    conn_send(c, &r);
    free(ps);
    free(pp);
}

static void handle_create(jq_conn *c, uint64_t id,
                          const Judgeq__CreateSession *cs)
{
    jq_daemon *d = c->d;
    if (d->n_sessions >= d->cfg.max_sessions) {
        send_error(c, id, JUDGEQ__ERROR_CODE__RESOURCE_EXHAUSTED,
                   "--max-sessions %" PRIu64 " sessions exist; close one "
                   "first",
                   d->cfg.max_sessions);
        return;
    }
    unsigned *load = malloc(d->n_pools * sizeof *load);
    if (!load) {
        send_error(c, id, JUDGEQ__ERROR_CODE__INTERNAL, "out of memory");
        return;
    }
    for (unsigned i = 0; i < d->n_pools; i++)
        load[i] = d->pools[i].sessions;
    unsigned node = jq_plan_least_loaded(load, d->n_pools);
    free(load);
    int32_t max_ctx = cs->has_max_context && cs->max_context
                          ? (int32_t)cs->max_context
                          : d->max_context;
    uint32_t kv_type = cs->has_kv_type && cs->kv_type == JUDGEQ__KV_TYPE__KV_F16
                           ? JQ_TYPE_F16
                           : JQ_TYPE_F32;
    jq_session *s = session_new(d, c->uid, c->id, node, max_ctx, kv_type);
    if (!s) {
        send_error(c, id, JUDGEQ__ERROR_CODE__RESOURCE_EXHAUSTED,
                   "out of memory for a session");
        return;
    }
    s->keep_on_disconnect = cs->has_keep_on_disconnect &&
                            cs->keep_on_disconnect;
    Judgeq__CreateSessionReply cr = JUDGEQ__CREATE_SESSION_REPLY__INIT;
    cr.has_session_id = cr.has_numa_node = 1;
    cr.session_id = s->id;
    cr.numa_node = node;
    Judgeq__Response r = JUDGEQ__RESPONSE__INIT;
    r.has_id = 1;
    r.id = id;
    r.body_case = JUDGEQ__RESPONSE__BODY_CREATE_SESSION;
    r.create_session = &cr;
    conn_send(c, &r);
}

static void handle_prefill(jq_conn *c, uint64_t id, const Judgeq__Prefill *p)
{
    jq_daemon *d = c->d;
    jq_session *s = session_for(c, id, p->session_id, "prefill.session_id");
    if (!s)
        return;
    jq_wire_error we;
    jq_evict_spec spec;
    if (jq_request_evict_spec(p->eviction, &spec, &we) != 0) {
        send_error(c, id, we.code, "%s", we.message);
        return;
    }
    int64_t L = p->text ? (int64_t)strlen(p->text) + 2 : (int64_t)p->n_tokens;
    if (L > s->max_context)
        L = s->max_context;
    if (p->n_tokens > (size_t)s->max_context) {
        send_error(c, id, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                   "prefill.tokens has %zu tokens, more than session %" PRIu64
                   "'s max_context %d",
                   p->n_tokens, s->id, s->max_context);
        return;
    }
    if (p->has_reserve && (int64_t)p->reserve > s->max_context) {
        send_error(c, id, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                   "prefill.reserve %u exceeds session %" PRIu64
                   "'s max_context %d",
                   p->reserve, s->id, s->max_context);
        return;
    }
    int64_t n_soft = spec.policy == JQ_EVICT_JUDGEQ && d->soft
                         ? d->soft->soft->n
                         : 0;
    /* a client's own soft tokens: only from where --allow-path permits
     * (paths.h); the worker reads them. The budget counts as many rows as
     * the file could hold. */
    int soft_fd = -1;
    const char *soft_path = p->eviction ? p->eviction->soft_path : NULL;
    if (soft_path) {
        uint64_t size;
        soft_fd = jq_allow_open(&d->allow, "prefill.eviction.soft_path",
                                soft_path, &size, &we);
        if (soft_fd < 0) {
            jq_log(JQ_LOG_NOTICE, "connection %" PRIu64 " (uid %u): %s",
                   c->id, (unsigned)c->uid, we.message);
            send_error(c, id, we.code, "%s", we.message);
            return;
        }
        uint64_t row = sizeof(float) * (uint64_t)d->model->hp.n_embd;
        n_soft = (int64_t)(size / row < JQ_SOFT_MAX_TOKENS
                               ? size / row
                               : JQ_SOFT_MAX_TOKENS);
    }
    int64_t keep = spec.policy == JQ_EVICT_FULL || L <= spec.budget
                       ? L
                       : spec.budget;
    int64_t reserve = p->has_reserve ? (int64_t)p->reserve
                                     : (int64_t)s->max_context - L;
    if (reserve < 0)
        reserve = 0;
    uint64_t est = store_bytes_estimate(d, s->kv_type, L + n_soft) +
                   store_bytes_estimate(d, s->kv_type, keep + reserve);
    jq_job *j = job_new(c, id, JQ_JOB_PREFILL, s);
    if (!j) {
        if (soft_fd >= 0)
            close(soft_fd);
        send_error(c, id, JUDGEQ__ERROR_CODE__INTERNAL, "out of memory");
        return;
    }
    j->soft_fd = soft_fd;
    if (p->text) {
        j->text = strdup(p->text);
        j->add_bos = p->add_bos;
    } else {
        j->tokens = malloc(p->n_tokens * sizeof(int32_t));
        if (j->tokens)
            memcpy(j->tokens, p->tokens, p->n_tokens * sizeof(int32_t));
        j->n_tokens = (int32_t)p->n_tokens;
    }
    if ((p->text && !j->text) || (!p->text && !j->tokens)) {
        jq_job_free(j);
        send_error(c, id, JUDGEQ__ERROR_CODE__INTERNAL, "out of memory");
        return;
    }
    j->spec = spec;
    j->reserve = p->has_reserve ? (int32_t)p->reserve : -1;
    if (d->soft && soft_fd < 0) {
        atomic_fetch_add(&d->soft->refs, 1);
        j->soft = d->soft;
    }
    if (!admit(d, c, id, est, "prefill")) {
        jq_job_free(j);
        return;
    }
    j->admitted = est;
    c->inflight++;
    session_enqueue(d, s, j);
}

static void handle_generate(jq_conn *c, uint64_t id,
                            const Judgeq__Generate *g)
{
    jq_session *s = session_for(c, id, g->session_id, "generate.session_id");
    if (!s)
        return;
    jq_job *j = job_new(c, id, JQ_JOB_GENERATE, s);
    if (!j) {
        send_error(c, id, JUDGEQ__ERROR_CODE__INTERNAL, "out of memory");
        return;
    }
    j->max_tokens = g->has_max_tokens ? (int32_t)g->max_tokens
                                      : JQ_GENERATE_DEFAULT_TOKENS;
    j->sampling = jq_request_sampling(g->sampling);
    j->ignore_eos = g->has_ignore_eos && g->ignore_eos;
    if (g->n_stop_tokens) {
        j->stop_tokens = malloc(g->n_stop_tokens * sizeof(int32_t));
        if (!j->stop_tokens) {
            jq_job_free(j);
            send_error(c, id, JUDGEQ__ERROR_CODE__INTERNAL, "out of memory");
            return;
        }
        memcpy(j->stop_tokens, g->stop_tokens,
               g->n_stop_tokens * sizeof(int32_t));
        j->n_stop = (int32_t)g->n_stop_tokens;
    }
    c->inflight++;
    session_enqueue(c->d, s, j);
}

static void handle_session_job(jq_conn *c, uint64_t id, uint64_t sid,
                               jq_job_kind kind, const char *field)
{
    jq_session *s = session_for(c, id, sid, field);
    if (!s)
        return;
    jq_job *j = job_new(c, id, kind, s);
    if (!j) {
        send_error(c, id, JUDGEQ__ERROR_CODE__INTERNAL, "out of memory");
        return;
    }
    c->inflight++;
    session_enqueue(c->d, s, j);
}

static void handle_close(jq_conn *c, uint64_t id, uint64_t sid)
{
    jq_session *s = session_for(c, id, sid, "close_session.session_id");
    if (!s)
        return;
    session_close(c->d, s, "CloseSession");
    Judgeq__Empty e = JUDGEQ__EMPTY__INIT;
    Judgeq__Response r = JUDGEQ__RESPONSE__INIT;
    r.has_id = 1;
    r.id = id;
    r.body_case = JUDGEQ__RESPONSE__BODY_CLOSED;
    r.closed = &e;
    conn_send(c, &r);
}

/* Tokenize/Detokenize touch no session: they go to the pool with the
 * fewest sessions. */
static void handle_text_job(jq_conn *c, uint64_t id, const Judgeq__Request *q)
{
    jq_daemon *d = c->d;
    bool tok = q->body_case == JUDGEQ__REQUEST__BODY_TOKENIZE;
    jq_job *j = job_new(c, id, tok ? JQ_JOB_TOKENIZE : JQ_JOB_DETOKENIZE,
                        NULL);
    if (!j) {
        send_error(c, id, JUDGEQ__ERROR_CODE__INTERNAL, "out of memory");
        return;
    }
    bool ok;
    if (tok) {
        j->text = strdup(q->tokenize->text);
        j->add_bos = q->tokenize->add_bos;
        ok = j->text != NULL;
    } else {
        size_t n = q->detokenize->n_tokens;
        j->tokens = malloc((n ? n : 1) * sizeof(int32_t));
        ok = j->tokens != NULL;
        if (ok && n)
            memcpy(j->tokens, q->detokenize->tokens, n * sizeof(int32_t));
        j->n_tokens = (int32_t)n;
    }
    if (!ok) {
        jq_job_free(j);
        send_error(c, id, JUDGEQ__ERROR_CODE__INTERNAL, "out of memory");
        return;
    }
    unsigned best = 0;
    for (unsigned i = 1; i < d->n_pools; i++)
        if (d->pools[i].sessions < d->pools[best].sessions)
            best = i;
    c->inflight++;
    d->jobs_inflight++;
    jq_pool_submit(&d->pools[best], j);
}

static void handle_request(jq_conn *c, const Judgeq__Request *q)
{
    jq_daemon *d = c->d;
    uint64_t id = q->id;
    d->requests++;
    switch (q->body_case) {
    case JUDGEQ__REQUEST__BODY_PING: {
        Judgeq__Pong pong = JUDGEQ__PONG__INIT;
        pong.has_nonce = q->ping->has_nonce;
        pong.nonce = q->ping->nonce;
        Judgeq__Response r = JUDGEQ__RESPONSE__INIT;
        r.has_id = 1;
        r.id = id;
        r.body_case = JUDGEQ__RESPONSE__BODY_PONG;
        r.pong = &pong;
        conn_send(c, &r);
        return;
    }
    case JUDGEQ__REQUEST__BODY_HELLO: reply_hello(c, id); return;
    case JUDGEQ__REQUEST__BODY_STATS: reply_stats(c, id); return;
    default: break;
    }
    if (d->draining) {
        send_error(c, id, JUDGEQ__ERROR_CODE__UNAVAILABLE,
                   "judgeqd is shutting down; %s refused",
                   jq_request_kind_name(q->body_case));
        return;
    }
    if (c->inflight >= d->cfg.max_inflight) {
        send_error(c, id, JUDGEQ__ERROR_CODE__RESOURCE_EXHAUSTED,
                   "%u requests of this connection are unanswered "
                   "(--max-inflight %" PRIu64 ")",
                   c->inflight, d->cfg.max_inflight);
        return;
    }
    switch (q->body_case) {
    case JUDGEQ__REQUEST__BODY_CREATE_SESSION:
        handle_create(c, id, q->create_session);
        break;
    case JUDGEQ__REQUEST__BODY_PREFILL: handle_prefill(c, id, q->prefill); break;
    case JUDGEQ__REQUEST__BODY_GENERATE:
        handle_generate(c, id, q->generate);
        break;
    case JUDGEQ__REQUEST__BODY_FORK:
        handle_session_job(c, id, q->fork->session_id, JQ_JOB_FORK,
                           "fork.session_id");
        break;
    case JUDGEQ__REQUEST__BODY_EXPORT_KV:
        handle_session_job(c, id, q->export_kv->session_id, JQ_JOB_EXPORT,
                           "export_kv.session_id");
        break;
    case JUDGEQ__REQUEST__BODY_CLOSE_SESSION:
        handle_close(c, id, q->close_session->session_id);
        break;
    case JUDGEQ__REQUEST__BODY_TOKENIZE:
    case JUDGEQ__REQUEST__BODY_DETOKENIZE: handle_text_job(c, id, q); break;
    default:
        send_error(c, id, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                   "request %" PRIu64 " has no body", id);
    }
}

/* ------------------------------------------------------------ input */

/* A framing error leaves the stream unsynchronised: answer once, stop
 * reading, and close when the answer is out (or when the client has not
 * taken it within --frame-timeout-ms: conn_limits.c). */
static void conn_abort_v(jq_conn *c, int level, const char *fmt, va_list ap)
{
    char msg[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    jq_log(level, "connection %" PRIu64 " (pid %d): %s; closing", c->id,
           (int)c->pid, msg);
    send_error(c, 0, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT, "%s", msg);
    c->close_after_flush = true;
    c->read_stopped = true;
    c->in_len = 0;
    c->frame_started_ms = uv_now(c->d->loop);
    update_poll(c);
}

static void protocol_error(jq_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void protocol_error(jq_conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    conn_abort_v(c, JQ_LOG_INFO, fmt, ap);
    va_end(ap);
}

void jq_conn_abort(jq_conn *c, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    conn_abort_v(c, level, fmt, ap);
    va_end(ap);
}

void jq_conn_close(jq_conn *c, const char *why) { conn_close(c, why); }

/* Handles every whole frame buffered; true when at least one was. */
static bool process_frames(jq_conn *c)
{
    jq_daemon *d = c->d;
    size_t off = 0;
    while (!c->closing && !c->close_after_flush) {
        uint32_t plen;
        jq_frame_status st = jq_frame_peek(c->in + off, c->in_len - off,
                                           (uint32_t)d->cfg.max_frame_bytes,
                                           &plen);
        if (st == JQ_FRAME_NEED_MORE)
            break;
        if (st == JQ_FRAME_TOO_LARGE) {
            protocol_error(c, "a frame of %u bytes exceeds --max-frame-bytes "
                              "%" PRIu64,
                           plen, d->cfg.max_frame_bytes);
            return true;
        }
        const uint8_t *payload = c->in + off + JQ_FRAME_HEADER_BYTES;
        off += JQ_FRAME_HEADER_BYTES + plen;
        Judgeq__Request *req;
        uint64_t id;
        jq_wire_error we;
        if (jq_request_decode(payload, plen, &d->limits, &req, &id, &we)) {
            d->requests++;
            send_error(c, id, we.code, "%s", we.message);
            continue;
        }
        handle_request(c, req);
        judgeq__request__free_unpacked(req, NULL);
    }
    if (c->closing || c->close_after_flush)
        return true;
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    return off > 0;
}

static void close_received_fds(struct msghdr *msg)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm;
         cm = CMSG_NXTHDR(msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
            close(fd);
        }
    }
}

static void conn_read(jq_conn *c)
{
    jq_daemon *d = c->d;
    size_t limit = (size_t)d->cfg.max_frame_bytes + JQ_FRAME_HEADER_BYTES;
    for (int round = 0; round < READS_PER_EVENT; round++) {
        if (c->closing || c->read_stopped)
            return;
        if (c->in_cap - c->in_len < READ_CHUNK && c->in_cap < limit) {
            size_t cap = c->in_cap ? 2 * c->in_cap : READ_CHUNK;
            if (cap < c->in_len + READ_CHUNK)
                cap = c->in_len + READ_CHUNK;
            if (cap > limit)
                cap = limit;
            uint8_t *in = realloc(c->in, cap);
            if (!in) {
                conn_close(c, "out of memory for input");
                return;
            }
            c->in = in;
            c->in_cap = cap;
        }
        struct iovec iov = {c->in + c->in_len, c->in_cap - c->in_len};
        union {
            char buf[CMSG_SPACE(sizeof(int) * 4)];
            struct cmsghdr align;
        } ctl;
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctl.buf;
        msg.msg_controllen = sizeof ctl.buf;
        ssize_t n = recvmsg(c->fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                conn_close(c, strerror(errno));
            return;
        }
        if (msg.msg_controllen > 0 || (msg.msg_flags & MSG_CTRUNC)) {
            close_received_fds(&msg);
            protocol_error(c, "clients may not send ancillary data (file "
                              "descriptors or credentials)%s",
                           (msg.msg_flags & MSG_CTRUNC) ? " (truncated)" : "");
            return;
        }
        if (n == 0) {
            conn_close(c, "peer closed");
            return;
        }
        size_t before = c->in_len;
        c->in_len += (size_t)n;
        jq_conn_frame_progress(c, before, process_frames(c));
    }
}

static void on_conn_event(uv_poll_t *h, int status, int events)
{
    jq_conn *c = h->data;
    if (status < 0) {
        conn_close(c, uv_strerror(status));
        return;
    }
    if (events & UV_WRITABLE)
        conn_flush(c);
    if ((events & UV_READABLE) && !c->closing)
        conn_read(c);
}

static void update_poll(jq_conn *c)
{
    if (c->closing)
        return;
    int ev = (c->read_stopped ? 0 : UV_READABLE) | (c->out ? UV_WRITABLE : 0);
    if (ev == c->events)
        return;
    c->events = ev;
    if (ev)
        uv_poll_start(&c->poll, ev, on_conn_event);
    else
        uv_poll_stop(&c->poll);
}

/* Ends a connection from any point in the loop thread: its sessions end
 * with it (unless created keep_on_disconnect), its requests still running
 * are cancelled, and the memory goes in the close callback, after libuv
 * has forgotten the handle. */
static void conn_close(jq_conn *c, const char *why)
{
    if (c->closing)
        return;
    jq_daemon *d = c->d;
    c->closing = true;
    jq_log(JQ_LOG_DEBUG, "connection %" PRIu64 " closed: %s", c->id, why);
    if (c->want_flush) {
        jq_conn **pp = &d->flush_list;
        while (*pp && *pp != c)
            pp = &(*pp)->flush_next;
        if (*pp)
            *pp = c->flush_next;
        c->want_flush = false;
    }
    for (jq_session *s = d->sessions, *nx; s; s = nx) {
        nx = s->next;
        if (s->closing)
            continue;
        if (s->running && s->running->conn_id == c->id)
            atomic_store(&s->running->cancel, true);
        for (jq_job *j = s->queue; j; j = j->next)
            if (j->conn_id == c->id)
                atomic_store(&j->cancel, true);
        if (s->conn_id == c->id) {
            if (s->keep_on_disconnect)
                s->conn_id = 0;
            else
                session_close(d, s, "its connection closed");
        }
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        d->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    d->n_conns--;
    uv_close((uv_handle_t *)&c->poll, conn_free_cb);
    if (d->finished && d->n_conns == 0)
        shutdown_teardown(d);
}

static void on_listen_event(uv_poll_t *h, int status, int events)
{
    jq_daemon *d = h->data;
    (void)events;
    if (status < 0) {
        jq_log(JQ_LOG_ERR, "listening socket: %s", uv_strerror(status));
        return;
    }
    for (int i = 0; i < 64 && d->listening; i++) {
        int fd = accept4(d->listen_fd, NULL, NULL,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                jq_log(JQ_LOG_WARNING, "accept: %s", strerror(errno));
            return;
        }
        struct ucred cred;
        socklen_t len = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
            jq_log(JQ_LOG_WARNING, "SO_PEERCRED: %s; refusing the client",
                   strerror(errno));
            close(fd);
            continue;
        }
        jq_conn *c = calloc(1, sizeof *c);
        if (!c || d->n_conns >= d->cfg.max_connections) {
            jq_log(JQ_LOG_WARNING,
                   "refusing a connection from pid %d: %s", (int)cred.pid,
                   c ? "--max-connections reached" : "out of memory");
            free(c);
            close(fd);
            continue;
        }
        c->d = d;
        c->id = ++d->next_conn_id;
        c->fd = fd;
        c->uid = cred.uid;
        c->gid = cred.gid;
        c->pid = cred.pid;
        if (uv_poll_init(d->loop, &c->poll, fd) != 0) {
            close(fd);
            free(c);
            continue;
        }
        c->poll.data = c;
        c->next = d->conns;
        if (d->conns)
            d->conns->prev = c;
        d->conns = c;
        d->n_conns++;
        update_poll(c);
        jq_log(JQ_LOG_DEBUG, "connection %" PRIu64 " from pid %d uid %u",
               c->id, (int)c->pid, (unsigned)c->uid);
    }
}

/* ------------------------------------------------------------ completions */

static void reply_prefill(jq_conn *c, jq_job *j)
{
    const jq_kept *k = j->result.kept;
    Judgeq__PrefillReply pr = JUDGEQ__PREFILL_REPLY__INIT;
    pr.has_prompt_tokens = pr.has_n_layer = pr.has_n_head_kv =
        pr.has_kv_bytes_full = pr.has_kv_bytes_kept = pr.has_prefill_ms =
            pr.has_score_ms = pr.has_evict_ms = pr.has_queue_ms = 1;
    pr.prompt_tokens = (uint32_t)j->n_tokens;
    pr.n_prompt_token_ids = (size_t)j->n_tokens;
    pr.prompt_token_ids = j->tokens;
    pr.n_layer = (uint32_t)k->n_layer;
    pr.n_head_kv = (uint32_t)k->n_head_kv;
    pr.n_kept = (size_t)k->n_layer * (size_t)k->n_head_kv;
    pr.kept = (uint32_t *)(void *)k->counts; /* int32 >= 0, same bits */
    pr.kv_bytes_full = j->result.kv_bytes_full;
    pr.kv_bytes_kept = j->result.kv_bytes_kept;
    pr.prefill_ms = j->result.prefill_ms;
    pr.score_ms = j->result.score_ms;
    pr.evict_ms = j->result.evict_ms;
    pr.queue_ms = (j->t_start - j->t_submit) * 1e3;
    Judgeq__Response r = JUDGEQ__RESPONSE__INIT;
    r.has_id = 1;
    r.id = j->req_id;
    r.body_case = JUDGEQ__RESPONSE__BODY_PREFILL;
    r.prefill = &pr;
    conn_send(c, &r);
}

static void reply_job(jq_conn *c, jq_job *j)
{
    Judgeq__Response r = JUDGEQ__RESPONSE__INIT;
    r.has_id = 1;
    r.id = j->req_id;
    switch (j->kind) {
    case JQ_JOB_PREFILL: reply_prefill(c, j); return;
    case JQ_JOB_GENERATE: {
        Judgeq__GenerateDone gd = JUDGEQ__GENERATE_DONE__INIT;
        gd.has_n_tokens = gd.has_decode_ms = gd.has_decode_tokens_per_s = 1;
        gd.n_tokens = (uint32_t)j->produced;
        gd.stop_reason = (char *)(j->stop_reason ? j->stop_reason : "length");
        gd.decode_ms = j->decode_s * 1e3;
        gd.decode_tokens_per_s =
            j->decode_s > 0 ? (double)j->n_evals / j->decode_s : 0;
        r.body_case = JUDGEQ__RESPONSE__BODY_GENERATE_DONE;
        r.generate_done = &gd;
        conn_send(c, &r);
        return;
    }
    case JQ_JOB_EXPORT: {
        Judgeq__ExportKVReply er = JUDGEQ__EXPORT_KVREPLY__INIT;
        er.layout = j->export_layout;
        r.body_case = JUDGEQ__RESPONSE__BODY_EXPORT_KV;
        r.export_kv = &er;
        int fd = j->export_fd;
        j->export_fd = -1;
        conn_send_fd(c, &r, fd);
        return;
    }
    case JQ_JOB_TOKENIZE: {
        Judgeq__TokenizeReply tr = JUDGEQ__TOKENIZE_REPLY__INIT;
        tr.n_tokens = (size_t)j->n_tokens;
        tr.tokens = j->tokens;
        r.body_case = JUDGEQ__RESPONSE__BODY_TOKENIZE;
        r.tokenize = &tr;
        conn_send(c, &r);
        return;
    }
    case JQ_JOB_DETOKENIZE: {
        Judgeq__DetokenizeReply dr = JUDGEQ__DETOKENIZE_REPLY__INIT;
        dr.has_text = 1;
        dr.text.len = j->out_len;
        dr.text.data = (uint8_t *)j->out_text;
        r.body_case = JUDGEQ__RESPONSE__BODY_DETOKENIZE;
        r.detokenize = &dr;
        conn_send(c, &r);
        return;
    }
    default: return;
    }
}

static bool stopped_by_shutdown(const jq_daemon *d, const jq_job *j)
{
    return d->cancelled_all && j->kind == JQ_JOB_GENERATE && j->stop_reason &&
           strcmp(j->stop_reason, "cancelled") == 0;
}

/* A job came back from its worker: fold its result into the session (a
 * prefill's new store replaces the old one), answer, and start the
 * session's next request. */
static void job_done(jq_daemon *d, jq_job *j)
{
    d->jobs_inflight--;
    jq_session *s = j->session;
    jq_conn *c = conn_find(d, j->conn_id);
    d->memory_used -= j->admitted;
    j->admitted = 0;
    if (j->code == JUDGEQ__ERROR_CODE__OK && j->kind == JQ_JOB_PREFILL) {
        session_drop_store(d, s);
        s->store = j->store;
        s->mem = j->mem;
        s->bytes = j->store_bytes;
        d->memory_used += s->bytes;
        s->has_logits = true;
        s->pending = -1;
        j->store = NULL;
        j->mem = (jq_kv_mem){.fd = -1};
    }
    if (c) {
        if (j->code != JUDGEQ__ERROR_CODE__OK)
            send_error(c, j->req_id, j->code, "%s", j->message);
        else if (stopped_by_shutdown(d, j))
            /* the tokens streamed are valid; the rest was refused, so the
             * client sees UNAVAILABLE (retry elsewhere), not a short
             * completion it might take for the model's own */
            send_error(c, j->req_id, JUDGEQ__ERROR_CODE__UNAVAILABLE,
                       "judgeqd is shutting down: generation stopped after "
                       "%d tokens at the end of --grace-period %" PRIu64
                       " s",
                       j->produced, d->cfg.grace_period);
        else
            reply_job(c, j);
        c->inflight--;
    }
    if (s) {
        s->running = NULL;
        s->last_used = jq_now_s();
        if (s->closing)
            session_free(d, s);
        else
            session_kick(d, s);
    }
    jq_job_free(j);
}

static void on_async(uv_async_t *h)
{
    jq_daemon *d = h->data;
    pthread_mutex_lock(&d->cmu);
    jq_completion *list = d->chead;
    d->chead = d->ctail = NULL;
    pthread_mutex_unlock(&d->cmu);
    while (list) {
        jq_completion *cp = list;
        list = cp->next;
        if (cp->kind == JQ_DONE_JOB) {
            job_done(d, cp->job);
        } else {
            jq_conn *c = conn_find(d, cp->conn_id);
            if (c) {
                Judgeq__GenerateChunk ch = JUDGEQ__GENERATE_CHUNK__INIT;
                ch.has_token = ch.has_piece = ch.has_logprob = ch.has_index =
                    1;
                ch.token = cp->token;
                ch.piece.len = cp->piece_len;
                ch.piece.data = (uint8_t *)cp->piece;
                ch.logprob = cp->logprob;
                ch.index = cp->index;
                Judgeq__Response r = JUDGEQ__RESPONSE__INIT;
                r.has_id = 1;
                r.id = cp->req_id;
                r.has_done = 1;
                r.done = 0;
                r.body_case = JUDGEQ__RESPONSE__BODY_CHUNK;
                r.chunk = &ch;
                conn_send(c, &r);
            }
        }
        free(cp);
    }
    maybe_finish_shutdown(d);
}

/* ------------------------------------------------------------ timers */

static void notify_status(jq_daemon *d)
{
    char st[256];
    snprintf(st, sizeof st,
             "STATUS=%s%u sessions, %u connections, %u jobs running, %.1f "
             "MiB KV",
             d->draining ? "draining: " : "", d->n_sessions, d->n_conns,
             d->jobs_inflight, (double)d->memory_used / (1 << 20));
    sd_notify(0, st);
}

static void on_tick(uv_timer_t *t)
{
    jq_daemon *d = t->data;
    double now = jq_now_s();
    for (jq_session *s = d->sessions, *nx; s; s = nx) {
        nx = s->next;
        if (!s->closing && !s->running && !s->queue &&
            now - s->last_used > (double)d->cfg.idle_timeout)
            session_close(d, s, "idle timeout");
    }
    if (d->watchdog_usec && jq_pools_alive(d))
        sd_notify(0, "WATCHDOG=1");
    notify_status(d);
}

/* ------------------------------------------------------------ shutdown */

static void cancel_all(jq_daemon *d)
{
    d->cancelled_all = true;
    for (jq_session *s = d->sessions; s; s = s->next) {
        if (s->running)
            atomic_store(&s->running->cancel, true);
        for (jq_job *j = s->queue; j; j = j->next)
            atomic_store(&j->cancel, true);
    }
}

static void on_grace(uv_timer_t *t)
{
    jq_daemon *d = t->data;
    jq_log(JQ_LOG_NOTICE, "grace period over: cancelling %u running jobs",
           d->jobs_inflight);
    cancel_all(d);
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void stop_listening(jq_daemon *d)
{
    if (!d->listening)
        return;
    d->listening = false;
    uv_close((uv_handle_t *)&d->listen_poll, NULL);
    close(d->listen_fd);
    d->listen_fd = -1;
    if (!d->listen_activated && d->cfg.socket)
        unlink(d->cfg.socket);
}

/* The last connection has gone after the drain: free the sessions and
 * close every handle, so uv_run returns and uv_loop_close finds nothing
 * open. */
static void shutdown_teardown(jq_daemon *d)
{
    if (d->torn_down)
        return;
    d->torn_down = true;
    while (d->sessions)
        session_free(d, d->sessions);
    stop_listening(d);
    jq_conn_limits_close(d);
    close_handle((uv_handle_t *)&d->async);
    close_handle((uv_handle_t *)&d->flush_prepare);
    close_handle((uv_handle_t *)&d->tick);
    close_handle((uv_handle_t *)&d->grace);
    close_handle((uv_handle_t *)&d->sig_term);
    close_handle((uv_handle_t *)&d->sig_int);
    close_handle((uv_handle_t *)&d->sig_hup);
    /* the daemon is leaving: a second SIGTERM from an impatient
     * supervisor must not turn exit 0 into a death by signal. Closing the
     * last uv_signal_t of a signal would restore SIG_DFL, which is why
     * keep_signal_handlers() holds one more watcher of each that is never
     * closed; from here on they are ignored outright */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    jq_log(JQ_LOG_INFO, "drained; exiting");
}

static uint64_t linger_ms(const jq_daemon *d)
{
    return d->cfg.frame_timeout_ms ? d->cfg.frame_timeout_ms
                                   : SHUTDOWN_LINGER_MS;
}

static void on_linger(uv_timer_t *t)
{
    jq_daemon *d = t->data;
    jq_log(JQ_LOG_NOTICE,
           "%u connections did not read their last replies within %" PRIu64
           " ms; closing them",
           d->n_conns, linger_ms(d));
    while (d->conns)
        conn_close(d->conns, "shutdown: last replies not read");
}

/* Everything in flight has finished. A connection whose replies are all
 * out is closed now; one with replies still queued (a client that reads
 * slowly) stops being read and is closed as soon as they are out, or after
 * --frame-timeout-ms (the time any client has to take its last reply):
 * closing earlier would end its stream in the middle of a frame. The
 * teardown follows the last connection (conn_close). */
static void maybe_finish_shutdown(jq_daemon *d)
{
    if (!d->draining || d->finished || d->jobs_inflight > 0)
        return;
    d->finished = true;
    on_prepare(&d->flush_prepare);
    for (jq_conn *c = d->conns, *nx; c; c = nx) {
        nx = c->next;
        if (!c->out) {
            conn_close(c, "shutdown");
            continue;
        }
        c->read_stopped = true;
        c->close_after_flush = true;
        c->frame_started_ms = uv_now(d->loop);
        update_poll(c);
    }
    if (d->n_conns == 0)
        shutdown_teardown(d);
    else
        uv_timer_start(&d->grace, on_linger, linger_ms(d), 0);
}

static void begin_shutdown(jq_daemon *d, const char *why)
{
    if (d->draining) {
        jq_log(JQ_LOG_NOTICE, "%s again: cancelling in-flight work now", why);
        cancel_all(d);
        return;
    }
    d->draining = true;
    jq_log(JQ_LOG_NOTICE,
           "%s: stopping; %u jobs may finish within %" PRIu64 " s", why,
           d->jobs_inflight, d->cfg.grace_period);
    sd_notify(0, "STOPPING=1");
    stop_listening(d);
    notify_status(d);
    if (d->cfg.grace_period == 0)
        cancel_all(d);
    else
        uv_timer_start(&d->grace, on_grace, d->cfg.grace_period * 1000, 0);
    maybe_finish_shutdown(d);
}

static void on_signal(uv_signal_t *h, int signum)
{
    jq_daemon *d = h->data;
    if (signum == SIGHUP) {
        char err[512];
        if (jq_log_open(d->cfg.log_file, err, sizeof err) != 0)
            jq_log(JQ_LOG_ERR, "SIGHUP: %s", err);
        if (d->cfg.soft) {
            jq_soft_tokens *st = jq_soft_tokens_load(d->cfg.soft, d->model,
                                                     err, sizeof err);
            jq_soft_ref *ref = st ? calloc(1, sizeof *ref) : NULL;
            if (!ref) {
                jq_soft_tokens_free(st);
                jq_log(JQ_LOG_ERR, "SIGHUP: keeping the old soft tokens: %s",
                       st ? "out of memory" : err);
            } else {
                atomic_store(&ref->refs, 1);
                ref->soft = st;
                jq_soft_ref_put(d->soft);
                d->soft = ref;
                jq_log(JQ_LOG_INFO, "SIGHUP: reloaded %d soft tokens from %s",
                       st->n, d->cfg.soft);
            }
        }
        return;
    }
    begin_shutdown(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* ------------------------------------------------------------ setup */

static void ignore_signal(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
}

/* One more watcher of SIGTERM, SIGINT and SIGHUP, on a loop of its own
 * that never runs and is never closed. Why: libuv restores SIG_DFL when
 * the last watcher of a signal closes, and teardown closes the daemon's;
 * a SIGTERM landing between that and teardown's SIG_IGN killed the daemon
 * (seen under ASan when a supervisor sent SIGTERM twice). With these, the
 * libuv handler stays installed and such a signal only wakes nobody. */
static void keep_signal_handlers(void)
{
    static uv_loop_t keeper; /* jq_server_init runs on one thread */
    static uv_signal_t sig[3];
    static const int signums[3] = {SIGTERM, SIGINT, SIGHUP};
    if (keeper.data == &keeper) /* a second daemon in this process */
        return;
    if (uv_loop_init(&keeper) != 0)
        return; /* then only the window stays, as before */
    keeper.data = &keeper;
    for (int i = 0; i < 3; i++)
        if (uv_signal_init(&keeper, &sig[i]) == 0)
            uv_signal_start(&sig[i], ignore_signal, signums[i]);
}

int jq_server_init(jq_daemon *d, char *err, size_t errlen)
{
    d->loop = malloc(sizeof *d->loop);
    if (!d->loop || uv_loop_init(d->loop) != 0) {
        free(d->loop);
        d->loop = NULL;
        snprintf(err, errlen, "uv_loop_init failed");
        return -1;
    }
    pthread_mutex_init(&d->cmu, NULL);
    d->listen_fd = -1;
    uv_async_init(d->loop, &d->async, on_async);
    d->async.data = d;
    uv_prepare_init(d->loop, &d->flush_prepare);
    d->flush_prepare.data = d;
    uv_prepare_start(&d->flush_prepare, on_prepare);
    uv_timer_init(d->loop, &d->tick);
    d->tick.data = d;
    uv_timer_init(d->loop, &d->grace);
    d->grace.data = d;
    jq_conn_limits_init(d);
    uv_signal_init(d->loop, &d->sig_term);
    uv_signal_init(d->loop, &d->sig_int);
    uv_signal_init(d->loop, &d->sig_hup);
    d->sig_term.data = d->sig_int.data = d->sig_hup.data = d;
    uv_signal_start(&d->sig_term, on_signal, SIGTERM);
    uv_signal_start(&d->sig_int, on_signal, SIGINT);
    uv_signal_start(&d->sig_hup, on_signal, SIGHUP);
    keep_signal_handlers();
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* A stale socket file (left by a daemon that died) is replaced; a live one
 * (another judgeqd answers) is an error, never stolen. */
static int make_socket(jq_daemon *d, char *err, size_t errlen)
{
    const char *path = d->cfg.socket;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, errlen, "--socket %s is longer than %zu bytes", path,
                 sizeof sa.sun_path - 1);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "--socket %s exists and is not a socket",
                     path);
            return -1;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 &&
            connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0) {
            close(probe);
            snprintf(err, errlen,
                     "--socket %s: another daemon is serving there", path);
            return -1;
        }
        if (probe >= 0)
            close(probe);
        jq_log(JQ_LOG_NOTICE, "removing stale socket %s", path);
        unlink(path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    mode_t old = umask(0117); /* the socket is born 0660 */
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc != 0 || chmod(path, 0660) != 0 || listen(fd, SOMAXCONN) != 0) {
        snprintf(err, errlen, "--socket %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    d->listen_fd = fd;
    return 0;
}

int jq_server_listen(jq_daemon *d, char *err, size_t errlen)
{
    int n = sd_listen_fds(1);
    if (n < 0) {
        snprintf(err, errlen, "LISTEN_FDS: %s", strerror(-n));
        return -1;
    }
    if (n > 1) {
        snprintf(err, errlen,
                 "LISTEN_FDS=%d: judgeqd takes exactly one socket", n);
        return -1;
    }
    if (n == 1) {
        int fd = SD_LISTEN_FDS_START;
        if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
            snprintf(err, errlen,
                     "the socket passed by LISTEN_FDS (fd %d) is not a "
                     "listening Unix stream socket",
                     fd);
            return -1;
        }
        int fl = fcntl(fd, F_GETFL);
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        d->listen_fd = fd;
        d->listen_activated = true;
        jq_log(JQ_LOG_INFO, "serving on the socket passed by the service "
                            "manager (fd %d)", fd);
    } else {
        if (!d->cfg.socket) {
            snprintf(err, errlen, "--socket PATH is required without socket "
                                  "activation (LISTEN_FDS)");
            return -1;
        }
        if (make_socket(d, err, errlen) != 0)
            return -1;
        jq_log(JQ_LOG_INFO, "listening on %s", d->cfg.socket);
    }
    uv_poll_init(d->loop, &d->listen_poll, d->listen_fd);
    d->listen_poll.data = d;
    uv_poll_start(&d->listen_poll, UV_READABLE, on_listen_event);
    d->listening = true;
    return 0;
}

int jq_server_run(jq_daemon *d)
{
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0)
        d->watchdog_usec = usec;
    uint64_t period = 1000;
    if (d->watchdog_usec && d->watchdog_usec / 2000 < period)
        period = d->watchdog_usec / 2000 ? d->watchdog_usec / 2000 : 1;
    uv_timer_start(&d->tick, on_tick, period, period);
    jq_conn_limits_start(d);
    uv_run(d->loop, UV_RUN_DEFAULT);
    return 0;
}

/* After uv_run: every handle is closed, so the loop must close cleanly. */
void jq_server_free(jq_daemon *d)
{
    if (!d->loop)
        return;
    if (!d->finished) {
        d->draining = true;
        maybe_finish_shutdown(d);
        uv_run(d->loop, UV_RUN_DEFAULT);
    }
    int rc = uv_loop_close(d->loop);
    if (rc != 0) {
        jq_log(JQ_LOG_ERR, "uv_loop_close: %s (a handle was left open)",
               uv_strerror(rc));
        d->exit_code = 1;
    }
    free(d->loop);
    d->loop = NULL;
    while (d->chead) {
        jq_completion *c = d->chead;
        d->chead = c->next;
        if (c->kind == JQ_DONE_JOB)
            jq_job_free(c->job);
        free(c);
    }
    pthread_mutex_destroy(&d->cmu);
}
