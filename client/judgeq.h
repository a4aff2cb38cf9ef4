/* judgeq.h — libjudgeq, the C client of the judgeqd inference daemon.
 *
 * libjudgeq talks to judgeqd over its Unix socket (4-byte little-endian
 * length + protobuf message per frame; proto/judgeq.proto is the
 * contract). It depends on libc and protobuf-c only; nothing of protobuf-c
 * appears in this header.
 *
 * Calls block. A connection handle (judgeq_conn) may be shared by threads:
 * every call on it takes the handle's lock for the whole request, so calls
 * from several threads run one after another. For parallel requests open
 * several connections (the daemon serves each on its own).
 *
 * Errors: every call returns JUDGEQ_OK (0) or an error code: the daemon's
 * codes (positive, equal to the protocol's ErrorCode) or the library's own
 * (negative: I/O, timeout, protocol, ...). judgeq_errmsg() then holds a
 * sentence naming the cause. Bad input from the socket is never fatal to
 * the process: it ends the call with JUDGEQ_ERR_PROTOCOL and, when the
 * byte stream can no longer be trusted, marks the connection broken (every
 * later call returns JUDGEQ_ERR_CLOSED).
 *
 * Ownership: result structs are filled by a call and own their arrays;
 * release them with the matching *_free function (which accepts a zeroed
 * or already freed struct). Arrays returned through plain pointers are
 * malloc'd: release them with free().
 *
 * Link with `pkg-config --libs judgeq`.
 */
#ifndef JUDGEQ_H
#define JUDGEQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "judgeq_kv_layout.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The protocol version this library speaks (Hello.protocol_version). */
#define JUDGEQ_PROTOCOL_VERSION 1u
/* Where the packaged judgeqd.socket listens. */
#define JUDGEQ_DEFAULT_SOCKET "/run/judgeq/judgeqd.sock"
/* Largest frame accepted from the daemon unless judgeq_set_max_frame()
 * says otherwise. */
#define JUDGEQ_DEFAULT_MAX_FRAME (16u << 20)

/* ------------------------------------------------------------- errors */

typedef enum {
    JUDGEQ_OK = 0,
    /* From the daemon (the protocol's ErrorCode). */
    JUDGEQ_ERR_INVALID_ARGUMENT = 1,
    JUDGEQ_ERR_NOT_FOUND = 2,
    JUDGEQ_ERR_PERMISSION_DENIED = 3,
    JUDGEQ_ERR_RESOURCE_EXHAUSTED = 4,
    JUDGEQ_ERR_UNAVAILABLE = 5,
    JUDGEQ_ERR_INTERNAL = 6,
    /* Local. */
    JUDGEQ_ERR_IO = -1,        /* a socket call failed (errno in message) */
    JUDGEQ_ERR_TIMEOUT = -2,   /* no progress within the handle's timeout */
    JUDGEQ_ERR_PROTOCOL = -3,  /* the daemon sent something malformed */
    JUDGEQ_ERR_CLOSED = -4,    /* connection closed or broken earlier */
    JUDGEQ_ERR_NOMEM = -5,     /* out of memory */
    JUDGEQ_ERR_ARG = -6,       /* a bad argument to a library call */
    JUDGEQ_ERR_CANCELLED = -7, /* the token callback asked to stop */
    JUDGEQ_ERR_BAD_FD = -8,    /* an exported fd is not sealed read-only, or
                                  its layout does not hold together */
    JUDGEQ_ERR_BUSY = -9,      /* the handle was re-entered from its own
                                  token callback */
} judgeq_status;

/* A static name for a code ("PERMISSION_DENIED", "TIMEOUT", ...);
 * "UNKNOWN" for others. Thread-safe. */
const char *judgeq_status_name(int code);

/* ------------------------------------------------------- connections */

typedef struct judgeq_conn judgeq_conn;

/* Connects to the daemon's socket at path (NULL: JUDGEQ_DEFAULT_SOCKET),
 * waiting at most timeout_ms milliseconds (< 0: no limit) for a slot in
 * the daemon's backlog.
 *
 * *out receives a handle even when the connection fails, so that
 * judgeq_errmsg(*out) can say why (it names the path); it is NULL only
 * when memory is exhausted (JUDGEQ_ERR_NOMEM). Close it with judgeq_close
 * in every case. The socket is close-on-exec. */
int judgeq_connect(const char *path, int timeout_ms, judgeq_conn **out);

