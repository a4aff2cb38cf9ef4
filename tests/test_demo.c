/* test_demo.c — `make demo` (tools/demo.sh), the README's first command,
 * run against a random-weight model of the recall language and its initial
 * soft tokens (its answer is wrong, which is fine: the pipeline is what is
 * tested). The demo must print the question and the expected answer of the
 * example recall-data makes, the model's answer, the memory kept and the
 * speed, exit 0, and leave no judgeqd behind: also when it fails after the
 * daemon started, and on Ctrl-C. A missing model names `make models`.
 * And models/README.md quotes the commands `make models` runs. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "recall_lang.h"
#include "testutil.h"

/* the demo's defaults (tools/demo.sh) */
enum { DEMO_LENGTH = 960, DEMO_SEED = 1000, DEMO_BUDGET = 64 };

typedef struct {
    char *model, *soft;
} demo_files;

/* a small random recall-language model and its soft tokens (made once) */
static const demo_files *files(void)
{
    static demo_files f;
    if (!f.model) {
        f.model = jqt_fmt("%s/demo-recall.gguf", jqt_tmpdir());
        f.soft = jqt_fmt("%s/demo-recall.soft.gguf", jqt_tmpdir());
        char *a = jqt_fmt("gen-model -o '%s' --vocab recall --ctx 1024 "
                          "--n-embd 64 --n-layer 2 --seed 9", f.model);
        free(jqt_judgeq_ok(a));
        free(a);
        a = jqt_fmt("soft-init -m '%s' -o '%s' --n 8", f.model, f.soft);
        free(jqt_judgeq_ok(a));
        free(a);
    }
    return &f;
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        fail_msg("%s is not set (tests/run.sh sets it)", name);
    return v;
}

/* tools/demo.sh with the test build's binaries and extra arguments */
static char *demo_cmd(const char *args)
{
    const char *b = env("JUDGEQ_BUILD");
    return jqt_fmt("bash '%s/tools/demo.sh' --judgeq '%s/bin/judgeq' "
                   "--judgeqd '%s/bin/judgeqd' %s",
                   env("JUDGEQ_ROOT"), b, b, args);
}

/* judgeqd processes whose command line mentions `needle` (a path only
 * this test uses); with `stop`, they are killed too (the demo left them,
 * which fails the test: they must not outlive it) */
static int daemons_with(const char *needle, bool stop)
{
    DIR *d = opendir("/proc");
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0 || pid == getpid())
            continue;
        char path[64];
        snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
        size_t len = 0;
        char *cmd = jqt_read_file(path, &len);
        if (!cmd)
            continue; /* gone meanwhile */
        const char *slash = strrchr(cmd, '/'); /* in argv[0] */
        bool daemon = !strcmp(slash ? slash + 1 : cmd, "judgeqd");
        for (size_t i = 0; i + 1 < len; i++)
            if (!cmd[i])
                cmd[i] = ' ';
        if (daemon && strstr(cmd, needle)) {
            n++;
            if (stop)
                kill((pid_t)pid, SIGKILL);
        }
        free(cmd);
    }
    closedir(d);
    return n;
}

/* The expected example: recall-data's niah example 0 for the demo's
 * seed and length. */
static jq_recall_example expected_example(void)
{
    jq_recall_opts o = {.task = JQ_RECALL_NIAH, .length = DEMO_LENGTH,
                        .seed = DEMO_SEED};
    jq_recall_example e;
    char err[256];
    if (jq_recall_generate(&o, 0, &e, err, sizeof err) != 0)
        fail_msg("%s", err);
    return e;
}

static void assert_contains(const char *text, const char *want)
{
    if (!strstr(text, want))
        fail_msg("demo output lacks \"%s\":\n%s", want, text);
}

