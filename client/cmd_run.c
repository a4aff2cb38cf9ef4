/* cmd_run.c — `judgeq run`: offline generation.
 *
 * Prefill evaluates the whole prompt in one batch, then each generated
 * token is fed back one at a time. Text streams to stdout as it is made;
 * with --json one object is printed at the end instead.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cli_evict.h"
#include "kernels.h"
#include "model.h"
#include "prefill.h"
#include "soft_tokens.h"
#include "sample.h"
#include "thread_pool.h"

static const jq_cmd_info run_info = {
    "run",
    "usage: judgeq run -m MODEL (-p PROMPT | -f FILE) [options]\n"
    "\n"
    "Generates a continuation of PROMPT with MODEL (a llama GGUF file).\n"
    "\n"
    "  -m, --model FILE     model file (GGUF)\n"
    "  -p, --prompt TEXT    prompt text\n"
    "  -f, --file FILE      read the prompt from FILE\n"
    "  -n, --n-predict N    tokens to generate (default 64)\n"
    "      --temp T         temperature; 0 = greedy (default 0.8)\n"
    "      --top-k K        keep the K most likely tokens; 0 = off (default 40)\n"
    "      --top-p P        nucleus sampling mass; 1 = off (default 0.95)\n"
    "      --seed S         sampling seed (default: from the clock)\n"
    "      --threads N      compute threads (default: all CPUs available)\n"
    "      --ctx N          context size limit (default: the model's)\n"
    "      --ignore-eos     keep generating after the end-of-sequence token\n"
    "      --no-bos         do not add the BOS token to the prompt\n"
    JQ_CLI_EVICT_HELP
    "      --json           print one JSON object: prompt_tokens, tokens, text,\n"
    "                       prefill_tokens_per_s, decode_tokens_per_s,\n"
    "                       kv_bytes_full, kv_bytes_kept, evict_ms, score_ms,\n"
    "                       kept (per layer, per KV head), ...\n"
    "  -h, --help           this help\n",
};

typedef struct {
    const char *model, *prompt, *prompt_file;
    int32_t n_predict, threads, ctx;
    jq_sampling sampling;
    bool json, ignore_eos, no_bos, seed_set;
    jq_cli_evict evict;
    jq_evict_spec spec;
} run_opts;

enum {
    OPT_TEMP = 256, OPT_TOP_K, OPT_TOP_P, OPT_SEED, OPT_THREADS, OPT_CTX,
    OPT_IGNORE_EOS, OPT_NO_BOS, OPT_JSON
};

static void parse(int argc, char **argv, run_opts *o)
{
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},
        {"prompt", required_argument, 0, 'p'},
        {"file", required_argument, 0, 'f'},
        {"n-predict", required_argument, 0, 'n'},
        {"temp", required_argument, 0, OPT_TEMP},
        {"top-k", required_argument, 0, OPT_TOP_K},
        {"top-p", required_argument, 0, OPT_TOP_P},
        {"seed", required_argument, 0, OPT_SEED},
        {"threads", required_argument, 0, OPT_THREADS},
        {"ctx", required_argument, 0, OPT_CTX},
        {"ignore-eos", no_argument, 0, OPT_IGNORE_EOS},
        {"no-bos", no_argument, 0, OPT_NO_BOS},
        {"json", no_argument, 0, OPT_JSON},
        {"help", no_argument, 0, 'h'},
        JQ_CLI_EVICT_LONGOPTS,
        {0, 0, 0, 0},
    };
    const jq_cmd_info *I = &run_info;
    *o = (run_opts){
        .n_predict = 64,
        .threads = jq_cli_default_threads(),
        .sampling = {.temp = 0.8f, .top_k = 40, .top_p = 0.95f},
    };
    jq_cli_evict_init(&o->evict);
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":m:p:f:n:h", longopts, NULL)) != -1) {
        if (jq_cli_evict_opt(I, c, optarg, &o->evict))
            continue;
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'p': o->prompt = optarg; break;
        case 'f': o->prompt_file = optarg; break;
        case 'n':
            o->n_predict = (int32_t)jq_cli_int(I, "-n", optarg, 0, 1 << 24);
            break;
        case OPT_TEMP:
            o->sampling.temp = (float)jq_cli_float(I, "--temp", optarg, 0, 1e6);
            break;
        case OPT_TOP_K:
            o->sampling.top_k = (int32_t)jq_cli_int(I, "--top-k", optarg, 0, INT32_MAX);
            break;
        case OPT_TOP_P:
            o->sampling.top_p = (float)jq_cli_float(I, "--top-p", optarg, 0, 1);
            break;
        case OPT_SEED:
            o->sampling.seed = jq_cli_u64(I, "--seed", optarg);
            o->seed_set = true;
            break;
        case OPT_THREADS:
            o->threads = (int32_t)jq_cli_int(I, "--threads", optarg, 1, 1024);
            break;
        case OPT_CTX:
            o->ctx = (int32_t)jq_cli_int(I, "--ctx", optarg, 1, 1 << 24);
            break;
        case OPT_IGNORE_EOS: o->ignore_eos = true; break;
        case OPT_NO_BOS: o->no_bos = true; break;
        case OPT_JSON: o->json = true; break;
        case 'h': jq_cli_help(I);
        default:
            jq_cli_bad_option(I, c, argv);
        }
    }
    if (optind < argc)
        jq_cli_usage_error(I, "unexpected argument '%s'", argv[optind]);
    if (!o->model)
        jq_cli_usage_error(I, "a model is required (-m FILE)");
    if (!o->prompt == !o->prompt_file)
        jq_cli_usage_error(I, "give the prompt with exactly one of -p and -f");
    if (!o->seed_set)
        o->sampling.seed = (uint64_t)time(NULL);
    o->spec = jq_cli_evict_spec(I, &o->evict);
}

/* What one generation produced. */
typedef struct {
    int32_t *tokens;
    size_t n;
    char *text;
    size_t text_len, text_cap;
    double decode_s;
    size_t n_evals;
} gen_out;

