/* bench_load_report.c — the JSON object of a load run (bench_load.h).
 *
 * Latency percentiles are nearest-rank over every successful request of a
 * type (all samples are kept: a minute of load is at most a few hundred
 * thousand doubles), so p50 <= p99 <= max always holds. The daemon's RSS
 * and descriptor count are summarized over the first and the last window
 * of the run — min(10 s, duration / 6) — as the mean and the maximum of
 * the samples in it; growth compares the maxima, which do not depend on
 * where in the session churn a sample happened to fall as much as single
 * samples do.
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench_load.h"
#include "judgeq.h"
#include "kernels.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest rank: the smallest sample with at least q of them at or below. */
static double rank(const double *sorted, size_t n, double q)
{
    size_t k = (size_t)ceil(q * (double)n);
    return sorted[k > 0 ? k - 1 : 0];
}

/* {p50, p99, max, mean} of l's samples in ms; null when there are none. */
static json_t *latency_summary(const jq_latencies *l)
{
    if (l->n == 0)
        return json_null();
    double *v = malloc(l->n * sizeof *v);
    if (!v)
        return NULL;
    memcpy(v, l->ms, l->n * sizeof *v);
    qsort(v, l->n, sizeof *v, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < l->n; i++)
        sum += v[i];
    json_t *o = json_object();
    json_object_set_new(o, "p50", json_real(rank(v, l->n, 0.50)));
    json_object_set_new(o, "p99", json_real(rank(v, l->n, 0.99)));
    json_object_set_new(o, "max", json_real(v[l->n - 1]));
    json_object_set_new(o, "mean", json_real(sum / (double)l->n));
    free(v);
    return o;
}

/* {requests, ok, errors, per_s, latency_ms} of one request type. */
static json_t *type_summary(const jq_latencies *l, double elapsed_s)
{
    uint64_t total = l->n + l->errors;
    json_t *o = json_object();
    json_object_set_new(o, "requests", json_integer((json_int_t)total));
    json_object_set_new(o, "ok", json_integer((json_int_t)l->n));
    json_object_set_new(o, "errors", json_integer((json_int_t)l->errors));
    json_object_set_new(o, "per_s", json_real(elapsed_s > 0 ? (double)total / elapsed_s : 0));
    json_object_set_new(o, "latency_ms", latency_summary(l));
    return o;
}

uint64_t jq_load_error_total(const jq_load_result *r)
{
    uint64_t n = 0;
    for (int i = 0; i <= JQ_LOAD_CODE_MAX - JQ_LOAD_CODE_MIN; i++)
        n += r->errors_by_code[i];
    return n;
}

static json_t *errors_json(const jq_load_result *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "total", json_integer((json_int_t)jq_load_error_total(r)));
    json_t *by = json_object();
    for (int i = 0; i <= JQ_LOAD_CODE_MAX - JQ_LOAD_CODE_MIN; i++)
        if (r->errors_by_code[i])
            json_object_set_new(by, judgeq_status_name(i + JQ_LOAD_CODE_MIN),
                                json_integer((json_int_t)r->errors_by_code[i]));
    json_object_set_new(o, "by_code", by);
    json_t *first = json_array();
    for (int i = 0; i < r->n_first_errors; i++) {
        const jq_load_error *e = &r->first_errors[i];
        json_t *x = json_object();
        json_object_set_new(x, "request", json_string(jq_req_type_names[e->type]));
        json_object_set_new(x, "code", json_string(judgeq_status_name(e->code)));
        /* the daemon's text is not trusted to be UTF-8 */
        size_t n;
        char *msg = jq_utf8_sanitize(e->message, strlen(e->message), &n);
        json_object_set_new(x, "message", json_stringn(msg ? msg : "", msg ? n : 0));
        free(msg);
        json_array_append_new(first, x);
    }
    json_object_set_new(o, "first", first);
    return o;
}

