/* cmd_recall_data.c — `judgeq recall-data`: examples of the recall
 * language (engine/recall_lang.h) as JSONL for `judgeq train --data`, the
 * training split of Judge Q soft tokens for judgeq's own recall model. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "recall_lang.h"

static const jq_cmd_info recall_data_info = {
    "recall-data",
    "usage: judgeq recall-data -o FILE --length L --count N [options]\n"
    "\n"
    "Writes N examples of the recall language (the synthetic language of\n"
    "judgeq's own recall model: filler sentences with key-value needles,\n"
    "variable chains or word lists, then a question) as JSONL, one object\n"
    "a line: {\"prompt\": TEXT, \"response\": TEXT, \"task\": NAME,\n"
    "\"answers\": [TEXT, ...]}. `judgeq train --data FILE` reads prompt and\n"
    "response; answers are the strings a correct output contains (the\n"
    "string-match scoring of `judgeq eval --task recall-*`). The same\n"
    "options always give the same file. --format tsv writes the same\n"
    "examples for shell scripts instead (tools/demo.sh reads it).\n"
    "\n"
    "Seeds: the examples are a function of (seed, task, index, difficulty).\n"
    "Training data uses the default --seed 1 (or other small seeds);\n"
    "`judgeq eval --task recall-*` uses --seed 1000 by default, so its\n"
    "samples are held out. Keep the two apart when choosing seeds.\n"
    "\n"
    "  -o, --output FILE         where to write (- for stdout)\n"
    "      --length L            tokens per example: BOS, prompt, answer and\n"
    "                            EOS (the context grows to the longest fit)\n"
    "      --count N             examples\n"
    "      --tasks LIST          comma-separated mix, taken in turn (repeat a\n"
    "                            task to weight it): niah, multikey, mqar, vt,\n"
    "                            cwe (default: all five)\n"
    "      --difficulty D        for every task of the mix: multikey needles\n"
    "                            (2-32, default 4), mqar pairs (2-64, default\n"
    "                            8), vt hops (1-16, default 4), cwe words\n"
    "                            (1-10, default 3); niah keeps its 1 needle\n"
    "      --question-first-share F  share of examples with the question\n"
    "                            before the context, spread evenly (default\n"
    "                            0.5)\n"
    "      --seed S              seed (default 1)\n"
    "      --format F            jsonl (default) or tsv: one line an example,\n"
    "                            tab-separated: task, prompt, response, then\n"
    "                            each answer (no header; the language has no\n"
    "                            tabs or newlines)\n"
    "  -h, --help                this help\n",
};

enum {
    OPT_LENGTH = 256, OPT_COUNT, OPT_TASKS, OPT_DIFFICULTY, OPT_QFS, OPT_SEED,
    OPT_FORMAT
};

#define MAX_MIX 64

typedef struct {
    const char *out;
    int32_t length, count, difficulty;
    double qf_share;
    uint64_t seed;
    bool tsv;
    jq_recall_task mix[MAX_MIX];
    int n_mix;
} recall_data_opts;

static void parse_tasks(const jq_cmd_info *I, const char *arg,
                        recall_data_opts *o)
{
    char *copy = strdup(arg), *save = NULL;
    if (!copy)
        jq_cli_fail(I, "out of memory");
    o->n_mix = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int k = jq_recall_task_from_name(t);
        if (k < 0)
            jq_cli_usage_error(I, "--tasks: unknown task '%s' (niah, multikey, "
                                  "mqar, vt, cwe)", t);
        if (o->n_mix == MAX_MIX)
            jq_cli_usage_error(I, "--tasks lists more than %d tasks", MAX_MIX);
        o->mix[o->n_mix++] = (jq_recall_task)k;
    }
    free(copy);
    if (o->n_mix == 0)
        jq_cli_usage_error(I, "--tasks is empty");
}

/* --difficulty for a task of the mix: niah has one needle whatever it
 * says */
static int32_t difficulty_for(const recall_data_opts *o, jq_recall_task t)
{
    return t == JQ_RECALL_NIAH ? 0 : o->difficulty;
}