static void gen_out_free(gen_out *g)
{
    free(g->tokens);
    free(g->text);
}

static void append_text(const jq_cmd_info *I, gen_out *g, const char *p,
                        size_t len)
{
    if (g->text_len + len + 1 > g->text_cap) {
        g->text_cap = 2 * g->text_cap + len + 64;
        char *nt = realloc(g->text, g->text_cap);
        if (!nt)
            jq_cli_fail(I, "out of memory");
        g->text = nt;
    }
    memcpy(g->text + g->text_len, p, len);
    g->text_len += len;
    g->text[g->text_len] = 0;
}

/* Samples up to n_predict tokens starting from logits (those of the last
 * prompt position), feeding each back one at a time. Streams the text to
 * stdout when stream is set. */
static void generate(const jq_cmd_info *I, jq_ctx *ctx, const jq_model *m,
                     const run_opts *o, float *logits, bool stream,
                     gen_out *g)
{
    *g = (gen_out){0};
    g->tokens = malloc(sizeof(int32_t) * ((size_t)o->n_predict + 1));
    jq_sampler *sampler = jq_sampler_new(&o->sampling, m->hp.n_vocab);
    if (!g->tokens || !sampler)
        jq_cli_fail(I, "out of memory");
    append_text(I, g, "", 0);
    int32_t eos = jq_vocab_eos(m->vocab);
    char piece[256], err[512];
    while (g->n < (size_t)o->n_predict) {
        int32_t tok = jq_sampler_sample(sampler, logits);
        g->tokens[g->n++] = tok;
        int len = jq_token_to_piece(m->vocab, tok, piece, sizeof piece);
        if (len > (int)sizeof piece)
            len = (int)sizeof piece;
        if (len > 0) {
            append_text(I, g, piece, (size_t)len);
            if (stream) {
                fwrite(piece, 1, (size_t)len, stdout);
                fflush(stdout);
            }
        }
        if (tok == eos && !o->ignore_eos)
            break;
        if (g->n == (size_t)o->n_predict)
            break; /* the last token needs no evaluation */
        double t1 = jq_now();
        if (jq_ctx_eval(ctx, &tok, 1, logits, err, sizeof err) != 0)
            jq_cli_fail(I, "decode failed: %s", err);
        g->decode_s += jq_now() - t1;
        g->n_evals++;
    }
    jq_sampler_free(sampler);
}

static json_t *int_array(const int32_t *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_integer(v[i]));
    return a;
}

static void emit_json(const run_opts *o, const jq_model *m,
                      const int32_t *prompt, size_t n_prompt,
                      const gen_out *g, const jq_prefill_result *r)
{
    json_t *root = json_object();
    size_t clean_len;
    char *clean = jq_utf8_sanitize(g->text, g->text_len, &clean_len);
    double prefill_s = r->prefill_ms / 1e3;
    json_object_set_new(root, "prompt_tokens", int_array(prompt, n_prompt));
    json_object_set_new(root, "tokens", int_array(g->tokens, g->n));
    json_object_set_new(root, "text",
                        json_stringn(clean ? clean : "", clean ? clean_len : 0));
    json_object_set_new(root, "prefill_tokens_per_s",
                        json_real(prefill_s > 0 ? (double)n_prompt / prefill_s : 0));
    json_object_set_new(root, "decode_tokens_per_s",
                        json_real(g->decode_s > 0 ? (double)g->n_evals / g->decode_s : 0));
    json_object_set_new(root, "prefill_ms", json_real(r->prefill_ms));
    json_object_set_new(root, "decode_ms", json_real(g->decode_s * 1e3));
    json_object_set_new(root, "policy",
                        json_string(jq_evict_policy_name(o->spec.policy)));
    json_object_set_new(root, "budget", json_integer(o->spec.budget));
    json_object_set_new(root, "kv_type",
                        json_string(o->evict.kv_type == JQ_TYPE_F16 ? "f16" : "f32"));
    json_object_set_new(root, "kv_bytes_full", json_integer((json_int_t)r->kv_bytes_full));
    json_object_set_new(root, "kv_bytes_kept", json_integer((json_int_t)r->kv_bytes_kept));
    json_object_set_new(root, "evict_ms", json_real(r->evict_ms));
    json_object_set_new(root, "score_ms", json_real(r->score_ms));
    json_t *kept = json_array();
    for (int32_t l = 0; l < m->hp.n_layer; l++)
        json_array_append_new(
            kept, int_array(r->kept->counts + (size_t)l * m->hp.n_head_kv,
                            (size_t)m->hp.n_head_kv));
    json_object_set_new(root, "kept", kept);
    json_object_set_new(root, "threads", json_integer(o->threads));
    json_object_set_new(root, "seed", json_integer((json_int_t)o->sampling.seed));
    json_object_set_new(root, "temp", json_real(o->sampling.temp));
    char *s = json_dumps(root, JSON_COMPACT);
    if (s)
        puts(s);
    free(s);
    free(clean);
    json_decref(root);
}

