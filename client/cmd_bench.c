/* cmd_bench.c — `judgeq bench`: prefill and decode speed of a model, with
 * or without eviction, as one JSON object; with --socket, a load run
 * against a running judgeqd instead (bench_load.c).
 *
 * The prompt is random token ids (seeded): speed does not depend on what
 * the tokens say, and any model file works whatever its tokenizer. Each
 * repetition prefills the whole prompt (with the eviction policy's
 * scoring), then decodes --gen tokens greedily one at a time; medians,
 * minima and maxima are over the repetitions. Numbers from a shared
 * machine are noisy: compare medians of runs made side by side.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench_load.h"
#include "cli.h"
#include "cli_evict.h"
#include "cli_online.h"
#include "kernels.h"
#include "model.h"
#include "prefill.h"
#include "sample.h"
#include "soft_tokens.h"
#include "thread_pool.h"

static const jq_cmd_info bench_info = {
    "bench",
    "usage: judgeq bench -m MODEL [--prompt-len N] [--gen N] [--threads N]\n"
    "                    [--reps N] [--evict P --budget B --soft FILE]\n"
    "                    [--kv-type f32|f16] [--seed S]\n"
    "       judgeq bench --socket PATH [--clients N] [--duration S] [--mix LIST]\n"
    "                    [--prompt-len N] [--gen N] [--budget B] [--fork-rate F]\n"
    "                    [--export-rate F] [--timeout MS] [--sample-interval S]\n"
    "                    [--allow-errors] [--seed S]\n"
    "\n"
    "With -m, measures prefill and decode speed on a random prompt and prints\n"
    "one JSON object: prefill_tokens_per_s and decode_tokens_per_s (each\n"
    "{median, min, max} over --reps), ttft_ms, kv_bytes (resident after\n"
    "generation), kv_bytes_full, peak_rss_bytes, and the options used.\n"
    "\n"
    "  -m, --model FILE     model file (GGUF)\n"
    "      --prompt-len N   prompt tokens (default 512; load run: 128)\n"
    "      --gen N          tokens to decode (default 128; load run: 32)\n"
    "      --reps N         repetitions (default 3)\n"
    "      --threads N      compute threads (default: all CPUs available)\n"
    "      --seed S         seed of the random prompts (default 1)\n"
    JQ_CLI_EVICT_HELP
    "\n"
    "With --socket (a load run), N clients, each on its own connection, loop\n"
    "over session lives against the judgeqd listening there: create, prefill\n"
    "a random prompt of [N/2, N] tokens under a policy drawn from --mix,\n"
    "sometimes fork and generate on the fork, generate --gen tokens, sometimes\n"
    "export the KV (and check the sealed memfd), close. New lives start until\n"
    "--duration has passed. Another connection samples the daemon's Stats.\n"
    "Prints one JSON object: requests (total, errors, per_s); by_type\n"
    "(connect, create, prefill, generate, fork, export, close, stats: each\n"
    "requests, ok, errors, per_s and latency_ms {p50, p99, max, mean} of the\n"
    "successful ones; generate also first_token_ms); prefill_by_policy;\n"
    "tokens (prompt and generated, totals and per_s); errors (total, by_code:\n"
    "counts per status name, first: the first five with their messages);\n"
    "daemon (rss_bytes and open_fds: before, {mean, max} over the first and\n"
    "the last window of min(10 s, duration/6), their growth, after the\n"
    "clients left, and every sample). Exits 1 when any request failed.\n"
    "\n"
    "      --socket PATH    the daemon's socket (also `judgeq --socket PATH\n"
    "                       bench`; $JUDGEQ_SOCKET is not used here)\n"
    "      --clients N      connections at once (default 8)\n"
    "      --duration S     seconds during which lives start (default 10)\n"
    "      --mix LIST       policies and weights, e.g. full:2,snapkv,h2o\n"
    "                       (default: every policy the daemon offers, once;\n"
    "                       judgeq only when it has soft tokens)\n"
    "      --budget B       KV kept per layer and KV head by the evicting\n"
    "                       policies (default max(prompt-len/2, window+1));\n"
    "                       --window, --sink, --pool-kernel, --gqa-reduce,\n"
    "                       --kv-type and --soft apply as above\n"
    "      --fork-rate F    chance per life of a fork (default 0.1)\n"
    "      --export-rate F  chance per life of a KV export (default 0.1)\n"
    "      --timeout MS     a call fails when the daemon is silent this long\n"
    "                       (default 60000)\n"
    "      --sample-interval S  seconds between Stats samples (default\n"
    "                       min(1, window/4))\n"
    "      --allow-errors   exit 0 even when requests failed\n"
    "  -h, --help           this help\n",
};

enum {
    OPT_PROMPT_LEN = 256, OPT_GEN, OPT_REPS, OPT_THREADS, OPT_SEED,
    OPT_SOCKET, OPT_CLIENTS, OPT_DURATION, OPT_MIX, OPT_FORK_RATE,
    OPT_EXPORT_RATE, OPT_TIMEOUT, OPT_SAMPLE, OPT_ALLOW_ERRORS,
};

typedef struct {
    const char *model;
    int32_t prompt_len, gen, reps, threads;
    uint64_t seed;
    jq_cli_evict evict;
    jq_evict_spec spec;
    /* the offline and the load run take different flags */
    bool prompt_len_set, gen_set, reps_set, threads_set, evict_set;
    bool clients_set;
    const char *load_flag; /* the first load-only flag given (its long name) */
    const char *mix;
    jq_load_opts load;
} bench_opts;

