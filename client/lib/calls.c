/* calls.c — the requests of libjudgeq: each builds a Request on the stack,
 * exchanges it under the handle's lock (conn.c) and copies what the reply
 * says into the caller's plain C structs, so that nothing of protobuf-c
 * leaks through judgeq.h. Missing optional fields read as 0. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* Ends a call: records the code, unlocks, returns the code. */
static int finish(judgeq_conn *c, int rc)
{
    if (rc == JUDGEQ_OK) {
        c->last_code = JUDGEQ_OK;
        c->errmsg[0] = 0;
    }
    jqc_end(c);
    return rc;
}

static char *dup_str(const char *s)
{
    return strdup(s ? s : "");
}

/* malloc'd copy of n elements of size sz (NULL for n == 0 is fine: the
 * caller's count says 0). Sets *ok = false when memory ran out. */
static void *dup_array(const void *src, size_t n, size_t sz, bool *ok)
{
    if (n == 0)
        return NULL;
    if (n > SIZE_MAX / sz) {
        *ok = false;
        return NULL;
    }
    void *p = malloc(n * sz);
    if (!p)
        *ok = false;
    else
        memcpy(p, src, n * sz);
    return p;
}

/* ------------------------------------------------------------- hello */

void judgeq_server_info_free(judgeq_server_info *info)
{
    if (!info)
        return;
    free(info->server_version);
    free(info->model.path);
    free(info->model.architecture);
    for (size_t i = 0; i < info->n_capabilities; i++)
        free(info->capabilities[i]);
    free(info->capabilities);
    memset(info, 0, sizeof *info);
}

int judgeq_hello(judgeq_conn *c, const char *client_name,
                 judgeq_server_info *info)
{
    if (info)
        memset(info, 0, sizeof *info);
    int rc = jqc_begin(c);
    if (rc)
        return rc;
    Judgeq__Hello h = JUDGEQ__HELLO__INIT;
    h.has_protocol_version = 1;
    h.protocol_version = JUDGEQ_PROTOCOL_VERSION;
    h.client_name = (char *)client_name;
    Judgeq__Request req = JUDGEQ__REQUEST__INIT;
    req.body_case = JUDGEQ__REQUEST__BODY_HELLO;
    req.hello = &h;
    jqc_frame f;
    rc = jqc_call(c, &req, JUDGEQ__RESPONSE__BODY_HELLO, &f);
    if (rc)
        return finish(c, rc);
    const Judgeq__HelloReply *r = f.resp->hello;
    if (info) {
        bool ok = true;
        info->protocol_version = r->protocol_version;
        info->server_version = dup_str(r->server_version);
        ok = ok && info->server_version;
        const Judgeq__ModelInfo *m = r->model;
        if (m) {
            judgeq_model_info *o = &info->model;
            o->path = dup_str(m->path);
            o->architecture = dup_str(m->architecture);
            ok = ok && o->path && o->architecture;
            o->n_vocab = m->n_vocab;
            o->n_ctx_train = m->n_ctx_train;
            o->n_embd = m->n_embd;
            o->n_layer = m->n_layer;
            o->n_head = m->n_head;
            o->n_head_kv = m->n_head_kv;
            o->head_dim = m->head_dim;
            o->n_ff = m->n_ff;
            o->weight_bytes = m->weight_bytes;
            o->n_soft_tokens = m->n_soft_tokens;
            o->bos = m->has_bos ? m->bos : -1;
            o->eos = m->has_eos ? m->eos : -1;
        } else {
            info->model.bos = info->model.eos = -1;
        }
        if (r->n_capabilities) {
            info->capabilities = calloc(r->n_capabilities, sizeof(char *));
            ok = ok && info->capabilities;
            for (size_t i = 0; ok && i < r->n_capabilities; i++) {
                info->capabilities[i] = dup_str(r->capabilities[i]);
                ok = info->capabilities[i] != NULL;
                info->n_capabilities = i + 1;
            }
        }
        if (!ok) {
            judgeq_server_info_free(info);
            rc = jqc_fail(c, JUDGEQ_ERR_NOMEM, "out of memory copying the hello reply");
        }
    }
    jqc_frame_free(&f);
    return finish(c, rc);
}

