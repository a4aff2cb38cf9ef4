/* judgeq_main.c — the `judgeq` command line: dispatch to a subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} commands[] = {
    {"run", jq_cmd_run, "generate a continuation of a prompt (offline)"},
    {"hitrate", jq_cmd_hitrate,
     "critical-KV hit rate of eviction policies vs the oracle"},
    {"bench", jq_cmd_bench, "prefill/decode speed of a model, as JSON"},
    {"tokenize", jq_cmd_tokenize, "print the token ids of a text"},
    {"logits", jq_cmd_logits, "print the last prompt position's logits"},
    {"gen-model", jq_cmd_gen_model, "write a random-weight llama GGUF model"},
    {"soft-init", jq_cmd_soft_init, "write initial Judge Q soft tokens for a model"},
};

static void usage(FILE *f)
{
    fputs("usage: judgeq COMMAND [OPTIONS]   (judgeq COMMAND --help for "
          "its options)\n\ncommands:\n",
          f);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fputs("\nenvironment:\n  JUDGEQ_ISA=scalar   use the portable "
          "reference kernels instead of AVX-512\n",
          f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs("judgeq: a command is required\n", stderr);
        usage(stderr);
        return JQ_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return JQ_EXIT_OK;
    }
    if (!strcmp(cmd, "--version")) {
        printf("judgeq %s\n", JQ_VERSION);
        return JQ_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(cmd, commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "judgeq: unknown command '%s'\n", cmd);
    usage(stderr);
    return JQ_EXIT_USAGE;
}
