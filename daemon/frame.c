/* frame.c — see frame.h.
 *
 * The validator is deliberately exhaustive and boring: one check per field
 * that comes from the wire, each with a message that names the field as the
 * .proto spells it and the limit it broke. protobuf-c accepts any integer
 * in an enum field and any length in a repeated field, so nothing is
 * trusted because it unpacked.
 */
#include "frame.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the validator says no in one way: jq_wire_fail (frame.h) */
#define fail jq_wire_fail

int jq_wire_fail(jq_wire_error *err, Judgeq__ErrorCode code, const char *fmt,
                 ...)
{
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

jq_frame_status jq_frame_peek(const uint8_t *buf, size_t len,
                              uint32_t max_payload, uint32_t *payload_len)
{
    if (len < JQ_FRAME_HEADER_BYTES)
        return JQ_FRAME_NEED_MORE;
    uint32_t n = (uint32_t)buf[0] | (uint32_t)buf[1] << 8 |
                 (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 24;
    *payload_len = n;
    if (n > max_payload)
        return JQ_FRAME_TOO_LARGE;
    if (len - JQ_FRAME_HEADER_BYTES < n)
        return JQ_FRAME_NEED_MORE;
    return JQ_FRAME_READY;
}

void jq_frame_put_header(uint8_t out[JQ_FRAME_HEADER_BYTES], uint32_t len)
{
    out[0] = (uint8_t)len;
    out[1] = (uint8_t)(len >> 8);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 24);
}

const char *jq_request_kind_name(Judgeq__Request__BodyCase c)
{
    switch (c) {
    case JUDGEQ__REQUEST__BODY_HELLO: return "hello";
    case JUDGEQ__REQUEST__BODY_CREATE_SESSION: return "create_session";
    case JUDGEQ__REQUEST__BODY_PREFILL: return "prefill";
    case JUDGEQ__REQUEST__BODY_GENERATE: return "generate";
    case JUDGEQ__REQUEST__BODY_FORK: return "fork";
    case JUDGEQ__REQUEST__BODY_EXPORT_KV: return "export_kv";
    case JUDGEQ__REQUEST__BODY_TOKENIZE: return "tokenize";
    case JUDGEQ__REQUEST__BODY_DETOKENIZE: return "detokenize";
    case JUDGEQ__REQUEST__BODY_STATS: return "stats";
    case JUDGEQ__REQUEST__BODY_CLOSE_SESSION: return "close_session";
    case JUDGEQ__REQUEST__BODY_PING: return "ping";
    default: return "unknown";
    }
}

/* Token ids must index the vocabulary: the engine would reject them too,
 * but only on a worker, after admission; here the client learns which one. */
static int check_tokens(const char *field, const int32_t *t, size_t n,
                        size_t max_n, const jq_request_limits *lim,
                        jq_wire_error *err)
{
    if (n > max_n)
        return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                    "%s has %zu tokens, more than the limit %zu", field, n,
                    max_n);
    for (size_t i = 0; i < n; i++)
        if (t[i] < 0 || t[i] >= lim->n_vocab)
            return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                        "%s[%zu] = %d is not a token id (the vocabulary has "
                        "%d: 0..%d)",
                        field, i, (int)t[i], (int)lim->n_vocab,
                        (int)lim->n_vocab - 1);
    return 0;
}

static int need_session(const char *kind, bool has, uint64_t id,
                        jq_wire_error *err)
{
    if (!has || id == 0)
        return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                    "%s.session_id is required (a CreateSession reply's "
                    "session_id)",
                    kind);
    return 0;
}

static int check_text(const char *field, const char *text,
                      const jq_request_limits *lim, jq_wire_error *err)
{
    size_t n = strlen(text);
    if (n > lim->max_text_bytes)
        return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                    "%s has %zu bytes, more than the limit %u", field, n,
                    lim->max_text_bytes);
    return 0;
}