/* Wraps an already connected stream socket (socket activation of a
 * client, a socketpair in tests). The handle owns fd from now on, even on
 * failure. fd is switched to non-blocking mode (a file status flag: other
 * descriptors of the same socket see it too). */
int judgeq_connect_fd(int fd, judgeq_conn **out);

/* Closes the socket and frees the handle. NULL is accepted. Must not race
 * with another call on the same handle. */
void judgeq_close(judgeq_conn *c);

/* The message of the last failed call on this handle ("" after success).
 * The pointer stays valid until the next call on the handle; when threads
 * share a handle use judgeq_errmsg_copy instead. */
const char *judgeq_errmsg(const judgeq_conn *c);
/* Copies the message into buf (always NUL-terminated when size > 0),
 * under the handle's lock. Returns the code of the last call. */
int judgeq_errmsg_copy(judgeq_conn *c, char *buf, size_t size);

/* Per-call inactivity limit: a call fails with JUDGEQ_ERR_TIMEOUT when
 * the socket makes no progress (no byte sent or received) for timeout_ms
 * milliseconds. < 0 (the default): wait for ever. A generation that
 * streams a token per step never times out between tokens that come
 * faster than the limit. A timeout between frames leaves the handle
 * usable (the late reply is discarded when it comes); one inside a frame
 * breaks the connection. */
void judgeq_set_timeout(judgeq_conn *c, int timeout_ms);
/* Largest frame accepted from the daemon (default JUDGEQ_DEFAULT_MAX_FRAME,
 * at least 64 bytes). A larger length prefix is a protocol error that
 * breaks the connection: nothing of that size is allocated. */
void judgeq_set_max_frame(judgeq_conn *c, uint32_t max_bytes);

/* The socket descriptor (for poll loops that wait for the daemon to
 * close; do not read or write it). -1 when closed. */
int judgeq_fd(const judgeq_conn *c);

/* ------------------------------------------------------------- hello */

typedef struct {
    char *path;         /* model file as the daemon opened it */
    char *architecture; /* "llama", ... */
    uint32_t n_vocab, n_ctx_train, n_embd, n_layer, n_head, n_head_kv;
    uint32_t head_dim, n_ff;
    uint64_t weight_bytes;
    uint32_t n_soft_tokens; /* 0: judgeq eviction unavailable */
    int32_t bos, eos;       /* -1 when the vocabulary has none */
} judgeq_model_info;

typedef struct {
    uint32_t protocol_version;
    char *server_version;
    judgeq_model_info model;
    char **capabilities; /* "evict:judgeq", "export_kv", "fork", ... */
    size_t n_capabilities;
} judgeq_server_info;

/* Introduces the client (client_name may be NULL) and fills *info. */
int judgeq_hello(judgeq_conn *c, const char *client_name,
                 judgeq_server_info *info);
void judgeq_server_info_free(judgeq_server_info *info);

/* ----------------------------------------------------------- sessions */

typedef enum { JUDGEQ_KV_TYPE_F32 = 0, JUDGEQ_KV_TYPE_F16 = 1 } judgeq_kv_type;

typedef struct {
    uint32_t max_context;    /* prompt + generated positions; 0: model's */
    judgeq_kv_type kv_type;  /* default F32 */
    bool keep_on_disconnect; /* outlive the connection (until the daemon's
                                idle timeout) */
} judgeq_session_opts;

/* Creates a session owned by this process's uid. opts NULL: defaults.
 * numa_node may be NULL. */
int judgeq_session_create(judgeq_conn *c, const judgeq_session_opts *opts,
                          uint64_t *session_id, uint32_t *numa_node);
/* Ends a session and frees its memory in the daemon. */
int judgeq_session_close(judgeq_conn *c, uint64_t session_id);
/* A new session sharing session_id's compressed prefix read-only, with
 * its own tail. */
int judgeq_fork(judgeq_conn *c, uint64_t session_id, uint64_t *new_session_id);

/* ------------------------------------------------------------ prefill */

typedef enum {
    JUDGEQ_POLICY_FULL = 0,
    JUDGEQ_POLICY_STREAMING = 1,
    JUDGEQ_POLICY_H2O = 2,
    JUDGEQ_POLICY_SNAPKV = 3,
    JUDGEQ_POLICY_PYRAMIDKV = 4,
    JUDGEQ_POLICY_ADAKV = 5,
    JUDGEQ_POLICY_JUDGEQ = 6,
    JUDGEQ_POLICY_ORACLE = 7,
} judgeq_policy;