/* ----------------------------------------------------------- sessions */

int judgeq_session_create(judgeq_conn *c, const judgeq_session_opts *opts,
                          uint64_t *session_id, uint32_t *numa_node)
{
    int rc = jqc_begin(c);
    if (rc)
        return rc;
    Judgeq__CreateSession cs = JUDGEQ__CREATE_SESSION__INIT;
    if (opts) {
        cs.has_max_context = opts->max_context != 0;
        cs.max_context = opts->max_context;
        cs.has_kv_type = 1;
        cs.kv_type = (Judgeq__KvType)opts->kv_type;
        cs.has_keep_on_disconnect = opts->keep_on_disconnect;
        cs.keep_on_disconnect = opts->keep_on_disconnect;
    }
    Judgeq__Request req = JUDGEQ__REQUEST__INIT;
    req.body_case = JUDGEQ__REQUEST__BODY_CREATE_SESSION;
    req.create_session = &cs;
    jqc_frame f;
    rc = jqc_call(c, &req, JUDGEQ__RESPONSE__BODY_CREATE_SESSION, &f);
    if (rc)
        return finish(c, rc);
    if (!f.resp->create_session->has_session_id)
        rc = jqc_fail(c, JUDGEQ_ERR_PROTOCOL,
                      "protocol error: CreateSession reply without a session id");
    if (session_id)
        *session_id = f.resp->create_session->session_id;
    if (numa_node)
        *numa_node = f.resp->create_session->numa_node;
    jqc_frame_free(&f);
    return finish(c, rc);
}

int judgeq_session_close(judgeq_conn *c, uint64_t session_id)
{
    int rc = jqc_begin(c);
    if (rc)
        return rc;
    Judgeq__CloseSession cs = JUDGEQ__CLOSE_SESSION__INIT;
    cs.has_session_id = 1;
    cs.session_id = session_id;
    Judgeq__Request req = JUDGEQ__REQUEST__INIT;
    req.body_case = JUDGEQ__REQUEST__BODY_CLOSE_SESSION;
    req.close_session = &cs;
    jqc_frame f;
    rc = jqc_call(c, &req, JUDGEQ__RESPONSE__BODY_CLOSED, &f);
    if (rc == JUDGEQ_OK)
        jqc_frame_free(&f);
    return finish(c, rc);
}

int judgeq_fork(judgeq_conn *c, uint64_t session_id, uint64_t *new_session_id)
{
    int rc = jqc_begin(c);
    if (rc)
        return rc;
    Judgeq__Fork fk = JUDGEQ__FORK__INIT;
    fk.has_session_id = 1;
    fk.session_id = session_id;
    Judgeq__Request req = JUDGEQ__REQUEST__INIT;
    req.body_case = JUDGEQ__REQUEST__BODY_FORK;
    req.fork = &fk;
    jqc_frame f;
    rc = jqc_call(c, &req, JUDGEQ__RESPONSE__BODY_FORK, &f);
    if (rc)
        return finish(c, rc);
    if (!f.resp->fork->has_session_id)
        rc = jqc_fail(c, JUDGEQ_ERR_PROTOCOL,
                      "protocol error: Fork reply without a session id");
    if (new_session_id)
        *new_session_id = f.resp->fork->session_id;
    jqc_frame_free(&f);
    return finish(c, rc);
}

/* ------------------------------------------------------------ prefill */

void judgeq_eviction_init(judgeq_eviction *e)
{
    if (!e)
        return;
    *e = (judgeq_eviction){
        .policy = JUDGEQ_POLICY_FULL,
        .budget = -1,
        .window = -1,
        .sink = -1,
        .pool_kernel = -1,
        .gqa_reduce = -1,
    };
}

void judgeq_prefill_result_free(judgeq_prefill_result *r)
{
    if (!r)
        return;
    free(r->prompt_token_ids);
    free(r->kept);
    memset(r, 0, sizeof *r);
}