int jq_request_evict_spec(const Judgeq__EvictionSpec *e, jq_evict_spec *spec,
                          jq_wire_error *err)
{
    if (!e) {
        *spec = jq_evict_spec_default(JQ_EVICT_FULL, 0);
        return 0;
    }
    int policy = e->has_policy ? (int)e->policy : JUDGEQ__POLICY__POLICY_FULL;
    if (policy < 0 || policy >= (int)JQ_EVICT_COUNT_)
        return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                    "prefill.eviction.policy %d is not a policy (0..%d)",
                    policy, (int)JQ_EVICT_COUNT_ - 1);
    if (policy == JQ_EVICT_ORACLE)
        return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                    "prefill.eviction.policy oracle observes the tokens it "
                    "is about to generate: it exists for offline evaluation "
                    "(judgeq hitrate) only");
    if (policy != JQ_EVICT_FULL) {
        if (!e->has_budget || e->budget == 0)
            return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                        "prefill.eviction.budget must be at least 1 for "
                        "policy %s (got %u)",
                        jq_evict_policy_name((jq_evict_policy)policy),
                        e->has_budget ? e->budget : 0);
        if (e->budget > INT32_MAX)
            return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                        "prefill.eviction.budget %u is too large", e->budget);
    }
    *spec = jq_evict_spec_default((jq_evict_policy)policy,
                                  policy == JQ_EVICT_FULL ? 1
                                                          : (int32_t)e->budget);
    if (e->has_window) {
        if (e->window > INT32_MAX)
            return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                        "prefill.eviction.window %u is too large", e->window);
        spec->window = (int32_t)e->window;
    }
    if (e->has_sink) {
        if (e->sink > INT32_MAX)
            return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                        "prefill.eviction.sink %u is too large", e->sink);
        spec->sink = (int32_t)e->sink;
    }
    if (e->has_pool_kernel) {
        if (e->pool_kernel > 1023)
            return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                        "prefill.eviction.pool_kernel %u is too large (at "
                        "most 1023)",
                        e->pool_kernel);
        spec->pool_kernel = (int32_t)e->pool_kernel;
    }
    if (e->has_gqa_reduce) {
        if (e->gqa_reduce != JUDGEQ__GQA_REDUCE__GQA_MEAN &&
            e->gqa_reduce != JUDGEQ__GQA_REDUCE__GQA_MAX)
            return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                        "prefill.eviction.gqa_reduce %d is not mean (0) or "
                        "max (1)",
                        (int)e->gqa_reduce);
        spec->gqa_reduce = e->gqa_reduce == JUDGEQ__GQA_REDUCE__GQA_MAX
                               ? JQ_GQA_MAX
                               : JQ_GQA_MEAN;
    }
    if (policy == JQ_EVICT_FULL)
        return 0;
    char msg[200];
    if (jq_evict_spec_check(spec, msg, sizeof msg) != 0)
        return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                    "prefill.eviction: %s", msg);
    return 0;
}

jq_sampling jq_request_sampling(const Judgeq__Sampling *s)
{
    jq_sampling p = {.temp = 0.8f, .top_k = 40, .top_p = 0.95f, .seed = 0};
    if (s) {
        if (s->has_temp)
            p.temp = s->temp;
        if (s->has_top_k)
            p.top_k = s->top_k;
        if (s->has_top_p)
            p.top_p = s->top_p;
        if (s->has_seed)
            p.seed = s->seed;
    }
    return p;
}

/* The shape of a client-named soft-token file; whether an --allow-path
 * prefix holds it is the server's question (paths.h), asked when the
 * request is admitted. A daemon without prefixes refuses every path here,
 * so it never touches the file system for one. */
static int check_soft_path(const char *path, jq_evict_policy policy,
                           const jq_request_limits *lim, jq_wire_error *err)
{
    size_t n = strlen(path);
    if (policy != JQ_EVICT_JUDGEQ)
        return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                    "prefill.eviction.soft_path is for policy judgeq only "
                    "(the policy is %s)",
                    jq_evict_policy_name(policy));
    if (n == 0 || n > JQ_MAX_CLIENT_PATH)
        return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                    "prefill.eviction.soft_path has %zu bytes (1..%d)", n,
                    JQ_MAX_CLIENT_PATH);
    if (!lim->client_paths)
        return fail(err, JUDGEQ__ERROR_CODE__PERMISSION_DENIED,
                    "prefill.eviction.soft_path %.160s: this daemon opens no "
                    "client paths (it was started without --allow-path); "
                    "leave soft_path out to use its own --soft",
                    path);
    if (path[0] != '/')
        return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                    "prefill.eviction.soft_path %.160s is not an absolute "
                    "path (the daemon does not share your working directory)",
                    path);
    return 0;
}