/* Eviction at prefill time. Fields < 0 mean "the daemon's default for the
 * policy"; start from judgeq_eviction_init. */
typedef struct {
    judgeq_policy policy;
    int32_t budget;      /* KV entries kept per (layer, KV head) */
    int32_t window;      /* recent prompt tokens always kept */
    int32_t sink;        /* streaming: first tokens kept */
    int32_t pool_kernel; /* max-pool width, odd */
    int32_t gqa_reduce;  /* 0 mean, 1 max */
    const char *soft_path; /* judgeq: soft tokens the daemon should load
                              (it may refuse paths it does not allow);
                              NULL: the daemon's own */
} judgeq_eviction;

/* policy FULL, every parameter at the daemon's default. */
void judgeq_eviction_init(judgeq_eviction *e);

/* The prompt: either tokens (n_tokens > 0) or text (tokenized by the
 * daemon, BOS added unless no_bos). */
typedef struct {
    const int32_t *tokens;
    size_t n_tokens;
    const char *text;
    size_t text_len; /* 0: strlen(text) */
    bool no_bos;
    const judgeq_eviction *eviction; /* NULL: keep everything */
    uint32_t reserve; /* decode room per head; 0: the daemon's default */
} judgeq_prefill_input;

typedef struct {
    uint32_t prompt_tokens;
    int32_t *prompt_token_ids; /* (prompt_tokens) */
    size_t n_prompt_token_ids;
    uint32_t n_layer, n_head_kv;
    uint32_t *kept;            /* (n_layer, n_head_kv) row major */
    size_t n_kept;
    uint64_t kv_bytes_full, kv_bytes_kept;
    double prefill_ms, score_ms, evict_ms, queue_ms;
} judgeq_prefill_result;

/* Evaluates a prompt into the session's KV, evicting as asked. result may
 * be NULL. */
int judgeq_prefill(judgeq_conn *c, uint64_t session_id,
                   const judgeq_prefill_input *in,
                   judgeq_prefill_result *result);
void judgeq_prefill_result_free(judgeq_prefill_result *r);

/* ----------------------------------------------------------- generate */

typedef struct {
    uint32_t max_tokens;
    float temp;     /* 0: greedy */
    int32_t top_k;  /* 0: off */
    float top_p;    /* 1: off */
    uint64_t seed;
    const int32_t *stop_tokens;
    size_t n_stop_tokens;
    bool ignore_eos;
} judgeq_generate_opts;

/* max_tokens 64, temp 0.8, top_k 40, top_p 0.95, seed 0 (the defaults of
 * `judgeq run`, except the seed, which the caller chooses). */
void judgeq_generate_opts_init(judgeq_generate_opts *o);

/* One generated token, valid during the callback only. */
typedef struct {
    int32_t id;
    const char *piece; /* piece_len bytes of text, NUL-terminated; not
                          necessarily valid UTF-8 on its own */
    size_t piece_len;
    float logprob;
    uint32_t index;    /* 0 for the first generated token */
} judgeq_token;

/* Called on the calling thread for every token as it arrives. Return 0 to
 * continue; anything else stops reading (judgeq_generate then returns
 * JUDGEQ_ERR_CANCELLED; the rest of the stream is discarded as it
 * arrives). It must not call libjudgeq on the same handle (JUDGEQ_ERR_BUSY). */
typedef int (*judgeq_token_cb)(void *user, const judgeq_token *token);

typedef struct {
    uint32_t n_tokens;
    char stop_reason[16]; /* "length", "eos", "stop_token", "cancelled" */
    double decode_ms;
    double decode_tokens_per_s;
} judgeq_generate_result;

/* Generates up to opts->max_tokens tokens after what the session holds.
 * opts NULL: judgeq_generate_opts_init's values. cb and result may be
 * NULL. */
int judgeq_generate(judgeq_conn *c, uint64_t session_id,
                    const judgeq_generate_opts *opts, judgeq_token_cb cb,
                    void *user, judgeq_generate_result *result);

/* ------------------------------------------------------ tokenization */

/* *tokens: malloc'd (free()), *n_tokens entries. */
int judgeq_tokenize(judgeq_conn *c, const char *text, bool add_bos,
                    int32_t **tokens, size_t *n_tokens);
