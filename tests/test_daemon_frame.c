/* test_daemon_frame.c — the daemon's wire layer as pure functions: the
 * length prefix, request decoding, every validation rule with the field it
 * must name, response frames, and random bytes that must never crash it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "frame.h"

static const jq_request_limits lim = {
    .n_vocab = 512,
    .max_context = 512,
    .max_text_bytes = 1000,
    .have_soft_tokens = false,
};

/* Packs q and runs it through jq_request_decode. */
static int decode(const Judgeq__Request *q, jq_wire_error *err,
                  uint64_t *id)
{
    size_t n = judgeq__request__get_packed_size(q);
    uint8_t *buf = malloc(n ? n : 1);
    assert_non_null(buf);
    judgeq__request__pack(q, buf);
    Judgeq__Request *out = NULL;
    uint64_t got_id = 0;
    memset(err, 0, sizeof *err);
    int rc = jq_request_decode(buf, n, &lim, &out, &got_id, err);
    if (rc == 0) {
        assert_non_null(out);
        assert_int_equal(out->body_case, q->body_case);
        judgeq__request__free_unpacked(out, NULL);
    } else {
        assert_null(out);
        assert_true(strlen(err->message) > 0);
    }
    if (id)
        *id = got_id;
    free(buf);
    return rc;
}

/* Expects q to be refused with code and a message containing needle. */
static void expect_error(const Judgeq__Request *q, Judgeq__ErrorCode code,
                         const char *needle)
{
    jq_wire_error err;
    uint64_t id;
    assert_int_equal(decode(q, &err, &id), -1);
    assert_int_equal(err.code, code);
    if (!strstr(err.message, needle))
        fail_msg("message \"%s\" does not name \"%s\"", err.message, needle);
    assert_int_equal(id, q->id);
}

static void expect_ok(const Judgeq__Request *q)
{
    jq_wire_error err;
    if (decode(q, &err, NULL) != 0)
        fail_msg("refused: %s", err.message);
}

static void test_peek(void **state)
{
    (void)state;
    uint8_t buf[16] = {0};
    uint32_t n = 99;
    for (size_t len = 0; len < 4; len++)
        assert_int_equal(jq_frame_peek(buf, len, 100, &n), JQ_FRAME_NEED_MORE);
    jq_frame_put_header(buf, 5);
    assert_int_equal(buf[0], 5);
    assert_int_equal(jq_frame_peek(buf, 4, 100, &n), JQ_FRAME_NEED_MORE);
    assert_int_equal(n, 5);
    assert_int_equal(jq_frame_peek(buf, 8, 100, &n), JQ_FRAME_NEED_MORE);
    assert_int_equal(jq_frame_peek(buf, 9, 100, &n), JQ_FRAME_READY);
    assert_int_equal(jq_frame_peek(buf, 16, 100, &n), JQ_FRAME_READY);
    /* exactly the limit is accepted, one more is refused at once */
    jq_frame_put_header(buf, 100);
    assert_int_equal(jq_frame_peek(buf, 4, 100, &n), JQ_FRAME_NEED_MORE);
    jq_frame_put_header(buf, 101);
    assert_int_equal(jq_frame_peek(buf, 4, 100, &n), JQ_FRAME_TOO_LARGE);
    assert_int_equal(n, 101);
    /* little-endian, all four bytes */
    jq_frame_put_header(buf, 0xA1B2C3D4u);
    assert_int_equal(buf[0], 0xD4);
    assert_int_equal(buf[3], 0xA1);
    assert_int_equal(jq_frame_peek(buf, 4, UINT32_MAX, &n), JQ_FRAME_NEED_MORE);
    assert_int_equal(n, 0xA1B2C3D4u);
    /* zero-length frame: ready (an empty Request, refused later) */
    jq_frame_put_header(buf, 0);
    assert_int_equal(jq_frame_peek(buf, 4, 100, &n), JQ_FRAME_READY);
    assert_int_equal(n, 0);
}

