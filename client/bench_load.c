/* bench_load.c — the load run of `judgeq bench --socket PATH --clients N`
 * (see bench_load.h).
 *
 * One thread per connection, each with its own libjudgeq handle: calls
 * block, so a thread is the simplest way to keep N requests in flight, and
 * the library's per-handle lock never serializes two clients. A client
 * loops over whole session lives until the deadline; a life that started
 * before it finishes (so the run lasts a little longer than --duration,
 * and requests/s divide by the measured time). A request that fails is
 * counted under its type and status code, the rest of that life is
 * skipped (its session is still closed when the connection works), and a
 * lost connection is made again.
 */
#include "bench_load.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_online.h"
#include "judgeq.h"
#include "kernels.h"

const char *const jq_req_type_names[JQ_REQ_COUNT_] = {
    "connect", "create", "prefill", "generate",
    "fork",    "export", "close",   "stats",
};

/* ---------------------------------------------------------- latencies */

bool jq_latencies_add(jq_latencies *l, double ms)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        double *nm = realloc(l->ms, cap * sizeof *nm);
        if (!nm)
            return false;
        l->ms = nm;
        l->cap = cap;
    }
    l->ms[l->n++] = ms;
    return true;
}

bool jq_latencies_merge(jq_latencies *dst, jq_latencies *src)
{
    dst->errors += src->errors;
    if (src->n && dst->n + src->n > dst->cap) {
        size_t cap = dst->n + src->n;
        double *nm = realloc(dst->ms, cap * sizeof *nm);
        if (!nm)
            return false;
        dst->ms = nm;
        dst->cap = cap;
    }
    if (src->n)
        memcpy(dst->ms + dst->n, src->ms, src->n * sizeof *src->ms);
    dst->n += src->n;
    jq_latencies_free(src);
    return true;
}

void jq_latencies_free(jq_latencies *l)
{
    free(l->ms);
    *l = (jq_latencies){0};
}

/* ------------------------------------------------------------- shared */

/* What every client reads (set before they start) and the error log they
 * share. */
typedef struct {
    const jq_load_opts *o;
    uint32_t n_vocab;
    int32_t bos;
    uint32_t weight_total;
    double t_start, deadline;
    pthread_mutex_t mu; /* errors_by_code, first_errors, oom */
    jq_load_result *r;
    atomic_bool oom;     /* a thread ran out of memory: the run is void */
} load_shared;

static void log_error(load_shared *s, jq_req_type type, int code,
                      const char *msg)
{
    pthread_mutex_lock(&s->mu);
    if (code < JQ_LOAD_CODE_MIN || code > JQ_LOAD_CODE_MAX)
        code = JUDGEQ_ERR_PROTOCOL; /* the library returns no other codes */
    s->r->errors_by_code[code - JQ_LOAD_CODE_MIN]++;
    if (s->r->n_first_errors < JQ_LOAD_FIRST_ERRORS) {
        jq_load_error *e = &s->r->first_errors[s->r->n_first_errors++];
        e->type = type;
        e->code = code;
        snprintf(e->message, sizeof e->message, "%s", msg);
    }
    pthread_mutex_unlock(&s->mu);
}

/* Codes after which the handle is of no further use: make a new one. */
static bool conn_lost(int rc)
{
    return rc == JUDGEQ_ERR_IO || rc == JUDGEQ_ERR_TIMEOUT ||
           rc == JUDGEQ_ERR_PROTOCOL || rc == JUDGEQ_ERR_CLOSED;
}

/* ------------------------------------------------------------ clients */

typedef struct {
    load_shared *s;
    pthread_t thread;
    uint64_t rng;
    int32_t *prompt; /* (prompt_len) */
    jq_latencies lat[JQ_REQ_COUNT_];
    jq_latencies first_token;
    jq_latencies prefill_by_policy[JQ_EVICT_COUNT_];
    uint64_t loops, prompt_tokens, generated_tokens;
    bool oom;
} load_client;

