/* cmd_train.c — `judgeq train`: learn Judge Q soft tokens for a model.
 *
 * Reads the flags, prepares the examples (engine/train_data.c), then runs
 * the training loop (engine/train.c) with a progress line on stderr and a
 * JSON summary on stdout. Ctrl-C (or SIGTERM) only sets a flag: the loop
 * finishes its step, writes the checkpoint and returns, and the command
 * exits 130 with the summary of what was done; --resume continues.
 */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "kernels.h"
#include "model.h"
#include "soft_tokens.h"
#include "thread_pool.h"
#include "train.h"

static const jq_cmd_info train_info = {
    "train",
    "usage: judgeq train -m MODEL -o SOFT.gguf (--data FILE | --self-generate N)\n"
    "                    [options]\n"
    "\n"
    "Trains Judge Q soft tokens for MODEL (which stays frozen): n input\n"
    "embeddings whose attention over a prompt learns to match the attention\n"
    "the model's own response pays to it. Writes SOFT.gguf (for run --evict\n"
    "judgeq --soft) and its optimiser state SOFT.gguf.adam; progress goes to\n"
    "stderr and a JSON summary to stdout. Ctrl-C saves a checkpoint and exits\n"
    "(status 130); --resume continues it exactly.\n"
    "\n"
    "data:\n"
    "  -m, --model FILE        model file (GGUF)\n"
    "  -o, --output FILE       soft tokens to write (checkpoints too)\n"
    "      --data FILE         JSONL: {\"prompt\": TEXT, \"response\": TEXT}\n"
    "      --self-generate N   N prompts sampled from the model (from BOS,\n"
    "                          temperature 1, seeded)\n"
    "      --prompt-len N      self-generated prompt tokens (default 256)\n"
    "      --response-len N    greedy response tokens (default 64)\n"
    "      --use-dataset-responses  keep the data's responses (default: the\n"
    "                          model's own greedy ones)\n"
    "      --skip-bad-lines    skip malformed data lines (default: error)\n"
    "      --no-bos            do not add BOS to data prompts\n"
    "      --cache-dir DIR     targets cache (default OUTPUT.cache)\n"
    "optimisation:\n"
    "      --n N               soft tokens (default 32; --init's count)\n"
    "      --init FILE         start from these soft tokens (soft-init)\n"
    "      --lr X              Adam learning rate (default 5e-3)\n"
    "      --steps N           optimiser steps in total\n"
    "      --epochs N          or passes over the training examples (default 1)\n"
    "      --batch B           examples per step (default 16)\n"
    "      --seed S            seed of init, prompts, split, order (default 1)\n"
    "      --loss-scale X      loss multiplier (default: the prompt length)\n"
    "      --resume            continue the checkpoint OUTPUT exactly\n"
    "evaluation and checkpoints:\n"
    "      --eval-frac F       held-out share of the examples (default 0.1)\n"
    "      --eval-every K      held-out evaluation every K steps (default 50;\n"
    "                          0 = only at the start and the end)\n"
    "      --budget B          hit-rate budget per layer and KV head (128)\n"
    "      --window W          judgeq/snapkv window (default 32)\n"
    "      --save-every K      checkpoint every K steps (default 100)\n"
    "      --log-every K       progress lines when stderr is not a terminal\n"
    "                          (default 10)\n"
    "      --threads N         compute threads (default: all CPUs available)\n"
    "      --kv-mem MB         prompt K/V kept in memory (default 1024)\n"
    "  -h, --help              this help\n",
};

enum {
    OPT_DATA = 256, OPT_SELF, OPT_PROMPT_LEN, OPT_RESPONSE_LEN,
    OPT_DATASET_RESP, OPT_SKIP_BAD, OPT_NO_BOS, OPT_CACHE_DIR, OPT_N,
    OPT_INIT, OPT_LR, OPT_STEPS, OPT_EPOCHS, OPT_BATCH, OPT_SEED,
    OPT_LOSS_SCALE, OPT_RESUME, OPT_EVAL_FRAC, OPT_EVAL_EVERY, OPT_BUDGET,
    OPT_WINDOW, OPT_SAVE_EVERY, OPT_LOG_EVERY, OPT_THREADS, OPT_KV_MEM,
};