static void test_garbage_and_empty(void **state)
{
    (void)state;
    Judgeq__Request *out = (Judgeq__Request *)1;
    uint64_t id = 5;
    jq_wire_error err;
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02};
    assert_int_equal(jq_request_decode(garbage, sizeof garbage, &lim, &out,
                                       &id, &err),
                     -1);
    assert_null(out);
    assert_int_equal(id, 0);
    assert_int_equal(err.code, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "not a serialized Request"));
    /* empty payload: a Request without a body */
    assert_int_equal(jq_request_decode(garbage, 0, &lim, &out, &id, &err), -1);
    assert_non_null(strstr(err.message, "no body"));
    /* a truncated valid request */
    Judgeq__Request q = JUDGEQ__REQUEST__INIT;
    Judgeq__Ping ping = JUDGEQ__PING__INIT;
    ping.has_nonce = 1;
    ping.nonce = 0x123456789abcull;
    q.has_id = 1;
    q.id = 77;
    q.body_case = JUDGEQ__REQUEST__BODY_PING;
    q.ping = &ping;
    uint8_t buf[64];
    size_t n = judgeq__request__pack(&q, buf);
    assert_int_equal(jq_request_decode(buf, n - 1, &lim, &out, &id, &err), -1);
    assert_int_equal(err.code, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT);
    assert_int_equal(jq_request_decode(buf, n, &lim, &out, &id, &err), 0);
    assert_int_equal(id, 77);
    assert_int_equal(out->ping->nonce, 0x123456789abcull);
    judgeq__request__free_unpacked(out, NULL);
}

static void test_hello_and_create(void **state)
{
    (void)state;
    Judgeq__Request q = JUDGEQ__REQUEST__INIT;
    Judgeq__Hello h = JUDGEQ__HELLO__INIT;
    q.id = 1;
    q.has_id = 1;
    q.body_case = JUDGEQ__REQUEST__BODY_HELLO;
    q.hello = &h;
    expect_ok(&q);
    h.has_protocol_version = 1;
    h.protocol_version = 1;
    h.client_name = "test";
    expect_ok(&q);
    h.protocol_version = 2;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "hello.protocol_version 2");
    h.protocol_version = 1;
    char longname[400];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    h.client_name = longname;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "hello.client_name");

    Judgeq__CreateSession cs = JUDGEQ__CREATE_SESSION__INIT;
    q.body_case = JUDGEQ__REQUEST__BODY_CREATE_SESSION;
    q.create_session = &cs;
    expect_ok(&q);
    cs.has_max_context = 1;
    cs.max_context = 512;
    expect_ok(&q);
    cs.max_context = 513;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "create_session.max_context 513");
    cs.max_context = 0;
    cs.has_kv_type = 1;
    cs.kv_type = JUDGEQ__KV_TYPE__KV_F16;
    expect_ok(&q);
    cs.kv_type = (Judgeq__KvType)7;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "create_session.kv_type 7");
}