int judgeq_prefill(judgeq_conn *c, uint64_t session_id,
                   const judgeq_prefill_input *in,
                   judgeq_prefill_result *result)
{
    if (result)
        memset(result, 0, sizeof *result);
    int rc = jqc_begin(c);
    if (rc)
        return rc;
    if (!in || (!in->text && !in->n_tokens) || (in->text && in->n_tokens) ||
        (in->n_tokens && !in->tokens))
        return finish(c, jqc_fail(c, JUDGEQ_ERR_ARG,
                                  "judgeq_prefill needs either tokens or text"));
    Judgeq__Prefill p = JUDGEQ__PREFILL__INIT;
    p.has_session_id = 1;
    p.session_id = session_id;
    char *text_copy = NULL;
    if (in->text) {
        /* the protocol's text is a NUL-terminated string for protobuf-c;
         * text_len lets callers pass a slice */
        size_t len = in->text_len ? in->text_len : strlen(in->text);
        if (memchr(in->text, 0, len))
            return finish(c, jqc_fail(c, JUDGEQ_ERR_ARG,
                                      "the prompt text contains a NUL byte"));
        text_copy = strndup(in->text, len);
        if (!text_copy)
            return finish(c, jqc_fail(c, JUDGEQ_ERR_NOMEM, "out of memory"));
        p.text = text_copy;
        p.has_add_bos = 1;
        p.add_bos = !in->no_bos;
    } else {
        p.n_tokens = in->n_tokens;
        p.tokens = (int32_t *)in->tokens;
    }
    Judgeq__EvictionSpec es = JUDGEQ__EVICTION_SPEC__INIT;
    const judgeq_eviction *e = in->eviction;
    if (e) {
        es.has_policy = 1;
        es.policy = (Judgeq__Policy)e->policy;
#define OPT_FIELD(name, cast)                                                  \
    if (e->name >= 0) {                                                        \
        es.has_##name = 1;                                                     \
        es.name = (cast)e->name;                                               \
    }
        OPT_FIELD(budget, uint32_t)
        OPT_FIELD(window, uint32_t)
        OPT_FIELD(sink, uint32_t)
        OPT_FIELD(pool_kernel, uint32_t)
        OPT_FIELD(gqa_reduce, Judgeq__GqaReduce)
#undef OPT_FIELD
        es.soft_path = (char *)e->soft_path;
        p.eviction = &es;
    }
    if (in->reserve) {
        p.has_reserve = 1;
        p.reserve = in->reserve;
    }
    Judgeq__Request req = JUDGEQ__REQUEST__INIT;
    req.body_case = JUDGEQ__REQUEST__BODY_PREFILL;
    req.prefill = &p;
    jqc_frame f;
    rc = jqc_call(c, &req, JUDGEQ__RESPONSE__BODY_PREFILL, &f);
    free(text_copy);
    if (rc)
        return finish(c, rc);
    const Judgeq__PrefillReply *r = f.resp->prefill;
    if (r->n_layer && r->n_head_kv && r->n_kept &&
        (uint64_t)r->n_layer * r->n_head_kv != r->n_kept) {
        rc = jqc_fail(c, JUDGEQ_ERR_PROTOCOL,
                      "protocol error: Prefill reply has %zu kept counts for "
                      "%u layers x %u KV heads",
                      r->n_kept, r->n_layer, r->n_head_kv);
    } else if (result) {
        bool ok = true;
        result->prompt_tokens = r->prompt_tokens;
        result->prompt_token_ids =
            dup_array(r->prompt_token_ids, r->n_prompt_token_ids, sizeof(int32_t), &ok);
        result->n_prompt_token_ids = ok ? r->n_prompt_token_ids : 0;
        result->n_layer = r->n_layer;
        result->n_head_kv = r->n_head_kv;
        result->kept = dup_array(r->kept, r->n_kept, sizeof(uint32_t), &ok);
        result->n_kept = result->kept ? r->n_kept : 0;
        result->kv_bytes_full = r->kv_bytes_full;
        result->kv_bytes_kept = r->kv_bytes_kept;
        result->prefill_ms = r->prefill_ms;
        result->score_ms = r->score_ms;
        result->evict_ms = r->evict_ms;
        result->queue_ms = r->queue_ms;
        if (!ok) {
            judgeq_prefill_result_free(result);
            rc = jqc_fail(c, JUDGEQ_ERR_NOMEM, "out of memory copying the prefill reply");
        }
    }
    jqc_frame_free(&f);
    return finish(c, rc);
}