typedef struct {
    const char *model, *out, *data, *init, *cache_dir;
    int32_t self_generate, prompt_len, response_len, n, batch, eval_every;
    int32_t save_every, log_every, threads, budget, window;
    int64_t steps, epochs;
    bool n_set, dataset_resp, skip_bad, no_bos, resume;
    float lr, loss_scale;
    double eval_frac;
    uint64_t seed;
    size_t kv_mem;
} train_opts;

static void parse(int argc, char **argv, train_opts *o)
{
    const jq_cmd_info *I = &train_info;
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},
        {"output", required_argument, 0, 'o'},
        {"data", required_argument, 0, OPT_DATA},
        {"self-generate", required_argument, 0, OPT_SELF},
        {"prompt-len", required_argument, 0, OPT_PROMPT_LEN},
        {"response-len", required_argument, 0, OPT_RESPONSE_LEN},
        {"use-dataset-responses", no_argument, 0, OPT_DATASET_RESP},
        {"skip-bad-lines", no_argument, 0, OPT_SKIP_BAD},
        {"no-bos", no_argument, 0, OPT_NO_BOS},
        {"cache-dir", required_argument, 0, OPT_CACHE_DIR},
        {"n", required_argument, 0, OPT_N},
        {"init", required_argument, 0, OPT_INIT},
        {"lr", required_argument, 0, OPT_LR},
        {"steps", required_argument, 0, OPT_STEPS},
        {"epochs", required_argument, 0, OPT_EPOCHS},
        {"batch", required_argument, 0, OPT_BATCH},
        {"seed", required_argument, 0, OPT_SEED},
        {"loss-scale", required_argument, 0, OPT_LOSS_SCALE},
        {"resume", no_argument, 0, OPT_RESUME},
        {"eval-frac", required_argument, 0, OPT_EVAL_FRAC},
        {"eval-every", required_argument, 0, OPT_EVAL_EVERY},
        {"budget", required_argument, 0, OPT_BUDGET},
        {"window", required_argument, 0, OPT_WINDOW},
        {"save-every", required_argument, 0, OPT_SAVE_EVERY},
        {"log-every", required_argument, 0, OPT_LOG_EVERY},
        {"threads", required_argument, 0, OPT_THREADS},
        {"kv-mem", required_argument, 0, OPT_KV_MEM},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    *o = (train_opts){
        .prompt_len = 256, .response_len = 64, .n = 32, .batch = 16,
        .eval_every = 50, .save_every = 100, .log_every = 10,
        .threads = jq_cli_default_threads(), .budget = 128, .window = 32,
        .lr = 5e-3f, .eval_frac = 0.1, .seed = 1, .kv_mem = 1024u << 20,
    };
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":m:o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'o': o->out = optarg; break;
        case OPT_DATA: o->data = optarg; break;
        case OPT_SELF:
            o->self_generate = (int32_t)jq_cli_int(I, "--self-generate",
                                                   optarg, 1, 1 << 24);
            break;
        case OPT_PROMPT_LEN:
            o->prompt_len = (int32_t)jq_cli_int(I, "--prompt-len", optarg, 2,
                                                1 << 24);
            break;
        case OPT_RESPONSE_LEN:
            o->response_len = (int32_t)jq_cli_int(I, "--response-len", optarg,
                                                  1, 1 << 24);
            break;
        case OPT_DATASET_RESP: o->dataset_resp = true; break;
        case OPT_SKIP_BAD: o->skip_bad = true; break;
        case OPT_NO_BOS: o->no_bos = true; break;
        case OPT_CACHE_DIR: o->cache_dir = optarg; break;
        case OPT_N:
            o->n = (int32_t)jq_cli_int(I, "--n", optarg, 1, JQ_SOFT_MAX_TOKENS);
            o->n_set = true;
            break;
        case OPT_INIT: o->init = optarg; break;
        case OPT_LR:
            o->lr = (float)jq_cli_float(I, "--lr", optarg, 1e-12, 1e3);
            break;
        case OPT_STEPS:
            o->steps = jq_cli_int(I, "--steps", optarg, 1, INT64_MAX / 1024);
            break;
        case OPT_EPOCHS:
            o->epochs = jq_cli_int(I, "--epochs", optarg, 1, 1 << 30);
            break;
        case OPT_BATCH:
            o->batch = (int32_t)jq_cli_int(I, "--batch", optarg, 1, 1 << 16);
            break;
        case OPT_SEED: o->seed = jq_cli_u64(I, "--seed", optarg); break;
        case OPT_LOSS_SCALE:
            o->loss_scale = (float)jq_cli_float(I, "--loss-scale", optarg,
                                                1e-12, 1e12);
            break;
        case OPT_RESUME: o->resume = true; break;
        case OPT_EVAL_FRAC:
            o->eval_frac = jq_cli_float(I, "--eval-frac", optarg, 0, 0.9);
            break;
        case OPT_EVAL_EVERY:
            o->eval_every = (int32_t)jq_cli_int(I, "--eval-every", optarg, 0,
                                                INT32_MAX);
            break;
        case OPT_BUDGET:
            o->budget = (int32_t)jq_cli_int(I, "--budget", optarg, 1, 1 << 24);
            break;
        case OPT_WINDOW:
            o->window = (int32_t)jq_cli_int(I, "--window", optarg, 0, 1 << 24);
            break;
        case OPT_SAVE_EVERY:
            o->save_every = (int32_t)jq_cli_int(I, "--save-every", optarg, 0,
                                                INT32_MAX);
            break;
        case OPT_LOG_EVERY:
            o->log_every = (int32_t)jq_cli_int(I, "--log-every", optarg, 1,
                                               INT32_MAX);
            break;
        case OPT_THREADS:
            o->threads = (int32_t)jq_cli_int(I, "--threads", optarg, 1, 1024);
            break;
        case OPT_KV_MEM:
            o->kv_mem = (size_t)jq_cli_int(I, "--kv-mem", optarg, 0,
                                           1ll << 30) << 20;
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
    if (!o->out)
        jq_cli_usage_error(I, "an output file is required (-o SOFT.gguf)");
    if (!o->data == !o->self_generate)
        jq_cli_usage_error(I, "give the training prompts with exactly one of "
                              "--data FILE and --self-generate N");
    if (o->steps && o->epochs)
        jq_cli_usage_error(I, "give --steps or --epochs, not both");
    if (o->resume && o->init)
        jq_cli_usage_error(I, "--resume continues OUTPUT; --init is not used "
                              "with it");
    if (o->dataset_resp && !o->data)
        jq_cli_usage_error(I, "--use-dataset-responses needs --data");
    if (o->window >= o->budget)
        jq_cli_usage_error(I, "--window %d must be smaller than --budget %d",
                           o->window, o->budget);
}

