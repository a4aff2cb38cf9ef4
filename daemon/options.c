/* options.c — see options.h.
 *
 * Every option is one row of `options[]`; numbers are checked against the
 * row's [min, max] and a bad value is refused with a sentence naming the
 * option and its range (Redis config.c style). Sizes accept K, M, G, T
 * suffixes (powers of 1024).
 */
#include "options.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define JQD_VERSION "0.1.0"

/* OPT_LIST: a repeatable string collected in a jq_str_list. */
typedef enum { OPT_STRING, OPT_UINT, OPT_BYTES, OPT_ENUM, OPT_LIST } opt_type;

typedef struct {
    const char *name;
    opt_type type;
    size_t offset;          /* into jq_config */
    uint64_t min, max, def; /* numbers and enums (index into choices) */
    const char *const *choices; /* OPT_ENUM: NULL-terminated */
    const char *metavar;
    const char *help;
} option;

static const char *const numa_choices[] = {"auto", "off", NULL};
static const char *const weights_choices[] = {"interleave", "per-node", NULL};
static const char *const level_choices[] = {
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
    NULL};

#define CFG(f) offsetof(jq_config, f)
#define GiB (1ull << 30)

static const option options[] = {
    {"model", OPT_STRING, CFG(model), 0, 0, 0, NULL, "FILE",
     "the model (llama GGUF); required"},
    {"soft", OPT_STRING, CFG(soft), 0, 0, 0, NULL, "FILE",
     "Judge Q soft tokens for the judgeq eviction policy"},
    {"socket", OPT_STRING, CFG(socket), 0, 0, 0, NULL, "PATH",
     "Unix socket to create (mode 0660); not needed with LISTEN_FDS"},
    {"threads", OPT_UINT, CFG(threads), 0, 1024, 0, NULL, "N",
     "worker threads in all pools; 0 = one per core"},
    {"numa", OPT_ENUM, CFG(numa), 0, 1, JQ_NUMA_AUTO, numa_choices, "MODE",
     "auto: one pool per NUMA node; off: one pool"},
    {"weights", OPT_ENUM, CFG(weights), 0, 1, JQ_WEIGHTS_INTERLEAVE,
     weights_choices, "MODE", "model weights' NUMA placement"},
    {"topology-synthetic", OPT_STRING, CFG(topology_synthetic), 0, 0, 0,
     NULL, "DESC",
     "plan for an hwloc synthetic topology, e.g. \"pack:2 core:1 pu:1\" "
     "(threads are not bound)"},
    {"max-sessions", OPT_UINT, CFG(max_sessions), 1, 65536, 256, NULL, "N",
     "sessions at once"},
    {"max-connections", OPT_UINT, CFG(max_connections), 1, 65536, 1024, NULL,
     "N", "client connections at once"},
    {"max-frame-bytes", OPT_BYTES, CFG(max_frame_bytes), 64, 256u << 20,
     16u << 20, NULL, "BYTES", "largest request frame accepted"},
    {"max-output-bytes", OPT_BYTES, CFG(max_output_bytes), 4096, 4 * GiB,
     256u << 20, NULL, "BYTES",
     "unsent reply bytes a connection may queue before it is dropped"},
    {"frame-timeout-ms", OPT_UINT, CFG(frame_timeout_ms), 0, 3600000, 30000,
     NULL, "MS",
     "a request frame must arrive whole within this long of its first "
     "byte, or the connection is closed; 0 = no limit"},
    {"max-inflight", OPT_UINT, CFG(max_inflight), 1, 65536, 256, NULL, "N",
     "unanswered requests per connection"},
    {"memory-budget", OPT_BYTES, CFG(memory_budget), 0, 1ull << 50, 0,
     NULL, "BYTES", "KV memory of all sessions (scratch at prefill + kept "
     "stores); 0 = unlimited"},
    {"idle-timeout", OPT_UINT, CFG(idle_timeout), 1, 31u * 24 * 3600, 600,
     NULL, "SECONDS", "close sessions unused this long"},
    {"max-context", OPT_UINT, CFG(max_context), 0, 1u << 24, 0, NULL, "N",
     "positions per session (prompt + generated); 0 = the model's"},
    {"grace-period", OPT_UINT, CFG(grace_period), 0, 3600, 10, NULL,
     "SECONDS", "time in-flight work may finish after SIGTERM"},
    {"log-level", OPT_ENUM, CFG(log_level), 0, 7, JQ_LOG_INFO, level_choices,
     "LEVEL", "least important messages logged"},
    {"log-file", OPT_STRING, CFG(log_file), 0, 0, 0, NULL, "FILE",
     "append logs here instead of stderr (reopened on SIGHUP)"},
    {"allow-path", OPT_LIST, CFG(allow_path), 0, JQ_STR_LIST_MAX, 0, NULL,
     "PREFIX",
     "files a client names (prefill.eviction.soft_path) are opened only "
     "under this directory or file; repeatable; default: none are opened"},
};
#define N_OPTIONS (sizeof options / sizeof options[0])

