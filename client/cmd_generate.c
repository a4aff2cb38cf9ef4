/* cmd_generate.c — `judgeq --socket PATH generate`: `judgeq run` through
 * the daemon.
 *
 * The flags and the --json fields are those of `judgeq run` (cmd_run.c),
 * so that a script can switch between offline and online by changing the
 * command: the eviction flags are parsed by the same cli_evict code and
 * resolved to the same spec before they are sent, and the sampling
 * defaults are run's. What differs is where the work happens: the model,
 * the threads and the soft tokens are the daemon's (--soft names a file the
 * daemon opens only if its --allow-path permits; without --soft, judgeq
 * eviction uses the soft tokens judgeqd was started with).
 *
 * Text streams to stdout as tokens arrive; with --json one object is
 * printed at the end instead.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_evict.h"
#include "cli_online.h"
#include "judgeq.h"
#include "kernels.h"

/* The engine's policy numbers travel as the protocol's. */
static_assert((int)JQ_EVICT_FULL == (int)JUDGEQ_POLICY_FULL, "policy numbers");
static_assert((int)JQ_EVICT_STREAMING == (int)JUDGEQ_POLICY_STREAMING, "policy numbers");
static_assert((int)JQ_EVICT_H2O == (int)JUDGEQ_POLICY_H2O, "policy numbers");
static_assert((int)JQ_EVICT_SNAPKV == (int)JUDGEQ_POLICY_SNAPKV, "policy numbers");
static_assert((int)JQ_EVICT_PYRAMIDKV == (int)JUDGEQ_POLICY_PYRAMIDKV, "policy numbers");
static_assert((int)JQ_EVICT_ADAKV == (int)JUDGEQ_POLICY_ADAKV, "policy numbers");
static_assert((int)JQ_EVICT_JUDGEQ == (int)JUDGEQ_POLICY_JUDGEQ, "policy numbers");
static_assert((int)JQ_EVICT_ORACLE == (int)JUDGEQ_POLICY_ORACLE, "policy numbers");
static_assert((int)JQ_GQA_MAX == 1, "gqa numbers");

static const jq_cmd_info generate_info = {
    "generate",
    "usage: judgeq [--socket PATH] generate (-p PROMPT | -f FILE) [options]\n"
    "\n"
    "Generates a continuation of PROMPT with the model of a running judgeqd\n"
    "(the same flags and --json fields as `judgeq run`).\n"
    "\n"
    "      --socket PATH    the daemon's socket (default: $JUDGEQ_SOCKET or\n"
    "                       " JUDGEQ_DEFAULT_SOCKET ")\n"
    "  -p, --prompt TEXT    prompt text\n"
    "  -f, --file FILE      read the prompt from FILE\n"
    "  -n, --n-predict N    tokens to generate (default 64)\n"
    "      --temp T         temperature; 0 = greedy (default 0.8)\n"
    "      --top-k K        keep the K most likely tokens; 0 = off (default 40)\n"
    "      --top-p P        nucleus sampling mass; 1 = off (default 0.95)\n"
    "      --seed S         sampling seed (default: from the clock)\n"
    "      --ctx N          context size limit of the session (default: the\n"
    "                       model's)\n"
    "      --ignore-eos     keep generating after the end-of-sequence token\n"
    "      --no-bos         do not add the BOS token to the prompt\n"
    JQ_CLI_EVICT_HELP
    "                       (online, --soft is a path the daemon opens if its\n"
    "                       --allow-path permits; judgeq eviction without it\n"
    "                       uses the daemon's own soft tokens)\n"
    "      --timeout MS     fail when the daemon is silent for MS ms (default:\n"
    "                       wait)\n"
    "      --json           print one JSON object: prompt_tokens, tokens, text,\n"
    "                       prefill_tokens_per_s, decode_tokens_per_s,\n"
    "                       kv_bytes_full, kv_bytes_kept, evict_ms, score_ms,\n"
    "                       kept (per layer, per KV head), ...\n"
    "  -h, --help           this help\n",
};

typedef struct {
    const char *prompt, *prompt_file;
    int32_t n_predict, ctx, timeout_ms;
    float temp, top_p;
    int32_t top_k;
    uint64_t seed;
    bool json, ignore_eos, no_bos, seed_set;
    jq_cli_evict evict;
    jq_evict_spec spec;
} gen_opts;

