/* cmd_pretrain.c — `judgeq pretrain`: train judgeq's own recall model from
 * random initialisation on the recall language (issue 9).
 *
 * Reads the flags, builds the model (or loads the checkpoint with
 * --resume), then runs steps: the step's batch from the curriculum
 * (engine/pretrain_data.c), one optimizer step (engine/pretrain.c), a
 * progress line on stderr, the held-out batch every --eval-every steps, a
 * checkpoint every --save-every steps. At the end it writes the last
 * checkpoint and the model as a llama GGUF with the recall tokenizer, and
 * a JSON summary on stdout. Ctrl-C (or SIGTERM) only sets a flag: the
 * current step finishes, the checkpoint is written, and the command exits
 * 130; --resume continues exactly where it stopped.
 */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "kernels.h"
#include "pretrain.h"
#include "pretrain_data.h"
#include "recall_lang.h"
#include "thread_pool.h"

static const jq_cmd_info pretrain_info = {
    "pretrain",
    "usage: judgeq pretrain --out MODEL.gguf [options]\n"
    "\n"
    "Trains a llama-architecture model from random initialisation on the\n"
    "recall language (needle retrieval, multi-key, associative recall,\n"
    "variable tracking, common words; loss on the answer tokens, and with\n"
    "--context-loss on the prompt's tokens as well) and\n"
    "writes it as a GGUF that judgeq, judgeqd and llama.cpp load. Progress\n"
    "goes to stderr, a JSON summary to stdout. A checkpoint (model, AdamW\n"
    "state, step) is written every --save-every steps and on Ctrl-C (exit\n"
    "130); rerunning the same command with --resume continues it bit for\n"
    "bit.\n"
    "\n"
    "model:\n"
    "      --n-embd N          embedding length (default 256)\n"
    "      --n-layer N         blocks (default 4)\n"
    "      --n-head N          attention heads (default 8)\n"
    "      --n-head-kv N       key/value heads, divides --n-head (default 4)\n"
    "      --n-ff N            feed-forward length (default 768)\n"
    "      --ctx N             longest example, the model's context (default\n"
    "                          1024)\n"
    "      --tie-embeddings    the classifier is the token embedding (no\n"
    "                          output.weight, as Llama-3.2-1B)\n"
    "      --rope-base X       RoPE frequency base (default 10000); a larger\n"
    "                          base keeps more of a small head's rotation\n"
    "                          pairs aligned over long distances\n"
    "optimisation:\n"
    "      --steps N           optimizer steps (default 3000)\n"
    "      --batch N           examples per step (default 32)\n"
    "      --lr X              peak learning rate (default 2e-3)\n"
    "      --min-lr X          final learning rate of the cosine (default\n"
    "                          lr / 10)\n"
    "      --warmup N          linear warm-up steps (default 100)\n"
    "      --weight-decay X    AdamW decay of the matrices (default 0.1)\n"
    "      --clip X            global gradient-norm clip, 0 off (default 1)\n"
    "      --context-loss W    also train next-token prediction over the\n"
    "                          prompt: loss = mean answer loss + W x mean\n"
    "                          prompt loss (default 0: the answer alone).\n"
    "                          It grows the previous-token heads that\n"
    "                          binding keys to values needs\n"
    "      --seed S            initialisation and data seed (default 1)\n"
    "      --group-tokens N    positions a thread computes at once (default\n"
    "                          4096; memory ~70 KB each)\n"
    "      --slots N           gradient slots: the batch is cut into N parts,\n"
    "                          one thread each (default 2; the result is the\n"
    "                          same for any --threads, which N caps)\n"
    "data (curricula are FRACTION-OF-STEPS:VALUE lists):\n"
    "      --curriculum SPEC   example lengths, stepwise (default 0:48,\n"
    "                          0.08:96,0.2:128,0.35:256,0.55:512,0.8:1024)\n"
    "      --difficulty SPEC   difficulty level 0 (easiest: 2 keys, 1 hop)\n"
    "                          to 1 (each task's default), linear between\n"
    "                          points (default 0:0,0.7:1)\n"
    "      --tasks MIX         task weights TASK:W,..., or stages MIX/FRAC:MIX\n"
    "                          (default niah/0.08:niah,multikey/0.2:niah:1,\n"
    "                          multikey:2,mqar:2,vt:2,cwe:1: copying is\n"
    "                          learnt on niah first)\n"
    "      --question-first X  share of examples asking first (default 0.3)\n"
    "      --min-len-frac X    examples are [X L, L] tokens long, L the\n"
    "                          stage's length (default 0.5)\n"
    "      --digits N          digits of the number values, 1-6 (default\n"
    "                          3; 1 makes every value one token, so a stage\n"
    "                          can learn binding before multi-token copying)\n"
    "files and progress:\n"
    "  -o, --out FILE          the model to write (GGUF)\n"
    "      --out-type T        f16 (default) or f32 matrices\n"
    "      --checkpoint FILE   checkpoint path (default OUT.ckpt)\n"
    "      --resume            continue the checkpoint (same options)\n"
    "      --init-from FILE    start from the weights of a model this command\n"
    "                          wrote (same shape; a later stage of a recipe,\n"
    "                          e.g. longer contexts); AdamW starts afresh\n"
    "      --save-every N      checkpoint interval in steps (default 100)\n"
    "      --eval-every N      held-out evaluation interval (default 100)\n"
    "      --eval-batch N      held-out examples, tasks in turn (default 50)\n"
    "      --log-every N       progress line interval (default 10)\n"
    "      --threads N         compute threads (default: all CPUs available)\n"
    "  -h, --help              this help\n",
};