static void test_prefill_rules(void **state)
{
    (void)state;
    Judgeq__Request q = JUDGEQ__REQUEST__INIT;
    Judgeq__Prefill p = JUDGEQ__PREFILL__INIT;
    Judgeq__EvictionSpec e = JUDGEQ__EVICTION_SPEC__INIT;
    int32_t toks[4] = {1, 2, 3, 511};
    q.has_id = 1;
    q.id = 9;
    q.body_case = JUDGEQ__REQUEST__BODY_PREFILL;
    q.prefill = &p;
    p.n_tokens = 4;
    p.tokens = toks;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "prefill.session_id is required");
    p.has_session_id = 1;
    p.session_id = 3;
    expect_ok(&q);
    /* token ids */
    toks[3] = 512;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "prefill.tokens[3] = 512");
    toks[3] = -1;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "prefill.tokens[3] = -1");
    toks[3] = 5;
    /* tokens xor text */
    p.text = "hello";
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT, "both");
    p.n_tokens = 0;
    expect_ok(&q);
    p.text = NULL;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT, "neither");
    char big[1100];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    p.text = big;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "prefill.text has 1099 bytes");
    p.text = "";
    p.has_add_bos = 1;
    p.add_bos = 0;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT, "nothing to");
    p.text = NULL;
    /* too many tokens for the context */
    int32_t *many = calloc(513, sizeof(int32_t));
    assert_non_null(many);
    p.tokens = many;
    p.n_tokens = 513;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "prefill.tokens has 513 tokens");
    free(many);
    p.tokens = toks;
    p.n_tokens = 4;
    p.has_reserve = 1;
    p.reserve = 600;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "prefill.reserve 600");
    p.reserve = 16;
    expect_ok(&q);

    /* eviction */
    p.eviction = &e;
    expect_ok(&q); /* all defaults: full */
    e.has_policy = 1;
    e.policy = JUDGEQ__POLICY__POLICY_SNAPKV;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "prefill.eviction.budget");
    e.has_budget = 1;
    e.budget = 0;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "prefill.eviction.budget must be at least 1");
    e.budget = 64;
    expect_ok(&q);
    e.has_window = 1;
    e.window = 64;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT, "--window 64");
    e.window = 8;
    e.has_pool_kernel = 1;
    e.pool_kernel = 4;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT, "pool");
    e.pool_kernel = 5000;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "prefill.eviction.pool_kernel 5000");
    e.pool_kernel = 5;
    e.has_gqa_reduce = 1;
    e.gqa_reduce = (Judgeq__GqaReduce)9;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "prefill.eviction.gqa_reduce 9");
    e.gqa_reduce = JUDGEQ__GQA_REDUCE__GQA_MAX;
    expect_ok(&q);
    e.policy = (Judgeq__Policy)42;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "prefill.eviction.policy 42");
    e.policy = JUDGEQ__POLICY__POLICY_ORACLE;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT, "oracle");
    e.policy = JUDGEQ__POLICY__POLICY_JUDGEQ;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT, "--soft");
    e.soft_path = "/etc/passwd";
    expect_error(&q, JUDGEQ__ERROR_CODE__PERMISSION_DENIED,
                 "prefill.eviction.soft_path");
    e.soft_path = NULL;
    e.policy = JUDGEQ__POLICY__POLICY_STREAMING;
    e.has_sink = 1;
    e.sink = 100;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT, "sink");
    e.sink = 4;
    expect_ok(&q);

    /* the spec the engine gets */
    jq_evict_spec spec;
    jq_wire_error err;
    assert_int_equal(jq_request_evict_spec(&e, &spec, &err), 0);
    assert_int_equal(spec.policy, JQ_EVICT_STREAMING);
    assert_int_equal(spec.budget, 64);
    assert_int_equal(spec.sink, 4);
    assert_int_equal(spec.window, 8);
    assert_int_equal(spec.pool_kernel, 5);
    assert_int_equal(spec.gqa_reduce, JQ_GQA_MAX);
    assert_int_equal(jq_request_evict_spec(NULL, &spec, &err), 0);
    assert_int_equal(spec.policy, JQ_EVICT_FULL);
    Judgeq__EvictionSpec d = JUDGEQ__EVICTION_SPEC__INIT;
    d.has_policy = d.has_budget = 1;
    d.policy = JUDGEQ__POLICY__POLICY_SNAPKV;
    d.budget = 64;
    if (jq_request_evict_spec(&d, &spec, &err) != 0)
        fail_msg("%s", err.message);
    jq_evict_spec def = jq_evict_spec_default(JQ_EVICT_SNAPKV, 64);
    assert_int_equal(spec.window, def.window);
    assert_int_equal(spec.pool_kernel, def.pool_kernel);
}

