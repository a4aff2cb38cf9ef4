/* daemon.h — judgeqd's shared state: the daemon, its worker pools, jobs,
 * sessions and connections, and which thread may touch what.
 *
 * Threads. The loop thread (libuv) owns the session table, the
 * connections and every counter not marked _Atomic. A worker (the leader
 * thread of a node pool) owns a job from the moment it pops it until it
 * posts the job's DONE completion; while a job runs, the worker alone
 * touches the job's session's KV store, logits and pending token, and the
 * loop thread keeps its hands off them (the session is `running`). Workers
 * talk back only through jq_post_* (a locked queue + uv_async_send).
 */
#ifndef JQ_DAEMON_DAEMON_H
#define JQ_DAEMON_DAEMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "frame.h"
#include "kernels.h"
#include "model.h"
#include "options.h"
#include "paths.h"
#include "plan.h"
#include "prefill.h"
#include "soft_tokens.h"

typedef struct jq_daemon jq_daemon;
typedef struct jq_session jq_session;
typedef struct jq_conn jq_conn;
typedef struct jq_job jq_job;
typedef struct jq_node_pool jq_node_pool;

/* ---- KV memory: a memfd mapping that holds a store's arrays */

typedef struct {
    int fd;        /* memfd (MFD_ALLOW_SEALING), -1 when none */
    void *addr;    /* MAP_SHARED mapping of the whole memfd */
    size_t size;
    bool sealed;   /* remapped read-only and F_SEAL_WRITE applied */
} jq_kv_mem;

/* Soft tokens shared by in-flight prefills; SIGHUP swaps in a new set while
 * old prefills still hold the previous one. */
typedef struct {
    _Atomic int refs;
    jq_soft_tokens *soft;
} jq_soft_ref;

/* A compressed prefix shared read-only by forks. */
typedef struct {
    int refs;          /* sessions whose store extends it (loop thread) */
    jq_kv_store *store;
    jq_kv_mem mem;
    uint64_t bytes;    /* counted once in memory_used */
} jq_prefix;

/* ---- jobs */

typedef enum {
    JQ_JOB_PREFILL,
    JQ_JOB_GENERATE,
    JQ_JOB_EXPORT,
    JQ_JOB_TOKENIZE,
    JQ_JOB_DETOKENIZE,
    JQ_JOB_FORK,   /* runs on the loop thread when it reaches the head */
    JQ_JOB_CLOSE,  /* idem */
} jq_job_kind;

struct jq_job {
    jq_job *next;          /* pool queue or session queue link */
    jq_job_kind kind;
    jq_session *session;   /* NULL for tokenize/detokenize */
    jq_node_pool *pool;
    uint64_t conn_id, req_id;
    uid_t uid;             /* requester (fork: owner of the new session) */
    double t_submit, t_start;
    _Atomic bool cancel;

    /* prefill */
    int32_t *tokens;       /* owned; tokenize/detokenize input too */
    int32_t n_tokens;
    char *text;            /* owned; prefill or tokenize input */
    bool add_bos;
    jq_evict_spec spec;
    int32_t reserve;       /* -1: up to the session's max_context */
    jq_soft_ref *soft;
    int soft_fd;           /* O_PATH fd of a client's soft_path, or -1 */
    uint64_t admitted;     /* bytes reserved against the budget */
    jq_prefill_result result;
    jq_kv_store *store;    /* the new session store */
    jq_kv_mem mem;
    uint64_t store_bytes;

    /* generate */
    jq_sampling sampling;
    struct jq_sampler *sampler;
    int32_t max_tokens, produced;
    int32_t *stop_tokens;
    int32_t n_stop;
    bool ignore_eos;
    double decode_s;
    int32_t n_evals;
    const char *stop_reason;

    /* export */
    int export_fd;
    void *export_layout;   /* Judgeq__KvLayout *, built on the worker */

    /* detokenize */
    char *out_text;
    size_t out_len;

    /* outcome */
    Judgeq__ErrorCode code;
    char message[256];
};

/* ---- sessions */

struct jq_session {
    jq_session *next, *prev;
    uint64_t id;
    uid_t owner;
    uint64_t conn_id;          /* creator; 0 once it is gone */
    bool keep_on_disconnect;
    unsigned node;             /* pool index */
    int32_t max_context;
    uint32_t kv_type;          /* JQ_TYPE_F32 / F16 */
    double last_used;

    /* worker-owned while running */
    jq_kv_store *store;        /* NULL before the first prefill */
    jq_kv_mem mem;             /* the store's memfd (none for fork tails) */
    jq_prefix *prefix;         /* shared prefix store extends, or NULL */
    float *logits;             /* (n_vocab) of the last evaluated position */
    int32_t pending;           /* sampled but not yet evaluated, or -1 */
    bool has_logits;

    uint64_t bytes;            /* own store bytes counted in memory_used */
    jq_job *running;           /* on a worker now */
    jq_job *queue, *queue_tail;/* waiting for it, in order */
    bool closing;              /* freed when nothing runs */
};

/* ---- connections */

typedef struct jq_out_chunk {
    struct jq_out_chunk *next;
    size_t len, off, cap;
    int fd;                    /* sent with the chunk's first byte, or -1 */
    uint8_t data[];
} jq_out_chunk;

struct jq_conn {
    jq_conn *next, *prev;
    jq_conn *flush_next;
    jq_daemon *d;
    uint64_t id;
    int fd;
    uv_poll_t poll;
    int events;
    uid_t uid;
    gid_t gid;
    pid_t pid;
    uint8_t *in;
    size_t in_len, in_cap;
    jq_out_chunk *out, *out_tail;
    size_t out_bytes;
    unsigned inflight;
    bool want_flush, closing, close_after_flush, read_stopped;
    /* uv_now() when the partial frame in `in` began, or when the last
     * reply before a close_after_flush was queued (conn_limits.c) */
    uint64_t frame_started_ms;
};