static uint64_t next_random(uint64_t *r)
{
    uint64_t x = *r;
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    *r = x;
    return x * 0x2545f4914f6cdd1dull;
}

static double uniform01(uint64_t *r)
{
    return (double)(next_random(r) >> 11) * 0x1.0p-53;
}

/* Records one finished call; true when it succeeded. */
static bool record(load_client *w, jq_req_type type, judgeq_conn *c, int rc,
                   double t0)
{
    if (rc == JUDGEQ_OK) {
        if (!jq_latencies_add(&w->lat[type], (jq_now() - t0) * 1e3))
            w->oom = true;
        return true;
    }
    w->lat[type].errors++;
    log_error(w->s, type, rc, c ? judgeq_errmsg(c) : "out of memory");
    return false;
}

/* The generate callback's view: when the first token came. */
typedef struct {
    double t_first;
} first_token_clock;

static int on_token(void *user, const judgeq_token *t)
{
    first_token_clock *f = user;
    if (t->index == 0 && f->t_first == 0)
        f->t_first = jq_now();
    return 0;
}

/* A generation of gen tokens on sid; *lost when the connection went. */
static bool generate(load_client *w, judgeq_conn *c, uint64_t sid,
                     bool *lost)
{
    const jq_load_opts *o = w->s->o;
    judgeq_generate_opts go;
    judgeq_generate_opts_init(&go);
    go.max_tokens = (uint32_t)o->gen;
    go.seed = next_random(&w->rng);
    go.ignore_eos = true; /* every generation costs the same */
    first_token_clock fc = {0};
    judgeq_generate_result gr;
    double t0 = jq_now();
    int rc = judgeq_generate(c, sid, &go, on_token, &fc, &gr);
    if (!record(w, JQ_REQ_GENERATE, c, rc, t0)) {
        *lost = conn_lost(rc);
        return false;
    }
    if (fc.t_first > 0 && !jq_latencies_add(&w->first_token, (fc.t_first - t0) * 1e3))
        w->oom = true;
    w->generated_tokens += gr.n_tokens;
    return true;
}

/* Asks for the session's KV and checks the memfd as a client would use
 * it: sealed, mapped read-only, its header agreeing with the reply. */
static bool export_kv(load_client *w, judgeq_conn *c, uint64_t sid,
                      bool *lost)
{
    int fd = -1;
    judgeq_kv_export layout;
    double t0 = jq_now();
    int rc = judgeq_export_kv(c, sid, &fd, &layout);
    if (rc == JUDGEQ_OK) {
        judgeq_kv_mapping map;
        char err[256];
        rc = judgeq_kv_map(fd, &layout, &map, err, sizeof err);
        close(fd);
        judgeq_kv_export_free(&layout);
        if (rc != JUDGEQ_OK) {
            w->lat[JQ_REQ_EXPORT].errors++;
            log_error(w->s, JQ_REQ_EXPORT, rc, err);
            return false;
        }
        judgeq_kv_unmap(&map);
    }
    if (!record(w, JQ_REQ_EXPORT, c, rc, t0)) {
        *lost = conn_lost(rc);
        return false;
    }
    return true;
}

static jq_evict_policy pick_policy(load_client *w)
{
    const jq_load_opts *o = w->s->o;
    uint64_t x = next_random(&w->rng) % w->s->weight_total;
    for (int p = 0; p < JQ_EVICT_COUNT_; p++) {
        if (x < o->weight[p])
            return (jq_evict_policy)p;
        x -= o->weight[p];
    }
    return JQ_EVICT_FULL; /* not reached: the weights sum to the total */
}

/* Random token ids of a length in [len/2, len], BOS first when the
 * vocabulary has one. */
static int32_t make_prompt(load_client *w)
{
    int32_t len = w->s->o->prompt_len;
    int32_t lo = len / 2 > 0 ? len / 2 : 1;
    int32_t n = lo + (int32_t)(next_random(&w->rng) % (uint64_t)(len - lo + 1));
    for (int32_t i = 0; i < n; i++)
        w->prompt[i] = (int32_t)(next_random(&w->rng) % w->s->n_vocab);
    if (w->s->bos >= 0)
        w->prompt[0] = w->s->bos;
    return n;
}