static void test_generate_rules(void **state)
{
    (void)state;
    Judgeq__Request q = JUDGEQ__REQUEST__INIT;
    Judgeq__Generate g = JUDGEQ__GENERATE__INIT;
    Judgeq__Sampling s = JUDGEQ__SAMPLING__INIT;
    q.body_case = JUDGEQ__REQUEST__BODY_GENERATE;
    q.generate = &g;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "generate.session_id");
    g.has_session_id = 1;
    g.session_id = 1;
    expect_ok(&q);
    g.has_max_tokens = 1;
    g.max_tokens = 0;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "generate.max_tokens 0");
    g.max_tokens = 100000;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "generate.max_tokens 100000");
    g.max_tokens = 10;
    g.sampling = &s;
    expect_ok(&q);
    s.has_temp = 1;
    s.temp = -1;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "generate.sampling.temp");
    s.temp = NAN;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "generate.sampling.temp");
    s.temp = 0;
    s.has_top_p = 1;
    s.top_p = 1.5f;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "generate.sampling.top_p");
    s.top_p = 0.9f;
    s.has_top_k = 1;
    s.top_k = -3;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "generate.sampling.top_k -3");
    s.top_k = 0;
    expect_ok(&q);
    int32_t stops[JQ_MAX_STOP_TOKENS + 1];
    for (int i = 0; i <= JQ_MAX_STOP_TOKENS; i++)
        stops[i] = i;
    g.stop_tokens = stops;
    g.n_stop_tokens = 2;
    expect_ok(&q);
    stops[1] = 9999;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "generate.stop_tokens[1] = 9999");
    stops[1] = 1;
    g.n_stop_tokens = JQ_MAX_STOP_TOKENS + 1;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "generate.stop_tokens has 65 tokens");

    jq_sampling sp = jq_request_sampling(NULL);
    assert_true(fabsf(sp.temp - 0.8f) < 1e-6f);
    assert_int_equal(sp.top_k, 40);
    s = (Judgeq__Sampling)JUDGEQ__SAMPLING__INIT;
    s.has_temp = s.has_seed = 1;
    s.temp = 0;
    s.seed = 7;
    sp = jq_request_sampling(&s);
    assert_true(sp.temp == 0);
    assert_int_equal(sp.seed, 7);
    assert_true(fabsf(sp.top_p - 0.95f) < 1e-6f);
}

static void test_other_requests(void **state)
{
    (void)state;
    Judgeq__Request q = JUDGEQ__REQUEST__INIT;
    Judgeq__Fork f = JUDGEQ__FORK__INIT;
    Judgeq__ExportKV x = JUDGEQ__EXPORT_KV__INIT;
    Judgeq__CloseSession c = JUDGEQ__CLOSE_SESSION__INIT;
    Judgeq__Tokenize t = JUDGEQ__TOKENIZE__INIT;
    Judgeq__Detokenize dt = JUDGEQ__DETOKENIZE__INIT;
    Judgeq__Stats st = JUDGEQ__STATS__INIT;
    q.body_case = JUDGEQ__REQUEST__BODY_FORK;
    q.fork = &f;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT, "fork.session_id");
    f.has_session_id = 1;
    f.session_id = 4;
    expect_ok(&q);
    q.body_case = JUDGEQ__REQUEST__BODY_EXPORT_KV;
    q.export_kv = &x;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "export_kv.session_id");
    q.body_case = JUDGEQ__REQUEST__BODY_CLOSE_SESSION;
    q.close_session = &c;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "close_session.session_id");
    q.body_case = JUDGEQ__REQUEST__BODY_TOKENIZE;
    q.tokenize = &t;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "tokenize.text is required");
    t.text = "Once upon a time";
    expect_ok(&q);
    q.body_case = JUDGEQ__REQUEST__BODY_DETOKENIZE;
    q.detokenize = &dt;
    int32_t ids[2] = {1, 700};
    dt.tokens = ids;
    dt.n_tokens = 2;
    expect_error(&q, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                 "detokenize.tokens[1] = 700");
    ids[1] = 2;
    expect_ok(&q);
    q.body_case = JUDGEQ__REQUEST__BODY_STATS;
    q.stats = &st;
    expect_ok(&q);
    assert_string_equal(jq_request_kind_name(JUDGEQ__REQUEST__BODY_PREFILL),
                        "prefill");
    assert_string_equal(jq_request_kind_name((Judgeq__Request__BodyCase)99),
                        "unknown");
}