/* ----------------------------------------------------------- generate */

void judgeq_generate_opts_init(judgeq_generate_opts *o)
{
    if (!o)
        return;
    *o = (judgeq_generate_opts){
        .max_tokens = 64,
        .temp = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
    };
}

/* Hands one chunk to the callback with a NUL-terminated copy of the
 * piece. Returns non-zero when the callback wants to stop. */
static int deliver(judgeq_conn *c, const Judgeq__GenerateChunk *ch,
                   judgeq_token_cb cb, void *user, int *rc)
{
    size_t len = ch->has_piece ? ch->piece.len : 0;
    if (len + 1 > c->scratch_cap) {
        char *p = realloc(c->scratch, len + 1);
        if (!p) {
            *rc = jqc_fail(c, JUDGEQ_ERR_NOMEM, "out of memory for a token piece");
            return 1;
        }
        c->scratch = p;
        c->scratch_cap = len + 1;
    }
    if (len)
        memcpy(c->scratch, ch->piece.data, len);
    c->scratch[len] = 0;
    judgeq_token t = {
        .id = ch->token,
        .piece = c->scratch,
        .piece_len = len,
        .logprob = ch->logprob,
        .index = ch->index,
    };
    if (cb(user, &t) != 0) {
        *rc = jqc_fail(c, JUDGEQ_ERR_CANCELLED,
                       "generation stopped by the token callback after token %u",
                       ch->index);
        return 1;
    }
    return 0;
}

int judgeq_generate(judgeq_conn *c, uint64_t session_id,
                    const judgeq_generate_opts *opts, judgeq_token_cb cb,
                    void *user, judgeq_generate_result *result)
{
    if (result)
        memset(result, 0, sizeof *result);
    int rc = jqc_begin(c);
    if (rc)
        return rc;
    judgeq_generate_opts defaults;
    if (!opts) {
        judgeq_generate_opts_init(&defaults);
        opts = &defaults;
    }
    if (opts->n_stop_tokens && !opts->stop_tokens)
        return finish(c, jqc_fail(c, JUDGEQ_ERR_ARG,
                                  "n_stop_tokens is %zu but stop_tokens is NULL",
                                  opts->n_stop_tokens));
    Judgeq__Sampling s = JUDGEQ__SAMPLING__INIT;
    s.has_temp = s.has_top_k = s.has_top_p = s.has_seed = 1;
    s.temp = opts->temp;
    s.top_k = opts->top_k;
    s.top_p = opts->top_p;
    s.seed = opts->seed;
    Judgeq__Generate g = JUDGEQ__GENERATE__INIT;
    g.has_session_id = 1;
    g.session_id = session_id;
    g.has_max_tokens = 1;
    g.max_tokens = opts->max_tokens;
    g.sampling = &s;
    g.n_stop_tokens = opts->n_stop_tokens;
    g.stop_tokens = (int32_t *)opts->stop_tokens;
    g.has_ignore_eos = 1;
    g.ignore_eos = opts->ignore_eos;
    Judgeq__Request req = JUDGEQ__REQUEST__INIT;
    req.body_case = JUDGEQ__REQUEST__BODY_GENERATE;
    req.generate = &g;
    uint64_t id;
    rc = jqc_send(c, &req, &id);
    if (rc)
        return finish(c, rc);
    uint32_t n_seen = 0;
    for (;;) {
        jqc_frame f;
        rc = jqc_recv(c, id, &f);
        if (rc)
            break;
        const Judgeq__Response *r = f.resp;
        bool done = !r->has_done || r->done;
        if (r->body_case == JUDGEQ__RESPONSE__BODY_CHUNK) {
            n_seen++;
            int stop = cb ? deliver(c, r->chunk, cb, user, &rc) : 0;
            jqc_frame_free(&f);
            if (stop)
                break; /* later chunks of id are stale: dropped on arrival */
            if (done) {
                /* a stream that ends on a chunk: no statistics */
                if (result) {
                    result->n_tokens = n_seen;
                    strcpy(result->stop_reason, "length");
                }
                break;
            }
            continue;
        }
        if (r->body_case == JUDGEQ__RESPONSE__BODY_GENERATE_DONE) {
            const Judgeq__GenerateDone *d = r->generate_done;
            if (result) {
                result->n_tokens = d->has_n_tokens ? d->n_tokens : n_seen;
                const char *why = d->stop_reason ? d->stop_reason : "";
                size_t i = 0;
                for (; why[i] && i + 1 < sizeof result->stop_reason; i++)
                    result->stop_reason[i] =
                        (why[i] >= 'a' && why[i] <= 'z') || why[i] == '_' ? why[i] : '?';
                result->stop_reason[i] = 0;
                result->decode_ms = d->decode_ms;
                result->decode_tokens_per_s = d->decode_tokens_per_s;
            }
            jqc_frame_free(&f);
            break;
        }
        int got = (int)r->body_case;
        jqc_frame_free(&f);
        rc = jqc_fail(c, JUDGEQ_ERR_PROTOCOL,
                      "protocol error: reply body %d inside a generation stream",
                      got);
        break;
    }
    return finish(c, rc);
}