enum {
    OPT_TEMP = 256, OPT_TOP_K, OPT_TOP_P, OPT_SEED, OPT_CTX, OPT_IGNORE_EOS,
    OPT_NO_BOS, OPT_JSON, OPT_SOCKET, OPT_TIMEOUT
};

static void parse(int argc, char **argv, gen_opts *o)
{
    static const struct option longopts[] = {
        {"prompt", required_argument, 0, 'p'},
        {"file", required_argument, 0, 'f'},
        {"n-predict", required_argument, 0, 'n'},
        {"temp", required_argument, 0, OPT_TEMP},
        {"top-k", required_argument, 0, OPT_TOP_K},
        {"top-p", required_argument, 0, OPT_TOP_P},
        {"seed", required_argument, 0, OPT_SEED},
        {"ctx", required_argument, 0, OPT_CTX},
        {"ignore-eos", no_argument, 0, OPT_IGNORE_EOS},
        {"no-bos", no_argument, 0, OPT_NO_BOS},
        {"json", no_argument, 0, OPT_JSON},
        {"socket", required_argument, 0, OPT_SOCKET},
        {"timeout", required_argument, 0, OPT_TIMEOUT},
        {"help", no_argument, 0, 'h'},
        JQ_CLI_EVICT_LONGOPTS,
        {0, 0, 0, 0},
    };
    const jq_cmd_info *I = &generate_info;
    *o = (gen_opts){
        .n_predict = 64, .timeout_ms = -1, .temp = 0.8f, .top_k = 40, .top_p = 0.95f,
    };
    jq_cli_evict_init(&o->evict);
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":p:f:n:h", longopts, NULL)) != -1) {
        if (jq_cli_evict_opt(I, c, optarg, &o->evict))
            continue;
        switch (c) {
        case 'p': o->prompt = optarg; break;
        case 'f': o->prompt_file = optarg; break;
        case 'n':
            o->n_predict = (int32_t)jq_cli_int(I, "-n", optarg, 0, 1 << 24);
            break;
        case OPT_TEMP:
            o->temp = (float)jq_cli_float(I, "--temp", optarg, 0, 1e6);
            break;
        case OPT_TOP_K:
            o->top_k = (int32_t)jq_cli_int(I, "--top-k", optarg, 0, INT32_MAX);
            break;
        case OPT_TOP_P:
            o->top_p = (float)jq_cli_float(I, "--top-p", optarg, 0, 1);
            break;
        case OPT_SEED:
            o->seed = jq_cli_u64(I, "--seed", optarg);
            o->seed_set = true;
            break;
        case OPT_CTX:
            o->ctx = (int32_t)jq_cli_int(I, "--ctx", optarg, 1, 1 << 24);
            break;
        case OPT_IGNORE_EOS: o->ignore_eos = true; break;
        case OPT_NO_BOS: o->no_bos = true; break;
        case OPT_JSON: o->json = true; break;
        case OPT_SOCKET: jq_cli_socket = optarg; break;
        case OPT_TIMEOUT:
            o->timeout_ms = (int32_t)jq_cli_int(I, "--timeout", optarg, 1, INT32_MAX);
            break;
        case 'h': jq_cli_help(I);
        default:
            jq_cli_bad_option(I, c, argv);
        }
    }
    if (optind < argc)
        jq_cli_usage_error(I, "unexpected argument '%s'", argv[optind]);
    if (!o->prompt == !o->prompt_file)
        jq_cli_usage_error(I, "give the prompt with exactly one of -p and -f");
    if (!o->seed_set)
        o->seed = (uint64_t)time(NULL);
    o->spec = jq_cli_evict_spec_soft(I, &o->evict, false);
    if (o->spec.policy == JQ_EVICT_ORACLE && o->n_predict < 1)
        jq_cli_usage_error(I, "--evict oracle observes the generated tokens: "
                              "it needs -n of at least 1");
}

/* What the stream delivered. */
typedef struct {
    int32_t *tokens;
    size_t n, cap;
    char *text;
    size_t text_len, text_cap;
    bool stream;
    bool oom;
} gen_sink;