static int usage_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int usage_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static void format_bytes(uint64_t v, char *buf, size_t n)
{
    static const char suffix[] = "KMGT";
    int s = -1;
    while (v && v % 1024 == 0 && s < 3) {
        v /= 1024;
        s++;
    }
    if (s < 0)
        snprintf(buf, n, "%" PRIu64, v);
    else
        snprintf(buf, n, "%" PRIu64 "%c", v, suffix[s]);
}

static int parse_number(const option *o, const char *s, uint64_t *out,
                        char *err, size_t errlen)
{
    errno = 0;
    char *end;
    if (!*s || *s == '-' || *s == '+' || *s == ' ')
        goto bad;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        goto bad;
    if (o->type == OPT_BYTES && *end) {
        const char *sx = "KMGT";
        const char *p = strchr(sx, *end);
        if (!p || !*p)
            goto bad;
        int shift = 10 * (int)(p - sx + 1);
        if (v > (UINT64_MAX >> shift))
            goto range;
        v <<= shift;
        end++;
        if (*end == 'i' && end[1] == 'B')
            end += 2;
        else if (*end == 'B')
            end++;
    }
    if (*end)
        goto bad;
    if (v < o->min || v > o->max)
        goto range;
    *out = v;
    return 0;
bad:
    return usage_err(err, errlen, "--%s '%s' is not a%s number", o->name, s,
                     o->type == OPT_BYTES ? " byte count (N, NK, NM, NG)"
                                          : "n unsigned");
range: {
    char lo[32], hi[32];
    if (o->type == OPT_BYTES) {
        format_bytes(o->min, lo, sizeof lo);
        format_bytes(o->max, hi, sizeof hi);
    } else {
        snprintf(lo, sizeof lo, "%" PRIu64, o->min);
        snprintf(hi, sizeof hi, "%" PRIu64, o->max);
    }
    return usage_err(err, errlen, "--%s %s is outside %s..%s", o->name, s, lo,
                     hi);
}
}

static int apply(const option *o, const char *val, jq_config *cfg, char *err,
                 size_t errlen)
{
    char *field = (char *)cfg + o->offset;
    switch (o->type) {
    case OPT_STRING:
        if (!*val)
            return usage_err(err, errlen, "--%s needs a non-empty value",
                             o->name);
        memcpy(field, &val, sizeof val);
        return 0;
    case OPT_LIST: {
        jq_str_list *l = (jq_str_list *)(void *)field;
        if (!*val)
            return usage_err(err, errlen, "--%s needs a non-empty value",
                             o->name);
        if (l->n >= JQ_STR_LIST_MAX)
            return usage_err(err, errlen, "--%s is given more than %d times",
                             o->name, JQ_STR_LIST_MAX);
        l->v[l->n++] = val;
        return 0;
    }
    case OPT_UINT:
    case OPT_BYTES:
        return parse_number(o, val, (uint64_t *)(void *)field, err, errlen);
    case OPT_ENUM:
        for (uint64_t i = 0; o->choices[i]; i++)
            if (strcmp(o->choices[i], val) == 0) {
                memcpy(field, &i, sizeof i);
                return 0;
            }
        {
            char list[128] = "";
            for (int i = 0; o->choices[i]; i++) {
                if (i)
                    strncat(list, ", ", sizeof list - strlen(list) - 1);
                strncat(list, o->choices[i], sizeof list - strlen(list) - 1);
            }
            return usage_err(err, errlen, "--%s '%s' is not one of: %s",
                             o->name, val, list);
        }
    }
    return -1;
}

