/* cmd_hitrate.c — `judgeq hitrate`: how well each policy's kept set covers
 * the entries the generated tokens actually attend to.
 *
 * The model first generates -n tokens greedily with the full cache. Their
 * attention over the prompt (teacher-forced in one pass, the same causal
 * view they had when generated), reduced over each GQA group, gives the
 * oracle set: the top-B prompt positions per (layer, KV head), no pooling,
 * nothing forced. For each policy: hit rate = |kept ∩ oracle| / |oracle|
 * averaged over layers and KV heads; mass recall = the share of the
 * generated tokens' attention mass on prompt positions that falls on kept
 * entries.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_evict.h"
#include "metrics.h"
#include "model.h"
#include "prefill.h"
#include "soft_tokens.h"
#include "thread_pool.h"

static const jq_cmd_info hitrate_info = {
    "hitrate",
    "usage: judgeq hitrate -m MODEL (-p PROMPT | -f FILE) --budget B\n"
    "                      --policies LIST [--soft FILE] [-n N] [options]\n"
    "\n"
    "Prints, as JSON, each policy's critical-KV hit rate and attention-mass\n"
    "recall against the oracle set of the tokens the model generates:\n"
    "  {\"prompt_tokens\": L, \"budget\": B, \"generated\": N,\n"
    "   \"hit_rate\": {\"snapkv\": 0.61, ...}, \"mass_recall\": {...}}\n"
    "\n"
    "  -m, --model FILE     model file (GGUF)\n"
    "  -p, --prompt TEXT    prompt text\n"
    "  -f, --file FILE      read the prompt from FILE\n"
    "      --policies LIST  comma-separated policies (e.g. snapkv,judgeq)\n"
    "  -n, --n-predict N    greedy tokens that define the oracle (default 32)\n"
    "      --threads N      compute threads (default: all CPUs available)\n"
    "      --no-bos         do not add the BOS token to the prompt\n"
    JQ_CLI_EVICT_PARAMS_HELP
    "  -h, --help           this help\n",
};

enum { OPT_POLICIES = 256, OPT_THREADS, OPT_NO_BOS };

typedef struct {
    const char *model, *prompt, *file, *policies;
    int32_t n_predict, threads;
    bool no_bos;
    jq_cli_evict evict;
    jq_evict_policy list[JQ_EVICT_COUNT_];
    int n_list;
} hitrate_opts;

static void parse(int argc, char **argv, hitrate_opts *o)
{
    const jq_cmd_info *I = &hitrate_info;
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},
        {"prompt", required_argument, 0, 'p'},
        {"file", required_argument, 0, 'f'},
        {"n-predict", required_argument, 0, 'n'},
        {"policies", required_argument, 0, OPT_POLICIES},
        {"threads", required_argument, 0, OPT_THREADS},
        {"no-bos", no_argument, 0, OPT_NO_BOS},
        {"help", no_argument, 0, 'h'},
        JQ_CLI_EVICT_LONGOPTS,
        {0, 0, 0, 0},
    };
    *o = (hitrate_opts){.n_predict = 32, .threads = jq_cli_default_threads()};
    jq_cli_evict_init(&o->evict);
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":m:p:f:n:h", longopts, NULL)) != -1) {
        if (c == JQ_OPT_EVICT)
            jq_cli_usage_error(I, "hitrate compares --policies; --evict is "
                                  "not used here");
        if (jq_cli_evict_opt(I, c, optarg, &o->evict))
            continue;
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'p': o->prompt = optarg; break;
        case 'f': o->file = optarg; break;
        case 'n':
            o->n_predict = (int32_t)jq_cli_int(I, "-n", optarg, 1, 1 << 20);
            break;
        case OPT_POLICIES: o->policies = optarg; break;
        case OPT_THREADS:
            o->threads = (int32_t)jq_cli_int(I, "--threads", optarg, 1, 1024);
            break;
        case OPT_NO_BOS: o->no_bos = true; break;
        case 'h': jq_cli_help(I);
        default:
            jq_cli_bad_option(I, c, argv);
        }
    }
    if (optind < argc)
        jq_cli_usage_error(I, "unexpected argument '%s'", argv[optind]);
    if (!o->model)
        jq_cli_usage_error(I, "a model is required (-m FILE)");
    if (!o->prompt == !o->file)
        jq_cli_usage_error(I, "give the prompt with exactly one of -p and -f");
    if (!o->evict.budget_set)
        jq_cli_usage_error(I, "--budget B is required");
    if (!o->policies)
        jq_cli_usage_error(I, "--policies LIST is required");
    o->n_list = jq_cli_parse_policies(I, o->policies, o->list);
    bool judgeq = false;
    for (int i = 0; i < o->n_list; i++) {
        judgeq |= o->list[i] == JQ_EVICT_JUDGEQ;
        jq_evict_spec s = jq_cli_evict_spec_for(&o->evict, o->list[i]);
        char err[256];
        if (jq_evict_spec_check(&s, err, sizeof err) != 0)
            jq_cli_usage_error(I, "%s: %s", jq_evict_policy_name(o->list[i]),
                               err);
    }
    if (judgeq && !o->evict.soft_path)
        jq_cli_usage_error(I, "policy judgeq needs --soft FILE");
    if (!judgeq && o->evict.soft_path)
        jq_cli_usage_error(I, "--soft is only used with policy judgeq");
}

int jq_cmd_hitrate(int argc, char **argv)
{
    const jq_cmd_info *I = &hitrate_info;
    hitrate_opts o;
    parse(argc, argv, &o);
    size_t len;
    char *text = jq_cli_text_arg(I, o.prompt, o.file, &len);

    jq_model *m = jq_cli_load_model(I, o.model);
    const jq_hparams *hp = &m->hp;
    char err[1024];
    jq_soft_tokens *soft = NULL;
    if (o.evict.soft_path &&
        !(soft = jq_soft_tokens_load(o.evict.soft_path, m, err, sizeof err)))
        jq_cli_fail(I, "%s", err);
    size_t L;
    int32_t *ids = jq_cli_tokenize(I, m, text, len, o.no_bos, &L);
    if (L == 0)
        jq_cli_fail(I, "the prompt is empty after tokenization");
    if ((int64_t)L + o.n_predict > hp->n_ctx_train)
        jq_cli_fail(I, "prompt (%zu tokens) + -n %d exceed the model context %d",
                    L, o.n_predict, hp->n_ctx_train);
    /* extra rows: the oracle's generated tokens or the soft tokens */
    int32_t extra = o.n_predict;
    if (soft && soft->n > extra)
        extra = soft->n;
    jq_pool *pool = jq_thread_pool_new(o.threads);
    jq_ctx *ctx = pool ? jq_ctx_new_typed(m, (int32_t)L + extra,
                                          (int32_t)L + extra, o.evict.kv_type,
                                          pool, err, sizeof err)
                       : NULL;
    jq_kept *kept = jq_kept_new(hp->n_layer, hp->n_head_kv, (int32_t)L);
    if (!ctx)
        jq_cli_fail(I, "%s", pool ? err : "cannot start threads");
    if (!kept)
        jq_cli_fail(I, "out of memory for a prompt of %zu tokens", L);

    /* the reference continuation (greedy, full cache) and its attention
     * over the prompt, which defines the oracle set */
    jq_metrics_ref ref;
    if (jq_metrics_reference(ctx, ids, (int32_t)L, o.n_predict, false, &ref,
                             err, sizeof err) != 0)
        jq_cli_fail(I, "reference: %s", err);

    jq_prefill_params pp = {
        .soft_embd = soft ? soft->emb : NULL,
        .n_soft = soft ? soft->n : 0,
        .kv_type = o.evict.kv_type,
    };
    json_t *hits = json_object(), *mass = json_object();
    for (int i = 0; i < o.n_list; i++) {
        const char *name = jq_evict_policy_name(o.list[i]);
        pp.spec = jq_cli_evict_spec_for(&o.evict, o.list[i]);
        double hit, recall;
        if (jq_metrics_policy_kept(ctx, ids, &ref, &pp, kept, err,
                                   sizeof err) != 0 ||
            jq_metrics_coverage(&ref, kept, o.evict.budget,
                                pp.spec.gqa_reduce, &hit, &recall, err,
                                sizeof err) != 0)
            jq_cli_fail(I, "%s: %s", name, err);
        json_object_set_new(hits, name, json_real(hit));
        json_object_set_new(mass, name, json_real(recall));
    }
    json_t *root = json_object();
    json_object_set_new(root, "prompt_tokens", json_integer((json_int_t)L));
    json_object_set_new(root, "budget", json_integer(o.evict.budget));
    json_object_set_new(root, "generated", json_integer(o.n_predict));
    json_object_set_new(root, "hit_rate", hits);
    json_object_set_new(root, "mass_recall", mass);
    char *s = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(6));
    if (s)
        puts(s);
    free(s);
    json_decref(root);

    jq_metrics_ref_free(&ref);
    jq_kept_free(kept);
    jq_ctx_free(ctx);
    jq_thread_pool_free(pool);
    jq_soft_tokens_free(soft);
    free(ids);
    jq_model_free(m);
    free(text);
    return JQ_EXIT_OK;
}
