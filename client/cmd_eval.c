/* cmd_eval.c — `judgeq eval`: every eviction policy at every budget
 * against the full cache, on a prompt set, the way KV-compression papers
 * report it (score vs budget per method).
 *
 * Per prompt: the reference (greedy continuation with the full cache, its
 * logits and its attention over the prompt: engine/metrics.h), then per
 * (policy, budget) one prefill with eviction measured against it. Results
 * are aggregated over prompts (means and 95 % t-intervals) into
 * results.csv, with the raw values in per_prompt.csv, the provenance in
 * run.json and a plot by gnuplot in results.png.
 *
 * Everything that can be wrong with the input (flags, policies, budgets,
 * the soft-token file, prompt lengths, the output directory) is checked
 * before the first prompt is evaluated.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_evict.h"
#include "kernels.h"
#include "metrics.h"
#include "model.h"
#include "prefill.h"
#include "selfgen.h"
#include "sha256.h"
#include "soft_tokens.h"
#include "recall_lang.h"
#include "tasks.h"
#include "thread_pool.h"

extern char **environ;

static const jq_cmd_info eval_info = {
    "eval",
    "usage: judgeq eval -m MODEL --policies LIST --budgets LIST --out DIR\n"
    "                   (--prompts FILE.jsonl | --self-generate N |\n"
    "                    --task T --length L --samples N) [options]\n"
    "\n"
    "Compares eviction policies across budgets against the full cache. Per\n"
    "prompt the full cache's greedy continuation of -n tokens is the\n"
    "reference; per (policy, budget) it measures the critical-KV hit rate\n"
    "and attention-mass recall of the kept set (vs the oracle set of the\n"
    "reference tokens' attention), greedy agreement (the fraction of the n\n"
    "tokens equal to the reference; first_diff = the first index that\n"
    "differs, n when none), the mean KL(full || evicted) in nats of the\n"
    "next-token distributions along the reference (teacher-forced, the n\n"
    "positions after the prompt), the K+V bytes of the kept prompt entries\n"
    "and the prefill + scoring + eviction time.\n"
    "\n"
    "Writes DIR/results.csv (means over prompts, *_ci = half-width of the\n"
    "95 % confidence interval t(n-1)*sd/sqrt(n), nan for one prompt),\n"
    "DIR/per_prompt.csv, DIR/run.json (sha256 of the model and soft file,\n"
    "every option, version, date), DIR/results.gp and DIR/results.png (by\n"
    "gnuplot, when installed). A table on stdout, progress on stderr.\n"
    "\n"
    "  -m, --model FILE       model file (GGUF)\n"
    "      --policies LIST    comma-separated: full, streaming, h2o, snapkv,\n"
    "                         pyramidkv, adakv, judgeq, oracle\n"
    "      --budgets LIST     comma-separated budgets (prompt KV entries per\n"
    "                         layer and KV head), e.g. 16,32,64,128\n"
    "      --out DIR          output directory (created if missing)\n"
    "      --prompts FILE     JSONL, one {\"prompt\": \"...\"} per line\n"
    "      --self-generate N  N prompts sampled from the model (BOS, then\n"
    "                         temperature 1), seeded; the same derivation as\n"
    "                         `judgeq train`, held out when --seed differs\n"
    "      --prompt-len L     self-generated prompt tokens (default 256)\n"
    "      --task T           RULER-style synthetic task: niah, multikey,\n"
    "                         vt or cwe (for instruction models), or one in\n"
    "                         the recall language (judgeq's own recall model;\n"
    "                         see `judgeq recall-data`): recall-niah,\n"
    "                         recall-multikey, recall-mqar, recall-vt,\n"
    "                         recall-cwe; adds accuracy (string match x 100 of\n"
    "                         the output up to end-of-sequence)\n"
    "      --length L         task prompt tokens (the longest that fits);\n"
    "                         recall-*: prompt + answer + EOS, as in training\n"
    "      --samples N        task prompts (default 10)\n"
    "      --question-first   task: the question before the context\n"
    "      --difficulty D     recall-*: needles, pairs, hops or words (default:\n"
    "                         the task's; see `judgeq recall-data --help`)\n"
    "  -n, --n-predict N      reference tokens (default 32; 64 with --task;\n"
    "                         recall-*: the longest answer + EOS)\n"
    "      --seed S           prompts' seed (default 1000; `judgeq train`\n"
    "                         uses 1, so default prompts are held out)\n"
    "      --threads N        compute threads (default: all CPUs available)\n"
    "      --no-bos           do not add BOS to --prompts / --task prompts\n"
    "      --window W         recent prompt tokens always kept (default:\n"
    "                         min(32, B/2) at budget B, so every budget\n"
    "                         leaves room to select)\n"
    "      --sink S           streaming: first tokens kept (default 4)\n"
    "      --pool-kernel K    max-pool width over positions, odd; 1 = off (7)\n"
    "      --gqa-reduce R     mean or max over a KV head's query heads (mean)\n"
    "      --soft FILE        Judge Q soft tokens (required with judgeq)\n"
    "      --kv-type T        KV cache element type: f32 or f16 (default f32)\n"
    "  -h, --help             this help\n",
};

enum {
    OPT_POLICIES = 256,
    OPT_BUDGETS,
    OPT_OUT,
    OPT_PROMPTS,
    OPT_SELF,
    OPT_PROMPT_LEN,
    OPT_TASK,
    OPT_LENGTH,
    OPT_SAMPLES,
    OPT_QFIRST,
    OPT_SEED,
    OPT_THREADS,
    OPT_NO_BOS,
    OPT_DIFFICULTY,
};

#define MAX_BUDGETS 64
#define DEFAULT_SEED 1000

typedef struct {
    const char *model, *out_dir, *prompts_path, *policies_arg, *budgets_arg;
    int32_t self_generate, prompt_len, n_predict, threads, samples;
    int task; /* -1: none; a jq_task_kind, or with recall a jq_recall_task */
    bool recall;
    int32_t difficulty; /* recall: 0 = the task's default */
    int64_t task_length;
    bool n_set, question_first, no_bos, prompt_len_set;
    uint64_t seed;
    jq_cli_evict evict;
    jq_evict_policy policies[JQ_EVICT_COUNT_];
    int n_policies;
    int32_t budgets[MAX_BUDGETS];
    int n_budgets;
} eval_opts;

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void parse_budgets(const jq_cmd_info *I, eval_opts *o)
{
    char *copy = strdup(o->budgets_arg), *save = NULL;
    if (!copy)
        jq_cli_fail(I, "out of memory");
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (o->n_budgets == MAX_BUDGETS)
            jq_cli_usage_error(I, "--budgets lists more than %d budgets",
                               MAX_BUDGETS);
        int32_t b = (int32_t)jq_cli_int(I, "--budgets", t, 1, 1 << 24);
        for (int i = 0; i < o->n_budgets; i++)
            if (o->budgets[i] == b)
                jq_cli_usage_error(I, "budget %d is listed twice", b);
        o->budgets[o->n_budgets++] = b;
    }
    free(copy);
    if (o->n_budgets == 0)
        jq_cli_usage_error(I, "--budgets is empty");
    /* ascending: rows and plot lines run along the budget axis */
    qsort(o->budgets, (size_t)o->n_budgets, sizeof(int32_t), cmp_i32);
}