static void parse(int argc, char **argv, recall_data_opts *o)
{
    const jq_cmd_info *I = &recall_data_info;
    static const struct option longopts[] = {
        {"output", required_argument, 0, 'o'},
        {"length", required_argument, 0, OPT_LENGTH},
        {"count", required_argument, 0, OPT_COUNT},
        {"tasks", required_argument, 0, OPT_TASKS},
        {"difficulty", required_argument, 0, OPT_DIFFICULTY},
        {"question-first-share", required_argument, 0, OPT_QFS},
        {"seed", required_argument, 0, OPT_SEED},
        {"format", required_argument, 0, OPT_FORMAT},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    *o = (recall_data_opts){.qf_share = 0.5, .seed = 1};
    for (int t = 0; t < JQ_RECALL_COUNT_; t++)
        o->mix[o->n_mix++] = (jq_recall_task)t;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': o->out = optarg; break;
        case OPT_LENGTH:
            o->length = (int32_t)jq_cli_int(I, "--length", optarg, 1, 1 << 22);
            break;
        case OPT_COUNT:
            o->count = (int32_t)jq_cli_int(I, "--count", optarg, 1, 1 << 30);
            break;
        case OPT_TASKS: parse_tasks(I, optarg, o); break;
        case OPT_DIFFICULTY:
            o->difficulty = (int32_t)jq_cli_int(I, "--difficulty", optarg, 1, 1024);
            break;
        case OPT_QFS:
            o->qf_share = jq_cli_float(I, "--question-first-share", optarg, 0, 1);
            break;
        case OPT_SEED: o->seed = jq_cli_u64(I, "--seed", optarg); break;
        case OPT_FORMAT:
            if (!strcmp(optarg, "tsv"))
                o->tsv = true;
            else if (strcmp(optarg, "jsonl") != 0)
                jq_cli_usage_error(I, "--format must be jsonl or tsv, got '%s'",
                                   optarg);
            break;
        case 'h': jq_cli_help(I);
        default:
            jq_cli_bad_option(I, c, argv);
        }
    }
    if (optind < argc)
        jq_cli_usage_error(I, "unexpected argument '%s'", argv[optind]);
    if (!o->out)
        jq_cli_usage_error(I, "an output file is required (-o FILE, - for "
                              "stdout)");
    if (!o->length)
        jq_cli_usage_error(I, "--length L is required (tokens per example)");
    if (!o->count)
        jq_cli_usage_error(I, "--count N is required");
    /* every task of the mix fits the length at this difficulty (the
     * minimum is the same for every example of a task) */
    for (int i = 0; i < o->n_mix; i++) {
        jq_recall_task t = o->mix[i];
        jq_recall_opts r = {.task = t, .length = o->length,
                            .difficulty = difficulty_for(o, t), .seed = o->seed};
        char err[256];
        int32_t min = jq_recall_min_length(&r, err, sizeof err);
        if (min < 0)
            jq_cli_usage_error(I, "--difficulty: %s", err);
        if (min > o->length)
            jq_cli_usage_error(I, "task %s (difficulty %d) needs --length of "
                                  "at least %d",
                               jq_recall_task_name(t),
                               r.difficulty ? (int)r.difficulty
                                            : (int)jq_recall_default_difficulty(t),
                               (int)min);
    }
}

/* Example i has the question first when the running share floor(i * F)
 * steps up: exactly floor(N * F) of the first N, spread evenly. */
static bool question_first(double share, int32_t i)
{
    return (int64_t)((double)(i + 1) * share) > (int64_t)((double)i * share);
}

static json_t *example_json(const jq_recall_example *e, jq_recall_task t)
{
    json_t *j = json_object(), *ans = json_array();
    if (!j || !ans) {
        json_decref(j);
        json_decref(ans);
        return NULL;
    }
    for (int32_t a = 0; a < e->n_answers; a++)
        json_array_append_new(ans, json_string(e->answers[a]));
    json_object_set_new(j, "prompt", json_string(e->prompt));
    json_object_set_new(j, "response", json_string(e->answer));
    json_object_set_new(j, "task", json_string(jq_recall_task_name(t)));
    json_object_set_new(j, "answers", ans);
    return j;
}

static char *example_jsonl(const jq_recall_example *e, jq_recall_task t)
{
    json_t *j = example_json(e, t);
    char *line = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return line;
}

/* A TSV field holds no tab or newline. The language has neither (its
 * words, digits and punctuation are joined by spaces), so this only
 * guards the format against a future change of the generator. */
static bool tsv_safe(const char *s)
{
    return !strpbrk(s, "\t\n\r");
}

/* task, prompt, response, answers...; NULL when a field is not TSV-safe
 * (*unsafe set) or out of memory */
static char *example_tsv(const jq_recall_example *e, jq_recall_task t,
                         bool *unsafe)
{
    size_t n = strlen(jq_recall_task_name(t)) + strlen(e->prompt) +
               strlen(e->answer) + 3;
    bool ok = tsv_safe(e->prompt) && tsv_safe(e->answer);
    for (int32_t a = 0; a < e->n_answers; a++) {
        n += strlen(e->answers[a]) + 1;
        ok = ok && tsv_safe(e->answers[a]);
    }
    *unsafe = !ok;
    char *line = ok ? malloc(n) : NULL;
    if (!line)
        return NULL;
    char *p = line + sprintf(line, "%s\t%s\t%s", jq_recall_task_name(t),
                             e->prompt, e->answer);
    for (int32_t a = 0; a < e->n_answers; a++)
        p += sprintf(p, "\t%s", e->answers[a]);
    return line;
}

int jq_cmd_recall_data(int argc, char **argv)
{
    const jq_cmd_info *I = &recall_data_info;
    recall_data_opts o;
    parse(argc, argv, &o);
    bool to_stdout = !strcmp(o.out, "-");
    FILE *f = to_stdout ? stdout : fopen(o.out, "w");
    if (!f)
        jq_cli_fail(I, "cannot write %s: %m", o.out);
    for (int32_t i = 0; i < o.count; i++) {
        jq_recall_task t = o.mix[i % o.n_mix];
        jq_recall_opts r = {.task = t, .length = o.length,
                            .difficulty = difficulty_for(&o, t),
                            .question_first = question_first(o.qf_share, i),
                            .seed = o.seed};
        jq_recall_example e;
        char err[256];
        if (jq_recall_generate(&r, (uint64_t)i, &e, err, sizeof err) != 0)
            jq_cli_fail(I, "example %d: %s", i, err);
        bool unsafe = false;
        char *line = o.tsv ? example_tsv(&e, t, &unsafe) : example_jsonl(&e, t);
        if (unsafe)
            jq_cli_fail(I, "example %d has a tab or newline, which --format "
                           "tsv cannot hold", i);
        if (!line)
            jq_cli_fail(I, "out of memory");
        fprintf(f, "%s\n", line);
        free(line);
        jq_recall_example_free(&e);
    }
    if ((to_stdout ? fflush(f) : fclose(f)) != 0 || (to_stdout && ferror(f)))
        jq_cli_fail(I, "writing %s failed: %m", o.out);
    return JQ_EXIT_OK;
}