/* Prefill.eviction.soft_path: judgeq only, bounded, absolute, and refused
 * outright by a daemon without --allow-path (whose file system is then
 * never asked). */
static void test_soft_path_rules(void **state)
{
    (void)state;
    Judgeq__Request q = JUDGEQ__REQUEST__INIT;
    Judgeq__Prefill p = JUDGEQ__PREFILL__INIT;
    Judgeq__EvictionSpec e = JUDGEQ__EVICTION_SPEC__INIT;
    q.body_case = JUDGEQ__REQUEST__BODY_PREFILL;
    q.prefill = &p;
    p.has_session_id = 1;
    p.session_id = 3;
    p.text = "hello";
    p.eviction = &e;
    e.has_policy = e.has_budget = e.has_window = 1;
    e.policy = JUDGEQ__POLICY__POLICY_JUDGEQ;
    e.budget = 16;
    e.window = 4;
    e.soft_path = "/srv/judgeq/soft.gguf";
    /* lim: no --allow-path */
    expect_error(&q, JUDGEQ__ERROR_CODE__PERMISSION_DENIED,
                 "soft_path /srv/judgeq/soft.gguf: this daemon opens no "
                 "client paths");
    jq_request_limits open_lim = lim;
    open_lim.client_paths = true;
    jq_wire_error err;
    assert_int_equal(jq_request_validate(&q, &open_lim, &err), 0);
    /* a path stands in for --soft */
    assert_false(open_lim.have_soft_tokens);
    e.soft_path = "soft.gguf";
    assert_int_equal(jq_request_validate(&q, &open_lim, &err), -1);
    assert_int_equal(err.code, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "soft.gguf is not an absolute path"));
    e.soft_path = "";
    assert_int_equal(jq_request_validate(&q, &open_lim, &err), -1);
    assert_non_null(strstr(err.message, "has 0 bytes"));
    char *longp = malloc(JQ_MAX_CLIENT_PATH + 2);
    assert_non_null(longp);
    memset(longp, 'a', JQ_MAX_CLIENT_PATH + 1);
    longp[0] = '/';
    longp[JQ_MAX_CLIENT_PATH + 1] = 0;
    e.soft_path = longp;
    assert_int_equal(jq_request_validate(&q, &open_lim, &err), -1);
    assert_non_null(strstr(err.message, "has 4096 bytes (1..4095)"));
    free(longp);
    /* only judgeq reads soft tokens */
    e.soft_path = "/srv/judgeq/soft.gguf";
    e.policy = JUDGEQ__POLICY__POLICY_SNAPKV;
    assert_int_equal(jq_request_validate(&q, &open_lim, &err), -1);
    assert_int_equal(err.code, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "for policy judgeq only"));
}

/* Decoding is budgeted: the largest well-formed requests fit (packed
 * one-byte token ids, the longest text), a flood of unknown fields or of
 * unpacked repeated values does not, and is named as such. */