static json_t *sample_json(const jq_daemon_sample *s)
{
    json_t *o = json_object();
    json_object_set_new(o, "t", json_real(s->t));
    json_object_set_new(o, "rss_bytes",
                        s->rss_bytes ? json_integer((json_int_t)s->rss_bytes) : json_null());
    json_object_set_new(o, "open_fds", s->open_fds ? json_integer(s->open_fds) : json_null());
    json_object_set_new(o, "sessions", json_integer(s->sessions));
    json_object_set_new(o, "connections", json_integer(s->connections));
    json_object_set_new(o, "memory_used", json_integer((json_int_t)s->memory_used));
    return o;
}

typedef struct {
    size_t n;
    double rss_mean, fds_mean;
    uint64_t rss_max;
    uint32_t fds_max;
} window_stats;

static window_stats window(const jq_load_result *r, double from, double to)
{
    window_stats w = {0};
    double rss = 0, fds = 0;
    for (size_t i = 0; i < r->n_samples; i++) {
        const jq_daemon_sample *s = &r->samples[i];
        if (s->t < from || s->t > to)
            continue;
        w.n++;
        rss += (double)s->rss_bytes;
        fds += s->open_fds;
        if (s->rss_bytes > w.rss_max)
            w.rss_max = s->rss_bytes;
        if (s->open_fds > w.fds_max)
            w.fds_max = s->open_fds;
    }
    if (w.n) {
        w.rss_mean = rss / (double)w.n;
        w.fds_mean = fds / (double)w.n;
    }
    return w;
}

/* {from_s, to_s, samples, rss_bytes: {mean, max}, open_fds: {mean, max}};
 * the numbers are null when no sample fell in the window or the daemon
 * does not report its process. */
static json_t *window_json(const window_stats *w, double from, double to)
{
    json_t *o = json_object();
    json_object_set_new(o, "from_s", json_real(from));
    json_object_set_new(o, "to_s", json_real(to));
    json_object_set_new(o, "samples", json_integer((json_int_t)w->n));
    json_t *rss = json_object(), *fds = json_object();
    bool have_rss = w->n && w->rss_max, have_fds = w->n && w->fds_max;
    json_object_set_new(rss, "mean", have_rss ? json_real(w->rss_mean) : json_null());
    json_object_set_new(rss, "max", have_rss ? json_integer((json_int_t)w->rss_max) : json_null());
    json_object_set_new(fds, "mean", have_fds ? json_real(w->fds_mean) : json_null());
    json_object_set_new(fds, "max", have_fds ? json_integer(w->fds_max) : json_null());
    json_object_set_new(o, "rss_bytes", rss);
    json_object_set_new(o, "open_fds", fds);
    return o;
}

static json_t *daemon_json(const jq_load_opts *o, const jq_load_result *r,
                           double sample_s)
{
    double win = o->duration_s / 6 < 10 ? o->duration_s / 6 : 10;
    window_stats first = window(r, 0, win);
    window_stats last = window(r, o->duration_s - win, o->duration_s);
    json_t *d = json_object();
    json_object_set_new(d, "sample_interval_s", json_real(sample_s));
    json_object_set_new(d, "window_s", json_real(win));
    json_object_set_new(d, "before", r->have_before ? sample_json(&r->before) : json_null());
    json_object_set_new(d, "first", window_json(&first, 0, win));
    json_object_set_new(d, "last", window_json(&last, o->duration_s - win, o->duration_s));
    json_t *g = json_object();
    json_object_set_new(g, "rss_bytes",
                        first.rss_max && last.rss_max
                            ? json_integer((json_int_t)last.rss_max - (json_int_t)first.rss_max)
                            : json_null());
    json_object_set_new(g, "open_fds",
                        first.fds_max && last.fds_max
                            ? json_integer((json_int_t)last.fds_max - (json_int_t)first.fds_max)
                            : json_null());
    json_object_set_new(d, "growth", g);
    json_object_set_new(d, "after", r->have_after ? sample_json(&r->after) : json_null());
    json_t *all = json_array();
    for (size_t i = 0; i < r->n_samples; i++)
        json_array_append_new(all, sample_json(&r->samples[i]));
    json_object_set_new(d, "samples", all);
    return d;
}