typedef struct {
    jq_pt_hparams hp;
    jq_pt_opts o;
    jq_pt_data_plan plan;
    uint64_t seed;
    int32_t batch, save_every, eval_every, eval_batch, log_every, threads;
    const char *out, *ckpt, *init_from;
    uint32_t out_type;
    bool resume;
} pretrain_args;

enum {
    OPT_EMBD = 256, OPT_LAYER, OPT_HEAD, OPT_HEAD_KV, OPT_FF, OPT_CTX,
    OPT_STEPS, OPT_BATCH, OPT_LR, OPT_MIN_LR, OPT_WARMUP, OPT_WD, OPT_CLIP,
    OPT_SEED, OPT_GROUP, OPT_CURRICULUM, OPT_DIFFICULTY, OPT_TASKS,
    OPT_QFIRST, OPT_MINFRAC, OPT_OUT_TYPE, OPT_CKPT, OPT_RESUME, OPT_SAVE,
    OPT_EVAL, OPT_EVAL_BATCH, OPT_LOG, OPT_THREADS, OPT_SLOTS, OPT_INIT_FROM,
    OPT_DIGITS, OPT_TIE, OPT_CTX_LOSS, OPT_ROPE_BASE
};

static void parse(int argc, char **argv, pretrain_args *a)
{
    const jq_cmd_info *I = &pretrain_info;
    static const struct option longopts[] = {
        {"n-embd", required_argument, 0, OPT_EMBD},
        {"n-layer", required_argument, 0, OPT_LAYER},
        {"n-head", required_argument, 0, OPT_HEAD},
        {"n-head-kv", required_argument, 0, OPT_HEAD_KV},
        {"n-ff", required_argument, 0, OPT_FF},
        {"ctx", required_argument, 0, OPT_CTX},
        {"tie-embeddings", no_argument, 0, OPT_TIE},
        {"rope-base", required_argument, 0, OPT_ROPE_BASE},
        {"steps", required_argument, 0, OPT_STEPS},
        {"batch", required_argument, 0, OPT_BATCH},
        {"lr", required_argument, 0, OPT_LR},
        {"min-lr", required_argument, 0, OPT_MIN_LR},
        {"warmup", required_argument, 0, OPT_WARMUP},
        {"weight-decay", required_argument, 0, OPT_WD},
        {"clip", required_argument, 0, OPT_CLIP},
        {"context-loss", required_argument, 0, OPT_CTX_LOSS},
        {"seed", required_argument, 0, OPT_SEED},
        {"group-tokens", required_argument, 0, OPT_GROUP},
        {"slots", required_argument, 0, OPT_SLOTS},
        {"curriculum", required_argument, 0, OPT_CURRICULUM},
        {"difficulty", required_argument, 0, OPT_DIFFICULTY},
        {"tasks", required_argument, 0, OPT_TASKS},
        {"question-first", required_argument, 0, OPT_QFIRST},
        {"min-len-frac", required_argument, 0, OPT_MINFRAC},
        {"digits", required_argument, 0, OPT_DIGITS},
        {"out", required_argument, 0, 'o'},
        {"out-type", required_argument, 0, OPT_OUT_TYPE},
        {"checkpoint", required_argument, 0, OPT_CKPT},
        {"resume", no_argument, 0, OPT_RESUME},
        {"init-from", required_argument, 0, OPT_INIT_FROM},
        {"save-every", required_argument, 0, OPT_SAVE},
        {"eval-every", required_argument, 0, OPT_EVAL},
        {"eval-batch", required_argument, 0, OPT_EVAL_BATCH},
        {"log-every", required_argument, 0, OPT_LOG},
        {"threads", required_argument, 0, OPT_THREADS},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    memset(a, 0, sizeof *a);
    a->hp = (jq_pt_hparams){.n_vocab = jq_recall_n_vocab(), .n_embd = 256,
                            .n_layer = 4, .n_head = 8, .n_head_kv = 4,
                            .n_ff = 768, .n_ctx = 1024, .rope_base = 10000.0f,
                            .rms_eps = 1e-5f};
    a->o = jq_pt_opts_defaults();
    a->o.steps = 3000;
    a->o.lr = 2e-3f;
    a->seed = 1;
    a->batch = 32;
    a->save_every = 100;
    a->eval_every = 100;
    a->eval_batch = 50;
    a->log_every = 10;
    a->threads = jq_cli_default_threads();
    a->out_type = JQ_TYPE_F16;
    bool min_lr_set = false;
    const char *curriculum = NULL, *difficulty = NULL, *tasks = NULL;
    double qfirst = 0.3, minfrac = 0.5;
    int32_t digits = 0; /* the recall language's default, 3 */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_EMBD: a->hp.n_embd = (int32_t)jq_cli_int(I, "--n-embd", optarg, 2, 1 << 14); break;
        case OPT_LAYER: a->hp.n_layer = (int32_t)jq_cli_int(I, "--n-layer", optarg, 1, 256); break;
        case OPT_HEAD: a->hp.n_head = (int32_t)jq_cli_int(I, "--n-head", optarg, 1, 1024); break;
        case OPT_HEAD_KV: a->hp.n_head_kv = (int32_t)jq_cli_int(I, "--n-head-kv", optarg, 1, 1024); break;
        case OPT_FF: a->hp.n_ff = (int32_t)jq_cli_int(I, "--n-ff", optarg, 1, 1 << 16); break;
        case OPT_TIE: a->hp.tie_embd = true; break;
        case OPT_ROPE_BASE: a->hp.rope_base = (float)jq_cli_float(I, "--rope-base", optarg, 1, 1e9); break;
        case OPT_CTX: a->hp.n_ctx = (int32_t)jq_cli_int(I, "--ctx", optarg, 64, 1 << 16); break;
        case OPT_STEPS: a->o.steps = jq_cli_int(I, "--steps", optarg, 1, 100000000); break;
        case OPT_BATCH: a->batch = (int32_t)jq_cli_int(I, "--batch", optarg, 1, 65536); break;
        case OPT_LR: a->o.lr = (float)jq_cli_float(I, "--lr", optarg, 1e-9, 10); break;
        case OPT_MIN_LR:
            a->o.min_lr = (float)jq_cli_float(I, "--min-lr", optarg, 0, 10);
            min_lr_set = true;
            break;
        case OPT_WARMUP: a->o.warmup = jq_cli_int(I, "--warmup", optarg, 0, 100000000); break;
        case OPT_WD: a->o.weight_decay = (float)jq_cli_float(I, "--weight-decay", optarg, 0, 10); break;
        case OPT_CLIP: a->o.clip = (float)jq_cli_float(I, "--clip", optarg, 0, 1e6); break;
        case OPT_CTX_LOSS: a->o.context_loss = (float)jq_cli_float(I, "--context-loss", optarg, 0, 100); break;
        case OPT_SEED: a->seed = jq_cli_u64(I, "--seed", optarg); break;
        case OPT_GROUP: a->o.group_tokens = (int32_t)jq_cli_int(I, "--group-tokens", optarg, 64, 1 << 20); break;
        case OPT_SLOTS: a->o.slots = (int32_t)jq_cli_int(I, "--slots", optarg, 1, JQ_PT_MAX_SLOTS); break;
        case OPT_CURRICULUM: curriculum = optarg; break;
        case OPT_DIFFICULTY: difficulty = optarg; break;
        case OPT_TASKS: tasks = optarg; break;
        case OPT_QFIRST: qfirst = jq_cli_float(I, "--question-first", optarg, 0, 1); break;
        case OPT_DIGITS: digits = (int32_t)jq_cli_int(I, "--digits", optarg, 1, 6); break;
        case OPT_MINFRAC: minfrac = jq_cli_float(I, "--min-len-frac", optarg, 0.05, 1); break;
        case 'o': a->out = optarg; break;
        case OPT_OUT_TYPE:
            if (!strcmp(optarg, "f16"))
                a->out_type = JQ_TYPE_F16;
            else if (!strcmp(optarg, "f32"))
                a->out_type = JQ_TYPE_F32;
            else
                jq_cli_usage_error(I, "--out-type must be f16 or f32, got '%s'", optarg);
            break;
        case OPT_CKPT: a->ckpt = optarg; break;
        case OPT_RESUME: a->resume = true; break;
        case OPT_INIT_FROM: a->init_from = optarg; break;
        case OPT_SAVE: a->save_every = (int32_t)jq_cli_int(I, "--save-every", optarg, 1, 1 << 30); break;
        case OPT_EVAL: a->eval_every = (int32_t)jq_cli_int(I, "--eval-every", optarg, 1, 1 << 30); break;
        case OPT_EVAL_BATCH: a->eval_batch = (int32_t)jq_cli_int(I, "--eval-batch", optarg, 1, 65536); break;
        case OPT_LOG: a->log_every = (int32_t)jq_cli_int(I, "--log-every", optarg, 1, 1 << 30); break;
        case OPT_THREADS: a->threads = (int32_t)jq_cli_int(I, "--threads", optarg, 1, 1024); break;
        case 'h': jq_cli_help(I);
        default:
            jq_cli_bad_option(I, c, argv);
        }
    }
    if (optind < argc)
        jq_cli_usage_error(I, "unexpected argument '%s'", argv[optind]);
    if (!a->out)
        jq_cli_usage_error(I, "an output file is required (--out FILE)");
    char err[512];
    if (jq_pt_hparams_check(&a->hp, err, sizeof err) != 0)
        jq_cli_usage_error(I, "%s", err);
    if (!min_lr_set)
        a->o.min_lr = a->o.lr / 10;
    if (a->o.min_lr > a->o.lr)
        jq_cli_usage_error(I, "--min-lr %g is above --lr %g",
                           (double)a->o.min_lr, (double)a->o.lr);
    if (a->o.warmup >= a->o.steps)
        jq_cli_usage_error(I, "--warmup %lld must be below --steps %lld",
                           (long long)a->o.warmup, (long long)a->o.steps);
    jq_pt_data_plan *p = &a->plan;
    jq_pt_data_defaults(p, a->seed, a->o.steps, a->hp.n_ctx);
    p->question_first = qfirst;
    p->min_frac = minfrac;
    p->digits = digits;
    if ((curriculum && jq_pt_parse_lengths(p, curriculum, err, sizeof err)) ||
        (difficulty && jq_pt_parse_levels(p, difficulty, err, sizeof err)) ||
        (tasks && jq_pt_parse_tasks(p, tasks, err, sizeof err)) ||
        jq_pt_data_check(p, err, sizeof err))
        jq_cli_usage_error(I, "%s", err);
}