static void test_make_demo(void **state)
{
    (void)state;
    const demo_files *f = files();
    /* the Makefile's target, as the README says (the build is up to date;
     * the outer make's jobserver must not leak into this one) */
    const char *root = env("JUDGEQ_ROOT");
    char *barg = jqt_make_build_arg();
    char *cmd = jqt_fmt("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s "
                        "--no-print-directory -C '%s' demo %s DEMO_MODEL='%s' "
                        "DEMO_SOFT='%s'",
                        root, barg, f->model, f->soft);
    int rc;
    char *err = NULL;
    char *out = jqt_run(cmd, &rc, &err);
    if (rc != 0)
        fail_msg("make demo exited %d:\n%s\n%s", rc, out, err);

    jq_recall_example e = expected_example();
    /* the question as the prompt asks it, and the generator's answer */
    const char *q = strstr(e.prompt, "question: ");
    assert_non_null(q);
    char *question = jqt_fmt("question:         %.*s", (int)(strchr(q, '?') - q - 9),
                             q + 10);
    assert_contains(out, question);
    char *answer = jqt_fmt("expected answer:  %s\n", e.answer);
    assert_contains(out, answer);
    /* the model's answer, judged (a random model: wrong, almost surely) */
    assert_contains(out, "model's answer:");
    assert_true(strstr(out, " (wrong)\n") || strstr(out, " (correct)\n"));
    /* the budget's share of the prompt, in the prompt's own count */
    char *prompt_len = jqt_fmt("one needle in a %d-token prompt", e.n_prompt);
    assert_contains(out, prompt_len);
    char *share = jqt_fmt("(%.1f%% of the full cache",
                          100.0 * DEMO_BUDGET / e.n_prompt);
    assert_contains(out, share);
    char *prefill = jqt_fmt("prefill %d tokens in", e.n_prompt);
    assert_contains(out, prefill);
    assert_contains(out, "tokens/s), decode ");
    assert_contains(out, "stopped cleanly");
    assert_int_equal(daemons_with(f->model, true), 0);

    jq_recall_example_free(&e);
    free(prefill);
    free(share);
    free(prompt_len);
    free(answer);
    free(question);
    free(out);
    free(err);
    free(cmd);
    free(barg);
}

static void test_missing_model_names_make_models(void **state)
{
    (void)state;
    char *missing = jqt_fmt("%s/no-such-model.gguf", jqt_tmpdir());
    char *args = jqt_fmt("--model '%s' --soft '%s'", missing, files()->soft);
    char *cmd = demo_cmd(args);
    int rc;
    char *err = NULL;
    free(jqt_run(cmd, &rc, &err));
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, missing));
    assert_non_null(strstr(err, "make models"));
    free(err);
    free(cmd);
    free(args);
    free(missing);
}

/* A failure once judgeqd runs (a prompt longer than the model's context)
 * still stops it and removes the demo's temporary directory. */
static void test_failure_stops_the_daemon(void **state)
{
    (void)state;
    const demo_files *f = files();
    char *tmp = jqt_fmt("%s/fail-tmp", jqt_tmpdir());
    assert_int_equal(mkdir(tmp, 0700), 0);
    char *args = jqt_fmt("--model '%s' --soft '%s' --length 2000", f->model,
                         f->soft);
    char *demo = demo_cmd(args);
    char *cmd = jqt_fmt("TMPDIR='%s' %s", tmp, demo);
    int rc;
    char *err = NULL;
    free(jqt_run(cmd, &rc, &err));
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "generate failed"));
    assert_non_null(strstr(err, "max_context")); /* the daemon's reason */
    assert_int_equal(daemons_with(f->model, true), 0);
    assert_int_equal(rmdir(tmp), 0); /* empty: the demo cleaned up */
    free(err);
    free(cmd);
    free(demo);
    free(args);
    free(tmp);
}

/* The demo interrupted while the client waits for the answer: a stand-in
 * judgeq blocks in `generate` for `block_s` seconds (marking that it got
 * there), then `sig` goes to the demo's process group (`group`: Ctrl-C in
 * a terminal) or to the script alone (kill, a supervisor). It must exit
 * with want_rc and leave no judgeqd. */
