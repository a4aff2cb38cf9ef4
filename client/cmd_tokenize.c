/* cmd_tokenize.c — `judgeq tokenize` and `judgeq logits`.
 *
 * tokenize reads only the vocabulary, so it works on vocabulary-only GGUF
 * files (no tensors) as well as on whole models.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model.h"
#include "thread_pool.h"

static const jq_cmd_info tokenize_info = {
    "tokenize",
    "usage: judgeq tokenize -m MODEL (-p TEXT | -f FILE) [--no-bos]\n"
    "\n"
    "Prints the token ids of TEXT as a JSON array. BOS is added when the\n"
    "vocabulary asks for it (as llama.cpp does); special-token text such as\n"
    "\"<s>\" is not parsed. MODEL may be a vocabulary-only GGUF file.\n"
    "\n"
    "  -m, --model FILE   model or vocabulary file (GGUF)\n"
    "  -p, --prompt TEXT  text to tokenize\n"
    "  -f, --file FILE    read the text from FILE (bytes as they are)\n"
    "      --no-bos       do not add BOS\n"
    "  -h, --help         this help\n",
};

static const jq_cmd_info logits_info = {
    "logits",
    "usage: judgeq logits -m MODEL (-p TEXT | -f FILE) [--no-bos] "
    "[--threads N]\n"
    "\n"
    "Evaluates TEXT and prints the logits of its last position (the\n"
    "distribution of the first generated token) as a JSON array over the\n"
    "whole vocabulary.\n"
    "\n"
    "  -m, --model FILE   model file (GGUF)\n"
    "  -p, --prompt TEXT  text to evaluate\n"
    "  -f, --file FILE    read the text from FILE\n"
    "      --no-bos       do not add BOS\n"
    "      --threads N    compute threads (default: all CPUs available)\n"
    "  -h, --help         this help\n",
};

typedef struct {
    const char *model, *text, *file;
    bool no_bos;
    int threads;
} text_opts;

enum { OPT_NO_BOS = 256, OPT_THREADS };

static void parse(const jq_cmd_info *I, int argc, char **argv, text_opts *o,
                  bool allow_threads)
{
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},
        {"prompt", required_argument, 0, 'p'},
        {"file", required_argument, 0, 'f'},
        {"no-bos", no_argument, 0, OPT_NO_BOS},
        {"threads", required_argument, 0, OPT_THREADS},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    *o = (text_opts){.threads = jq_cli_default_threads()};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":m:p:f:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'p': o->text = optarg; break;
        case 'f': o->file = optarg; break;
        case OPT_NO_BOS: o->no_bos = true; break;
        case OPT_THREADS:
            if (!allow_threads)
                jq_cli_usage_error(I, "unknown option '--threads'");
            o->threads = (int)jq_cli_int(I, "--threads", optarg, 1, 1024);
            break;
        case 'h': jq_cli_help(I);
        default:
            jq_cli_bad_option(I, c, argv);
        }
    }
    if (optind < argc)
        jq_cli_usage_error(I, "unexpected argument '%s'", argv[optind]);
    if (!o->model)
        jq_cli_usage_error(I, "a model is required (-m FILE)");
    if (!o->text == !o->file)
        jq_cli_usage_error(I, "give the text with exactly one of -p and -f");
}

int jq_cmd_tokenize(int argc, char **argv)
{
    const jq_cmd_info *I = &tokenize_info;
    text_opts o;
    parse(I, argc, argv, &o, false);
    size_t len;
    char *text = jq_cli_text_arg(I, o.text, o.file, &len);

    char err[1024], gerr[512];
    jq_gguf *g = jq_gguf_open(o.model, gerr, sizeof gerr);
    if (!g)
        jq_cli_fail(I, "%s: %s", o.model, gerr);
    jq_vocab *v = jq_vocab_load(g, gerr, sizeof gerr);
    if (!v)
        jq_cli_fail(I, "%s: %s", o.model, gerr);
    int32_t *ids = NULL;
    size_t n = 0;
    bool bos = !o.no_bos && jq_vocab_add_bos(v);
    if (jq_tokenize(v, text, len, bos, &ids, &n, err, sizeof err) != 0)
        jq_cli_fail(I, "%s", err);

    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_integer(ids[i]));
    char *s = json_dumps(arr, JSON_COMPACT);
    if (s)
        puts(s);
    free(s);
    json_decref(arr);
    free(ids);
    jq_vocab_free(v);
    jq_gguf_close(g);
    free(text);
    return JQ_EXIT_OK;
}

int jq_cmd_logits(int argc, char **argv)
{
    const jq_cmd_info *I = &logits_info;
    text_opts o;
    parse(I, argc, argv, &o, true);
    size_t len;
    char *text = jq_cli_text_arg(I, o.text, o.file, &len);

    jq_model *m = jq_cli_load_model(I, o.model);
    size_t n;
    int32_t *ids = jq_cli_tokenize(I, m, text, len, o.no_bos, &n);
    if (n == 0)
        jq_cli_fail(I, "the text is empty after tokenization");
    jq_pool *pool = jq_thread_pool_new(o.threads);
    char err[512];
    jq_ctx *ctx = pool ? jq_ctx_new(m, (int32_t)n, (int32_t)n, pool, err,
                                    sizeof err)
                       : NULL;
    if (!ctx)
        jq_cli_fail(I, "%s", pool ? err : "cannot start threads");
    float *logits = malloc(sizeof(float) * (size_t)m->hp.n_vocab);
    if (!logits)
        jq_cli_fail(I, "out of memory");
    if (jq_ctx_eval(ctx, ids, (int32_t)n, logits, err, sizeof err) != 0)
        jq_cli_fail(I, "%s", err);

    /* 9 significant digits round-trip every float exactly */
    json_t *arr = json_array();
    for (int32_t i = 0; i < m->hp.n_vocab; i++) {
        json_t *x = json_real((double)logits[i]);
        if (!x)
            jq_cli_fail(I, "logit %d is not finite (%g)", i, (double)logits[i]);
        json_array_append_new(arr, x);
    }
    char *s = json_dumps(arr, JSON_COMPACT | JSON_REAL_PRECISION(9));
    if (s)
        puts(s);
    free(s);
    json_decref(arr);

    free(logits);
    jq_ctx_free(ctx);
    jq_thread_pool_free(pool);
    free(ids);
    jq_model_free(m);
    free(text);
    return JQ_EXIT_OK;
}