/* ---- worker pools */

struct jq_node_pool {
    jq_pool base;              /* what the engine computes through */
    jq_daemon *d;
    unsigned index;
    unsigned n_threads;
    pthread_t *threads;        /* [0] the leader, the rest helpers */
    unsigned n_started;

    /* job queue (leader thread) */
    pthread_mutex_t qmu;
    pthread_cond_t qcv;
    jq_job *qhead, *qtail;
    unsigned qlen;
    bool stop;

    /* fork-join of the compute shares */
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    _Atomic unsigned long generation;
    _Atomic int pending;
    jq_pool_fn fn;
    void *arg;
    _Atomic bool helpers_stop;

    jq_ctx *ctx[2];            /* scratch per KV type, made on first use */
    float *logits;             /* (n_vocab) scratch */
    _Atomic uint64_t busy_ns;
    _Atomic bool alive;
    unsigned sessions;         /* loop thread */
};

/* ---- completions from workers to the loop */

typedef enum { JQ_DONE_JOB, JQ_DONE_CHUNK } jq_completion_kind;

typedef struct jq_completion {
    struct jq_completion *next;
    jq_completion_kind kind;
    jq_job *job;
    uint64_t conn_id, req_id;
    int32_t token;
    float logprob;
    uint32_t index;
    uint32_t piece_len;
    char piece[];
} jq_completion;

/* ---- the daemon */

struct jq_daemon {
    jq_config cfg;
    uv_loop_t *loop;
    double t_start;

    /* model */
    jq_model *model;
    jq_soft_ref *soft;         /* current soft tokens, or NULL */
    jq_allow_list allow;       /* --allow-path, canonical */
    int32_t max_context;
    jq_request_limits limits;

    /* topology and pools */
    hwloc_topology_t topo;
    jq_plan *plan;
    jq_node_pool *pools;
    unsigned n_pools;

    /* listeners */
    int listen_fd;
    bool listen_activated;     /* from LISTEN_FDS: not ours to unlink */
    uv_poll_t listen_poll;
    bool listening;

    /* completions */
    uv_async_t async;
    pthread_mutex_t cmu;
    jq_completion *chead, *ctail;

    uv_prepare_t flush_prepare;
    uv_timer_t tick;
    uv_timer_t grace;          /* then the linger of the last replies */
    uv_timer_t stall_scan;     /* conn_limits.c */
    uv_signal_t sig_term, sig_int, sig_hup;
    uint64_t watchdog_usec;
    double last_watchdog;

    /* tables */
    jq_conn *conns;
    unsigned n_conns;
    uint64_t next_conn_id;
    jq_conn *flush_list;
    jq_session *sessions;
    unsigned n_sessions;
    uint64_t next_session_id;
    unsigned jobs_inflight;

    /* memory */
    uint64_t memory_used;
    uint64_t shared_prefix_bytes;

    /* counters */
    uint64_t requests, errors;

    /* shutdown */
    bool draining, cancelled_all, finished, torn_down;
    int exit_code;
};

/* server.c */
int jq_server_init(jq_daemon *d, char *err, size_t errlen);
int jq_server_listen(jq_daemon *d, char *err, size_t errlen);
int jq_server_run(jq_daemon *d);
void jq_server_free(jq_daemon *d);

/* server.c, for conn_limits.c: answer once with an error naming what went
 * wrong (logged at level), stop reading, close when the answer is out. */
void jq_conn_abort(jq_conn *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void jq_conn_close(jq_conn *c, const char *why);

/* conn_limits.c: the stalled-connection scan (--frame-timeout-ms) */
void jq_conn_limits_init(jq_daemon *d);
void jq_conn_limits_start(jq_daemon *d);
void jq_conn_limits_close(jq_daemon *d);
/* After bytes arrived: `before` were buffered, and whether process_frames
 * consumed a whole frame. Starts the clock of a new partial frame. */
void jq_conn_frame_progress(jq_conn *c, size_t before, bool consumed);

/* workers.c */
int jq_pools_start(jq_daemon *d, char *err, size_t errlen);
void jq_pools_stop(jq_daemon *d);
void jq_pool_submit(jq_node_pool *p, jq_job *job);
/* From a worker: hand a finished job (DONE) or a token (CHUNK) to the loop. */
void jq_post_done(jq_daemon *d, jq_job *job);
void jq_post_chunk(jq_daemon *d, jq_job *job, int32_t token, float logprob,
                   uint32_t index, const char *piece, size_t piece_len);
bool jq_pools_alive(jq_daemon *d);

/* jobs.c (worker side) */
/* Runs one turn of job on pool p's leader thread. Returns true when the job
 * is finished (post DONE), false when it yielded and must be queued again
 * (a generation gives others a turn every few tokens). */
bool jq_job_run(jq_node_pool *p, jq_job *job);
void jq_job_free(jq_job *job);

/* kv_mem.c */
int jq_kv_mem_create(jq_kv_mem *m, size_t size, const char *name,
                     char *err, size_t errlen);
/* Remaps read-only and seals against writes, shrinking and growing. */
int jq_kv_mem_seal(jq_kv_mem *m, char *err, size_t errlen);
void jq_kv_mem_release(jq_kv_mem *m);
void jq_soft_ref_put(jq_soft_ref *r);

double jq_now_s(void);

#endif