/* ------------------------------------------------------ tokenization */

int judgeq_tokenize(judgeq_conn *c, const char *text, bool add_bos,
                    int32_t **tokens, size_t *n_tokens)
{
    if (tokens)
        *tokens = NULL;
    if (n_tokens)
        *n_tokens = 0;
    int rc = jqc_begin(c);
    if (rc)
        return rc;
    if (!text || !tokens || !n_tokens)
        return finish(c, jqc_fail(c, JUDGEQ_ERR_ARG,
                                  "judgeq_tokenize: text, tokens and n_tokens are required"));
    Judgeq__Tokenize t = JUDGEQ__TOKENIZE__INIT;
    t.text = (char *)text;
    t.has_add_bos = 1;
    t.add_bos = add_bos;
    Judgeq__Request req = JUDGEQ__REQUEST__INIT;
    req.body_case = JUDGEQ__REQUEST__BODY_TOKENIZE;
    req.tokenize = &t;
    jqc_frame f;
    rc = jqc_call(c, &req, JUDGEQ__RESPONSE__BODY_TOKENIZE, &f);
    if (rc)
        return finish(c, rc);
    const Judgeq__TokenizeReply *r = f.resp->tokenize;
    bool ok = true;
    /* one spare element so that an empty result is still a real pointer */
    *tokens = malloc((r->n_tokens + 1) * sizeof(int32_t));
    if (!*tokens)
        ok = false;
    else if (r->n_tokens)
        memcpy(*tokens, r->tokens, r->n_tokens * sizeof(int32_t));
    if (ok)
        *n_tokens = r->n_tokens;
    else
        rc = jqc_fail(c, JUDGEQ_ERR_NOMEM, "out of memory for %zu tokens", r->n_tokens);
    jqc_frame_free(&f);
    return finish(c, rc);
}

