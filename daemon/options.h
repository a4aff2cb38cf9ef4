/* options.h — judgeqd's configuration: one declarative table of options
 * (name, type, min, max, default, help), from which the parser and --help
 * are both made, so they cannot disagree.
 */
#ifndef JQ_DAEMON_OPTIONS_H
#define JQ_DAEMON_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { JQ_NUMA_AUTO = 0, JQ_NUMA_OFF = 1 } jq_numa_mode;
typedef enum { JQ_WEIGHTS_INTERLEAVE = 0, JQ_WEIGHTS_PER_NODE = 1 } jq_weights_mode;

/* A repeatable option's values (at most JQ_STR_LIST_MAX). */
#define JQ_STR_LIST_MAX 16
typedef struct {
    const char *v[JQ_STR_LIST_MAX];
    size_t n;
} jq_str_list;

typedef struct {
    const char *model;               /* GGUF file (required) */
    const char *soft;                /* Judge Q soft tokens, or NULL */
    const char *socket;              /* Unix socket path, or NULL with LISTEN_FDS */
    const char *topology_synthetic;  /* hwloc synthetic description, or NULL */
    const char *log_file;            /* NULL: stderr */
    jq_str_list allow_path;          /* where client-named files may be opened */
    uint64_t threads;                /* worker threads in all (0: one per core) */
    uint64_t numa;                   /* jq_numa_mode */
    uint64_t weights;                /* jq_weights_mode */
    uint64_t max_sessions;
    uint64_t max_connections;
    uint64_t max_frame_bytes;
    uint64_t max_output_bytes;       /* per connection, then it is dropped */
    uint64_t frame_timeout_ms;       /* a started frame must end by then */
    uint64_t max_inflight;           /* requests per connection */
    uint64_t memory_budget;          /* bytes of KV (0: unlimited) */
    uint64_t idle_timeout;           /* seconds */
    uint64_t max_context;            /* positions per session (0: the model's) */
    uint64_t grace_period;           /* seconds of draining at SIGTERM */
    uint64_t log_level;
} jq_config;

/* Parses argv into *cfg (defaults first). Returns 0 to run, 1 when --help
 * or --version printed to out and the daemon should exit 0, -1 on a usage
 * error (message in err naming the option and its limits). */
int jq_options_parse(int argc, char **argv, jq_config *cfg, FILE *out,
                     char *err, size_t errlen);
/* "0.1.0" */
const char *jq_daemon_version(void);
/* The usage text made from the table. */
void jq_options_help(FILE *out);

#endif
