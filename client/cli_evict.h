/* cli_evict.h — the eviction flags shared by `judgeq run`, `hitrate` and
 * the online `generate`:
 *   --evict POLICY --budget B [--window W] [--sink S] [--pool-kernel K]
 *   [--gqa-reduce mean|max] [--soft FILE] [--kv-type f32|f16]
 */
#ifndef JQ_CLI_EVICT_H
#define JQ_CLI_EVICT_H

#include <getopt.h>
#include <stdbool.h>

#include "cli.h"
#include "evict.h"

enum {
    JQ_OPT_EVICT = 400,
    JQ_OPT_BUDGET,
    JQ_OPT_WINDOW,
    JQ_OPT_SINK,
    JQ_OPT_POOL_KERNEL,
    JQ_OPT_GQA_REDUCE,
    JQ_OPT_SOFT,
    JQ_OPT_KV_TYPE,
};

#define JQ_CLI_EVICT_LONGOPTS                                                \
    {"evict", required_argument, 0, JQ_OPT_EVICT},                           \
        {"budget", required_argument, 0, JQ_OPT_BUDGET},                     \
        {"window", required_argument, 0, JQ_OPT_WINDOW},                     \
        {"sink", required_argument, 0, JQ_OPT_SINK},                         \
        {"pool-kernel", required_argument, 0, JQ_OPT_POOL_KERNEL},           \
        {"gqa-reduce", required_argument, 0, JQ_OPT_GQA_REDUCE},             \
        {"soft", required_argument, 0, JQ_OPT_SOFT},                         \
        {"kv-type", required_argument, 0, JQ_OPT_KV_TYPE}

#define JQ_CLI_EVICT_HELP                                                    \
    "      --evict POLICY   full, streaming, h2o, snapkv, pyramidkv, adakv,\n" \
    "                       judgeq or oracle (default full)\n"               \
    JQ_CLI_EVICT_PARAMS_HELP
/* The parameters without --evict (commands that compare policies). */
#define JQ_CLI_EVICT_PARAMS_HELP                                             \
    "      --budget B       prompt KV entries kept per layer and KV head\n"  \
    "      --window W       recent prompt tokens always kept (default 32)\n" \
    "      --sink S         streaming: first tokens kept (default 4)\n"      \
    "      --pool-kernel K  max-pool width over positions, odd; 1 = off (7)\n" \
    "      --gqa-reduce R   mean or max over a KV head's query heads (mean)\n" \
    "      --soft FILE      Judge Q soft tokens (GGUF) for --evict judgeq\n" \
    "      --kv-type T      KV cache element type: f32 or f16 (default f32)\n"

typedef struct {
    jq_evict_policy policy;
    int32_t budget, window, sink, pool_kernel;
    jq_gqa_reduce gqa_reduce;
    bool budget_set, window_set, sink_set, pool_set, gqa_set;
    const char *soft_path;
    uint32_t kv_type;
} jq_cli_evict;

void jq_cli_evict_init(jq_cli_evict *e);
/* Handles one getopt result; false when opt is not an eviction flag. */
bool jq_cli_evict_opt(const jq_cmd_info *cmd, int opt, const char *arg,
                      jq_cli_evict *e);
/* Checks the combination after parsing (usage error on conflict) and
 * returns the spec: --budget required unless the policy is full, --soft
 * required for judgeq (and only allowed with it). */
jq_evict_spec jq_cli_evict_spec(const jq_cmd_info *cmd, const jq_cli_evict *e);
/* The same checks; need_soft = false where --soft is optional with judgeq
 * (online: the daemon may hold soft tokens of its own). */
jq_evict_spec jq_cli_evict_spec_soft(const jq_cmd_info *cmd,
                                     const jq_cli_evict *e, bool need_soft);
/* A spec of another policy with the same flags (hitrate, eval). */
jq_evict_spec jq_cli_evict_spec_for(const jq_cli_evict *e,
                                    jq_evict_policy policy);

/* Parses a comma-separated list of policy names (--policies) into out
 * (room for JQ_EVICT_COUNT_) and returns how many; usage error on an
 * unknown name, a repeated one, or an empty list. */
int jq_cli_parse_policies(const jq_cmd_info *cmd, const char *list,
                          jq_evict_policy *out);

#endif