static int check_prefill(const Judgeq__Prefill *p,
                         const jq_request_limits *lim, jq_wire_error *err)
{
    if (need_session("prefill", p->has_session_id, p->session_id, err))
        return -1;
    bool has_text = p->text != NULL;
    if (has_text == (p->n_tokens > 0))
        return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                    "prefill needs exactly one of tokens and text (got %s)",
                    has_text ? "both" : "neither");
    if (has_text && check_text("prefill.text", p->text, lim, err))
        return -1;
    if (has_text && p->text[0] == 0 && !p->add_bos)
        return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                    "prefill.text is empty and add_bos is false: nothing to "
                    "condition on");
    if (check_tokens("prefill.tokens", p->tokens, p->n_tokens,
                     lim->max_context, lim, err))
        return -1;
    if (p->has_reserve && p->reserve > lim->max_context)
        return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                    "prefill.reserve %u exceeds the context limit %u",
                    p->reserve, lim->max_context);
    jq_evict_spec spec;
    if (jq_request_evict_spec(p->eviction, &spec, err))
        return -1;
    const char *soft_path = p->eviction ? p->eviction->soft_path : NULL;
    if (soft_path && check_soft_path(soft_path, spec.policy, lim, err))
        return -1;
    if (spec.policy == JQ_EVICT_JUDGEQ && !lim->have_soft_tokens &&
        !soft_path)
        return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                    "prefill.eviction.policy judgeq needs soft tokens, and "
                    "this daemon was started without --soft (name a file in "
                    "prefill.eviction.soft_path if its --allow-path permits)");
    return 0;
}

static int check_generate(const Judgeq__Generate *g,
                          const jq_request_limits *lim, jq_wire_error *err)
{
    if (need_session("generate", g->has_session_id, g->session_id, err))
        return -1;
    if (g->has_max_tokens && (g->max_tokens == 0 ||
                              g->max_tokens > lim->max_context))
        return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                    "generate.max_tokens %u is outside 1..%u (the context "
                    "limit)",
                    g->max_tokens, lim->max_context);
    const Judgeq__Sampling *s = g->sampling;
    if (s) {
        if (s->has_temp && !(isfinite(s->temp) && s->temp >= 0 &&
                             s->temp <= 1e6f))
            return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                        "generate.sampling.temp %g is outside 0..1e6 (0 = "
                        "greedy)",
                        (double)s->temp);
        if (s->has_top_k && s->top_k < 0)
            return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                        "generate.sampling.top_k %d is negative (0 = off)",
                        (int)s->top_k);
        if (s->has_top_p && !(isfinite(s->top_p) && s->top_p >= 0 &&
                              s->top_p <= 1))
            return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                        "generate.sampling.top_p %g is outside 0..1",
                        (double)s->top_p);
    }
    return check_tokens("generate.stop_tokens", g->stop_tokens,
                        g->n_stop_tokens, JQ_MAX_STOP_TOKENS, lim, err);
}

