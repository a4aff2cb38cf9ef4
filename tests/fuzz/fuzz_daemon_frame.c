/* fuzz_daemon_frame.c — any bytes as what a client sends the daemon: the
 * pure functions of daemon/frame.h that the server's read loop calls
 * (process_frames in server.c), without sockets or sessions.
 *
 * Each input is used twice:
 *   - as one payload, straight to jq_request_decode under two sets of limits
 *     (a small model with soft tokens, a large one without), so the
 *     mutations land on the protobuf and the validator;
 *   - as a connection's input stream, split by jq_frame_peek exactly as the
 *     loop does (a small --max-frame-bytes, so TOO_LARGE is reachable too),
 *     each complete frame decoded.
 * Invariants: a refused request gives a code other than OK and a message,
 * and the error answer the server would send encodes, frames and decodes
 * back to the same id, code and message; an accepted request holds only
 * what the validator promises (ids in the vocabulary, bounded counts and
 * texts) and passes validation again; its eviction spec and sampling
 * convert without crashing.
 *
 * Not checked: that an accepted request, packed again, is accepted again.
 * protobuf-c keeps an unknown field numbered 0 when its tag is written in
 * two bytes (80 00) but refuses the one-byte tag (00) it packs it back as
 * (regress/fuzz_daemon_frame/protobuf-c-field-0). The daemon never
 * re-encodes a request, so that is protobuf-c's quirk, not a judgeq bug.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "fuzz.h"

/* What the server's loop would use for --max-frame-bytes here: small, so
 * the fuzzer meets the limit. */
#define STREAM_MAX_PAYLOAD 4096

static const jq_request_limits limits[] = {
    {.n_vocab = 512, .max_context = 512, .max_text_bytes = 1024,
     .have_soft_tokens = true},
    {.n_vocab = 128256, .max_context = 131072, .max_text_bytes = 1u << 20,
     .have_soft_tokens = false},
};

static void check_tokens(const char *what, const int32_t *t, size_t n,
                         const jq_request_limits *lim)
{
    for (size_t i = 0; i < n; i++)
        jq_fuzz_check(t[i] >= 0 && t[i] < lim->n_vocab,
                      "%s[%zu] = %d accepted with n_vocab %d", what, i, t[i],
                      lim->n_vocab);
}

/* The error answer as the server builds it (send_error): encodes, frames,
 * and decodes back to what went in. */
static void check_error_answer(uint64_t id, const jq_wire_error *we)
{
    jq_fuzz_check(we->code != JUDGEQ__ERROR_CODE__OK,
                  "a refusal with code OK");
    jq_fuzz_check(memchr(we->message, 0, sizeof we->message) &&
                      we->message[0] != 0,
                  "a refusal without a message");
    Judgeq__Response r = JUDGEQ__RESPONSE__INIT;
    r.has_id = 1;
    r.id = id;
    r.has_code = 1;
    r.code = we->code;
    r.message = (char *)we->message;
    size_t n = jq_response_frame_size(&r);
    uint8_t *buf = malloc(n);
    jq_fuzz_check(buf != NULL, "out of memory");
    jq_fuzz_check(jq_response_frame_write(&r, buf) == n, "frame size");
    uint32_t plen;
    jq_fuzz_check(jq_frame_peek(buf, n, UINT32_MAX, &plen) ==
                          JQ_FRAME_READY &&
                      plen == n - JQ_FRAME_HEADER_BYTES,
                  "the answer's own frame does not parse");
    Judgeq__Response *back =
        judgeq__response__unpack(NULL, plen, buf + JQ_FRAME_HEADER_BYTES);
    jq_fuzz_check(back != NULL, "the error answer does not decode: \"%s\"",
                  we->message);
    jq_fuzz_check(back->id == id && back->code == we->code &&
                      back->message && strcmp(back->message, we->message) == 0,
                  "the error answer decodes differently");
    judgeq__response__free_unpacked(back, NULL);
    free(buf);
}