static void interrupt_demo(const char *name, int block_s, int sig, bool group,
                           int want_rc)
{
    const demo_files *f = files();
    const char *dir = jqt_tmpdir();
    char *mark = jqt_fmt("%s/%s.in-generate", dir, name);
    char *wrapper = jqt_fmt("%s/%s.judgeq", dir, name);
    FILE *w = fopen(wrapper, "w");
    assert_non_null(w);
    fprintf(w, "#!/bin/sh\n"
               "if [ \"$3\" = generate ]; then : > '%s'; exec sleep %d; fi\n"
               "exec '%s' \"$@\"\n",
            mark, block_s, jqt_judgeq_bin());
    assert_int_equal(fclose(w), 0);
    assert_int_equal(chmod(wrapper, 0755), 0);
    char *log = jqt_fmt("%s/%s.log", dir, name);
    char *script = jqt_fmt("%s/tools/demo.sh", env("JUDGEQ_ROOT"));
    char *judgeqd = jqt_fmt("%s/bin/judgeqd", env("JUDGEQ_BUILD"));

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0); /* its own group, like a shell's foreground job */
        FILE *o = freopen(log, "w", stdout);
        if (!o || dup2(fileno(o), 2) < 0)
            _exit(127);
        execlp("bash", "bash", script, "--judgeq", wrapper, "--judgeqd",
               judgeqd, "--model", f->model, "--soft", f->soft, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid); /* either side may run first */
    /* wait (up to 30 s) until the client is "waiting for the answer" */
    struct timespec tick = {0, 20 * 1000 * 1000};
    for (int i = 0; i < 1500 && access(mark, F_OK) != 0; i++)
        nanosleep(&tick, NULL);
    if (access(mark, F_OK) != 0) {
        kill(-pid, SIGKILL);
        waitpid(pid, NULL, 0);
        char *text = jqt_read_file(log, NULL);
        fail_msg("the demo never reached generate:\n%s", text ? text : "");
    }
    const int up = daemons_with(f->model, false);
    /* (the group is gone before anything is asserted) */
    const int sent = kill(group ? -pid : pid, sig);
    int status = 0;
    const pid_t waited = waitpid(pid, &status, 0);
    const int left = daemons_with(f->model, true);
    kill(-pid, SIGKILL); /* a stand-in still sleeping */
    assert_int_equal(up, 1); /* judgeqd was running */
    assert_int_equal(sent, 0);
    assert_int_equal(waited, pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), want_rc);
    assert_int_equal(left, 0);
    free(judgeqd);
    free(script);
    free(log);
    free(wrapper);
    free(mark);
}

static void test_ctrl_c_stops_the_daemon(void **state)
{
    (void)state;
    interrupt_demo("ctrl-c", 60, SIGINT, true, 130);
}

/* SIGTERM to the script alone: judgeqd hears nothing, so only the demo's
 * trap stops it (once the client returns: bash runs traps between
 * commands). */
static void test_sigterm_stops_the_daemon(void **state)
{
    (void)state;
    interrupt_demo("sigterm", 1, SIGTERM, false, 143);
}

/* models/README.md records the recipe of tools/make_models.sh: every
 * command its --dry-run prints, verbatim, in the file's code block. */
static void test_models_readme_quotes_the_recipe(void **state)
{
    (void)state;
    const char *root = env("JUDGEQ_ROOT");
    char *cmd = jqt_fmt("bash '%s/tools/make_models.sh' --dry-run", root);
    int rc;
    char *out = jqt_run(cmd, &rc, NULL);
    assert_int_equal(rc, 0);
    char *path = jqt_fmt("%s/models/README.md", root);
    char *readme = jqt_read_file(path, NULL);
    assert_non_null(readme);
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save), n++) {
        char *quoted = jqt_fmt("\n    %s\n", line);
        if (!strstr(readme, quoted))
            fail_msg("models/README.md does not quote `%s`", line);
        free(quoted);
    }
    assert_true(n >= 3); /* pretrain, recall-data, train at least */
    free(readme);
    free(path);
    free(out);
    free(cmd);
}

static void test_usage(void **state)
{
    (void)state;
    int rc;
    char *cmd = demo_cmd("--help");
    char *out = jqt_run(cmd, &rc, NULL);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "--budget B"));
    free(out);
    free(cmd);
    cmd = demo_cmd("--bogus");
    char *err = NULL;
    free(jqt_run(cmd, &rc, &err));
    assert_int_equal(rc, 2);
    assert_non_null(strstr(err, "unknown option '--bogus'"));
    free(err);
    free(cmd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_make_demo),
        cmocka_unit_test(test_missing_model_names_make_models),
        cmocka_unit_test(test_failure_stops_the_daemon),
        cmocka_unit_test(test_ctrl_c_stops_the_daemon),
        cmocka_unit_test(test_sigterm_stops_the_daemon),
        cmocka_unit_test(test_models_readme_quotes_the_recipe),
        cmocka_unit_test(test_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