/* *text: malloc'd, NUL-terminated, *text_len bytes without the NUL. */
int judgeq_detokenize(judgeq_conn *c, const int32_t *tokens, size_t n_tokens,
                      char **text, size_t *text_len);

/* ------------------------------------------------------ stats, ping */

typedef struct {
    uint32_t node;
    char *cpuset; /* hwloc list syntax */
    uint32_t threads, sessions;
    uint64_t busy_ms;
} judgeq_pool_stats;

typedef struct {
    uint32_t sessions, connections;
    uint64_t memory_used, memory_budget;
    judgeq_pool_stats *pools;
    size_t n_pools;
    uint64_t requests, errors;
    double uptime_s;
    uint64_t shared_prefix_bytes;
    /* The daemon process: resident bytes and open descriptors; 0 when the
     * daemon did not say (it could not read /proc, or is older). */
    uint64_t rss_bytes;
    uint32_t open_fds;
} judgeq_stats;

int judgeq_get_stats(judgeq_conn *c, judgeq_stats *stats);
void judgeq_stats_free(judgeq_stats *stats);

/* One round trip; *rtt_us (may be NULL) receives its wall time in
 * microseconds, measured from before the send to after the reply. */
int judgeq_ping(judgeq_conn *c, double *rtt_us);

/* --------------------------------------------------------- export KV */

/* The layout the ExportKV reply describes (the same facts as the header at
 * offset 0 of the memfd; judgeq_kv_map compares the two). */
typedef struct {
    uint32_t version, n_layer, n_head_kv, head_dim;
    judgeq_kv_type kv_type;
    uint64_t total_bytes;
    judgeq_kv_head_entry *heads; /* n_heads entries, as sent */
    size_t n_heads;
} judgeq_kv_export;

/* Asks for a read-only snapshot of a session's KV. On success *fd is a
 * close-on-exec memfd that the caller owns, already checked to carry
 * F_SEAL_WRITE, F_SEAL_SHRINK and F_SEAL_GROW (an fd without them is
 * closed and the call fails with JUDGEQ_ERR_BAD_FD); layout (may be NULL)
 * receives the reply's description. */
int judgeq_export_kv(judgeq_conn *c, uint64_t session_id, int *fd,
                     judgeq_kv_export *layout);
void judgeq_kv_export_free(judgeq_kv_export *layout);

/* A read-only mapping of an exported memfd, with its header validated. */
typedef struct {
    const void *base;                      /* PROT_READ, MAP_SHARED */
    size_t size;
    const judgeq_kv_layout_header *header; /* == base */
    const uint8_t *table;                  /* first entry (entry_bytes apart) */
} judgeq_kv_mapping;

/* Checks that fd is sealed against writing, shrinking and growing
 * (fcntl F_GET_SEALS), then maps it PROT_READ and checks the layout: magic,
 * version, shape bounds, every head's arrays inside the file and aligned
 * to their element size, and (when expect is non-NULL) agreement with the
 * ExportKV reply. The caller keeps fd and may close it right after. Fails
 * with JUDGEQ_ERR_BAD_FD and a sentence in err (may be NULL) otherwise.
 * Thread-safe (no shared state). */
int judgeq_kv_map(int fd, const judgeq_kv_export *expect,
                  judgeq_kv_mapping *map, char *err, size_t err_size);
/* Seal check alone: JUDGEQ_OK when F_SEAL_WRITE|F_SEAL_SHRINK|F_SEAL_GROW
 * are all set. */
int judgeq_kv_check_seals(int fd, char *err, size_t err_size);
void judgeq_kv_unmap(judgeq_kv_mapping *map);

/* Head (layer, kv_head) of a validated mapping; NULL when out of range.
 * The arrays it locates are base + keys_offset etc. */
const judgeq_kv_head_entry *judgeq_kv_head(const judgeq_kv_mapping *map,
                                           uint32_t layer, uint32_t kv_head);
/* Keys / values of a head: length x head_dim elements of the header's
 * elem_type. Positions: length int32. NULL when out of range. */
const void *judgeq_kv_keys(const judgeq_kv_mapping *map, uint32_t layer,
                           uint32_t kv_head);
const void *judgeq_kv_values(const judgeq_kv_mapping *map, uint32_t layer,
                             uint32_t kv_head);
const int32_t *judgeq_kv_positions(const judgeq_kv_mapping *map,
                                   uint32_t layer, uint32_t kv_head);

#ifdef __cplusplus
}
#endif

#endif