/* Everything the trained bits depend on, one "key=value" line each: a
 * checkpoint stores it and --resume requires the same. (--threads,
 * intervals and the output type do not change the training.) */
static char *describe(const pretrain_args *a)
{
    char *data = jq_pt_data_describe(&a->plan);
    if (!data)
        return NULL;
    const jq_pt_hparams *h = &a->hp;
    const jq_pt_opts *o = &a->o;
    /* only when used (or not the default), so checkpoints of earlier
     * recipes still resume */
    char ctx_loss[128] = "";
    if (o->context_loss > 0)
        snprintf(ctx_loss, sizeof ctx_loss, "context_loss=%.9g\n",
                 (double)o->context_loss);
    if (h->rope_base != 10000.0f)
        snprintf(ctx_loss + strlen(ctx_loss), sizeof ctx_loss - strlen(ctx_loss),
                 "rope_base=%.9g\n", (double)h->rope_base);
    char *s = NULL;
    if (asprintf(&s,
                 "n_vocab=%d\nn_embd=%d\nn_layer=%d\nn_head=%d\nn_head_kv=%d\n"
                 "n_ff=%d\nctx=%d\ntie_embd=%d\nbatch=%d\nlr=%.9g\nmin_lr=%.9g\nwarmup=%lld\n"
                 "weight_decay=%.9g\nclip=%.9g\ngroup_tokens=%d\nslots=%d\n"
                 "init_from=%s\n%s%s",
                 h->n_vocab, h->n_embd, h->n_layer, h->n_head, h->n_head_kv,
                 h->n_ff, h->n_ctx, (int)h->tie_embd, a->batch, (double)o->lr, (double)o->min_lr,
                 (long long)o->warmup, (double)o->weight_decay,
                 (double)o->clip, o->group_tokens, o->slots,
                 a->init_from ? a->init_from : "", data, ctx_loss) < 0)
        s = NULL;
    free(data);
    return s;
}

