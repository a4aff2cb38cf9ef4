/* judgeq_main.c — the `judgeq` command line: dispatch to a subcommand. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cli_online.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} commands[] = {
    {"run", jq_cmd_run, "generate a continuation of a prompt (offline)"},
    {"hitrate", jq_cmd_hitrate,
     "critical-KV hit rate of eviction policies vs the oracle"},
    {"eval", jq_cmd_eval,
     "every policy x budget vs the full cache: CSV, JSON and a plot"},
    {"bench", jq_cmd_bench,
     "prefill/decode speed of a model, or a load run on judgeqd, as JSON"},
    {"tokenize", jq_cmd_tokenize, "print the token ids of a text"},
    {"logits", jq_cmd_logits, "print the last prompt position's logits"},
    {"gen-model", jq_cmd_gen_model, "write a random-weight llama GGUF model"},
    {"soft-init", jq_cmd_soft_init, "write initial Judge Q soft tokens for a model"},
    {"train", jq_cmd_train, "train Judge Q soft tokens for a model"},
    {"recall-data", jq_cmd_recall_data,
     "write recall-language examples (JSONL) for train --data"},
    {"pretrain", jq_cmd_pretrain,
     "train judgeq's own recall model from scratch"},
    {"generate", jq_cmd_generate, "generate through a running judgeqd (online run)"},
    {"stats", jq_cmd_stats, "print a running judgeqd's statistics (JSON)"},
    {"ping", jq_cmd_ping, "measure the round trip to a running judgeqd"},
};

static bool is_online(int (*fn)(int, char **))
{
    return fn == jq_cmd_generate || fn == jq_cmd_stats || fn == jq_cmd_ping ||
           fn == jq_cmd_bench; /* its load run */
}

static void usage(FILE *f)
{
    fputs("usage: judgeq COMMAND [OPTIONS]   (judgeq COMMAND --help for "
          "its options)\n       judgeq --socket PATH generate|stats|ping|bench "
          "[OPTIONS]\n\ncommands:\n",
          f);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].summary);
    fputs("\nenvironment:\n  JUDGEQ_ISA=scalar   use the portable "
          "reference kernels instead of AVX-512\n"
          "  JUDGEQ_SOCKET=PATH  the daemon's socket when --socket is absent\n",
          f);
}

int main(int argc, char **argv)
{
    /* the global form `judgeq --socket PATH COMMAND ...`: the socket is
     * taken here and the command sees the rest */
    bool global_socket = false;
    if (argc >= 2 && !strncmp(argv[1], "--socket=", 9)) {
        jq_cli_socket = argv[1] + 9;
        argv++, argc--, global_socket = true;
    } else if (argc >= 2 && !strcmp(argv[1], "--socket")) {
        if (argc < 3) {
            fputs("judgeq: --socket needs a path\n", stderr);
            usage(stderr);
            return JQ_EXIT_USAGE;
        }
        jq_cli_socket = argv[2];
        argv += 2, argc -= 2, global_socket = true;
    }
    if (global_socket && !*jq_cli_socket) {
        fputs("judgeq: --socket needs a path\n", stderr);
        return JQ_EXIT_USAGE;
    }
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
        if (!strcmp(cmd, commands[i].name)) {
            if (global_socket && !is_online(commands[i].fn)) {
                fprintf(stderr, "judgeq: --socket is for the online commands "
                                "(generate, stats, ping, bench), not '%s'\n", cmd);
                return JQ_EXIT_USAGE;
            }
            return commands[i].fn(argc - 1, argv + 1);
        }
    fprintf(stderr, "judgeq: unknown command '%s'\n", cmd);
    usage(stderr);
    return JQ_EXIT_USAGE;
}