/* The spec of a policy at a budget. Without --window the window is
 * min(default, B/2): the 32 of the papers was chosen for budgets of
 * hundreds to thousands, and at B <= 32 it would leave nothing to select
 * (or fail the window < budget rule). */
static jq_evict_spec spec_at(const eval_opts *o, jq_evict_policy p,
                             int32_t budget)
{
    jq_cli_evict e = o->evict;
    e.budget = budget;
    jq_evict_spec s = jq_cli_evict_spec_for(&e, p);
    if (!o->evict.window_set && s.window > budget / 2)
        s.window = budget / 2;
    return s;
}

static bool has_policy(const eval_opts *o, jq_evict_policy p)
{
    for (int i = 0; i < o->n_policies; i++)
        if (o->policies[i] == p)
            return true;
    return false;
}

#define RECALL_PREFIX "recall-"

static jq_recall_opts recall_opts(const eval_opts *o)
{
    return (jq_recall_opts){.task = (jq_recall_task)o->task,
                            .length = (int32_t)o->task_length,
                            .difficulty = o->difficulty,
                            .question_first = o->question_first,
                            .seed = o->seed};
}

/* A recall task's difficulty and length are known to fit before the
 * model loads (the minimum is the same for every sample). Without -n the
 * reference is as long as the longest answer + EOS, so prompt + answer
 * stay within --length, the context the model was trained at. */
static void check_recall_opts(const jq_cmd_info *I, eval_opts *o)
{
    jq_recall_opts r = recall_opts(o);
    char err[256];
    int32_t min = jq_recall_min_length(&r, err, sizeof err);
    if (min < 0)
        jq_cli_usage_error(I, "--difficulty: %s", err);
    if (min > o->task_length)
        jq_cli_usage_error(I, "--task %s%s needs --length of at least %d",
                           RECALL_PREFIX, jq_recall_task_name(r.task), (int)min);
    if (o->n_set)
        return;
    o->n_predict = 1;
    for (int32_t i = 0; i < o->samples; i++) {
        jq_recall_example e;
        if (jq_recall_generate(&r, (uint64_t)i, &e, err, sizeof err) != 0)
            jq_cli_fail(I, "%s", err);
        if (e.n_tokens - e.n_prompt > o->n_predict)
            o->n_predict = e.n_tokens - e.n_prompt;
        jq_recall_example_free(&e);
    }
}

/* "niah", "recall-niah", ... */
static const char *task_label(const eval_opts *o, char *buf, size_t n)
{
    if (o->recall)
        snprintf(buf, n, "%s%s", RECALL_PREFIX,
                 jq_recall_task_name((jq_recall_task)o->task));
    else
        snprintf(buf, n, "%s", jq_task_name((jq_task_kind)o->task));
    return buf;
}