static void test_decode_budget(void **state)
{
    (void)state;
    jq_request_limits big = lim;
    big.max_context = 1u << 20;
    big.max_text_bytes = 1u << 20;
    /* 200000 one-byte token ids: 4 bytes each once decoded */
    Judgeq__Request q = JUDGEQ__REQUEST__INIT;
    Judgeq__Prefill p = JUDGEQ__PREFILL__INIT;
    q.body_case = JUDGEQ__REQUEST__BODY_PREFILL;
    q.prefill = &p;
    p.has_session_id = 1;
    p.session_id = 1;
    p.n_tokens = 200000;
    p.tokens = malloc(p.n_tokens * sizeof(int32_t));
    assert_non_null(p.tokens);
    for (size_t i = 0; i < p.n_tokens; i++)
        p.tokens[i] = (int32_t)(1 + i % 100);
    size_t n = judgeq__request__get_packed_size(&q);
    uint8_t *buf = malloc(n + (1u << 20) + 64);
    assert_non_null(buf);
    judgeq__request__pack(&q, buf);
    Judgeq__Request *out;
    uint64_t id;
    jq_wire_error err;
    if (jq_request_decode(buf, n, &big, &out, &id, &err) != 0)
        fail_msg("%s", err.message);
    assert_int_equal(out->prefill->n_tokens, 200000);
    judgeq__request__free_unpacked(out, NULL);
    free(p.tokens);
    /* a 1 MiB text */
    char *text = malloc((1u << 20) + 1);
    assert_non_null(text);
    memset(text, 'x', 1u << 20);
    text[1u << 20] = 0;
    p.n_tokens = 0;
    p.tokens = NULL;
    p.text = text;
    n = judgeq__request__pack(&q, buf);
    if (jq_request_decode(buf, n, &big, &out, &id, &err) != 0)
        fail_msg("%s", err.message);
    judgeq__request__free_unpacked(out, NULL);
    free(text);
    /* 300000 unknown varint fields (number 30), 3 bytes each */
    n = 0;
    for (int i = 0; i < 300000; i++) {
        buf[n++] = 0xf0;
        buf[n++] = 0x01;
        buf[n++] = 0x00;
    }
    assert_int_equal(jq_request_decode(buf, n, &big, &out, &id, &err), -1);
    assert_null(out);
    assert_int_equal(err.code, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "needs more than"));
    /* the same count of token ids, unpacked: Detokenize field 17, then
     * tag 0x08 (tokens = 1, varint) and a one-byte id, repeated */
    size_t body = 100000 * 2;
    n = 0;
    buf[n++] = 0x8a; /* field 17, length-delimited: 0x8a 0x01 */
    buf[n++] = 0x01;
    buf[n++] = (uint8_t)(0x80 | (body & 0x7f));
    buf[n++] = (uint8_t)(0x80 | ((body >> 7) & 0x7f));
    buf[n++] = (uint8_t)(body >> 14);
    for (size_t i = 0; i < body / 2; i++) {
        buf[n++] = 0x08;
        buf[n++] = 0x05;
    }
    assert_int_equal(jq_request_decode(buf, n, &big, &out, &id, &err), -1);
    assert_non_null(strstr(err.message, "needs more than"));
    /* a few unpacked values stay fine (the slack) */
    body = 50 * 2;
    n = 0;
    buf[n++] = 0x8a;
    buf[n++] = 0x01;
    buf[n++] = (uint8_t)body;
    for (size_t i = 0; i < body / 2; i++) {
        buf[n++] = 0x08;
        buf[n++] = 0x05;
    }
    if (jq_request_decode(buf, n, &big, &out, &id, &err) != 0)
        fail_msg("%s", err.message);
    assert_int_equal(out->detokenize->n_tokens, 50);
    judgeq__request__free_unpacked(out, NULL);
    free(buf);
}