int jq_cmd_run(int argc, char **argv)
{
    const jq_cmd_info *I = &run_info;
    run_opts o;
    parse(argc, argv, &o);

    size_t prompt_len;
    char *prompt = jq_cli_text_arg(I, o.prompt, o.prompt_file, &prompt_len);

    jq_model *m = jq_cli_load_model(I, o.model);
    char err[1024];
    jq_soft_tokens *soft = NULL;
    if (o.evict.soft_path) {
        soft = jq_soft_tokens_load(o.evict.soft_path, m, err, sizeof err);
        if (!soft)
            jq_cli_fail(I, "%s", err);
    }
    size_t n_prompt;
    int32_t *prompt_ids = jq_cli_tokenize(I, m, prompt, prompt_len, o.no_bos,
                                          &n_prompt);
    if (n_prompt == 0)
        jq_cli_fail(I, "the prompt is empty after tokenization (nothing to "
                       "condition on)");
    bool oracle = o.spec.policy == JQ_EVICT_ORACLE;
    int64_t observers = soft ? soft->n : oracle ? o.n_predict : 0;
    int64_t limit = o.ctx ? o.ctx : m->hp.n_ctx_train;
    int64_t need = (int64_t)n_prompt + o.n_predict;
    if (need > limit)
        jq_cli_fail(I,
                    "prompt (%zu tokens) + -n %d = %lld positions exceed the "
                    "context size %lld (--ctx to change it)",
                    n_prompt, o.n_predict, (long long)need, (long long)limit);
    if (oracle && o.n_predict < 1)
        jq_cli_usage_error(I, "--evict oracle observes the generated tokens: "
                              "it needs -n of at least 1");
    int64_t own = (int64_t)n_prompt + (observers > o.n_predict ? observers : o.n_predict);
    int64_t batch = (int64_t)n_prompt + observers;

    jq_pool *pool = jq_thread_pool_new(o.threads);
    if (!pool)
        jq_cli_fail(I, "cannot start %d threads", o.threads);
    jq_ctx *ctx = jq_ctx_new_typed(m, (int32_t)own, (int32_t)batch,
                                   o.evict.kv_type, pool, err, sizeof err);
    if (!ctx)
        jq_cli_fail(I, "%s", err);
    float *logits = malloc(sizeof(float) * (size_t)m->hp.n_vocab);
    if (!logits)
        jq_cli_fail(I, "out of memory");

    jq_prefill_params pp = {
        .spec = o.spec,
        .soft_embd = soft ? soft->emb : NULL,
        .n_soft = soft ? soft->n : 0,
        .kv_type = o.evict.kv_type,
        .reserve = o.n_predict,
    };
    gen_out first = {0};
    if (oracle) {
        /* the oracle observes what the full cache generates: generate it
         * first (same sampler seed), then evict and generate again */
        jq_prefill_params full = pp;
        full.spec = jq_evict_spec_default(JQ_EVICT_FULL, 0);
        jq_prefill_result r0;
        if (jq_prefill(ctx, prompt_ids, (int32_t)n_prompt, &full, logits, &r0,
                       err, sizeof err) != 0)
            jq_cli_fail(I, "prefill failed: %s", err);
        jq_prefill_result_free(&r0);
        generate(I, ctx, m, &o, logits, false, &first);
        pp.oracle_tokens = first.tokens;
        pp.n_oracle = (int32_t)first.n;
    }
    jq_prefill_result r;
    if (jq_prefill(ctx, prompt_ids, (int32_t)n_prompt, &pp, logits, &r, err,
                   sizeof err) != 0)
        jq_cli_fail(I, "prefill failed: %s", err);

    gen_out g;
    generate(I, ctx, m, &o, logits, !o.json, &g);
    if (o.json)
        emit_json(&o, m, prompt_ids, n_prompt, &g, &r);
    else
        putchar('\n');

    gen_out_free(&g);
    gen_out_free(&first);
    jq_prefill_result_free(&r);
    free(logits);
    jq_ctx_free(ctx);
    jq_thread_pool_free(pool);
    free(prompt_ids);
    jq_soft_tokens_free(soft);
    jq_model_free(m);
    free(prompt);
    return JQ_EXIT_OK;
}