/* What jq_request_validate promises about an accepted request. */
static void check_accepted(const Judgeq__Request *req,
                           const jq_request_limits *lim)
{
    jq_wire_error we;
    jq_fuzz_check(strcmp(jq_request_kind_name(req->body_case), "unknown") != 0,
                  "accepted a request without a known body (%d)",
                  (int)req->body_case);
    jq_fuzz_check(jq_request_validate(req, lim, &we) == 0,
                  "valid once, invalid the second time: %s", we.message);
    switch (req->body_case) {
    case JUDGEQ__REQUEST__BODY_PREFILL: {
        const Judgeq__Prefill *p = req->prefill;
        check_tokens("prefill.tokens", p->tokens, p->n_tokens, lim);
        if (p->text)
            jq_fuzz_check(strlen(p->text) <= lim->max_text_bytes,
                          "prefill.text of %zu bytes", strlen(p->text));
        jq_evict_spec spec;
        if (jq_request_evict_spec(p->eviction, &spec, &we) != 0)
            check_error_answer(req->id, &we);
        break;
    }
    case JUDGEQ__REQUEST__BODY_GENERATE: {
        const Judgeq__Generate *g = req->generate;
        check_tokens("generate.stop_tokens", g->stop_tokens,
                     g->n_stop_tokens, lim);
        jq_fuzz_check(g->n_stop_tokens <= JQ_MAX_STOP_TOKENS,
                      "%zu stop tokens", g->n_stop_tokens);
        jq_sampling s = jq_request_sampling(g->sampling);
        (void)s;
        break;
    }
    case JUDGEQ__REQUEST__BODY_DETOKENIZE:
        check_tokens("detokenize.tokens", req->detokenize->tokens,
                     req->detokenize->n_tokens, lim);
        break;
    case JUDGEQ__REQUEST__BODY_TOKENIZE:
        jq_fuzz_check(req->tokenize->text &&
                          strlen(req->tokenize->text) <= lim->max_text_bytes,
                      "tokenize.text missing or too long");
        break;
    default:
        break;
    }
}

static void decode_one(const uint8_t *payload, size_t len,
                       const jq_request_limits *lim)
{
    Judgeq__Request *req;
    uint64_t id;
    jq_wire_error we;
    memset(&we, 0, sizeof we);
    if (jq_request_decode(payload, len, lim, &req, &id, &we) != 0) {
        jq_fuzz_check(req == NULL, "a refusal with a request");
        check_error_answer(id, &we);
        return;
    }
    jq_fuzz_check(req != NULL && id == req->id, "accepted without a request");
    check_accepted(req, lim);
    judgeq__request__free_unpacked(req, NULL);
}

int jq_fuzz_daemon_frame(const uint8_t *data, size_t size)
{
    /* an exactly-sized copy: protobuf-c must not read past the payload */
    uint8_t *copy = malloc(size ? size : 1);
    jq_fuzz_check(copy != NULL, "out of memory");
    if (size)
        memcpy(copy, data, size);

    for (size_t i = 0; i < sizeof limits / sizeof *limits; i++)
        decode_one(copy, size, &limits[i]);

    /* the read loop: frames one after another until one is incomplete or
     * too large (where the server closes the connection) */
    size_t off = 0;
    for (;;) {
        uint32_t plen = 0;
        jq_frame_status st =
            jq_frame_peek(copy + off, size - off, STREAM_MAX_PAYLOAD, &plen);
        if (st != JQ_FRAME_READY) {
            jq_fuzz_check(st == JQ_FRAME_NEED_MORE ||
                              (st == JQ_FRAME_TOO_LARGE &&
                               plen > STREAM_MAX_PAYLOAD),
                          "peek status %d for a %u-byte payload", (int)st,
                          plen);
            break;
        }
        jq_fuzz_check(plen <= STREAM_MAX_PAYLOAD &&
                          plen <= size - off - JQ_FRAME_HEADER_BYTES,
                      "a ready frame of %u bytes with %zu left", plen,
                      size - off);
        /* the payload in its own exactly-sized block, as above */
        uint8_t *payload = malloc(plen ? plen : 1);
        jq_fuzz_check(payload != NULL, "out of memory");
        memcpy(payload, copy + off + JQ_FRAME_HEADER_BYTES, plen);
        decode_one(payload, plen, &limits[0]);
        free(payload);
        off += JQ_FRAME_HEADER_BYTES + plen;
    }
    free(copy);
    return 0;
}
