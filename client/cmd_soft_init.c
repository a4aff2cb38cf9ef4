/* cmd_soft_init.c — `judgeq soft-init`: write initial Judge Q soft tokens
 * (the embeddings of random ordinary tokens) for a model; the trainer
 * starts from this file. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>

#include "cli.h"
#include "model.h"
#include "soft_tokens.h"

static const jq_cmd_info soft_init_info = {
    "soft-init",
    "usage: judgeq soft-init -m MODEL -o FILE [options]\n"
    "\n"
    "Writes initial Judge Q soft tokens for MODEL: the embeddings (as F32)\n"
    "of N pseudo-randomly chosen ordinary tokens of its vocabulary, in a\n"
    "GGUF file tied to this model (architecture, sizes and a hash of its\n"
    "token embedding). The same model and seed always give the same file.\n"
    "\n"
    "  -m, --model MODEL   the GGUF model\n"
    "  -o, --output FILE   where to write the soft tokens\n"
    "      --n N           number of soft tokens, 1..4096 (default 32)\n"
    "      --seed S        random seed (default 1)\n"
    "  -h, --help          this help\n",
};

enum { OPT_N = 256, OPT_SEED };

int jq_cmd_soft_init(int argc, char **argv)
{
    const jq_cmd_info *I = &soft_init_info;
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},
        {"output", required_argument, 0, 'o'},
        {"n", required_argument, 0, OPT_N},
        {"seed", required_argument, 0, OPT_SEED},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *model_path = NULL, *out = NULL;
    int32_t n = 32;
    uint64_t seed = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":m:o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'o': out = optarg; break;
        case OPT_N:
            n = (int32_t)jq_cli_int(I, "--n", optarg, 1, JQ_SOFT_MAX_TOKENS);
            break;
        case OPT_SEED: seed = jq_cli_u64(I, "--seed", optarg); break;
        case 'h': jq_cli_help(I);
        default:
            jq_cli_bad_option(I, c, argv);
        }
    }
    if (optind < argc)
        jq_cli_usage_error(I, "unexpected argument '%s'", argv[optind]);
    if (!model_path)
        jq_cli_usage_error(I, "a model is required (-m MODEL)");
    if (!out)
        jq_cli_usage_error(I, "an output file is required (-o FILE)");

    jq_model *m = jq_cli_load_model(I, model_path);
    char err[1024];
    jq_soft_tokens *s = jq_soft_tokens_init(m, n, seed, err, sizeof err);
    if (!s) {
        jq_model_free(m);
        jq_cli_fail(I, "%s: %s", model_path, err);
    }
    if (jq_soft_tokens_save(s, m, out, err, sizeof err) != 0) {
        jq_soft_tokens_free(s);
        jq_model_free(m);
        jq_cli_fail(I, "%s", err);
    }
    printf("%s: %" PRId32 " soft tokens of %" PRId32
           " values, model token embedding hash %016" PRIx64 ", seed %" PRIu64
           "\n",
           out, s->n, s->n_embd, s->model_hash, seed);
    jq_soft_tokens_free(s);
    jq_model_free(m);
    return JQ_EXIT_OK;
}