int judgeq_detokenize(judgeq_conn *c, const int32_t *tokens, size_t n_tokens,
                      char **text, size_t *text_len)
{
    if (text)
        *text = NULL;
    if (text_len)
        *text_len = 0;
    int rc = jqc_begin(c);
    if (rc)
        return rc;
    if ((n_tokens && !tokens) || !text)
        return finish(c, jqc_fail(c, JUDGEQ_ERR_ARG,
                                  "judgeq_detokenize: tokens and text are required"));
    Judgeq__Detokenize d = JUDGEQ__DETOKENIZE__INIT;
    d.n_tokens = n_tokens;
    d.tokens = (int32_t *)tokens;
    Judgeq__Request req = JUDGEQ__REQUEST__INIT;
    req.body_case = JUDGEQ__REQUEST__BODY_DETOKENIZE;
    req.detokenize = &d;
    jqc_frame f;
    rc = jqc_call(c, &req, JUDGEQ__RESPONSE__BODY_DETOKENIZE, &f);
    if (rc)
        return finish(c, rc);
    const Judgeq__DetokenizeReply *r = f.resp->detokenize;
    size_t len = r->has_text ? r->text.len : 0;
    *text = malloc(len + 1);
    if (!*text) {
        rc = jqc_fail(c, JUDGEQ_ERR_NOMEM, "out of memory for %zu bytes of text", len);
    } else {
        if (len)
            memcpy(*text, r->text.data, len);
        (*text)[len] = 0;
        if (text_len)
            *text_len = len;
    }
    jqc_frame_free(&f);
    return finish(c, rc);
}

/* ------------------------------------------------------ stats, ping */

void judgeq_stats_free(judgeq_stats *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_pools; i++)
        free(s->pools[i].cpuset);
    free(s->pools);
    memset(s, 0, sizeof *s);
}

int judgeq_get_stats(judgeq_conn *c, judgeq_stats *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    int rc = jqc_begin(c);
    if (rc)
        return rc;
    if (!out)
        return finish(c, jqc_fail(c, JUDGEQ_ERR_ARG, "judgeq_get_stats: stats is NULL"));
    Judgeq__Stats st = JUDGEQ__STATS__INIT;
    Judgeq__Request req = JUDGEQ__REQUEST__INIT;
    req.body_case = JUDGEQ__REQUEST__BODY_STATS;
    req.stats = &st;
    jqc_frame f;
    rc = jqc_call(c, &req, JUDGEQ__RESPONSE__BODY_STATS, &f);
    if (rc)
        return finish(c, rc);
    const Judgeq__StatsReply *r = f.resp->stats;
    out->sessions = r->sessions;
    out->connections = r->connections;
    out->memory_used = r->memory_used;
    out->memory_budget = r->memory_budget;
    out->requests = r->requests;
    out->errors = r->errors;
    out->uptime_s = r->uptime_s;
    out->shared_prefix_bytes = r->shared_prefix_bytes;
    out->rss_bytes = r->has_rss_bytes ? r->rss_bytes : 0;
    out->open_fds = r->has_open_fds ? r->open_fds : 0;
    if (r->n_pools) {
        out->pools = calloc(r->n_pools, sizeof *out->pools);
        if (!out->pools)
            rc = jqc_fail(c, JUDGEQ_ERR_NOMEM, "out of memory for %zu pools", r->n_pools);
        for (size_t i = 0; !rc && i < r->n_pools; i++) {
            const Judgeq__PoolStats *p = r->pools[i];
            judgeq_pool_stats *o = &out->pools[i];
            out->n_pools = i + 1;
            o->node = p->node;
            o->cpuset = dup_str(p->cpuset);
            o->threads = p->threads;
            o->sessions = p->sessions;
            o->busy_ms = p->busy_ms;
            if (!o->cpuset)
                rc = jqc_fail(c, JUDGEQ_ERR_NOMEM, "out of memory copying stats");
        }
        if (rc)
            judgeq_stats_free(out);
    }
    jqc_frame_free(&f);
    return finish(c, rc);
}