static void parse(int argc, char **argv, eval_opts *o)
{
    const jq_cmd_info *I = &eval_info;
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},
        {"n-predict", required_argument, 0, 'n'},
        {"policies", required_argument, 0, OPT_POLICIES},
        {"budgets", required_argument, 0, OPT_BUDGETS},
        {"out", required_argument, 0, OPT_OUT},
        {"prompts", required_argument, 0, OPT_PROMPTS},
        {"self-generate", required_argument, 0, OPT_SELF},
        {"prompt-len", required_argument, 0, OPT_PROMPT_LEN},
        {"task", required_argument, 0, OPT_TASK},
        {"length", required_argument, 0, OPT_LENGTH},
        {"samples", required_argument, 0, OPT_SAMPLES},
        {"question-first", no_argument, 0, OPT_QFIRST},
        {"seed", required_argument, 0, OPT_SEED},
        {"threads", required_argument, 0, OPT_THREADS},
        {"no-bos", no_argument, 0, OPT_NO_BOS},
        {"difficulty", required_argument, 0, OPT_DIFFICULTY},
        {"help", no_argument, 0, 'h'},
        JQ_CLI_EVICT_LONGOPTS,
        {0, 0, 0, 0},
    };
    *o = (eval_opts){.n_predict = 32, .threads = jq_cli_default_threads(),
                     .prompt_len = 256, .samples = 10, .task = -1,
                     .seed = DEFAULT_SEED};
    jq_cli_evict_init(&o->evict);
    bool length_set = false, samples_set = false;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":m:n:h", longopts, NULL)) != -1) {
        if (c == JQ_OPT_EVICT || c == JQ_OPT_BUDGET)
            jq_cli_usage_error(I, "eval compares --policies at --budgets; "
                                  "%s is not used here", argv[optind - 1]);
        if (jq_cli_evict_opt(I, c, optarg, &o->evict))
            continue;
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'n':
            o->n_predict = (int32_t)jq_cli_int(I, "-n", optarg, 1, 1 << 16);
            o->n_set = true;
            break;
        case OPT_POLICIES: o->policies_arg = optarg; break;
        case OPT_BUDGETS: o->budgets_arg = optarg; break;
        case OPT_OUT: o->out_dir = optarg; break;
        case OPT_PROMPTS: o->prompts_path = optarg; break;
        case OPT_SELF:
            o->self_generate =
                (int32_t)jq_cli_int(I, "--self-generate", optarg, 1, 1 << 20);
            break;
        case OPT_PROMPT_LEN:
            o->prompt_len =
                (int32_t)jq_cli_int(I, "--prompt-len", optarg, 2, 1 << 24);
            o->prompt_len_set = true;
            break;
        case OPT_TASK:
            o->recall = !strncmp(optarg, RECALL_PREFIX, strlen(RECALL_PREFIX));
            o->task = o->recall ? jq_recall_task_from_name(optarg + strlen(RECALL_PREFIX))
                                : jq_task_from_name(optarg);
            if (o->task < 0)
                jq_cli_usage_error(I, "unknown task '%s' (niah, multikey, vt, "
                                      "cwe, recall-niah, recall-multikey, "
                                      "recall-mqar, recall-vt, recall-cwe)",
                                   optarg);
            break;
        case OPT_DIFFICULTY:
            o->difficulty = (int32_t)jq_cli_int(I, "--difficulty", optarg, 1, 1024);
            break;
        case OPT_LENGTH:
            o->task_length = jq_cli_int(I, "--length", optarg, 1, 1 << 22);
            length_set = true;
            break;
        case OPT_SAMPLES:
            o->samples = (int32_t)jq_cli_int(I, "--samples", optarg, 1, 1 << 20);
            samples_set = true;
            break;
        case OPT_QFIRST: o->question_first = true; break;
        case OPT_SEED: o->seed = jq_cli_u64(I, "--seed", optarg); break;
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
    if (!o->policies_arg)
        jq_cli_usage_error(I, "--policies LIST is required");
    if (!o->budgets_arg)
        jq_cli_usage_error(I, "--budgets LIST is required");
    if (!o->out_dir)
        jq_cli_usage_error(I, "--out DIR is required");
    int sources = !!o->prompts_path + (o->self_generate > 0) + (o->task >= 0);
    if (sources != 1)
        jq_cli_usage_error(I, "give the prompts with exactly one of --prompts "
                              "FILE, --self-generate N and --task T");
    if (o->prompt_len_set && o->self_generate == 0)
        jq_cli_usage_error(I, "--prompt-len is for --self-generate");
    if (o->task >= 0 && !length_set)
        jq_cli_usage_error(I, "--task needs --length L (prompt tokens)");
    if (o->task < 0 && (length_set || samples_set || o->question_first))
        jq_cli_usage_error(I, "--length, --samples and --question-first are "
                              "for --task");
    if (o->no_bos && o->self_generate > 0)
        jq_cli_usage_error(I, "--no-bos does not apply to self-generated "
                              "prompts (they start from BOS)");
    if (o->difficulty && !o->recall)
        jq_cli_usage_error(I, "--difficulty is for the recall-* tasks");
    if (o->recall)
        check_recall_opts(I, o);
    if (o->task >= 0 && !o->recall && !o->n_set)
        o->n_predict = 64; /* RULER's answers: 64 greedy tokens */
    o->n_policies = jq_cli_parse_policies(I, o->policies_arg, o->policies);
    parse_budgets(I, o);
    bool judgeq = has_policy(o, JQ_EVICT_JUDGEQ);
    if (judgeq && !o->evict.soft_path)
        jq_cli_usage_error(I, "policy judgeq needs --soft FILE (make one with "
                              "`judgeq soft-init` or `judgeq train`)");
    if (!judgeq && o->evict.soft_path)
        jq_cli_usage_error(I, "--soft is only used with policy judgeq");
    for (int i = 0; i < o->n_policies; i++)
        for (int b = 0; b < o->n_budgets; b++) {
            if (o->policies[i] == JQ_EVICT_FULL)
                continue;
            jq_evict_spec s = spec_at(o, o->policies[i], o->budgets[b]);
            char err[256];
            if (jq_evict_spec_check(&s, err, sizeof err) != 0)
                jq_cli_usage_error(I, "%s at budget %d: %s",
                                   jq_evict_policy_name(o->policies[i]),
                                   o->budgets[b], err);
        }
}

/* ---------------------------------------------------------------- prompts */

typedef struct {
    int32_t *ids;
    int32_t L;
    int64_t source;  /* JSONL line, self-generation or task sample index */
    char **answers;  /* --task */
    int32_t n_answers;
} eval_prompt;

typedef struct {
    eval_prompt *p;
    int32_t n;
} prompt_set;

static void prompt_set_free(prompt_set *s)
{
    for (int32_t i = 0; i < s->n; i++) {
        free(s->p[i].ids);
        for (int32_t a = 0; a < s->p[i].n_answers; a++)
            free(s->p[i].answers[a]);
        free(s->p[i].answers);
    }
    free(s->p);
}

static eval_prompt *prompt_add(const jq_cmd_info *I, prompt_set *s)
{
    eval_prompt *p = realloc(s->p, sizeof *p * ((size_t)s->n + 1));
    if (!p)
        jq_cli_fail(I, "out of memory");
    s->p = p;
    memset(&p[s->n], 0, sizeof *p);
    return &p[s->n++];
}

static void tokenize_into(const jq_cmd_info *I, const jq_model *m,
                          const char *text, bool no_bos, eval_prompt *p)
{
    size_t n;
    p->ids = jq_cli_tokenize(I, m, text, strlen(text), no_bos, &n);
    if (n == 0 || n > INT32_MAX)
        jq_cli_fail(I, "prompt %lld: %s after tokenization",
                    (long long)p->source, n ? "too long" : "empty");
    p->L = (int32_t)n;
}

static void load_jsonl(const jq_cmd_info *I, const eval_opts *o,
                       const jq_model *m, prompt_set *s)
{
    size_t len;
    char *text = jq_cli_read_file(I, o->prompts_path, &len);
    int64_t line = 0;
    for (char *cur = text, *next; cur && *cur; cur = next) {
        line++;
        char *nl = strchr(cur, '\n');
        next = nl ? nl + 1 : NULL;
        if (nl)
            *nl = '\0';
        if (strspn(cur, " \t\r") == strlen(cur))
            continue; /* blank lines separate nothing */
        json_error_t je;
        json_t *j = json_loads(cur, 0, &je);
        const char *prompt = j ? json_string_value(json_object_get(j, "prompt"))
                               : NULL;
        if (!j)
            jq_cli_fail(I, "%s:%lld: not JSON: %s", o->prompts_path,
                        (long long)line, je.text);
        if (!prompt)
            jq_cli_fail(I, "%s:%lld: no \"prompt\" string", o->prompts_path,
                        (long long)line);
        eval_prompt *p = prompt_add(I, s);
        p->source = line;
        tokenize_into(I, m, prompt, o->no_bos, p);
        json_decref(j);
    }
    free(text);
    if (s->n == 0)
        jq_cli_fail(I, "%s holds no prompts", o->prompts_path);
}