/* --mix "POLICY[:WEIGHT],...": weights 1..1000, default 1. */
static void parse_mix(const jq_cmd_info *I, const char *list, jq_load_opts *o)
{
    char *copy = strdup(list), *save = NULL;
    if (!copy)
        jq_cli_fail(I, "out of memory");
    int n = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(t, ':');
        if (colon)
            *colon = 0;
        int p = jq_evict_policy_from_name(t);
        if (p < 0)
            jq_cli_usage_error(I, "unknown policy '%s' in --mix (full, "
                                  "streaming, h2o, snapkv, pyramidkv, adakv, "
                                  "judgeq)", t);
        if (p == JQ_EVICT_ORACLE)
            jq_cli_usage_error(I, "--mix: oracle observes the tokens it is "
                                  "about to generate; the daemon serves it "
                                  "to no one");
        if (o->weight[p])
            jq_cli_usage_error(I, "--mix lists '%s' twice", t);
        o->weight[p] = colon ? (uint32_t)jq_cli_int(I, "a --mix weight",
                                                    colon + 1, 1, 1000)
                             : 1;
        n++;
    }
    free(copy);
    if (n == 0)
        jq_cli_usage_error(I, "--mix is empty");
    o->mix_set = true;
}

/* The load run's checks and defaults, after every flag was read. */
static void finish_load(const jq_cmd_info *I, bench_opts *o, const char *socket)
{
    jq_load_opts *L = &o->load;
    if (!socket)
        jq_cli_usage_error(I, "--clients needs --socket PATH (the daemon to "
                              "load)");
    if (!*socket)
        jq_cli_usage_error(I, "--socket needs a path");
    if (o->model)
        jq_cli_usage_error(I, "-m is for the offline bench; a load run uses "
                              "the daemon's model");
    if (o->reps_set || o->threads_set)
        jq_cli_usage_error(I, "%s is for the offline bench (-m MODEL)",
                           o->reps_set ? "--reps" : "--threads");
    if (o->evict_set)
        jq_cli_usage_error(I, "--evict is for the offline bench; give a load "
                              "run's policies with --mix");
    L->socket = socket;
    L->prompt_len = o->prompt_len_set ? o->prompt_len : 128;
    L->gen = o->gen_set ? o->gen : 32;
    if (L->gen < 1)
        jq_cli_usage_error(I, "--gen must be at least 1 in a load run");
    L->seed = o->seed;
    if (o->mix)
        parse_mix(I, o->mix, L);
    jq_cli_evict e = o->evict;
    if (!e.budget_set) {
        e.budget = L->prompt_len / 2 > e.window ? L->prompt_len / 2 : e.window + 1;
        e.budget_set = true;
    }
    L->budget = e.budget;
    for (int p = 0; p < JQ_EVICT_COUNT_; p++) {
        L->spec[p] = jq_cli_evict_spec_for(&e, (jq_evict_policy)p);
        bool used = L->mix_set ? L->weight[p] > 0 : p != JQ_EVICT_ORACLE;
        char err[256];
        if (used && p != JQ_EVICT_FULL &&
            jq_evict_spec_check(&L->spec[p], err, sizeof err) != 0)
            jq_cli_usage_error(I, "%s (policy %s)", err,
                               jq_evict_policy_name((jq_evict_policy)p));
    }
    if (e.soft_path && L->mix_set && !L->weight[JQ_EVICT_JUDGEQ])
        jq_cli_usage_error(I, "--soft is only used with judgeq in --mix");
    L->soft_path = e.soft_path;
    L->kv_type = e.kv_type;
}