json_t *jq_load_report(const jq_load_opts *o, const jq_load_result *r)
{
    double el = r->elapsed_s;
    json_t *root = json_object();
    json_object_set_new(root, "socket", json_string(o->socket));
    size_t n;
    char *model = jq_utf8_sanitize(r->model_path, strlen(r->model_path), &n);
    json_object_set_new(root, "model", json_stringn(model ? model : "", model ? n : 0));
    free(model);
    json_object_set_new(root, "clients", json_integer(o->clients));
    json_object_set_new(root, "duration_s", json_real(o->duration_s));
    json_object_set_new(root, "elapsed_s", json_real(el));
    json_object_set_new(root, "prompt_len", json_integer(o->prompt_len));
    json_object_set_new(root, "gen", json_integer(o->gen));
    json_object_set_new(root, "kv_type", json_string(o->kv_type == JQ_TYPE_F16 ? "f16" : "f32"));
    json_t *mix = json_object();
    for (int p = 0; p < JQ_EVICT_COUNT_; p++)
        if (o->weight[p])
            json_object_set_new(mix, jq_evict_policy_name((jq_evict_policy)p),
                                json_integer(o->weight[p]));
    json_object_set_new(root, "mix", mix);
    json_object_set_new(root, "budget", json_integer(o->budget));
    json_object_set_new(root, "fork_rate", json_real(o->fork_rate));
    json_object_set_new(root, "export_rate", json_real(o->export_rate));
    json_object_set_new(root, "seed", json_integer((json_int_t)o->seed));

    uint64_t total = 0, errors = 0;
    json_t *types = json_object();
    for (int t = 0; t < JQ_REQ_COUNT_; t++) {
        total += r->lat[t].n + r->lat[t].errors;
        errors += r->lat[t].errors;
        json_t *ts = type_summary(&r->lat[t], el);
        if (t == JQ_REQ_GENERATE)
            json_object_set_new(ts, "first_token_ms", latency_summary(&r->first_token));
        json_object_set_new(types, jq_req_type_names[t], ts);
    }
    json_t *req = json_object();
    json_object_set_new(req, "total", json_integer((json_int_t)total));
    json_object_set_new(req, "errors", json_integer((json_int_t)errors));
    json_object_set_new(req, "per_s", json_real(el > 0 ? (double)total / el : 0));
    json_object_set_new(root, "requests", req);
    json_object_set_new(root, "by_type", types);
    json_t *pol = json_object();
    for (int p = 0; p < JQ_EVICT_COUNT_; p++)
        if (o->weight[p])
            json_object_set_new(pol, jq_evict_policy_name((jq_evict_policy)p),
                                type_summary(&r->prefill_by_policy[p], el));
    json_object_set_new(root, "prefill_by_policy", pol);
    json_object_set_new(root, "sessions_completed", json_integer((json_int_t)r->loops));

    json_t *tok = json_object();
    json_object_set_new(tok, "prompt", json_integer((json_int_t)r->prompt_tokens));
    json_object_set_new(tok, "prompt_per_s",
                        json_real(el > 0 ? (double)r->prompt_tokens / el : 0));
    json_object_set_new(tok, "generated", json_integer((json_int_t)r->generated_tokens));
    json_object_set_new(tok, "generated_per_s",
                        json_real(el > 0 ? (double)r->generated_tokens / el : 0));
    json_object_set_new(root, "tokens", tok);
    json_object_set_new(root, "errors", errors_json(r));
    json_object_set_new(root, "daemon", daemon_json(o, r, o->sample_s));
    return root;
}
