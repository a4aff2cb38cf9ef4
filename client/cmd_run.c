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
#include "model.h"
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
    "      --json           print one JSON object: prompt_tokens, tokens, text,\n"
    "                       prefill_tokens_per_s, decode_tokens_per_s, ...\n"
    "  -h, --help           this help\n",
};

typedef struct {
    const char *model, *prompt, *prompt_file;
    int32_t n_predict, threads, ctx;
    jq_sampling sampling;
    bool json, ignore_eos, no_bos, seed_set;
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
        {0, 0, 0, 0},
    };
    const jq_cmd_info *I = &run_info;
    *o = (run_opts){
        .n_predict = 64,
        .threads = jq_cli_default_threads(),
        .sampling = {.temp = 0.8f, .top_k = 40, .top_p = 0.95f},
    };
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":m:p:f:n:h", longopts, NULL)) != -1) {
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
        case ':':
            jq_cli_usage_error(I, "option %s needs a value", argv[optind - 1]);
        default:
            jq_cli_usage_error(I, "unknown option '%s'", argv[optind - 1]);
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
}

static void emit_json(const run_opts *o, const int32_t *prompt, size_t n_prompt,
                      const int32_t *gen, size_t n_gen, const char *text,
                      size_t text_len, double prefill_s, double decode_s,
                      size_t n_decode_evals)
{
    json_t *root = json_object();
    json_t *pt = json_array(), *gt = json_array();
    for (size_t i = 0; i < n_prompt; i++)
        json_array_append_new(pt, json_integer(prompt[i]));
    for (size_t i = 0; i < n_gen; i++)
        json_array_append_new(gt, json_integer(gen[i]));
    size_t clean_len;
    char *clean = jq_utf8_sanitize(text, text_len, &clean_len);
    json_object_set_new(root, "prompt_tokens", pt);
    json_object_set_new(root, "tokens", gt);
    json_object_set_new(root, "text", json_stringn(clean ? clean : "", clean ? clean_len : 0));
    json_object_set_new(root, "prefill_tokens_per_s",
                        json_real(prefill_s > 0 ? (double)n_prompt / prefill_s : 0));
    json_object_set_new(root, "decode_tokens_per_s",
                        json_real(decode_s > 0 ? (double)n_decode_evals / decode_s : 0));
    json_object_set_new(root, "prefill_ms", json_real(prefill_s * 1e3));
    json_object_set_new(root, "decode_ms", json_real(decode_s * 1e3));
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
    char *prompt_buf = NULL;
    const char *prompt = o.prompt;
    if (o.prompt_file)
        prompt = prompt_buf = jq_cli_read_file(I, o.prompt_file, &prompt_len);
    else
        prompt_len = strlen(o.prompt);

    jq_model *m = jq_cli_load_model(I, o.model);
    size_t n_prompt;
    int32_t *prompt_ids = jq_cli_tokenize(I, m, prompt, prompt_len, o.no_bos,
                                          &n_prompt);
    if (n_prompt == 0)
        jq_cli_fail(I, "the prompt is empty after tokenization (nothing to "
                       "condition on)");
    int64_t limit = o.ctx ? o.ctx : m->hp.n_ctx_train;
    int64_t need = (int64_t)n_prompt + o.n_predict;
    if (need > limit)
        jq_cli_fail(I,
                    "prompt (%zu tokens) + -n %d = %lld positions exceed the "
                    "context size %lld (--ctx to change it)",
                    n_prompt, o.n_predict, (long long)need, (long long)limit);

    jq_pool *pool = jq_thread_pool_new(o.threads);
    if (!pool)
        jq_cli_fail(I, "cannot start %d threads", o.threads);
    char err[512];
    jq_ctx *ctx = jq_ctx_new(m, (int32_t)need, (int32_t)n_prompt, pool, err,
                             sizeof err);
    if (!ctx)
        jq_cli_fail(I, "%s", err);
    jq_sampler *sampler = jq_sampler_new(&o.sampling, m->hp.n_vocab);
    float *logits = malloc(sizeof(float) * (size_t)m->hp.n_vocab);
    int32_t *gen = malloc(sizeof(int32_t) * ((size_t)o.n_predict + 1));
    size_t text_cap = 4096, text_len = 0;
    char *text = malloc(text_cap);
    if (!sampler || !logits || !gen || !text)
        jq_cli_fail(I, "out of memory");

    /* prefill */
    double t0 = jq_now();
    if (jq_ctx_eval(ctx, prompt_ids, (int32_t)n_prompt, logits, err,
                    sizeof err) != 0)
        jq_cli_fail(I, "prefill failed: %s", err);
    double prefill_s = jq_now() - t0;

    /* decode */
    int32_t eos = jq_vocab_eos(m->vocab);
    size_t n_gen = 0, n_evals = 0;
    double decode_s = 0;
    char piece[256];
    while (n_gen < (size_t)o.n_predict) {
        int32_t tok = jq_sampler_sample(sampler, logits);
        gen[n_gen++] = tok;
        int len = jq_token_to_piece(m->vocab, tok, piece, sizeof piece);
        if (len > (int)sizeof piece)
            len = (int)sizeof piece;
        if (len > 0) {
            if (text_len + (size_t)len + 1 > text_cap) {
                text_cap = 2 * text_cap + (size_t)len;
                char *nt = realloc(text, text_cap);
                if (!nt)
                    jq_cli_fail(I, "out of memory");
                text = nt;
            }
            memcpy(text + text_len, piece, (size_t)len);
            text_len += (size_t)len;
            if (!o.json) {
                fwrite(piece, 1, (size_t)len, stdout);
                fflush(stdout);
            }
        }
        if (tok == eos && !o.ignore_eos)
            break;
        if (n_gen == (size_t)o.n_predict)
            break; /* the last token needs no evaluation */
        double t1 = jq_now();
        if (jq_ctx_eval(ctx, &tok, 1, logits, err, sizeof err) != 0)
            jq_cli_fail(I, "decode failed: %s", err);
        decode_s += jq_now() - t1;
        n_evals++;
    }

    if (o.json)
        emit_json(&o, prompt_ids, n_prompt, gen, n_gen, text, text_len,
                  prefill_s, decode_s, n_evals);
    else
        putchar('\n');

    free(text);
    free(gen);
    free(logits);
    jq_sampler_free(sampler);
    jq_ctx_free(ctx);
    jq_thread_pool_free(pool);
    free(prompt_ids);
    jq_model_free(m);
    free(prompt_buf);
    return JQ_EXIT_OK;
}
