/* frame.h — the daemon's wire format as pure functions: stream framing,
 * request decoding and validation, response encoding.
 *
 * Nothing here touches a socket, a session or a clock, so every function
 * can be fed arbitrary bytes by a unit test or a fuzzer. The server calls
 * jq_frame_peek on its input buffer, hands a complete payload to
 * jq_request_decode, and answers the jq_wire_error it gets back; state
 * checks (does the session exist, who owns it, is there memory) are the
 * server's job, after this layer has proven every count, size, id and enum
 * of the request to be in range.
 */
#ifndef JQ_DAEMON_FRAME_H
#define JQ_DAEMON_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "evict.h"
#include "judgeq.pb-c.h"
#include "sample.h"

#define JQ_PROTOCOL_VERSION 1
#define JQ_FRAME_HEADER_BYTES 4
/* --max-frame-bytes bounds */
#define JQ_FRAME_MIN_LIMIT 64
#define JQ_FRAME_MAX_LIMIT (256u << 20)
/* A Generate without max_tokens produces this many. */
#define JQ_GENERATE_DEFAULT_TOKENS 64
#define JQ_MAX_STOP_TOKENS 64
#define JQ_MAX_CLIENT_NAME 256
/* Prefill.eviction.soft_path: PATH_MAX with its terminating NUL */
#define JQ_MAX_CLIENT_PATH 4095

/* What the validator must know about the daemon and its model. */
typedef struct {
    int32_t n_vocab;          /* token ids are in [0, n_vocab) */
    uint32_t max_context;     /* positions per session (prompt + generated) */
    uint32_t max_text_bytes;  /* Prefill.text, Tokenize.text */
    bool have_soft_tokens;    /* --soft loaded: policy judgeq is possible */
    bool client_paths;        /* --allow-path given: soft_path may be named */
} jq_request_limits;

/* An error answer: a Judgeq__ErrorCode and a sentence naming the input at
 * fault (field names are the .proto's, e.g. "prefill.eviction.budget"). */
typedef struct {
    Judgeq__ErrorCode code;
    char message[256];
} jq_wire_error;

/* Fills *err with code and the formatted sentence; returns -1. */
int jq_wire_fail(jq_wire_error *err, Judgeq__ErrorCode code, const char *fmt,
                 ...) __attribute__((format(printf, 3, 4)));

typedef enum {
    JQ_FRAME_NEED_MORE = 0, /* not a whole frame yet */
    JQ_FRAME_READY = 1,     /* *payload_len bytes follow the header */
    JQ_FRAME_TOO_LARGE = -1 /* the length prefix exceeds the limit */
} jq_frame_status;

/* Looks at the start of a connection's input: whether buf[0..len) begins
 * with a complete frame whose payload is at most max_payload bytes. A too
 * large prefix is known as soon as its 4 bytes are in, so a client can
 * never make the daemon buffer more than the limit. */
jq_frame_status jq_frame_peek(const uint8_t *buf, size_t len,
                              uint32_t max_payload, uint32_t *payload_len);

/* Writes the 4-byte little-endian length prefix. */
void jq_frame_put_header(uint8_t out[JQ_FRAME_HEADER_BYTES], uint32_t len);

/* Decoding a payload of len bytes may allocate at most
 * jq_request_decode_budget(len) bytes in all; a frame that needs more
 * (unknown fields or unpacked repeated fields by the million) is refused
 * as INVALID_ARGUMENT instead of costing the daemon 30 times its size. */
#define JQ_DECODE_BUDGET_FACTOR 6
#define JQ_DECODE_BUDGET_SLACK (64u << 10)
size_t jq_request_decode_budget(size_t len);

/* Unpacks and validates one Request payload. Returns 0 and *out (free with
 * judgeq__request__free_unpacked(*out, NULL)), or -1 with *err filled and
 * *out NULL. *id is the request's id whenever it could be read (0
 * otherwise), so the error answer can carry it. The message is plain
 * malloc memory whatever allocator decoded it. */
int jq_request_decode(const uint8_t *payload, size_t len,
                      const jq_request_limits *lim, Judgeq__Request **out,
                      uint64_t *id, jq_wire_error *err);

/* The validation half of jq_request_decode, for requests built in memory
 * (tests). 0, or -1 with *err. */
int jq_request_validate(const Judgeq__Request *req,
                        const jq_request_limits *lim, jq_wire_error *err);

/* The engine's eviction spec for a validated EvictionSpec (NULL: keep
 * everything). Defaults fill the absent fields. 0, or -1 with *err
 * (jq_evict_spec_check's complaint, reworded with the wire field names). */
int jq_request_evict_spec(const Judgeq__EvictionSpec *e, jq_evict_spec *spec,
                          jq_wire_error *err);

/* The engine's sampling parameters for a (validated, possibly NULL)
 * Sampling message: the .proto defaults for absent fields. */
jq_sampling jq_request_sampling(const Judgeq__Sampling *s);

/* Bytes of the whole frame (header + payload) of r. */
size_t jq_response_frame_size(const Judgeq__Response *r);
/* Writes the frame of r into out, which has jq_response_frame_size(r)
 * bytes; returns that size. */
size_t jq_response_frame_write(const Judgeq__Response *r, uint8_t *out);

/* The wire name of a request type ("prefill"), for logs and messages. */
const char *jq_request_kind_name(Judgeq__Request__BodyCase c);

#endif