typedef struct {
    const jq_model *m;
    bool bos;
} count_ud;

static int64_t count_tokens(void *ud, const char *text)
{
    const count_ud *c = ud;
    int32_t *ids = NULL;
    size_t n = 0;
    if (jq_tokenize(c->m->vocab, text, strlen(text), c->bos, &ids, &n, NULL,
                    0) != 0)
        return -1;
    free(ids);
    return (int64_t)n;
}

/* Sample i of the task as the model reads it (tokenized by the model's
 * own tokenizer: for the recall model that gives the generator's ids,
 * tested in test_recall_lang), with its answers. */
static void make_task(const jq_cmd_info *I, const eval_opts *o,
                      const jq_model *m, int32_t i, eval_prompt *p)
{
    char err[512];
    p->source = i;
    if (o->recall) {
        jq_recall_opts ro = recall_opts(o);
        jq_recall_example e;
        if (jq_recall_generate(&ro, (uint64_t)i, &e, err, sizeof err) != 0)
            jq_cli_fail(I, "%s", err);
        tokenize_into(I, m, e.prompt, o->no_bos, p);
        /* the answers move to the prompt; the rest is freed */
        p->answers = e.answers;
        p->n_answers = e.n_answers;
        e.answers = NULL;
        e.n_answers = 0;
        jq_recall_example_free(&e);
        return;
    }
    jq_task_opts to = {.kind = (jq_task_kind)o->task,
                       .length = o->task_length,
                       .question_first = o->question_first,
                       .seed = o->seed};
    count_ud cu = {m, !o->no_bos && jq_vocab_add_bos(m->vocab)};
    jq_task_sample t;
    if (jq_task_generate(&to, (uint64_t)i, count_tokens, &cu, &t, err,
                         sizeof err) != 0)
        jq_cli_fail(I, "%s", err);
    tokenize_into(I, m, t.prompt, o->no_bos, p);
    p->answers = t.answers;
    p->n_answers = t.n_answers;
    t.answers = NULL;
    t.n_answers = 0;
    jq_task_sample_free(&t);
}

static void make_tasks(const jq_cmd_info *I, const eval_opts *o,
                       const jq_model *m, prompt_set *s)
{
    for (int32_t i = 0; i < o->samples; i++)
        make_task(I, o, m, i, prompt_add(I, s));
}

/* ------------------------------------------------------------- results */

typedef struct {
    jq_metrics_result r;
    double accuracy; /* --task: string match x 100 */
} cell;

static const char *gqa_name(jq_gqa_reduce g) { return g == JQ_GQA_MAX ? "max" : "mean"; }

/* A CSV number: nan spelled "nan" (pandas and gnuplot read it). */
static void csv_num(FILE *f, double v, const char *fmt)
{
    fputc(',', f);
    if (isnan(v))
        fputs("nan", f);
    else
        fprintf(f, fmt, v);
}

/* A CSV text field, quoted (RFC 4180) when it holds a comma, a quote or a
 * line break. */
static void csv_text(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static char *out_path(const jq_cmd_info *I, const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (!p)
        jq_cli_fail(I, "out of memory");
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static FILE *open_out(const jq_cmd_info *I, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        jq_cli_fail(I, "cannot write %s: %s", path, strerror(errno));
    return f;
}

static void close_out(const jq_cmd_info *I, FILE *f, const char *path)
{
    if (ferror(f) | (fclose(f) != 0))
        jq_cli_fail(I, "error writing %s", path);
}

/* mkdir -p */
static void make_dir(const jq_cmd_info *I, const char *dir)
{
    char *p = strdup(dir);
    if (!p)
        jq_cli_fail(I, "out of memory");
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST)
                jq_cli_fail(I, "cannot create %s: %s", p, strerror(errno));
            *s = c;
            if (!c)
                break;
        }
    }
    struct stat st;
    if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
        jq_cli_fail(I, "--out %s is not a directory", dir);
    free(p);
}

typedef struct {
    double mean, ci;
} stat2;

/* The aggregate of one (policy, budget) over prompts. */
typedef struct {
    stat2 acc, hit, mass, agree, kl;
    double first_diff, kv_bytes, prefill_ms;
} agg;

static agg aggregate(const cell *cells, int32_t n_prompts, size_t stride,
                     size_t offset)
{
    double *x[5];
    for (int k = 0; k < 5; k++)
        x[k] = malloc(sizeof(double) * (size_t)n_prompts);
    agg a = {0};
    for (int k = 0; k < 5; k++)
        if (!x[k]) {
            for (int j = 0; j < 5; j++)
                free(x[j]);
            a.hit.mean = NAN;
            return a;
        }
    for (int32_t i = 0; i < n_prompts; i++) {
        const cell *c = &cells[(size_t)i * stride + offset];
        x[0][i] = c->accuracy;
        x[1][i] = c->r.hit_rate;
        x[2][i] = c->r.mass_recall;
        x[3][i] = c->r.agreement;
        x[4][i] = c->r.kl;
        a.first_diff += c->r.first_diff;
        a.kv_bytes += (double)c->r.kv_bytes;
        a.prefill_ms += c->r.prefill_ms;
    }
    jq_mean_ci95(x[0], n_prompts, &a.acc.mean, &a.acc.ci);
    jq_mean_ci95(x[1], n_prompts, &a.hit.mean, &a.hit.ci);
    jq_mean_ci95(x[2], n_prompts, &a.mass.mean, &a.mass.ci);
    jq_mean_ci95(x[3], n_prompts, &a.agree.mean, &a.agree.ci);
    jq_mean_ci95(x[4], n_prompts, &a.kl.mean, &a.kl.ci);
    a.first_diff /= n_prompts;
    a.kv_bytes /= n_prompts;
    a.prefill_ms /= n_prompts;
    for (int k = 0; k < 5; k++)
        free(x[k]);
    return a;
}