static bool prefill(load_client *w, judgeq_conn *c, uint64_t sid,
                    bool *lost)
{
    const jq_load_opts *o = w->s->o;
    jq_evict_policy p = pick_policy(w);
    const jq_evict_spec *sp = &o->spec[p];
    judgeq_eviction ev;
    judgeq_eviction_init(&ev);
    ev.policy = (judgeq_policy)p;
    if (p != JQ_EVICT_FULL) {
        ev.budget = sp->budget;
        ev.window = sp->window;
        ev.sink = sp->sink;
        ev.pool_kernel = sp->pool_kernel;
        ev.gqa_reduce = (int32_t)sp->gqa_reduce;
    }
    if (p == JQ_EVICT_JUDGEQ)
        ev.soft_path = o->soft_path;
    int32_t n = make_prompt(w);
    judgeq_prefill_input in = {
        .tokens = w->prompt,
        .n_tokens = (size_t)n,
        .eviction = &ev,
        .reserve = (uint32_t)o->gen,
    };
    double t0 = jq_now();
    int rc = judgeq_prefill(c, sid, &in, NULL);
    if (!record(w, JQ_REQ_PREFILL, c, rc, t0)) {
        w->prefill_by_policy[p].errors++;
        *lost = conn_lost(rc);
        return false;
    }
    if (!jq_latencies_add(&w->prefill_by_policy[p], (jq_now() - t0) * 1e3))
        w->oom = true;
    w->prompt_tokens += (uint64_t)n;
    return true;
}