int jq_request_validate(const Judgeq__Request *req,
                        const jq_request_limits *lim, jq_wire_error *err)
{
    switch (req->body_case) {
    case JUDGEQ__REQUEST__BODY_HELLO: {
        const Judgeq__Hello *h = req->hello;
        if (h->has_protocol_version &&
            h->protocol_version != JQ_PROTOCOL_VERSION)
            return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                        "hello.protocol_version %u is not supported (this "
                        "daemon speaks %d)",
                        h->protocol_version, JQ_PROTOCOL_VERSION);
        if (h->client_name && strlen(h->client_name) > JQ_MAX_CLIENT_NAME)
            return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                        "hello.client_name is longer than %d bytes",
                        JQ_MAX_CLIENT_NAME);
        return 0;
    }
    case JUDGEQ__REQUEST__BODY_CREATE_SESSION: {
        const Judgeq__CreateSession *c = req->create_session;
        if (c->has_max_context && c->max_context > lim->max_context)
            return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                        "create_session.max_context %u exceeds the daemon's "
                        "limit %u",
                        c->max_context, lim->max_context);
        if (c->has_kv_type && c->kv_type != JUDGEQ__KV_TYPE__KV_F32 &&
            c->kv_type != JUDGEQ__KV_TYPE__KV_F16)
            return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                        "create_session.kv_type %d is not KV_F32 (0) or "
                        "KV_F16 (1)",
                        (int)c->kv_type);
        return 0;
    }
    case JUDGEQ__REQUEST__BODY_PREFILL:
        return check_prefill(req->prefill, lim, err);
    case JUDGEQ__REQUEST__BODY_GENERATE:
        return check_generate(req->generate, lim, err);
    case JUDGEQ__REQUEST__BODY_FORK:
        return need_session("fork", req->fork->has_session_id,
                            req->fork->session_id, err);
    case JUDGEQ__REQUEST__BODY_EXPORT_KV:
        return need_session("export_kv", req->export_kv->has_session_id,
                            req->export_kv->session_id, err);
    case JUDGEQ__REQUEST__BODY_CLOSE_SESSION:
        return need_session("close_session",
                            req->close_session->has_session_id,
                            req->close_session->session_id, err);
    case JUDGEQ__REQUEST__BODY_TOKENIZE:
        if (!req->tokenize->text)
            return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                        "tokenize.text is required");
        return check_text("tokenize.text", req->tokenize->text, lim, err);
    case JUDGEQ__REQUEST__BODY_DETOKENIZE:
        return check_tokens("detokenize.tokens", req->detokenize->tokens,
                            req->detokenize->n_tokens, lim->max_context, lim,
                            err);
    case JUDGEQ__REQUEST__BODY_STATS:
    case JUDGEQ__REQUEST__BODY_PING:
        return 0;
    default:
        return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                    "request %llu has no body this daemon knows (protocol "
                    "version %d)",
                    (unsigned long long)req->id, JQ_PROTOCOL_VERSION);
    }
}

/* protobuf-c's unpack allocates as the bytes ask: every unknown field
 * becomes a 24-byte record plus a copy of its bytes, and every field
 * occurrence a 32-byte scan record first, so a 16 MiB frame of 3-byte
 * unknown fields made 480 MiB of allocations (measured). A Request the
 * daemon understands needs far less: packed token ids take at most 4
 * bytes per byte on the wire, strings their length. Decoding gets an
 * allocator that counts and refuses past that; the memory is plain
 * malloc, so the message is freed as any other. */
typedef struct {
    size_t used, budget;
    bool refused;
} decode_budget;

static void *budget_alloc(void *ud, size_t size)
{
    decode_budget *b = ud;
    if (size > b->budget - b->used) {
        b->refused = true;
        return NULL;
    }
    b->used += size;
    return malloc(size);
}

static void budget_free(void *ud, void *p)
{
    (void)ud;
    free(p);
}

size_t jq_request_decode_budget(size_t len)
{
    return JQ_DECODE_BUDGET_FACTOR * len + JQ_DECODE_BUDGET_SLACK;
}

int jq_request_decode(const uint8_t *payload, size_t len,
                      const jq_request_limits *lim, Judgeq__Request **out,
                      uint64_t *id, jq_wire_error *err)
{
    *out = NULL;
    *id = 0;
    decode_budget b = {0, jq_request_decode_budget(len), false};
    ProtobufCAllocator alloc = {budget_alloc, budget_free, &b};
    Judgeq__Request *req = judgeq__request__unpack(&alloc, len, payload);
    if (!req && b.refused)
        return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                    "a frame of %zu bytes needs more than %zu bytes to "
                    "decode (unknown fields, or repeated fields not packed)",
                    len, b.budget);
    if (!req)
        return fail(err, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                    "a frame of %zu bytes is not a serialized Request", len);
    *id = req->id;
    if (jq_request_validate(req, lim, err) != 0) {
        judgeq__request__free_unpacked(req, NULL);
        return -1;
    }
    *out = req;
    return 0;
}

size_t jq_response_frame_size(const Judgeq__Response *r)
{
    return JQ_FRAME_HEADER_BYTES + judgeq__response__get_packed_size(r);
}

size_t jq_response_frame_write(const Judgeq__Response *r, uint8_t *out)
{
    size_t n = judgeq__response__pack(r, out + JQ_FRAME_HEADER_BYTES);
    jq_frame_put_header(out, (uint32_t)n);
    return JQ_FRAME_HEADER_BYTES + n;
}