static void write_results(const jq_cmd_info *I, const eval_opts *o,
                          const char *path, const agg *aggs, int32_t n_prompts,
                          bool task)
{
    FILE *f = open_out(I, path);
    fprintf(f, "policy,budget,prompts,%shit_rate,hit_rate_ci,mass_recall,"
               "mass_recall_ci,agreement,agreement_ci,first_diff,kl,kl_ci,"
               "kv_bytes,prefill_ms\n",
            task ? "accuracy,accuracy_ci," : "");
    for (int p = 0; p < o->n_policies; p++)
        for (int b = 0; b < o->n_budgets; b++) {
            const agg *a = &aggs[p * o->n_budgets + b];
            csv_text(f, jq_evict_policy_name(o->policies[p]));
            fprintf(f, ",%d,%d", o->budgets[b], n_prompts);
            if (task) {
                csv_num(f, a->acc.mean, "%.4f");
                csv_num(f, a->acc.ci, "%.4f");
            }
            csv_num(f, a->hit.mean, "%.6f");
            csv_num(f, a->hit.ci, "%.6f");
            csv_num(f, a->mass.mean, "%.6f");
            csv_num(f, a->mass.ci, "%.6f");
            csv_num(f, a->agree.mean, "%.6f");
            csv_num(f, a->agree.ci, "%.6f");
            csv_num(f, a->first_diff, "%.4f");
            csv_num(f, a->kl.mean, "%.6g");
            csv_num(f, a->kl.ci, "%.6g");
            csv_num(f, a->kv_bytes, "%.0f");
            csv_num(f, a->prefill_ms, "%.3f");
            fputc('\n', f);
        }
    close_out(I, f, path);
}

static void write_per_prompt(const jq_cmd_info *I, const eval_opts *o,
                             const char *path, const prompt_set *ps,
                             const cell *cells, bool task)
{
    FILE *f = open_out(I, path);
    fprintf(f, "prompt,source,tokens,policy,budget,%shit_rate,mass_recall,"
               "agreement,first_diff,kl,kv_bytes,prefill_ms\n",
            task ? "accuracy," : "");
    size_t stride = (size_t)o->n_policies * (size_t)o->n_budgets;
    for (int32_t i = 0; i < ps->n; i++)
        for (int p = 0; p < o->n_policies; p++)
            for (int b = 0; b < o->n_budgets; b++) {
                const cell *c = &cells[(size_t)i * stride +
                                       (size_t)p * (size_t)o->n_budgets +
                                       (size_t)b];
                fprintf(f, "%d,%lld,%d,", i, (long long)ps->p[i].source,
                        ps->p[i].L);
                csv_text(f, jq_evict_policy_name(o->policies[p]));
                fprintf(f, ",%d", o->budgets[b]);
                if (task)
                    csv_num(f, c->accuracy, "%.4f");
                csv_num(f, c->r.hit_rate, "%.6f");
                csv_num(f, c->r.mass_recall, "%.6f");
                csv_num(f, c->r.agreement, "%.6f");
                fprintf(f, ",%d", c->r.first_diff);
                csv_num(f, c->r.kl, "%.6g");
                fprintf(f, ",%llu", (unsigned long long)c->r.kv_bytes);
                csv_num(f, c->r.prefill_ms, "%.3f");
                fputc('\n', f);
            }
    close_out(I, f, path);
}

static void print_table(const eval_opts *o, const agg *aggs, bool task)
{
    printf("%-10s %6s %s%-17s %-17s %-17s %6s %-21s %10s %9s\n", "policy",
           "budget", task ? "accuracy         " : "", "hit_rate",
           "mass_recall", "agreement", "1stdif", "kl", "kv_bytes",
           "prefill");
    for (int p = 0; p < o->n_policies; p++)
        for (int b = 0; b < o->n_budgets; b++) {
            const agg *a = &aggs[p * o->n_budgets + b];
            printf("%-10s %6d ", jq_evict_policy_name(o->policies[p]),
                   o->budgets[b]);
            if (task)
                printf("%7.2f ± %-7.2f ", a->acc.mean, a->acc.ci);
            printf("%.3f ± %-9.3f %.3f ± %-9.3f %.3f ± %-9.3f %6.2f "
                   "%.3e ± %-9.2e %10.0f %7.2fms\n",
                   a->hit.mean, a->hit.ci, a->mass.mean, a->mass.ci,
                   a->agree.mean, a->agree.ci, a->first_diff, a->kl.mean,
                   a->kl.ci, a->kv_bytes, a->prefill_ms);
        }
    fflush(stdout);
}

/* ------------------------------------------------------------ run.json */

static json_t *json_num(double v) { return isnan(v) ? json_null() : json_real(v); }