static bool close_session(load_client *w, judgeq_conn *c, uint64_t sid)
{
    double t0 = jq_now();
    int rc = judgeq_session_close(c, sid);
    record(w, JQ_REQ_CLOSE, c, rc, t0);
    return !conn_lost(rc);
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* A fork of sid that generates on its own and is closed. */
static bool fork_and_generate(load_client *w, judgeq_conn *c, uint64_t sid,
                              bool *lost)
{
    uint64_t fid;
    double t0 = jq_now();
    int rc = judgeq_fork(c, sid, &fid);
    if (!record(w, JQ_REQ_FORK, c, rc, t0)) {
        *lost = conn_lost(rc);
        return false;
    }
    bool ok = generate(w, c, fid, lost);
    if (!*lost && !close_session(w, c, fid))
        *lost = true;
    return ok && !*lost;
}

/* One session's life: create, prefill, (fork + generate + close the
 * fork), generate, (export), close. False when the connection is lost. */
static bool session_life(load_client *w, judgeq_conn *c)
{
    const jq_load_opts *o = w->s->o;
    judgeq_session_opts so = {
        .max_context = (uint32_t)(o->prompt_len + o->gen),
        .kv_type = o->kv_type == JQ_TYPE_F16 ? JUDGEQ_KV_TYPE_F16 : JUDGEQ_KV_TYPE_F32,
    };
    uint64_t sid;
    double t0 = jq_now();
    int rc = judgeq_session_create(c, &so, &sid, NULL);
    if (!record(w, JQ_REQ_CREATE, c, rc, t0))
        return !conn_lost(rc);
    bool lost = false;
    bool ok = prefill(w, c, sid, &lost);
    if (ok && uniform01(&w->rng) < o->fork_rate)
        ok = fork_and_generate(w, c, sid, &lost);
    if (ok)
        ok = generate(w, c, sid, &lost);
    if (ok && uniform01(&w->rng) < o->export_rate)
        ok = export_kv(w, c, sid, &lost);
    if (!lost && !close_session(w, c, sid))
        lost = true;
    if (ok)
        w->loops++;
    else
        sleep_s(0.01); /* a failing daemon is not flooded with retries */
    return !lost;
}

static judgeq_conn *connect_client(load_client *w)
{
    const jq_load_opts *o = w->s->o;
    judgeq_conn *c;
    double t0 = jq_now();
    int rc = judgeq_connect(o->socket, 5000, &c);
    if (!record(w, JQ_REQ_CONNECT, c, rc, t0)) {
        judgeq_close(c);
        return NULL;
    }
    judgeq_set_timeout(c, o->timeout_ms);
    return c;
}

static void *client_main(void *arg)
{
    load_client *w = arg;
    judgeq_conn *c = NULL;
    while (jq_now() < w->s->deadline && !w->oom) {
        if (!c && !(c = connect_client(w))) {
            sleep_s(0.05); /* the daemon is not there: do not spin */
            continue;
        }
        if (!session_life(w, c)) {
            judgeq_close(c);
            c = NULL;
        }
    }
    judgeq_close(c);
    return NULL;
}

/* ------------------------------------------------------------ sampler */

typedef struct {
    load_shared *s;
    judgeq_conn *c;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    double interval_s;
    jq_latencies lat;
} load_sampler;

/* One Stats call on the sampler's connection. */
static bool take_sample(load_sampler *sm, jq_daemon_sample *out)
{
    judgeq_stats st;
    double t0 = jq_now();
    int rc = judgeq_get_stats(sm->c, &st);
    if (rc != JUDGEQ_OK) {
        sm->lat.errors++;
        log_error(sm->s, JQ_REQ_STATS, rc, judgeq_errmsg(sm->c));
        return false;
    }
    double t1 = jq_now();
    if (!jq_latencies_add(&sm->lat, (t1 - t0) * 1e3))
        sm->s->oom = true;
    *out = (jq_daemon_sample){
        .t = t1 - sm->s->t_start,
        .rss_bytes = st.rss_bytes,
        .open_fds = st.open_fds,
        .sessions = st.sessions,
        .connections = st.connections,
        .memory_used = st.memory_used,
    };
    judgeq_stats_free(&st);
    return true;
}

static bool append_sample(jq_load_result *r, const jq_daemon_sample *x)
{
    if (r->n_samples == r->cap_samples) {
        size_t cap = r->cap_samples ? 2 * r->cap_samples : 64;
        jq_daemon_sample *ns = realloc(r->samples, cap * sizeof *ns);
        if (!ns)
            return false;
        r->samples = ns;
        r->cap_samples = cap;
    }
    r->samples[r->n_samples++] = *x;
    return true;
}

static void *sampler_main(void *arg)
{
    load_sampler *sm = arg;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    pthread_mutex_lock(&sm->mu);
    while (!sm->stop) {
        pthread_mutex_unlock(&sm->mu);
        jq_daemon_sample x;
        /* the result is the main thread's only after the join */
        if (take_sample(sm, &x) && !append_sample(sm->s->r, &x))
            sm->s->oom = true;
        long ns = (long)(sm->interval_s * 1e9);
        next.tv_sec += ns / 1000000000L;
        next.tv_nsec += ns % 1000000000L;
        if (next.tv_nsec >= 1000000000L)
            next.tv_sec++, next.tv_nsec -= 1000000000L;
        pthread_mutex_lock(&sm->mu);
        while (!sm->stop &&
               pthread_cond_timedwait(&sm->cv, &sm->mu, &next) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&sm->mu);
    return NULL;
}

/* Waits (at most 10 s) for the daemon to drop what the clients left:
 * their sessions, connections and descriptors go asynchronously after a
 * disconnect (a descriptor may outlive its connection's count by a loop
 * turn). What is still there after 10 s stays in the after sample. */
static bool settle(load_sampler *sm, const jq_daemon_sample *before,
                   jq_daemon_sample *after)
{
    double give_up = jq_now() + 10;
    for (;;) {
        if (!take_sample(sm, after))
            return false;
        if ((after->sessions <= before->sessions &&
             after->connections <= before->connections &&
             after->open_fds <= before->open_fds) ||
            jq_now() > give_up)
            return true;
        sleep_s(0.02);
    }
}

/* ---------------------------------------------------------------- run */

/* The mix when --mix is absent: every policy the daemon offers. */
static void default_mix(jq_load_opts *o, const judgeq_server_info *info)
{
    for (int p = 0; p < JQ_EVICT_COUNT_; p++)
        o->weight[p] = p == JQ_EVICT_ORACLE ? 0 : 1;
    bool judgeq = false;
    for (size_t i = 0; i < info->n_capabilities; i++)
        judgeq |= !strcmp(info->capabilities[i], "evict:judgeq");
    if (!judgeq && !o->soft_path)
        o->weight[JQ_EVICT_JUDGEQ] = 0;
}

static bool has_capability(const judgeq_server_info *info, const char *cap)
{
    for (size_t i = 0; i < info->n_capabilities; i++)
        if (!strcmp(info->capabilities[i], cap))
            return true;
    return false;
}

/* Hello: the model's shape, and what the mix may use. Exits 1 when the
 * daemon cannot serve this load. */
static void check_daemon(const jq_cmd_info *I, judgeq_conn *c,
                         jq_load_opts *o, load_shared *s, jq_load_result *r)
{
    judgeq_server_info info;
    if (judgeq_hello(c, "judgeq bench", &info) != JUDGEQ_OK)
        jq_cli_fail_conn(I, c, "hello failed");
    if (!o->mix_set)
        default_mix(o, &info);
    if (o->weight[JQ_EVICT_JUDGEQ] && !o->soft_path &&
        !has_capability(&info, "evict:judgeq"))
        jq_cli_fail(I, "--mix has judgeq but the daemon at %s has no soft "
                       "tokens (start judgeqd with --soft, or drop judgeq)",
                    o->socket);
    if (o->fork_rate > 0 && !has_capability(&info, "fork"))
        jq_cli_fail(I, "the daemon does not offer fork: use --fork-rate 0");
    if (o->export_rate > 0 && !has_capability(&info, "export_kv"))
        jq_cli_fail(I, "the daemon does not offer export_kv: use "
                       "--export-rate 0");
    if ((int64_t)o->prompt_len + o->gen > (int64_t)info.model.n_ctx_train)
        jq_cli_fail(I, "--prompt-len %d + --gen %d exceed the daemon's model "
                       "context %u",
                    o->prompt_len, o->gen, info.model.n_ctx_train);
    if (info.model.n_vocab == 0)
        jq_cli_fail(I, "the daemon reports a model without a vocabulary");
    s->n_vocab = info.model.n_vocab;
    s->bos = info.model.bos;
    r->n_vocab = info.model.n_vocab;
    r->n_ctx_train = info.model.n_ctx_train;
    r->n_soft_tokens = info.model.n_soft_tokens;
    r->model_path = strdup(info.model.path ? info.model.path : "");
    judgeq_server_info_free(&info);
    for (int p = 0; p < JQ_EVICT_COUNT_; p++)
        s->weight_total += o->weight[p];
}

static void merge_client(load_shared *s, load_client *w)
{
    jq_load_result *r = s->r;
    bool ok = true;
    for (int t = 0; t < JQ_REQ_COUNT_; t++)
        ok &= jq_latencies_merge(&r->lat[t], &w->lat[t]);
    ok &= jq_latencies_merge(&r->first_token, &w->first_token);
    for (int p = 0; p < JQ_EVICT_COUNT_; p++)
        ok &= jq_latencies_merge(&r->prefill_by_policy[p], &w->prefill_by_policy[p]);
    r->loops += w->loops;
    r->prompt_tokens += w->prompt_tokens;
    r->generated_tokens += w->generated_tokens;
    if (!ok || w->oom)
        s->oom = true;
    free(w->prompt);
}

static void free_result(jq_load_result *r)
{
    for (int t = 0; t < JQ_REQ_COUNT_; t++)
        jq_latencies_free(&r->lat[t]);
    jq_latencies_free(&r->first_token);
    for (int p = 0; p < JQ_EVICT_COUNT_; p++)
        jq_latencies_free(&r->prefill_by_policy[p]);
    free(r->samples);
    free(r->model_path);
}

int jq_bench_load(const jq_cmd_info *I, const jq_load_opts *opts)
{
    jq_load_opts o = *opts;
    jq_load_result r = {0};
    load_shared s = {.o = &o, .r = &r};
    pthread_mutex_init(&s.mu, NULL);

    load_sampler sm = {.s = &s};
    int rc = judgeq_connect(o.socket, 5000, &sm.c);
    if (rc != JUDGEQ_OK) {
        if (!sm.c)
            jq_cli_fail(I, "cannot connect to %s: out of memory", o.socket);
        jq_cli_fail(I, "%s", judgeq_errmsg(sm.c));
    }
    judgeq_set_timeout(sm.c, o.timeout_ms);
    check_daemon(I, sm.c, &o, &s, &r);
    double window = o.duration_s / 6 < 10 ? o.duration_s / 6 : 10;
    sm.interval_s = o.sample_s > 0 ? o.sample_s : (window / 4 < 1 ? window / 4 : 1);
    o.sample_s = sm.interval_s;
    s.t_start = jq_now();
    r.have_before = take_sample(&sm, &r.before);

    load_client *w = calloc((size_t)o.clients, sizeof *w);
    if (!w)
        jq_cli_fail(I, "out of memory for %d clients", o.clients);
    pthread_mutex_init(&sm.mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sm.cv, &ca);
    pthread_condattr_destroy(&ca);

    s.t_start = jq_now();
    s.deadline = s.t_start + o.duration_s;
    if ((errno = pthread_create(&sm.thread, NULL, sampler_main, &sm)))
        jq_cli_fail(I, "cannot start the sampler thread: %s", strerror(errno));
    int started = 0;
    for (; started < o.clients; started++) {
        load_client *c = &w[started];
        c->s = &s;
        uint64_t seed = (o.seed + (uint64_t)started + 1) * 0x9e3779b97f4a7c15ull;
        c->rng = seed ? seed : 1;
        c->prompt = malloc(sizeof(int32_t) * (size_t)o.prompt_len);
        int err = c->prompt ? pthread_create(&c->thread, NULL, client_main, c) : ENOMEM;
        if (err) {
            free(c->prompt);
            /* the clients already started stop at the deadline */
            fprintf(stderr, "judgeq bench: cannot start client %d: %s\n",
                    started, strerror(err));
            s.oom = true;
            break;
        }
    }
    for (int i = 0; i < started; i++) {
        pthread_join(w[i].thread, NULL);
        merge_client(&s, &w[i]);
    }
    r.elapsed_s = jq_now() - s.t_start;
    pthread_mutex_lock(&sm.mu);
    sm.stop = true;
    pthread_cond_signal(&sm.cv);
    pthread_mutex_unlock(&sm.mu);
    pthread_join(sm.thread, NULL);
    r.have_after = r.have_before && settle(&sm, &r.before, &r.after);
    jq_latencies_merge(&r.lat[JQ_REQ_STATS], &sm.lat);
    judgeq_close(sm.c);
    pthread_cond_destroy(&sm.cv);
    pthread_mutex_destroy(&sm.mu);
    pthread_mutex_destroy(&s.mu);
    free(w);
    if (s.oom)
        jq_cli_fail(I, "out of memory (or threads) while measuring");

    json_t *report = jq_load_report(&o, &r);
    char *text = report ? json_dumps(report, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    if (!text)
        jq_cli_fail(I, "out of memory for the report");
    puts(text);
    fflush(stdout);
    free(text);
    json_decref(report);
    uint64_t errors = jq_load_error_total(&r);
    free_result(&r);
    if (errors && !o.allow_errors) {
        fprintf(stderr, "judgeq bench: %llu requests failed (see \"errors\"; "
                        "--allow-errors to exit 0 anyway)\n",
                (unsigned long long)errors);
        return JQ_EXIT_FAIL;
    }
    return JQ_EXIT_OK;
}