/* ------------------------------------------------------------ progress */

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1; /* SA_RESETHAND: a second Ctrl-C kills as usual */
}

typedef struct {
    bool tty;
    int32_t log_every;
    bool line_open; /* a \r line is on screen */
} progress_state;

static void fmt_duration(char *buf, size_t n, double s)
{
    if (!(s >= 0) || s > 1e8)
        snprintf(buf, n, "?");
    else if (s < 60)
        snprintf(buf, n, "%.0fs", s);
    else if (s < 3600)
        snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else
        snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

static void on_progress(void *ud, const jq_train_progress *p)
{
    progress_state *st = ud;
    char line[256], eta[32];
    fmt_duration(eta, sizeof eta, p->eta_s);
    int len = snprintf(line, sizeof line, "step %lld/%lld", (long long)p->step,
                       (long long)p->total);
    if (!isnan(p->loss))
        len += snprintf(line + len, sizeof line - (size_t)len, "  loss %.6g",
                        p->loss);
    if (p->eval && !isnan(p->eval_hit))
        len += snprintf(line + len, sizeof line - (size_t)len,
                        "  held-out loss %.6g hit %.4f", p->eval_loss,
                        p->eval_hit);
    if (p->examples_per_s > 0)
        snprintf(line + len, sizeof line - (size_t)len,
                 "  %.3g ex/s  ETA %s", p->examples_per_s, eta);
    if (st->tty) {
        /* one updating line; evaluations stay on screen */
        fprintf(stderr, "\r%s\033[K", line);
        if (p->eval && p->step > 0 && p->step < p->total)
            fputc('\n', stderr);
        st->line_open = true;
    } else if (p->eval || p->step == p->total ||
               p->step % st->log_every == 0) {
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
}

static void on_log(void *ud, const char *msg)
{
    progress_state *st = ud;
    if (st->line_open) {
        fputc('\n', stderr);
        st->line_open = false;
    }
    fprintf(stderr, "judgeq train: %s\n", msg);
}

static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

/* -------------------------------------------------------------- main */

/* "next to the output": OUTPUT.cache */
static char *default_cache_dir(const char *out)
{
    size_t n = strlen(out) + 7;
    char *d = malloc(n);
    if (d)
        snprintf(d, n, "%s.cache", out);
    return d;
}

int jq_cmd_train(int argc, char **argv)
{
    const jq_cmd_info *I = &train_info;
    train_opts o;
    parse(argc, argv, &o);

    jq_model *m = jq_cli_load_model(I, o.model);
    char err[1024];
    /* the soft-token count decides how much context a prompt may use */
    const char *soft_src = o.resume ? o.out : o.init;
    jq_soft_tokens *soft = NULL;
    if (soft_src) {
        soft = jq_soft_tokens_load(soft_src, m, err, sizeof err);
        if (!soft)
            jq_cli_fail(I, "%s%s", o.resume ? "--resume: " : "", err);
        if (o.n_set && o.n != soft->n)
            jq_cli_usage_error(I, "--n %d differs from the %d soft tokens of "
                               "'%s'", o.n, soft->n, soft_src);
        o.n = soft->n;
    }

    struct sigaction sa = {.sa_handler = on_signal,
                           .sa_flags = SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    progress_state ps = {.tty = isatty(STDERR_FILENO) == 1,
                         .log_every = o.log_every};
    jq_pool *pool = jq_thread_pool_new(o.threads);
    if (!pool)
        jq_cli_fail(I, "cannot start %d threads", o.threads);
    char *cache_dir = o.cache_dir ? strdup(o.cache_dir)
                                  : default_cache_dir(o.out);
    if (!cache_dir)
        jq_cli_fail(I, "out of memory");

    jq_train_data_opts dopt = {
        .data_path = o.data,
        .self_generate = o.self_generate,
        .prompt_len = o.prompt_len,
        .response_len = o.response_len,
        .use_dataset_responses = o.dataset_resp,
        .skip_bad_lines = o.skip_bad,
        .no_bos = o.no_bos,
        .seed = o.seed,
        .cache_dir = cache_dir,
        .n_soft = o.n,
        .n_ctx = m->hp.n_ctx_train,
        .stop = &g_stop,
        .log = on_log,
        .log_ud = &ps,
    };
    double t0 = jq_now();
    jq_train_set set;
    int drc = jq_train_data_load(m, pool, &dopt, &set, err, sizeof err);
    if (drc < 0)
        jq_cli_fail(I, "%s", err);
    if (drc > 0) {
        fprintf(stderr, "judgeq train: interrupted while preparing the data "
                        "(finished examples are cached)\n");
        return 130;
    }
    double prep_s = jq_now() - t0;
    fprintf(stderr, "judgeq train: %d examples (%d targets from the cache, "
            "%d computed) in %.1fs; prompts up to %d tokens\n",
            set.n, set.n_cached, set.n - set.n_cached, prep_s, set.max_L);

    jq_train_opts to = {
        .lr = o.lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
        .batch = o.batch, .seed = o.seed, .loss_scale = o.loss_scale,
        .eval_frac = o.eval_frac, .eval_every = o.eval_every,
        .save_every = o.save_every,
        .judgeq = jq_evict_spec_default(JQ_EVICT_JUDGEQ, o.budget),
        .snapkv = jq_evict_spec_default(JQ_EVICT_SNAPKV, o.budget),
        .streaming = jq_evict_spec_default(JQ_EVICT_STREAMING, o.budget),
        .out_path = o.out, .kv_mem_bytes = o.kv_mem, .stop = &g_stop,
        .progress = on_progress, .progress_ud = &ps,
    };
    to.judgeq.window = to.snapkv.window = o.window;
    jq_evict_spec *specs[] = {&to.judgeq, &to.snapkv, &to.streaming};
    for (size_t i = 0; i < 3; i++)
        if (jq_evict_spec_check(specs[i], err, sizeof err) != 0)
            jq_cli_usage_error(I, "%s", err);
    int32_t n_eval = (int32_t)lround(o.eval_frac * set.n);
    if (o.eval_frac > 0 && n_eval == 0 && set.n >= 2)
        n_eval = 1;
    int32_t n_train = set.n - n_eval;
    if (n_train < 1)
        jq_cli_fail(I, "%d examples leave none to train on after the "
                    "held-out share (--eval-frac %g)", set.n, o.eval_frac);
    int64_t per_epoch = (n_train + o.batch - 1) / o.batch;
    to.steps = o.steps ? o.steps : (o.epochs ? o.epochs : 1) * per_epoch;

    jq_adam_state adam = {0};
    if (o.resume) {
        jq_soft_tokens_free(soft);
        if (jq_train_resume_load(o.out, m, &to, &set, &soft, &adam, err,
                                 sizeof err) != 0)
            jq_cli_fail(I, "%s", err);
        fprintf(stderr, "judgeq train: resuming '%s' at step %llu of %lld\n",
                o.out, (unsigned long long)adam.step, (long long)to.steps);
    } else if (!soft) {
        soft = jq_soft_tokens_init(m, o.n, o.seed, err, sizeof err);
        if (!soft)
            jq_cli_fail(I, "%s", err);
    }

    jq_train_summary s;
    if (jq_train(m, pool, &set, soft, o.resume ? &adam : NULL, &to, &s, err,
                 sizeof err) != 0) {
        if (ps.line_open)
            fputc('\n', stderr);
        jq_cli_fail(I, "%s", err);
    }
    if (ps.line_open)
        fputc('\n', stderr);
    if (s.interrupted)
        fprintf(stderr, "judgeq train: interrupted; checkpoint at step %lld "
                "saved to '%s' (continue with --resume)\n",
                (long long)s.steps_done, o.out);

    json_t *root = json_object();
    json_object_set_new(root, "output", json_string(o.out));
    json_object_set_new(root, "n_soft", json_integer(soft->n));
    json_object_set_new(root, "examples_train", json_integer(s.n_train));
    json_object_set_new(root, "examples_eval", json_integer(s.n_eval));
    json_object_set_new(root, "targets_cached", json_integer(set.n_cached));
    json_object_set_new(root, "lines_skipped", json_integer(set.n_bad));
    json_object_set_new(root, "max_prompt_tokens", json_integer(set.max_L));
    json_object_set_new(root, "start_step", json_integer(s.start_step));
    json_object_set_new(root, "steps", json_integer(s.steps_done));
    json_object_set_new(root, "batch", json_integer(o.batch));
    json_object_set_new(root, "lr", json_real(o.lr));
    json_object_set_new(root, "loss_scale",
                        o.loss_scale > 0 ? json_real(o.loss_scale)
                                         : json_string("prompt length"));
    json_t *tl = json_object();
    json_object_set_new(tl, "first", num(s.train_loss_first));
    json_object_set_new(tl, "last", num(s.train_loss_last));
    json_object_set_new(root, "train_loss", tl);
    json_t *el = json_object();
    json_object_set_new(el, "start", num(s.eval_loss_start));
    json_object_set_new(el, "final", num(s.eval_loss_final));
    json_object_set_new(root, "eval_loss", el);
    json_t *hit = json_object(), *mass = json_object();
    json_object_set_new(hit, "judgeq_start", num(s.hit_start));
    json_object_set_new(hit, "judgeq_final", num(s.hit_final));
    json_object_set_new(hit, "snapkv", num(s.hit_snapkv));
    json_object_set_new(hit, "streaming", num(s.hit_streaming));
    json_object_set_new(mass, "judgeq_start", num(s.mass_start));
    json_object_set_new(mass, "judgeq_final", num(s.mass_final));
    json_object_set_new(mass, "snapkv", num(s.mass_snapkv));
    json_object_set_new(mass, "streaming", num(s.mass_streaming));
    json_object_set_new(root, "hit_rate", hit);
    json_object_set_new(root, "mass_recall", mass);
    json_object_set_new(root, "budget", json_integer(o.budget));
    json_object_set_new(root, "window", json_integer(o.window));
    json_object_set_new(root, "examples_per_s", num(s.examples_per_s));
    json_object_set_new(root, "train_seconds", json_real(s.train_seconds));
    json_object_set_new(root, "prepare_seconds", json_real(prep_s));
    json_object_set_new(root, "threads", json_integer(o.threads));
    json_object_set_new(root, "kv_cached_bytes",
                        json_integer((json_int_t)s.kv_cached_bytes));
    json_object_set_new(root, "interrupted", json_boolean(s.interrupted));
    char *js = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(6));
    if (js)
        puts(js);
    free(js);
    json_decref(root);

    jq_adam_state_free(&adam);
    jq_soft_tokens_free(soft);
    jq_train_set_free(&set);
    free(cache_dir);
    jq_thread_pool_free(pool);
    jq_model_free(m);
    return s.interrupted ? 130 : JQ_EXIT_OK;
}
