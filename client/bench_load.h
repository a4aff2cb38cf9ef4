/* bench_load.h — `judgeq bench --socket PATH --clients N`: a load
 * generator for judgeqd.
 *
 * N connections, one thread each, run create / prefill / generate / close
 * loops (with an occasional fork and KV export) on random prompts under a
 * weighted mix of eviction policies, until --duration has passed. A
 * sampler thread on its own connection asks the daemon for Stats (its RSS
 * and open descriptors among them) every sample_s seconds. The result is
 * one JSON object (bench_load_report.c): requests and latencies per
 * request type, errors by status code, tokens/s, and the daemon's RSS and
 * fd count over the first and last window of the run.
 */
#ifndef JQ_BENCH_LOAD_H
#define JQ_BENCH_LOAD_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cli.h"
#include "evict.h"

typedef struct {
    const char *socket;
    int32_t clients;
    double duration_s;
    int32_t prompt_len;     /* longest prompt; each is in [len/2, len] */
    int32_t gen;            /* tokens generated per session */
    /* weight of each policy in the mix (0: not used) */
    uint32_t weight[JQ_EVICT_COUNT_];
    bool mix_set;           /* false: every policy the daemon offers */
    int32_t budget;         /* KV entries kept per (layer, KV head) */
    jq_evict_spec spec[JQ_EVICT_COUNT_]; /* per policy, from the flags */
    uint32_t kv_type;       /* JQ_TYPE_F32 / F16 */
    const char *soft_path;  /* judgeq: a file the daemon opens, or NULL */
    double fork_rate;       /* chance per loop of a fork + generate on it */
    double export_rate;     /* chance per loop of an ExportKV + map check */
    uint64_t seed;
    int32_t timeout_ms;     /* per-call inactivity limit */
    double sample_s;        /* Stats every sample_s s; 0: min(1 s, window / 4) */
    bool allow_errors;
} jq_load_opts;

/* Request types, in the order the report lists them. */
typedef enum {
    JQ_REQ_CONNECT,
    JQ_REQ_CREATE,
    JQ_REQ_PREFILL,
    JQ_REQ_GENERATE,
    JQ_REQ_FORK,
    JQ_REQ_EXPORT,
    JQ_REQ_CLOSE,
    JQ_REQ_STATS,
    JQ_REQ_COUNT_,
} jq_req_type;

extern const char *const jq_req_type_names[JQ_REQ_COUNT_];

/* Latencies (ms) of the successful requests of one kind, and its errors. */
typedef struct {
    double *ms;
    size_t n, cap;
    uint64_t errors;
} jq_latencies;

/* Appends; false when out of memory. */
bool jq_latencies_add(jq_latencies *l, double ms);
/* Moves src's samples to the end of dst (src emptied). */
bool jq_latencies_merge(jq_latencies *dst, jq_latencies *src);
void jq_latencies_free(jq_latencies *l);

/* The status codes libjudgeq returns, JUDGEQ_ERR_BUSY (-9) .. INTERNAL (6). */
#define JQ_LOAD_CODE_MIN (-9)
#define JQ_LOAD_CODE_MAX 6
#define JQ_LOAD_FIRST_ERRORS 5

typedef struct {
    jq_req_type type;
    int code;
    char message[256];
} jq_load_error;

/* One Stats reply, at t seconds after the load started. */
typedef struct {
    double t;
    uint64_t rss_bytes;  /* 0: not reported */
    uint32_t open_fds;   /* 0: not reported */
    uint32_t sessions, connections;
    uint64_t memory_used;
} jq_daemon_sample;

/* Everything a run measured, merged over the clients. */
typedef struct {
    double elapsed_s;     /* from the first connect to the last join */
    jq_latencies lat[JQ_REQ_COUNT_];
    jq_latencies first_token;        /* generate: time to the first token */
    jq_latencies prefill_by_policy[JQ_EVICT_COUNT_];
    uint64_t loops, prompt_tokens, generated_tokens;
    uint64_t errors_by_code[JQ_LOAD_CODE_MAX - JQ_LOAD_CODE_MIN + 1];
    jq_load_error first_errors[JQ_LOAD_FIRST_ERRORS];
    int n_first_errors;
    jq_daemon_sample *samples;
    size_t n_samples, cap_samples;
    jq_daemon_sample before, after; /* idle: before the clients connect,
                                       after they left and sessions drained */
    bool have_before, have_after;
    /* from Hello */
    char *model_path;
    uint32_t n_vocab, n_ctx_train, n_soft_tokens;
} jq_load_result;

/* Runs the load and prints the report. The exit status: 0, or 1 when any
 * request failed (unless allow_errors) or the daemon cannot be reached. */
int jq_bench_load(const jq_cmd_info *cmd, const jq_load_opts *o);

/* bench_load_report.c: the JSON object of a finished run (caller frees
 * with json_decref), and the total error count. */
json_t *jq_load_report(const jq_load_opts *o, const jq_load_result *r);
uint64_t jq_load_error_total(const jq_load_result *r);

#endif