static void parse(int argc, char **argv, bench_opts *o)
{
    const jq_cmd_info *I = &bench_info;
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},
        {"prompt-len", required_argument, 0, OPT_PROMPT_LEN},
        {"gen", required_argument, 0, OPT_GEN},
        {"reps", required_argument, 0, OPT_REPS},
        {"threads", required_argument, 0, OPT_THREADS},
        {"seed", required_argument, 0, OPT_SEED},
        {"socket", required_argument, 0, OPT_SOCKET},
        {"clients", required_argument, 0, OPT_CLIENTS},
        {"duration", required_argument, 0, OPT_DURATION},
        {"mix", required_argument, 0, OPT_MIX},
        {"fork-rate", required_argument, 0, OPT_FORK_RATE},
        {"export-rate", required_argument, 0, OPT_EXPORT_RATE},
        {"timeout", required_argument, 0, OPT_TIMEOUT},
        {"sample-interval", required_argument, 0, OPT_SAMPLE},
        {"allow-errors", no_argument, 0, OPT_ALLOW_ERRORS},
        {"help", no_argument, 0, 'h'},
        JQ_CLI_EVICT_LONGOPTS,
        {0, 0, 0, 0},
    };
    *o = (bench_opts){.prompt_len = 512, .gen = 128, .reps = 3, .seed = 1,
                      .threads = jq_cli_default_threads()};
    o->load = (jq_load_opts){.clients = 8, .duration_s = 10, .fork_rate = 0.1,
                             .export_rate = 0.1, .timeout_ms = 60000};
    const char *socket = jq_cli_socket; /* `judgeq --socket PATH bench` */
    jq_cli_evict_init(&o->evict);
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":m:h", longopts, NULL)) != -1) {
        if (c == JQ_OPT_EVICT)
            o->evict_set = true;
        if (jq_cli_evict_opt(I, c, optarg, &o->evict))
            continue;
        if (c >= OPT_CLIENTS && c <= OPT_ALLOW_ERRORS && !o->load_flag)
            for (const struct option *lo = longopts; lo->name; lo++)
                if (lo->val == c)
                    o->load_flag = lo->name;
        switch (c) {
        case 'm': o->model = optarg; break;
        case OPT_PROMPT_LEN:
            o->prompt_len = (int32_t)jq_cli_int(I, "--prompt-len", optarg, 1, 1 << 22);
            o->prompt_len_set = true;
            break;
        case OPT_GEN:
            o->gen = (int32_t)jq_cli_int(I, "--gen", optarg, 0, 1 << 20);
            o->gen_set = true;
            break;
        case OPT_REPS:
            o->reps = (int32_t)jq_cli_int(I, "--reps", optarg, 1, 1000);
            o->reps_set = true;
            break;
        case OPT_THREADS:
            o->threads = (int32_t)jq_cli_int(I, "--threads", optarg, 1, 1024);
            o->threads_set = true;
            break;
        case OPT_SEED: o->seed = jq_cli_u64(I, "--seed", optarg); break;
        case OPT_SOCKET: socket = optarg; break;
        case OPT_CLIENTS:
            o->load.clients = (int32_t)jq_cli_int(I, "--clients", optarg, 1, 4096);
            o->clients_set = true;
            break;
        case OPT_DURATION:
            o->load.duration_s = jq_cli_float(I, "--duration", optarg, 0.1, 86400);
            break;
        case OPT_MIX: o->mix = optarg; break;
        case OPT_FORK_RATE:
            o->load.fork_rate = jq_cli_float(I, "--fork-rate", optarg, 0, 1);
            break;
        case OPT_EXPORT_RATE:
            o->load.export_rate = jq_cli_float(I, "--export-rate", optarg, 0, 1);
            break;
        case OPT_TIMEOUT:
            o->load.timeout_ms = (int32_t)jq_cli_int(I, "--timeout", optarg, 1, INT32_MAX);
            break;
        case OPT_SAMPLE:
            o->load.sample_s = jq_cli_float(I, "--sample-interval", optarg, 0.01, 3600);
            break;
        case OPT_ALLOW_ERRORS: o->load.allow_errors = true; break;
        case 'h': jq_cli_help(I);
        default:
            jq_cli_bad_option(I, c, argv);
        }
    }
    if (optind < argc)
        jq_cli_usage_error(I, "unexpected argument '%s'", argv[optind]);
    if (socket || o->clients_set) {
        finish_load(I, o, socket);
        return;
    }
    if (o->load_flag)
        jq_cli_usage_error(I, "--%s is for a load run (--socket PATH --clients N)",
                           o->load_flag);
    if (!o->model)
        jq_cli_usage_error(I, "a model is required (-m FILE)");
    o->spec = jq_cli_evict_spec(I, &o->evict);
    if (o->spec.policy == JQ_EVICT_ORACLE)
        jq_cli_usage_error(I, "--evict oracle is for evaluation (judgeq "
                              "hitrate), not for speed");
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static json_t *summary(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    json_t *o = json_object();
    json_object_set_new(o, "median", json_real(median));
    json_object_set_new(o, "min", json_real(v[0]));
    json_object_set_new(o, "max", json_real(v[n - 1]));
    return o;
}