static void write_run_json(const jq_cmd_info *I, const eval_opts *o,
                           const char *path, int argc, char **argv,
                           const jq_model *m, const char *model_sha,
                           const jq_soft_tokens *soft, const char *soft_sha,
                           const prompt_set *ps, double seconds,
                           bool plotted)
{
    json_t *root = json_object();
    json_object_set_new(root, "judgeq_version", json_string(JQ_VERSION));
    char date[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_object_set_new(root, "date", json_string(date));
    json_t *cmd = json_array();
    for (int i = 0; i < argc; i++) {
        char *s = jq_utf8_sanitize(argv[i], strlen(argv[i]), NULL);
        json_array_append_new(cmd, json_string(s ? s : ""));
        free(s);
    }
    json_object_set_new(root, "argv", cmd);

    json_t *model = json_object();
    json_object_set_new(model, "path", json_string(o->model));
    json_object_set_new(model, "sha256", json_string(model_sha));
    json_object_set_new(model, "architecture", json_string(m->hp.arch));
    json_object_set_new(model, "n_layer", json_integer(m->hp.n_layer));
    json_object_set_new(model, "n_head", json_integer(m->hp.n_head));
    json_object_set_new(model, "n_head_kv", json_integer(m->hp.n_head_kv));
    json_object_set_new(model, "n_ctx_train", json_integer(m->hp.n_ctx_train));
    json_object_set_new(root, "model", model);
    if (soft) {
        json_t *js = json_object();
        json_object_set_new(js, "path", json_string(o->evict.soft_path));
        json_object_set_new(js, "sha256", json_string(soft_sha));
        json_object_set_new(js, "n_tokens", json_integer(soft->n));
        json_object_set_new(js, "trained_steps",
                            json_integer((json_int_t)soft->trained_steps));
        json_object_set_new(root, "soft", js);
    } else {
        json_object_set_new(root, "soft", json_null());
    }

    json_t *opt = json_object();
    json_t *pol = json_array();
    for (int p = 0; p < o->n_policies; p++)
        json_array_append_new(pol, json_string(jq_evict_policy_name(o->policies[p])));
    json_object_set_new(opt, "policies", pol);
    json_t *bud = json_array();
    for (int b = 0; b < o->n_budgets; b++)
        json_array_append_new(bud, json_integer(o->budgets[b]));
    json_object_set_new(opt, "budgets", bud);
    json_object_set_new(opt, "n_predict", json_integer(o->n_predict));
    json_object_set_new(opt, "seed", json_integer((json_int_t)o->seed));
    json_object_set_new(opt, "threads", json_integer(o->threads));
    if (o->prompts_path) {
        json_object_set_new(opt, "prompts", json_string(o->prompts_path));
    } else if (o->self_generate) {
        json_object_set_new(opt, "self_generate", json_integer(o->self_generate));
        json_object_set_new(opt, "prompt_len", json_integer(o->prompt_len));
    } else {
        char label[64];
        json_object_set_new(opt, "task", json_string(task_label(o, label, sizeof label)));
        if (o->recall)
            json_object_set_new(opt, "difficulty", json_integer(o->difficulty));
        json_object_set_new(opt, "length", json_integer((json_int_t)o->task_length));
        json_object_set_new(opt, "samples", json_integer(o->samples));
        json_object_set_new(opt, "question_first", json_boolean(o->question_first));
    }
    json_object_set_new(opt, "bos", json_boolean(!o->no_bos));
    json_object_set_new(opt, "window",
                        o->evict.window_set ? json_integer(o->evict.window)
                                            : json_string("min(32, B/2)"));
    json_object_set_new(opt, "sink", json_integer(o->evict.sink));
    json_object_set_new(opt, "pool_kernel", json_integer(o->evict.pool_kernel));
    json_object_set_new(opt, "gqa_reduce", json_string(gqa_name(o->evict.gqa_reduce)));
    json_object_set_new(opt, "kv_type",
                        json_string(o->evict.kv_type == JQ_TYPE_F16 ? "f16" : "f32"));
    json_object_set_new(root, "options", opt);

    /* the exact spec of every (policy, budget), defaults resolved */
    json_t *specs = json_array();
    for (int p = 0; p < o->n_policies; p++)
        for (int b = 0; b < o->n_budgets; b++) {
            jq_evict_spec s = spec_at(o, o->policies[p], o->budgets[b]);
            json_t *js = json_object();
            json_object_set_new(js, "policy", json_string(jq_evict_policy_name(s.policy)));
            json_object_set_new(js, "budget", json_integer(s.budget));
            json_object_set_new(js, "window", json_integer(s.window));
            json_object_set_new(js, "sink", json_integer(s.sink));
            json_object_set_new(js, "pool_kernel", json_integer(s.pool_kernel));
            json_object_set_new(js, "gqa_reduce", json_string(gqa_name(s.gqa_reduce)));
            json_object_set_new(js, "adakv_alpha", json_real(s.adakv_alpha));
            json_object_set_new(js, "pyramid_beta", json_real(s.pyramid_beta));
            json_array_append_new(specs, js);
        }
    json_object_set_new(root, "specs", specs);

    int64_t sum = 0;
    int32_t lo = INT32_MAX, hi = 0;
    for (int32_t i = 0; i < ps->n; i++) {
        sum += ps->p[i].L;
        lo = ps->p[i].L < lo ? ps->p[i].L : lo;
        hi = ps->p[i].L > hi ? ps->p[i].L : hi;
    }
    json_t *pj = json_object();
    json_object_set_new(pj, "count", json_integer(ps->n));
    json_object_set_new(pj, "tokens_min", json_integer(lo));
    json_object_set_new(pj, "tokens_mean", json_num((double)sum / ps->n));
    json_object_set_new(pj, "tokens_max", json_integer(hi));
    json_object_set_new(root, "prompts", pj);
    json_object_set_new(root, "confidence_interval",
                        json_string("95 %, half-width t(n-1, 0.975) * sd / "
                                    "sqrt(n) over prompts"));
    json_object_set_new(root, "first_diff",
                        json_string("first index where the evicted cache's "
                                    "greedy token differs from the "
                                    "reference; n_predict when none"));
    json_object_set_new(root, "kl",
                        json_string("mean over the n_predict positions after "
                                    "the prompt of KL(full || evicted), nats, "
                                    "teacher-forced on the reference"));
    json_object_set_new(root, "elapsed_s", json_real(seconds));
    json_object_set_new(root, "plot", json_boolean(plotted));
    if (json_dump_file(root, path, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) != 0)
        jq_cli_fail(I, "cannot write %s", path);
    json_decref(root);
}

/* ---------------------------------------------------------------- plot */

/* gnuplot on PATH? (checked before the work so the warning comes early) */
static bool have_gnuplot(void)
{
    const char *path = getenv("PATH");
    if (!path)
        return false;
    char *copy = strdup(path), *save = NULL;
    bool found = false;
    for (char *d = copy ? strtok_r(copy, ":", &save) : NULL; d && !found;
         d = strtok_r(NULL, ":", &save)) {
        char buf[4096];
        snprintf(buf, sizeof buf, "%s/gnuplot", *d ? d : ".");
        found = access(buf, X_OK) == 0;
    }
    free(copy);
    return found;
}

/* A gnuplot script plotting results.csv: one panel per metric, metric vs
 * budget (log2 axis), one line per policy with its 95 % interval. The CSV
 * is in policy-major order, so the rows of one policy are contiguous and
 * the other policies' rows (NaN in that column) only break the line
 * outside them. */
static void write_plot_script(const jq_cmd_info *I, const eval_opts *o,
                              const char *path, bool task)
{
    FILE *f = open_out(I, path);
    /* columns of results.csv (1-based), shifted by the accuracy pair */
    int sh = task ? 2 : 0;
    struct {
        const char *title;
        int col, ci;
        const char *yrange; /* the metric's range: intervals are clipped */
        bool log;
        const char *key;    /* where the lines usually are not */
    } panels[] = {
        {"accuracy (string match x 100)", 4, 5, "[0:105]", false, "bottom right"},
        {"critical-KV hit rate", 4 + sh, 5 + sh, "[0:1.05]", false, "bottom right"},
        {"attention-mass recall", 6 + sh, 7 + sh, "[0:1.05]", false, "bottom right"},
        {"greedy agreement", 8 + sh, 9 + sh, "[0:1.05]", false, "bottom right"},
        /* log: KL spans decades across budgets (0, the full cache, is not
         * drawn) */
        {"KL(full || evicted), nats", 11 + sh, 12 + sh, "[*:*]", true, "bottom left"},
        {"resident prompt KV bytes", 13 + sh, 0, "[0:*]", false, "center right"},
        {"prefill + eviction ms", 14 + sh, 0, "[0:*]", false, "bottom right"},
    };
    int first = task ? 0 : 1, n_panels = (int)(sizeof panels / sizeof panels[0]);
    int shown = n_panels - first, cols = 3, rows = (shown + cols - 1) / cols;
    fprintf(f,
            "# written by judgeq eval; run: gnuplot results.gp (in this "
            "directory)\n"
            "set terminal pngcairo size %d,%d noenhanced font ',10'\n"
            "set output 'results.png'\n"
            "set datafile separator ','\n"
            "set datafile missing 'nan'\n"
            "set key box opaque font ',8'\n"
            "set format y '%%g'\n"
            "set logscale x 2\n"
            "set xlabel 'budget (prompt KV entries per layer and KV head)'\n"
            "set grid\n"
            "set offsets graph 0.05, graph 0.05, 0, 0\n"
            "set multiplot layout %d,%d title 'judgeq eval: ",
            480 * cols, 360 * rows, rows, cols);
    /* a single quote inside a gnuplot '...' string is written twice */
    for (const char *c = o->model; *c; c++)
        fputs(*c == '\'' ? "''" : (char[2]){*c, 0}, f);
    fprintf(f, ", %d policies x %d budgets (means, 95%% CI)'\n",
            o->n_policies, o->n_budgets);
    for (int k = first; k < n_panels; k++) {
        fprintf(f, "set title '%s'\n%sset logscale y\nset yrange %s\n"
                   "set key %s\n",
                panels[k].title, panels[k].log ? "" : "un", panels[k].yrange,
                panels[k].key);
        fputs("plot ", f);
        for (int p = 0; p < o->n_policies; p++) {
            const char *name = jq_evict_policy_name(o->policies[p]);
            if (panels[k].ci)
                fprintf(f, "%s'results.csv' skip 1 using 2:(strcol(1) eq '%s' "
                           "? $%d : NaN):%d with yerrorlines lw 2 title '%s'",
                        p ? ", \\\n     " : "", name, panels[k].col,
                        panels[k].ci, name);
            else
                fprintf(f, "%s'results.csv' skip 1 using 2:(strcol(1) eq '%s' "
                           "? $%d : NaN) with linespoints lw 2 title '%s'",
                        p ? ", \\\n     " : "", name, panels[k].col, name);
        }
        fputc('\n', f);
    }
    fputs("unset multiplot\n", f);
    close_out(I, f, path);
}

/* Runs gnuplot on the script in dir (its working directory, so the
 * script's relative names work); true when the PNG was made. */
static bool run_gnuplot(const char *dir)
{
    pid_t pid;
    char *args[] = {"gnuplot", "results.gp", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    /* gnuplot runs in the output directory; its stdout must not mix with
     * the table */
    posix_spawn_file_actions_addchdir_np(&fa, dir);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawnp(&pid, "gnuplot", &fa, NULL, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return false;
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return false;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* ------------------------------------------------------------- progress */

static void progress(int32_t done, int32_t total, double t0, int32_t L)
{
    double el = jq_now() - t0;
    double eta = done > 0 ? el / done * (total - done) : NAN;
    bool tty = isatty(2);
    fprintf(stderr, "%seval: prompt %d/%d (%d tokens)  elapsed %.1fs  ETA %s",
            tty ? "\r" : "", done, total, L, el, done > 0 ? "" : "?");
    if (done > 0)
        fprintf(stderr, "%.1fs", eta);
    fputs(tty ? (done == total ? "\n" : "   ") : "\n", stderr);
    fflush(stderr);
}

/* ----------------------------------------------------------------- main */

int jq_cmd_eval(int argc, char **argv)
{
    const jq_cmd_info *I = &eval_info;
    eval_opts o;
    parse(argc, argv, &o);
    double t_start = jq_now();
    char err[1024];

    jq_model *m = jq_cli_load_model(I, o.model);
    const jq_hparams *hp = &m->hp;
    jq_soft_tokens *soft = NULL;
    if (o.evict.soft_path &&
        !(soft = jq_soft_tokens_load(o.evict.soft_path, m, err, sizeof err)))
        jq_cli_fail(I, "%s", err);
    int32_t n = o.n_predict;
    /* rows after a prompt: the reference (and oracle observers), or the
     * soft tokens */
    int32_t extra = soft && soft->n > n ? soft->n : n;

    /* the prompts, all checked against the context before any work */
    prompt_set ps = {0};
    if (o.self_generate) {
        if ((int64_t)o.prompt_len + extra > hp->n_ctx_train)
            jq_cli_usage_error(I, "--prompt-len %d + %d %s exceed the model "
                                  "context of %d", o.prompt_len, extra,
                               extra == n ? "generated tokens"
                                          : "soft tokens",
                               hp->n_ctx_train);
        if (jq_vocab_bos(m->vocab) < 0)
            jq_cli_fail(I, "the model has no BOS token to self-generate from");
    } else if (o.prompts_path) {
        load_jsonl(I, &o, m, &ps);
    } else {
        make_tasks(I, &o, m, &ps);
    }
    int32_t L_max = o.self_generate ? o.prompt_len : 0;
    for (int32_t i = 0; i < ps.n; i++) {
        if ((int64_t)ps.p[i].L + extra > hp->n_ctx_train)
            jq_cli_fail(I, "prompt %d (%s %lld) has %d tokens: with %d %s "
                           "after it, it exceeds the model context of %d",
                        i, o.prompts_path ? "line" : "sample",
                        (long long)ps.p[i].source, ps.p[i].L, extra,
                        extra == n ? "generated tokens" : "soft tokens",
                        hp->n_ctx_train);
        L_max = ps.p[i].L > L_max ? ps.p[i].L : L_max;
    }

    /* outputs: the directory must be writable before hours of work */
    make_dir(I, o.out_dir);
    char *results_path = out_path(I, o.out_dir, "results.csv");
    char *per_prompt_path = out_path(I, o.out_dir, "per_prompt.csv");
    char *run_path = out_path(I, o.out_dir, "run.json");
    char *gp_path = out_path(I, o.out_dir, "results.gp");
    fclose(open_out(I, results_path));
    bool gnuplot = have_gnuplot();
    if (!gnuplot)
        fprintf(stderr, "judgeq eval: warning: gnuplot not found; "
                        "results.png will not be made (install gnuplot-nox)\n");
    char model_sha[JQ_SHA256_HEX], soft_sha[JQ_SHA256_HEX] = "";
    if (jq_sha256_file(o.model, model_sha, err, sizeof err) != 0 ||
        (soft && jq_sha256_file(o.evict.soft_path, soft_sha, err,
                                sizeof err) != 0))
        jq_cli_fail(I, "%s", err);

    jq_pool *pool = jq_thread_pool_new(o.threads);
    jq_ctx *ctx = pool ? jq_ctx_new_typed(m, L_max + extra, L_max + extra,
                                          o.evict.kv_type, pool, err,
                                          sizeof err)
                       : NULL;
    if (!ctx)
        jq_cli_fail(I, "%s", pool ? err : "cannot start threads");

    if (o.self_generate) {
        for (int32_t i = 0; i < o.self_generate; i++) {
            fprintf(stderr, "%seval: self-generating prompt %d/%d%s",
                    isatty(2) ? "\r" : "", i + 1, o.self_generate,
                    isatty(2) ? "" : "\n");
            eval_prompt *p = prompt_add(I, &ps);
            p->source = i;
            p->L = o.prompt_len;
            p->ids = malloc(sizeof(int32_t) * (size_t)o.prompt_len);
            if (!p->ids)
                jq_cli_fail(I, "out of memory");
            if (jq_selfgen_prompt(ctx, o.seed, (uint64_t)i, o.prompt_len,
                                  p->ids, err, sizeof err) != 0)
                jq_cli_fail(I, "self-generating prompt %d: %s", i, err);
        }
        if (isatty(2))
            fputc('\n', stderr);
    }

    size_t stride = (size_t)o.n_policies * (size_t)o.n_budgets;
    cell *cells = calloc((size_t)ps.n * stride, sizeof *cells);
    int32_t *out_gen = malloc(sizeof(int32_t) * (size_t)n);
    if (!cells || !out_gen)
        jq_cli_fail(I, "out of memory");
    bool task = o.task >= 0;
    int32_t eos = jq_vocab_eos(m->vocab); /* -1: none, never matches */
    double t0 = jq_now();
    progress(0, ps.n, t0, ps.p[0].L);
    for (int32_t i = 0; i < ps.n; i++) {
        const eval_prompt *pr = &ps.p[i];
        jq_metrics_ref ref;
        if (jq_metrics_reference(ctx, pr->ids, pr->L, n, true, &ref, err,
                                 sizeof err) != 0)
            jq_cli_fail(I, "prompt %d: reference: %s", i, err);
        for (int p = 0; p < o.n_policies; p++)
            for (int b = 0; b < o.n_budgets; b++) {
                cell *c = &cells[(size_t)i * stride +
                                 (size_t)p * (size_t)o.n_budgets + (size_t)b];
                jq_prefill_params pp = {
                    .spec = spec_at(&o, o.policies[p], o.budgets[b]),
                    .soft_embd = soft ? soft->emb : NULL,
                    .n_soft = soft ? soft->n : 0,
                    .kv_type = o.evict.kv_type,
                };
                if (jq_metrics_evicted(ctx, pr->ids, &ref, &pp, o.budgets[b],
                                       &c->r, out_gen, err, sizeof err) != 0)
                    jq_cli_fail(I, "prompt %d, %s at budget %d: %s", i,
                                jq_evict_policy_name(o.policies[p]),
                                o.budgets[b], err);
                c->accuracy = NAN;
                if (task) {
                    /* the answer ends at end-of-sequence: what follows
                     * is not part of it (and could match by chance) */
                    size_t n_out = 0;
                    while (n_out < (size_t)n && out_gen[n_out] != eos)
                        n_out++;
                    char *text = jq_detokenize(m->vocab, out_gen, n_out);
                    if (!text)
                        jq_cli_fail(I, "out of memory");
                    c->accuracy = jq_task_score(
                        text, (const char *const *)pr->answers, pr->n_answers);
                    free(text);
                }
            }
        jq_metrics_ref_free(&ref);
        progress(i + 1, ps.n, t0, i + 1 < ps.n ? ps.p[i + 1].L : pr->L);
    }

    agg *aggs = calloc(stride, sizeof *aggs);
    if (!aggs)
        jq_cli_fail(I, "out of memory");
    for (size_t k = 0; k < stride; k++)
        aggs[k] = aggregate(cells, ps.n, stride, k);
    write_results(I, &o, results_path, aggs, ps.n, task);
    write_per_prompt(I, &o, per_prompt_path, &ps, cells, task);
    write_plot_script(I, &o, gp_path, task);
    bool plotted = false;
    if (gnuplot) {
        plotted = run_gnuplot(o.out_dir);
        if (!plotted)
            fprintf(stderr, "judgeq eval: warning: gnuplot failed; "
                            "results.png not made (script: %s)\n", gp_path);
    }
    write_run_json(I, &o, run_path, argc, argv, m, model_sha, soft, soft_sha,
                   &ps, jq_now() - t_start, plotted);
    print_table(&o, aggs, task);

    free(aggs);
    free(out_gen);
    free(cells);
    jq_ctx_free(ctx);
    jq_thread_pool_free(pool);
    free(gp_path);
    free(run_path);
    free(per_prompt_path);
    free(results_path);
    prompt_set_free(&ps);
    jq_soft_tokens_free(soft);
    jq_model_free(m);
    return JQ_EXIT_OK;
}