void jq_options_help(FILE *out)
{
    fprintf(out,
            "usage: judgeqd --model FILE (--socket PATH | socket activation) "
            "[options]\n\n"
            "judgeq's inference daemon: serves sessions (prefill with KV "
            "eviction, decoding)\nto local clients over a Unix socket.\n\n");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const option *o = &options[i];
        char left[64], def[128] = "";
        snprintf(left, sizeof left, "--%s %s", o->name, o->metavar);
        switch (o->type) {
        case OPT_STRING: break;
        case OPT_LIST:
            snprintf(def, sizeof def, " [at most %" PRIu64 "]", o->max);
            break;
        case OPT_UINT:
            snprintf(def, sizeof def, " [%" PRIu64 "..%" PRIu64
                     ", default %" PRIu64 "]", o->min, o->max, o->def);
            break;
        case OPT_BYTES: {
            char a[32], b[32], c[32];
            format_bytes(o->min, a, sizeof a);
            format_bytes(o->max, b, sizeof b);
            format_bytes(o->def, c, sizeof c);
            snprintf(def, sizeof def, " [%s..%s, default %s]", a, b, c);
            break;
        }
        case OPT_ENUM:
            snprintf(def, sizeof def, " [default %s]", o->choices[o->def]);
            break;
        }
        fprintf(out, "  %-28s %s%s\n", left, o->help, def);
    }
    fprintf(out, "  %-28s %s\n  %-28s %s\n", "-h, --help", "this help",
            "--version", "print the version");
    fprintf(out,
            "\nSignals: SIGTERM drains and exits 0; SIGHUP reopens the log "
            "file and reloads --soft.\n"
            "Socket activation: LISTEN_PID/LISTEN_FDS (one stream socket at "
            "fd 3).\n");
}

int jq_options_parse(int argc, char **argv, jq_config *cfg, FILE *out,
                     char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (options[i].type != OPT_STRING && options[i].type != OPT_LIST)
            memcpy((char *)cfg + options[i].offset, &options[i].def,
                   sizeof(uint64_t));
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            jq_options_help(out);
            return 1;
        }
        if (strcmp(arg, "--version") == 0) {
            fprintf(out, "judgeqd %s\n", JQD_VERSION);
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0)
            return usage_err(err, errlen, "unexpected argument '%s'", arg);
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const option *o = NULL;
        for (size_t k = 0; k < N_OPTIONS; k++)
            if (strlen(options[k].name) == nlen &&
                strncmp(options[k].name, name, nlen) == 0)
                o = &options[k];
        if (!o)
            return usage_err(err, errlen, "unknown option '%s' (--help lists "
                             "them)", arg);
        const char *val = eq ? eq + 1 : NULL;
        if (!val) {
            if (i + 1 >= argc)
                return usage_err(err, errlen, "--%s needs a value (%s)",
                                 o->name, o->metavar);
            val = argv[++i];
        }
        if (apply(o, val, cfg, err, errlen) != 0)
            return -1;
    }
    if (!cfg->model)
        return usage_err(err, errlen, "--model FILE is required");
    return 0;
}

const char *jq_daemon_version(void) { return JQD_VERSION; }