int judgeq_ping(judgeq_conn *c, double *rtt_us)
{
    if (rtt_us)
        *rtt_us = 0;
    int rc = jqc_begin(c);
    if (rc)
        return rc;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* a nonce that differs per request so that a daemon echoing an old
     * Pong is caught */
    uint64_t nonce = c->next_id * UINT64_C(0x9e3779b97f4a7c15) ^ (uint64_t)t0.tv_nsec;
    Judgeq__Ping p = JUDGEQ__PING__INIT;
    p.has_nonce = 1;
    p.nonce = nonce;
    Judgeq__Request req = JUDGEQ__REQUEST__INIT;
    req.body_case = JUDGEQ__REQUEST__BODY_PING;
    req.ping = &p;
    jqc_frame f;
    rc = jqc_call(c, &req, JUDGEQ__RESPONSE__BODY_PONG, &f);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc)
        return finish(c, rc);
    if (!f.resp->pong->has_nonce || f.resp->pong->nonce != nonce)
        rc = jqc_fail(c, JUDGEQ_ERR_PROTOCOL,
                      "protocol error: Pong does not echo the Ping's nonce");
    else if (rtt_us)
        *rtt_us = (double)(t1.tv_sec - t0.tv_sec) * 1e6 +
                  (double)(t1.tv_nsec - t0.tv_nsec) / 1e3;
    jqc_frame_free(&f);
    return finish(c, rc);
}

/* --------------------------------------------------------- export KV */

void judgeq_kv_export_free(judgeq_kv_export *l)
{
    if (!l)
        return;
    free(l->heads);
    memset(l, 0, sizeof *l);
}

int judgeq_export_kv(judgeq_conn *c, uint64_t session_id, int *fd,
                     judgeq_kv_export *layout)
{
    if (fd)
        *fd = -1;
    if (layout)
        memset(layout, 0, sizeof *layout);
    int rc = jqc_begin(c);
    if (rc)
        return rc;
    if (!fd)
        return finish(c, jqc_fail(c, JUDGEQ_ERR_ARG, "judgeq_export_kv: fd is NULL"));
    Judgeq__ExportKV x = JUDGEQ__EXPORT_KV__INIT;
    x.has_session_id = 1;
    x.session_id = session_id;
    Judgeq__Request req = JUDGEQ__REQUEST__INIT;
    req.body_case = JUDGEQ__REQUEST__BODY_EXPORT_KV;
    req.export_kv = &x;
    jqc_frame f;
    rc = jqc_call(c, &req, JUDGEQ__RESPONSE__BODY_EXPORT_KV, &f);
    if (rc)
        return finish(c, rc);
    if (f.fd < 0) {
        jqc_frame_free(&f);
        return finish(c, jqc_fail(c, JUDGEQ_ERR_PROTOCOL,
                                  "protocol error: the ExportKV reply came "
                                  "without a file descriptor"));
    }
    char why[256];
    if (jqc_check_seals(f.fd, why, sizeof why) != JUDGEQ_OK) {
        jqc_frame_free(&f); /* closes the fd: it is not safe to map */
        return finish(c, jqc_fail(c, JUDGEQ_ERR_BAD_FD, "refused the exported KV: %s", why));
    }
    const Judgeq__KvLayout *l = f.resp->export_kv->layout;
    if (layout && l) {
        bool ok = true;
        layout->version = l->version;
        layout->n_layer = l->n_layer;
        layout->n_head_kv = l->n_head_kv;
        layout->head_dim = l->head_dim;
        layout->kv_type = (judgeq_kv_type)l->kv_type;
        layout->total_bytes = l->total_bytes;
        if (l->n_heads) {
            layout->heads = calloc(l->n_heads, sizeof *layout->heads);
            ok = layout->heads != NULL;
        }
        for (size_t i = 0; ok && i < l->n_heads; i++) {
            const Judgeq__KvHeadLayout *h = l->heads[i];
            layout->heads[i] = (judgeq_kv_head_entry){
                .layer = h->layer,
                .kv_head = h->kv_head,
                .length = h->length,
                .keys_offset = h->keys_offset,
                .values_offset = h->values_offset,
                .positions_offset = h->positions_offset,
            };
        }
        if (ok) {
            layout->n_heads = l->n_heads;
        } else {
            judgeq_kv_export_free(layout);
            jqc_frame_free(&f);
            return finish(c, jqc_fail(c, JUDGEQ_ERR_NOMEM, "out of memory for the KV layout"));
        }
    }
    *fd = f.fd;
    f.fd = -1; /* the caller owns it now */
    jqc_frame_free(&f);
    return finish(c, rc);
}