static void test_response_frame(void **state)
{
    (void)state;
    Judgeq__Response r = JUDGEQ__RESPONSE__INIT;
    Judgeq__GenerateChunk ch = JUDGEQ__GENERATE_CHUNK__INIT;
    r.has_id = 1;
    r.id = 42;
    r.has_done = 1;
    r.done = 0;
    r.body_case = JUDGEQ__RESPONSE__BODY_CHUNK;
    r.chunk = &ch;
    ch.has_token = ch.has_piece = 1;
    ch.token = 123;
    ch.piece.data = (uint8_t *)" once";
    ch.piece.len = 5;
    size_t n = jq_response_frame_size(&r);
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    assert_int_equal(jq_response_frame_write(&r, buf), n);
    uint32_t plen;
    assert_int_equal(jq_frame_peek(buf, n, 1000, &plen), JQ_FRAME_READY);
    assert_int_equal(plen + 4, n);
    Judgeq__Response *back = judgeq__response__unpack(NULL, plen, buf + 4);
    assert_non_null(back);
    assert_int_equal(back->id, 42);
    assert_false(back->done);
    assert_int_equal(back->body_case, JUDGEQ__RESPONSE__BODY_CHUNK);
    assert_int_equal(back->chunk->token, 123);
    assert_memory_equal(back->chunk->piece.data, " once", 5);
    judgeq__response__free_unpacked(back, NULL);
    free(buf);
}

/* Random and mutated bytes: the decoder either refuses them with a
 * message or returns a request that passes validation; it never crashes
 * (run under ASan to mean something). */
static void test_fuzz(void **state)
{
    (void)state;
    jqt_rng r;
    jqt_rng_seed(&r, 2024);
    /* a valid prefill to mutate */
    Judgeq__Request q = JUDGEQ__REQUEST__INIT;
    Judgeq__Prefill p = JUDGEQ__PREFILL__INIT;
    Judgeq__EvictionSpec e = JUDGEQ__EVICTION_SPEC__INIT;
    int32_t toks[6] = {1, 2, 3, 4, 5, 6};
    q.has_id = 1;
    q.id = 3;
    q.body_case = JUDGEQ__REQUEST__BODY_PREFILL;
    q.prefill = &p;
    p.has_session_id = 1;
    p.session_id = 1;
    p.tokens = toks;
    p.n_tokens = 6;
    p.eviction = &e;
    e.has_policy = e.has_budget = 1;
    e.policy = JUDGEQ__POLICY__POLICY_H2O;
    e.budget = 40;
    uint8_t seed[256];
    size_t seed_len = judgeq__request__pack(&q, seed);
    uint8_t buf[256];
    int accepted = 0;
    for (int it = 0; it < 20000; it++) {
        size_t n;
        if (it % 2) {
            n = (size_t)(jqt_rng_u64(&r) % sizeof buf);
            for (size_t i = 0; i < n; i++)
                buf[i] = (uint8_t)jqt_rng_u64(&r);
        } else {
            n = seed_len;
            memcpy(buf, seed, n);
            int flips = 1 + (int)(jqt_rng_u64(&r) % 4);
            for (int k = 0; k < flips; k++)
                buf[jqt_rng_u64(&r) % n] = (uint8_t)jqt_rng_u64(&r);
            if (jqt_rng_u64(&r) % 4 == 0)
                n = (size_t)(jqt_rng_u64(&r) % (n + 1));
        }
        Judgeq__Request *out = NULL;
        uint64_t id;
        jq_wire_error err;
        if (jq_request_decode(buf, n, &lim, &out, &id, &err) == 0) {
            assert_non_null(out);
            assert_int_equal(jq_request_validate(out, &lim, &err), 0);
            judgeq__request__free_unpacked(out, NULL);
            accepted++;
        } else {
            assert_null(out);
            assert_true(err.code != JUDGEQ__ERROR_CODE__OK);
        }
    }
    assert_true(accepted > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peek),
        cmocka_unit_test(test_garbage_and_empty),
        cmocka_unit_test(test_hello_and_create),
        cmocka_unit_test(test_prefill_rules),
        cmocka_unit_test(test_generate_rules),
        cmocka_unit_test(test_other_requests),
        cmocka_unit_test(test_soft_path_rules),
        cmocka_unit_test(test_decode_budget),
        cmocka_unit_test(test_response_frame),
        cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