int jq_cmd_bench(int argc, char **argv)
{
    const jq_cmd_info *I = &bench_info;
    bench_opts o;
    parse(argc, argv, &o);
    if (o.load.socket)
        return jq_bench_load(I, &o.load);
    jq_model *m = jq_cli_load_model(I, o.model);
    const jq_hparams *hp = &m->hp;
    char err[1024];
    jq_soft_tokens *soft = NULL;
    if (o.evict.soft_path &&
        !(soft = jq_soft_tokens_load(o.evict.soft_path, m, err, sizeof err)))
        jq_cli_fail(I, "%s", err);
    int32_t n_soft = soft ? soft->n : 0;
    int64_t need = (int64_t)o.prompt_len + o.gen;
    if (need > hp->n_ctx_train)
        jq_cli_fail(I, "--prompt-len %d + --gen %d exceed the model context %d",
                    o.prompt_len, o.gen, hp->n_ctx_train);

    /* random prompt: BOS (when the vocabulary has one), then any ids */
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)o.prompt_len);
    double *pre = malloc(sizeof(double) * (size_t)o.reps);
    double *dec = malloc(sizeof(double) * (size_t)o.reps);
    double *ttft = malloc(sizeof(double) * (size_t)o.reps);
    float *logits = malloc(sizeof(float) * (size_t)hp->n_vocab);
    if (!prompt || !pre || !dec || !ttft || !logits)
        jq_cli_fail(I, "out of memory");
    uint64_t r = o.seed * 0x9e3779b97f4a7c15ull + 1;
    for (int32_t i = 0; i < o.prompt_len; i++) {
        r ^= r >> 12, r ^= r << 25, r ^= r >> 27;
        prompt[i] = (int32_t)((r * 0x2545f4914f6cdd1dull) % (uint64_t)hp->n_vocab);
    }
    if (jq_vocab_bos(m->vocab) >= 0)
        prompt[0] = jq_vocab_bos(m->vocab);

    jq_pool *pool = jq_thread_pool_new(o.threads);
    int32_t own = o.prompt_len + (n_soft > o.gen ? n_soft : o.gen);
    jq_ctx *ctx = pool ? jq_ctx_new_typed(m, own, o.prompt_len + n_soft,
                                          o.evict.kv_type, pool, err, sizeof err)
                       : NULL;
    if (!ctx)
        jq_cli_fail(I, "%s", pool ? err : "cannot start threads");
    jq_prefill_params pp = {
        .spec = o.spec,
        .soft_embd = soft ? soft->emb : NULL,
        .n_soft = n_soft,
        .kv_type = o.evict.kv_type,
        .reserve = o.gen,
    };
    uint64_t kv_bytes = 0, kv_full = 0;
    for (int32_t rep = 0; rep < o.reps; rep++) {
        jq_prefill_result res;
        double t0 = jq_now();
        if (jq_prefill(ctx, prompt, o.prompt_len, &pp, logits, &res, err,
                       sizeof err) != 0)
            jq_cli_fail(I, "prefill failed: %s", err);
        int32_t tok = jq_argmax(logits, hp->n_vocab);
        double t1 = jq_now();
        ttft[rep] = (t1 - t0) * 1e3;
        pre[rep] = o.prompt_len / (res.prefill_ms / 1e3);
        kv_full = res.kv_bytes_full;
        jq_prefill_result_free(&res);
        double t2 = jq_now();
        for (int32_t i = 0; i < o.gen; i++) {
            if (jq_ctx_eval(ctx, &tok, 1, logits, err, sizeof err) != 0)
                jq_cli_fail(I, "decode failed: %s", err);
            tok = jq_argmax(logits, hp->n_vocab);
        }
        double t3 = jq_now();
        dec[rep] = o.gen > 0 ? o.gen / (t3 - t2) : 0;
        kv_bytes = jq_kv_store_bytes_held(jq_ctx_kv(ctx));
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);

    json_t *root = json_object();
    json_object_set_new(root, "model", json_string(o.model));
    json_object_set_new(root, "prompt_len", json_integer(o.prompt_len));
    json_object_set_new(root, "gen", json_integer(o.gen));
    json_object_set_new(root, "reps", json_integer(o.reps));
    json_object_set_new(root, "threads", json_integer(o.threads));
    json_object_set_new(root, "policy", json_string(jq_evict_policy_name(o.spec.policy)));
    json_object_set_new(root, "budget", json_integer(o.spec.budget));
    json_object_set_new(root, "kv_type",
                        json_string(o.evict.kv_type == JQ_TYPE_F16 ? "f16" : "f32"));
    json_object_set_new(root, "isa", json_string(jq_isa_name(jq_kernels_isa())));
    json_object_set_new(root, "prefill_tokens_per_s", summary(pre, o.reps));
    json_object_set_new(root, "decode_tokens_per_s", summary(dec, o.reps));
    json_t *tt = summary(ttft, o.reps);
    json_object_set(root, "ttft_ms", json_object_get(tt, "median"));
    json_decref(tt);
    json_object_set_new(root, "kv_bytes", json_integer((json_int_t)kv_bytes));
    json_object_set_new(root, "kv_bytes_full", json_integer((json_int_t)kv_full));
    json_object_set_new(root, "peak_rss_bytes", json_integer((json_int_t)ru.ru_maxrss * 1024));
    json_object_set_new(root, "weight_bytes", json_integer((json_int_t)jq_model_weight_bytes(m)));
    char *s = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(6));
    if (s)
        puts(s);
    free(s);
    json_decref(root);

    jq_ctx_free(ctx);
    jq_thread_pool_free(pool);
    free(logits);
    free(ttft);
    free(dec);
    free(pre);
    free(prompt);
    jq_soft_tokens_free(soft);
    jq_model_free(m);
    return JQ_EXIT_OK;
}