/* The first line where two descriptions differ, for the error message. */
static void first_difference(const char *a, const char *b, char *out,
                             size_t n)
{
    while (*a || *b) {
        const size_t la = strcspn(a, "\n"), lb = strcspn(b, "\n");
        if (la != lb || memcmp(a, b, la) != 0) {
            snprintf(out, n, "the checkpoint has '%.*s', this command '%.*s'",
                     (int)la, a, (int)lb, b);
            return;
        }
        a += la + (a[la] != 0);
        b += lb + (b[lb] != 0);
    }
    snprintf(out, n, "they are the same");
}

/* ------------------------------------------------------------ progress */

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1; /* SA_RESETHAND: a second Ctrl-C kills as usual */
}

static void fmt_duration(char *buf, size_t n, double s)
{
    if (!(s >= 0) || s > 1e8)
        snprintf(buf, n, "?");
    else if (s < 3600)
        snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else
        snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

/* Relative cost of a sequence of l positions: linear layers per token plus
 * attention growing with l (measured on this machine's 2 cores: a token
 * at 1024 costs ~1.5x one at 128, bench/pretrain_bench.c). Used only to
 * turn the measured rate into an ETA across the length curriculum. */
static double seq_cost(double l)
{
    return l * (1.0 + l / 2000.0);
}

/* Expected cost of the steps [from, to) under the plan. */
static double plan_cost(const pretrain_args *a, int64_t from, int64_t to)
{
    double c = 0;
    const double f = a->plan.min_frac;
    for (int64_t s = from; s < to; s++)
        c += a->batch * seq_cost(jq_pt_data_length(&a->plan, s) * (1 + f) / 2);
    return c;
}

typedef struct {
    double acc, tok_acc, loss;
    double task_acc[JQ_RECALL_COUNT_];
    int32_t length;
    double level;
} eval_result;

static int evaluate(jq_pt_trainer *t, const pretrain_args *a, int64_t step,
                    eval_result *r, char *err, size_t errlen)
{
    jq_pt_batch b;
    if (jq_pt_data_batch(&a->plan, step, a->eval_batch, true, &b, err,
                         errlen) != 0)
        return -1;
    memset(r, 0, sizeof *r);
    r->length = jq_pt_data_length(&a->plan, step);
    r->level = jq_pt_data_level(&a->plan, step);
    jq_pt_stats all = {0};
    /* per task: the held-out batch has the active tasks in turn */
    jq_pt_seq *sub = malloc((size_t)b.n * sizeof *sub);
    if (!sub) {
        jq_pt_batch_free(&b);
        return -1;
    }
    int rc = 0;
    for (int task = 0; task < JQ_RECALL_COUNT_ && rc == 0; task++) {
        int n = 0;
        for (int i = 0; i < b.n; i++)
            if ((int)b.task[i] == task)
                sub[n++] = b.seqs[i];
        r->task_acc[task] = NAN;
        if (n == 0)
            continue;
        jq_pt_stats st = {0};
        rc = jq_pt_trainer_eval(t, sub, n, &st, err, errlen);
        r->task_acc[task] = (double)st.n_seq_correct / (double)st.n_seq;
        all.loss_sum += st.loss_sum;
        all.n_tokens += st.n_tokens;
        all.n_correct += st.n_correct;
        all.n_seq += st.n_seq;
        all.n_seq_correct += st.n_seq_correct;
    }
    free(sub);
    jq_pt_batch_free(&b);
    if (rc != 0)
        return -1;
    r->acc = (double)all.n_seq_correct / (double)all.n_seq;
    r->tok_acc = (double)all.n_correct / (double)all.n_tokens;
    r->loss = all.loss_sum / (double)all.n_tokens;
    return 0;
}

static void print_eval(int64_t step, const eval_result *r)
{
    fprintf(stderr, "judgeq pretrain: held-out at step %lld (length %d, "
            "level %.2f): answer accuracy %.3f, token accuracy %.3f, loss "
            "%.4f |",
            (long long)step, r->length, r->level, r->acc, r->tok_acc, r->loss);
    for (int t = 0; t < JQ_RECALL_COUNT_; t++)
        if (!isnan(r->task_acc[t]))
            fprintf(stderr, " %s %.2f", jq_recall_task_name(t), r->task_acc[t]);
    fputc('\n', stderr);
}

/* ------------------------------------------------------------- output */

static int write_tokenizer(void *ud, jq_gguf_writer *w, char *err,
                           size_t errlen)
{
    (void)ud;
    return jq_recall_write_tokenizer(w, err, errlen);
}

static char *default_ckpt(const char *out)
{
    char *s = NULL;
    return asprintf(&s, "%s.ckpt", out) < 0 ? NULL : s;
}

static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

int jq_cmd_pretrain(int argc, char **argv)
{
    const jq_cmd_info *I = &pretrain_info;
    pretrain_args a;
    parse(argc, argv, &a);
    char *ckpt = a.ckpt ? strdup(a.ckpt) : default_ckpt(a.out);
    char *config = describe(&a);
    if (!ckpt || !config)
        jq_cli_fail(I, "out of memory");
    char err[1024];

    jq_pt_model *m = NULL;
    if (a.resume) {
        char *saved = NULL;
        if (jq_pt_checkpoint_load(ckpt, &m, &saved, err, sizeof err) != 0)
            jq_cli_fail(I, "--resume: %s", err);
        if (strcmp(saved, config) != 0) {
            char diff[512];
            first_difference(saved, config, diff, sizeof diff);
            jq_cli_fail(I, "--resume: %s was made with other options (%s); "
                        "resume with the options it was started with",
                        ckpt, diff);
        }
        free(saved);
    } else {
        if (!(m = jq_pt_model_new(&a.hp, err, sizeof err)))
            jq_cli_fail(I, "%s", err);
        jq_pt_model_init(m, a.seed);
        if (a.init_from &&
            jq_pt_model_load_weights(m, a.init_from, err, sizeof err) != 0)
            jq_cli_fail(I, "--init-from %s", err);
    }
    jq_pool *pool = jq_thread_pool_new(a.threads);
    if (!pool)
        jq_cli_fail(I, "cannot start %d threads", a.threads);
    jq_pt_trainer *t = jq_pt_trainer_new(m, &a.o, pool, err, sizeof err);
    if (!t)
        jq_cli_fail(I, "%s", err);
    if (a.resume && jq_pt_trainer_resume(t, ckpt, err, sizeof err) != 0)
        jq_cli_fail(I, "--resume: %s", err);
    const int64_t start = jq_pt_trainer_steps_done(t);
    fprintf(stderr,
            "judgeq pretrain: %zu parameters (n_embd %d, %d layers, %d/%d "
            "heads, n_ff %d, vocab %d, ctx %d); %s at step %lld of %lld, "
            "batch %d, %d threads\n",
            m->n_params, a.hp.n_embd, a.hp.n_layer, a.hp.n_head,
            a.hp.n_head_kv, a.hp.n_ff, a.hp.n_vocab, a.hp.n_ctx,
            a.resume ? "resuming" : "starting", (long long)start,
            (long long)a.o.steps, a.batch, a.threads);

    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    const double t0 = jq_now();
    double done_cost = 0, last_loss = NAN;
    int64_t positions = 0;
    eval_result ev = {.acc = NAN};
    bool have_eval = false;
    int64_t step = start;
    for (; step < a.o.steps && !g_stop; step++) {
        jq_pt_batch b;
        if (jq_pt_data_batch(&a.plan, step, a.batch, false, &b, err,
                             sizeof err) != 0)
            jq_cli_fail(I, "%s", err);
        jq_pt_step_info info;
        if (jq_pt_trainer_step(t, b.seqs, b.n, &info, err, sizeof err) != 0)
            jq_cli_fail(I, "%s", err);
        for (int i = 0; i < b.n; i++)
            done_cost += seq_cost(b.seqs[i].n_tokens - 1);
        jq_pt_batch_free(&b);
        positions += info.stats.n_positions;
        last_loss = info.stats.loss_sum / (double)info.stats.n_tokens;
        const int64_t s1 = step + 1;
        if (s1 % a.log_every == 0 || s1 == a.o.steps || s1 == start + 1) {
            const double el = jq_now() - t0;
            char e1[32], e2[32];
            fmt_duration(e1, sizeof e1, el);
            fmt_duration(e2, sizeof e2,
                         plan_cost(&a, s1, a.o.steps) * el / done_cost);
            char ctx[40] = "";
            if (info.stats.n_ctx_tokens > 0)
                snprintf(ctx, sizeof ctx, "  prompt loss %.4f",
                         info.stats.ctx_loss_sum /
                             (double)info.stats.n_ctx_tokens);
            fprintf(stderr,
                    "step %lld/%lld  len %d  loss %.4f%s  acc %.3f  lr %.2e  "
                    "|g| %.3f  %.0f tok/s  elapsed %s  ETA %s\n",
                    (long long)s1, (long long)a.o.steps,
                    jq_pt_data_length(&a.plan, step), last_loss, ctx,
                    (double)info.stats.n_seq_correct /
                        (double)info.stats.n_seq,
                    (double)info.lr, info.grad_norm, (double)positions / el,
                    e1, e2);
        }
        if (s1 % a.eval_every == 0 || s1 == a.o.steps) {
            if (evaluate(t, &a, step, &ev, err, sizeof err) != 0)
                jq_cli_fail(I, "held-out evaluation: %s", err);
            have_eval = true;
            print_eval(s1, &ev);
        }
        if (s1 % a.save_every == 0 && s1 < a.o.steps &&
            jq_pt_checkpoint_save(t, config, ckpt, err, sizeof err) != 0)
            jq_cli_fail(I, "%s", err);
    }
    const int64_t done = jq_pt_trainer_steps_done(t);
    if (jq_pt_checkpoint_save(t, config, ckpt, err, sizeof err) != 0)
        jq_cli_fail(I, "%s", err);
    const bool finished = done == a.o.steps;
    if (finished && jq_pt_export_gguf(m, a.out_type, "judgeq-recall",
                                      write_tokenizer, NULL, a.out, err,
                                      sizeof err) != 0)
        jq_cli_fail(I, "%s", err);
    const double wall = jq_now() - t0;
    if (!finished)
        fprintf(stderr, "judgeq pretrain: interrupted after step %lld; "
                "checkpoint %s written (rerun with --resume)\n",
                (long long)done, ckpt);

    json_t *j = json_object();
    json_object_set_new(j, "steps_done", json_integer(done));
    json_object_set_new(j, "steps", json_integer(a.o.steps));
    json_object_set_new(j, "parameters", json_integer((json_int_t)m->n_params));
    json_object_set_new(j, "last_loss", num(last_loss));
    json_object_set_new(j, "heldout_accuracy", have_eval ? num(ev.acc) : json_null());
    json_object_set_new(j, "heldout_token_accuracy", have_eval ? num(ev.tok_acc) : json_null());
    json_object_set_new(j, "heldout_loss", have_eval ? num(ev.loss) : json_null());
    json_t *tasks = json_object();
    for (int k = 0; k < JQ_RECALL_COUNT_ && have_eval; k++)
        if (!isnan(ev.task_acc[k]))
            json_object_set_new(tasks, jq_recall_task_name(k), num(ev.task_acc[k]));
    json_object_set_new(j, "heldout_task_accuracy", tasks);
    json_object_set_new(j, "wall_seconds", num(wall));
    json_object_set_new(j, "tokens_per_second", num((double)positions / wall));
    json_object_set_new(j, "checkpoint", json_string(ckpt));
    if (finished) {
        struct stat stt;
        json_object_set_new(j, "model", json_string(a.out));
        if (stat(a.out, &stt) == 0)
            json_object_set_new(j, "model_bytes", json_integer(stt.st_size));
    }
    json_dumpf(j, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
    json_decref(j);

    jq_pt_trainer_free(t);
    jq_thread_pool_free(pool);
    jq_pt_model_free(m);
    free(ckpt);
    free(config);
    return finished ? JQ_EXIT_OK : 130;
}