static int on_token(void *user, const judgeq_token *t)
{
    gen_sink *g = user;
    if (g->n == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 64;
        int32_t *nt = realloc(g->tokens, cap * sizeof *nt);
        if (!nt)
            return g->oom = true;
        g->tokens = nt;
        g->cap = cap;
    }
    g->tokens[g->n++] = t->id;
    if (g->text_len + t->piece_len + 1 > g->text_cap) {
        size_t cap = 2 * g->text_cap + t->piece_len + 64;
        char *nt = realloc(g->text, cap);
        if (!nt)
            return g->oom = true;
        g->text = nt;
        g->text_cap = cap;
    }
    memcpy(g->text + g->text_len, t->piece, t->piece_len);
    g->text_len += t->piece_len;
    g->text[g->text_len] = 0;
    if (g->stream && t->piece_len) {
        fwrite(t->piece, 1, t->piece_len, stdout);
        fflush(stdout);
    }
    return 0;
}

static json_t *int_array(const int32_t *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_integer(v[i]));
    return a;
}

/* The object `judgeq run --json` prints, field for field. */
static void emit_json(const gen_opts *o, const judgeq_prefill_result *r,
                      const gen_sink *g, const judgeq_generate_result *gr,
                      uint32_t threads)
{
    json_t *root = json_object();
    size_t clean_len;
    char *clean = jq_utf8_sanitize(g->text ? g->text : "", g->text_len, &clean_len);
    double prefill_s = r->prefill_ms / 1e3;
    size_t n_prompt = r->n_prompt_token_ids;
    /* run counts decode steps (tokens fed back), one fewer than tokens */
    double decode_tps = gr->decode_tokens_per_s;
    if (decode_tps <= 0 && gr->decode_ms > 0 && g->n > 1)
        decode_tps = (double)(g->n - 1) / (gr->decode_ms / 1e3);
    json_object_set_new(root, "prompt_tokens", int_array(r->prompt_token_ids, n_prompt));
    json_object_set_new(root, "tokens", int_array(g->tokens, g->n));
    json_object_set_new(root, "text", json_stringn(clean ? clean : "", clean ? clean_len : 0));
    json_object_set_new(root, "prefill_tokens_per_s",
                        json_real(prefill_s > 0 ? (double)n_prompt / prefill_s : 0));
    json_object_set_new(root, "decode_tokens_per_s", json_real(decode_tps));
    json_object_set_new(root, "prefill_ms", json_real(r->prefill_ms));
    json_object_set_new(root, "decode_ms", json_real(gr->decode_ms));
    json_object_set_new(root, "policy", json_string(jq_evict_policy_name(o->spec.policy)));
    json_object_set_new(root, "budget", json_integer(o->spec.budget));
    json_object_set_new(root, "kv_type",
                        json_string(o->evict.kv_type == JQ_TYPE_F16 ? "f16" : "f32"));
    json_object_set_new(root, "kv_bytes_full", json_integer((json_int_t)r->kv_bytes_full));
    json_object_set_new(root, "kv_bytes_kept", json_integer((json_int_t)r->kv_bytes_kept));
    json_object_set_new(root, "evict_ms", json_real(r->evict_ms));
    json_object_set_new(root, "score_ms", json_real(r->score_ms));
    json_t *kept = json_array();
    for (uint32_t l = 0; r->n_head_kv && l < r->n_layer; l++) {
        json_t *row = json_array();
        for (uint32_t h = 0; h < r->n_head_kv; h++) {
            size_t i = (size_t)l * r->n_head_kv + h;
            json_array_append_new(row, json_integer(i < r->n_kept ? r->kept[i] : 0));
        }
        json_array_append_new(kept, row);
    }
    json_object_set_new(root, "kept", kept);
    json_object_set_new(root, "threads", json_integer(threads));
    json_object_set_new(root, "seed", json_integer((json_int_t)o->seed));
    json_object_set_new(root, "temp", json_real(o->temp));
    char *s = json_dumps(root, JSON_COMPACT);
    if (s)
        puts(s);
    free(s);
    free(clean);
    json_decref(root);
}

int jq_cmd_generate(int argc, char **argv)
{
    const jq_cmd_info *I = &generate_info;
    gen_opts o;
    parse(argc, argv, &o);

    size_t prompt_len;
    char *prompt_buf = NULL;
    const char *prompt = o.prompt;
    if (o.prompt_file)
        prompt = prompt_buf = jq_cli_read_file(I, o.prompt_file, &prompt_len);
    else
        prompt_len = strlen(o.prompt);
    if (memchr(prompt, 0, prompt_len))
        jq_cli_fail(I, "the prompt contains a NUL byte");
    if (prompt_len == 0 && o.no_bos)
        jq_cli_fail(I, "the prompt is empty after tokenization (nothing to "
                       "condition on)");

    judgeq_conn *c = jq_cli_connect(I, o.timeout_ms);
    judgeq_session_opts so = {
        .max_context = (uint32_t)o.ctx,
        .kv_type = o.evict.kv_type == JQ_TYPE_F16 ? JUDGEQ_KV_TYPE_F16 : JUDGEQ_KV_TYPE_F32,
    };
    uint64_t sid;
    if (judgeq_session_create(c, &so, &sid, NULL) != JUDGEQ_OK)
        jq_cli_fail_conn(I, c, "cannot create a session");

    /* the resolved spec, so that the daemon evicts exactly as run would
     * with these flags whatever its own defaults */
    judgeq_eviction ev;
    judgeq_eviction_init(&ev);
    ev.policy = (judgeq_policy)o.spec.policy;
    ev.budget = o.spec.budget;
    ev.window = o.spec.window;
    ev.sink = o.spec.sink;
    ev.pool_kernel = o.spec.pool_kernel;
    ev.gqa_reduce = (int32_t)o.spec.gqa_reduce;
    char *soft_abs = NULL;
    ev.soft_path = o.evict.soft_path;
    if (ev.soft_path && ev.soft_path[0] != '/') {
        /* the daemon does not share our working directory; links are left
         * for it to resolve (it judges the file they lead to) */
        char *cwd = getcwd(NULL, 0);
        if (!cwd)
            jq_cli_fail(I, "--soft %s: cannot make it absolute (getcwd)",
                        ev.soft_path);
        size_t n = strlen(cwd) + strlen(ev.soft_path) + 2;
        soft_abs = malloc(n);
        if (!soft_abs)
            jq_cli_fail(I, "out of memory");
        snprintf(soft_abs, n, "%s/%s", cwd, ev.soft_path);
        free(cwd);
        ev.soft_path = soft_abs;
    }
    judgeq_prefill_input in = {
        .text = prompt,
        .text_len = prompt_len,
        .no_bos = o.no_bos,
        .eviction = &ev,
        .reserve = (uint32_t)o.n_predict,
    };
    if (prompt_len == 0) /* text_len 0 means strlen: an empty prompt is "" */
        in.text = "";
    judgeq_prefill_result pr;
    int prc = judgeq_prefill(c, sid, &in, &pr);
    free(soft_abs);
    if (prc != JUDGEQ_OK)
        jq_cli_fail_conn(I, c, "prefill failed");
    if (pr.n_prompt_token_ids == 0 && pr.prompt_tokens == 0)
        jq_cli_fail(I, "the prompt is empty after tokenization (nothing to "
                       "condition on)");

    judgeq_generate_opts go;
    judgeq_generate_opts_init(&go);
    go.max_tokens = (uint32_t)o.n_predict;
    go.temp = o.temp;
    go.top_k = o.top_k;
    go.top_p = o.top_p;
    go.seed = o.seed;
    go.ignore_eos = o.ignore_eos;
    gen_sink g = {.stream = !o.json};
    judgeq_generate_result gr;
    int rc = o.n_predict > 0 ? judgeq_generate(c, sid, &go, on_token, &g, &gr) : JUDGEQ_OK;
    if (o.n_predict == 0)
        memset(&gr, 0, sizeof gr);
    if (g.oom)
        jq_cli_fail(I, "out of memory");
    if (rc != JUDGEQ_OK) {
        if (g.stream)
            putchar('\n');
        jq_cli_fail_conn(I, c, "generation failed");
    }
    if (o.json) {
        uint32_t threads = 0;
        judgeq_stats st;
        if (judgeq_get_stats(c, &st) == JUDGEQ_OK)
            for (size_t i = 0; i < st.n_pools; i++)
                threads += st.pools[i].threads;
        judgeq_stats_free(&st);
        emit_json(&o, &pr, &g, &gr, threads);
    } else {
        putchar('\n');
    }
    /* best effort: the session ends with the connection anyway */
    judgeq_session_close(c, sid);
    judgeq_close(c);
    judgeq_prefill_result_free(&pr);
    free(g.tokens);
    free(g.text);
    free(prompt_buf);
    return JQ_EXIT_OK;
}
