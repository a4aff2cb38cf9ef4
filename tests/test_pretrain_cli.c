/* test_pretrain_cli.c — `judgeq pretrain` as a user runs it: --help, usage
 * errors (exit 2), a tiny run whose GGUF judgeq loads with the recall
 * tokenizer, and an interrupted run (SIGTERM, exit 130) that --resume
 * completes to the same bytes as an uninterrupted one. */
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#include "gguf.h"
#include "kernels.h"
#include "model.h"
#include "recall_lang.h"
#include "tokenizer.h"

static char *judgeq(const char *args, int *rc, char **err)
{
    char *cmd = jqt_fmt("'%s' %s", jqt_judgeq_bin(), args);
    char *out = jqt_run(cmd, rc, err);
    free(cmd);
    return out;
}

/* A model that trains in milliseconds per step. */
#define TINY "--n-embd 32 --n-layer 1 --n-head 2 --n-head-kv 1 --n-ff 64 " \
             "--ctx 128 --batch 4 --warmup 2 --threads 2 --eval-batch 10 "

static void test_help_and_usage_errors(void **state)
{
    (void)state;
    int rc;
    char *err;
    char *out = judgeq("pretrain --help", &rc, &err);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "usage: judgeq pretrain"));
    assert_non_null(strstr(out, "--resume"));
    assert_non_null(strstr(out, "--curriculum"));
    free(out);
    free(err);
    const struct { const char *args, *msg; } bad[] = {
        {"pretrain", "--out"},
        {"pretrain --out x.gguf --bogus", "bogus"},
        {"pretrain --out x.gguf --steps 0", "--steps"},
        {"pretrain --out x.gguf --n-embd 30", "n_embd 30"},
        {"pretrain --out x.gguf --out-type bf16", "--out-type"},
        {"pretrain --out x.gguf --curriculum 0:128,0.5", "FRACTION:VALUE"},
        {"pretrain --out x.gguf --curriculum 0.2:128", "start at 0"},
        {"pretrain --out x.gguf --curriculum 0:4096", "outside"},
        {"pretrain --out x.gguf --difficulty 0:2", "outside"},
        {"pretrain --out x.gguf --tasks niah:1,ruler:2", "unknown task"},
        {"pretrain --out x.gguf --tasks niah:0", "no task"},
        {"pretrain --out x.gguf --warmup 5000", "--warmup"},
        {"pretrain --out x.gguf --lr 1e-3 --min-lr 1e-2", "--min-lr"},
        {"pretrain --out x.gguf extra", "unexpected argument"},
        {"pretrain --out x.gguf --digits 0", "--digits"},
        {"pretrain --out x.gguf --digits 7", "--digits"},
        {"pretrain --out x.gguf --context-loss -1", "--context-loss"},
        {"pretrain --out x.gguf --context-loss 101", "--context-loss"},
        {"pretrain --out x.gguf --rope-base 0.5", "--rope-base"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        out = judgeq(bad[i].args, &rc, &err);
        if (rc != 2 || !strstr(err, bad[i].msg))
            fail_msg("'%s': exit %d, stderr: %s", bad[i].args, rc, err);
        free(out);
        free(err);
    }
}

static void test_tiny_run_loads(void **state)
{
    (void)state;
    const char *dir = jqt_tmpdir();
    char *args = jqt_fmt("pretrain " TINY "--steps 12 --eval-every 6 "
                         "--out '%s/tiny.gguf' --out-type f32",
                         dir);
    int rc;
    char *err;
    char *out = judgeq(args, &rc, &err);
    if (rc != 0)
        fail_msg("exit %d: %s", rc, err);
    /* progress lines and the held-out evaluation on stderr */
    assert_non_null(strstr(err, "step 12/12"));
    assert_non_null(strstr(err, "held-out at step 12"));
    json_error_t jerr;
    json_t *j = json_loads(out, 0, &jerr);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "steps_done")), 12);
    assert_true(json_is_real(json_object_get(j, "heldout_accuracy")));
    assert_non_null(json_object_get(json_object_get(j, "heldout_task_accuracy"),
                                    "niah"));
    json_decref(j);
    /* the model loads, with the recall language's tokenizer */
    char *path = jqt_fmt("%s/tiny.gguf", dir);
    char e[512];
    jq_model *m = jq_model_load(path, e, sizeof e);
    if (!m)
        fail_msg("%s", e);
    assert_int_equal(m->hp.n_vocab, jq_recall_n_vocab());
    assert_int_equal(m->hp.n_ctx_train, 128);
    int32_t *ids = NULL;
    size_t n = 0;
    const char *text = "the number of apple is 472.";
    assert_int_equal(jq_tokenize(m->vocab, text, strlen(text), true, &ids, &n,
                                 e, sizeof e),
                     0);
    assert_true(n > 3);
    for (size_t i = 0; i < n; i++) /* words are whole tokens: no <unk> */
        assert_true(ids[i] != 0);
    free(ids);
    jq_model_free(m);
    /* and judgeq run generates from it */
    char *run = jqt_fmt("run -m '%s' -p 'question: what is the number of "
                        "apple? answer:' -n 4 --temp 0", path);
    free(out);
    free(err);
    out = judgeq(run, &rc, &err);
    assert_int_equal(rc, 0);
    free(out);
    free(err);
    free(run);
    free(path);
    free(args);
}

/* Starts judgeq with args, sends SIGTERM once stderr shows `after`,
 * returns the exit status. */
static int run_and_interrupt(const char *args, const char *after)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    const pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        if (!freopen("/dev/null", "w", stdout))
            _exit(127);
        char *cmd = jqt_fmt("exec '%s' %s", jqt_judgeq_bin(), args);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[1024];
    bool sent = false;
    while (fgets(line, sizeof line, f))
        if (!sent && strstr(line, after)) {
            kill(pid, SIGTERM);
            sent = true;
        }
    fclose(f);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(sent);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_interrupt_and_resume_bit_exact(void **state)
{
    (void)state;
    const char *dir = jqt_tmpdir();
    /* long enough (~0.5 s) that SIGTERM lands mid-run */
    const char *common = "pretrain " TINY "--steps 150 --log-every 1 "
                         "--save-every 1000 --eval-every 1000 --out-type f32 ";
    char *a = jqt_fmt("%s--out '%s/a.gguf'", common, dir);
    int rc;
    char *err;
    char *out = judgeq(a, &rc, &err);
    if (rc != 0)
        fail_msg("exit %d: %s", rc, err);
    free(out);
    free(err);
    char *b = jqt_fmt("%s--out '%s/b.gguf'", common, dir);
    assert_int_equal(run_and_interrupt(b, "step 2/150"), 130);
    /* not written yet: only the checkpoint */
    char *bpath = jqt_fmt("%s/b.gguf", dir);
    assert_int_equal(access(bpath, F_OK), -1);
    /* resuming with other options is refused, naming the difference */
    char *other = jqt_fmt("%s--out '%s/b.gguf' --lr 3e-3 --resume", common, dir);
    out = judgeq(other, &rc, &err);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "lr="));
    free(out);
    free(err);
    char *resume = jqt_fmt("%s --resume", b);
    out = judgeq(resume, &rc, &err);
    if (rc != 0)
        fail_msg("resume: exit %d: %s", rc, err);
    assert_non_null(strstr(err, "resuming"));
    size_t la, lb;
    char *apath = jqt_fmt("%s/a.gguf", dir);
    char *ba = jqt_read_file(apath, &la), *bb = jqt_read_file(bpath, &lb);
    assert_non_null(ba);
    assert_non_null(bb);
    assert_int_equal(la, lb);
    assert_memory_equal(ba, bb, la);
    free(ba);
    free(bb);
    free(apath);
    free(bpath);
    free(out);
    free(err);
    free(resume);
    free(other);
    free(a);
    free(b);
}

/* Largest |a - b| over every tensor two F32 models share by name. */
static double max_weight_difference(const char *pa, const char *pb)
{
    char e[512];
    jq_gguf *a = jq_gguf_open(pa, e, sizeof e), *b = jq_gguf_open(pb, e, sizeof e);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(jq_gguf_n_tensors(a), jq_gguf_n_tensors(b));
    double worst = 0;
    for (int64_t i = 0; i < jq_gguf_n_tensors(a); i++) {
        const jq_gguf_tensor *ta = jq_gguf_tensor_at(a, i);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)ta->name.len, ta->name.ptr);
        const jq_gguf_tensor *tb = jq_gguf_find_tensor(b, name);
        assert_non_null(tb);
        assert_int_equal(ta->type, JQ_TYPE_F32);
        assert_int_equal(tb->type, JQ_TYPE_F32);
        int64_t n = 1;
        for (uint32_t d = 0; d < ta->n_dims; d++)
            n *= ta->ne[d];
        for (int64_t k = 0; k < n; k++) {
            const double d = fabs((double)((const float *)ta->data)[k] -
                                  ((const float *)tb->data)[k]);
            worst = d > worst ? d : worst;
        }
    }
    jq_gguf_close(a);
    jq_gguf_close(b);
    return worst;
}

/* --init-from: a recipe's next stage starts from the weights the stage
 * before wrote (F32 or F16), and a model of another shape is refused. */
static void test_init_from_continues_a_stage(void **state)
{
    (void)state;
    const char *dir = jqt_tmpdir();
    int rc;
    char *err;
    char *args = jqt_fmt("pretrain " TINY "--steps 20 --eval-every 100 "
                         "--out '%s/s1.gguf' --out-type f32", dir);
    char *out = judgeq(args, &rc, &err);
    if (rc != 0)
        fail_msg("stage 1: exit %d: %s", rc, err);
    free(out);
    free(err);
    free(args);
    /* one step at a negligible learning rate from stage 1's weights, with
     * another context and seed: the weights come through unchanged */
    args = jqt_fmt("pretrain " TINY "--ctx 256 --seed 7 --steps 2 --warmup 0 "
                   "--lr 1e-9 --eval-every 100 --init-from '%s/s1.gguf' "
                   "--out '%s/s2.gguf' --out-type f32", dir, dir);
    out = judgeq(args, &rc, &err);
    if (rc != 0)
        fail_msg("stage 2: exit %d: %s", rc, err);
    free(out);
    free(err);
    free(args);
    char *s1 = jqt_fmt("%s/s1.gguf", dir), *s2 = jqt_fmt("%s/s2.gguf", dir);
    assert_true(max_weight_difference(s1, s2) < 1e-6);
    /* without --init-from the same command starts from random weights */
    args = jqt_fmt("pretrain " TINY "--ctx 256 --seed 7 --steps 2 --warmup 0 "
                   "--lr 1e-9 --eval-every 100 --out '%s/r.gguf' "
                   "--out-type f32", dir);
    out = judgeq(args, &rc, &err);
    assert_int_equal(rc, 0);
    free(out);
    free(err);
    free(args);
    char *r = jqt_fmt("%s/r.gguf", dir);
    assert_true(max_weight_difference(s1, r) > 1e-3);
    /* an F16 stage 1 is accepted too */
    args = jqt_fmt("pretrain " TINY "--steps 2 --warmup 0 --eval-every 100 "
                   "--init-from '%s' --out '%s/s2h.gguf'", s1, dir);
    out = judgeq(args, &rc, &err);
    free(out);
    free(err);
    free(args);
    args = jqt_fmt("pretrain " TINY "--steps 2 --warmup 0 --lr 1e-9 "
                   "--eval-every 100 --init-from '%s/s2h.gguf' "
                   "--out '%s/s3.gguf' --out-type f32", dir, dir);
    out = judgeq(args, &rc, &err);
    if (rc != 0)
        fail_msg("from F16: exit %d: %s", rc, err);
    free(out);
    free(err);
    free(args);
    /* another shape: exit 1 naming the option, the file and the tensor */
    args = jqt_fmt("pretrain " TINY "--n-embd 64 --steps 2 --warmup 0 "
                   "--init-from '%s' --out '%s/bad.gguf'", s1, dir);
    out = judgeq(args, &rc, &err);
    assert_int_equal(rc, 1);
    if (!strstr(err, "--init-from") || !strstr(err, "s1.gguf") ||
        !strstr(err, "token_embd.weight"))
        fail_msg("shape mismatch: %s", err);
    free(out);
    free(err);
    free(args);
    args = jqt_fmt("pretrain " TINY "--steps 2 --warmup 0 --init-from '%s/none.gguf' "
                   "--out '%s/bad.gguf'", dir, dir);
    out = judgeq(args, &rc, &err);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "none.gguf"));
    free(out);
    free(err);
    free(args);
    free(s1);
    free(s2);
    free(r);
}

/* --tie-embeddings: the written model has no output.weight, loads with a
 * tied classifier, and a checkpoint of it resumes (the option is part of
 * the model's shape). */
/* --context-loss trains the prompt's next-token prediction too: the
 * progress line shows its loss, and it is part of what a checkpoint must
 * match on --resume */
static void test_context_loss(void **state)
{
    (void)state;
    const char *dir = jqt_tmpdir();
    int rc;
    char *err;
    char *args = jqt_fmt("pretrain " TINY "--context-loss 1 --steps 4 "
                         "--save-every 2 --eval-every 100 --log-every 1 "
                         "--out '%s/ctx.gguf'", dir);
    char *out = judgeq(args, &rc, &err);
    if (rc != 0)
        fail_msg("exit %d: %s", rc, err);
    assert_non_null(strstr(err, "prompt loss"));
    free(out);
    free(err);
    /* the same run without it may not continue that checkpoint */
    char *again = jqt_fmt("pretrain " TINY "--steps 4 --save-every 2 "
                          "--eval-every 100 --out '%s/ctx.gguf' --resume",
                          dir);
    out = judgeq(again, &rc, &err);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(err, "context_loss"));
    free(out);
    free(err);
    free(again);
    free(args);
}

/* --rope-base reaches the exported model (llama.rope.freq_base, which
 * judgeq and llama.cpp read) */
static void test_rope_base(void **state)
{
    (void)state;
    const char *dir = jqt_tmpdir();
    int rc;
    char *err;
    char *args = jqt_fmt("pretrain " TINY "--rope-base 500000 --steps 3 "
                         "--eval-every 100 --out '%s/rope.gguf'", dir);
    char *out = judgeq(args, &rc, &err);
    if (rc != 0)
        fail_msg("exit %d: %s", rc, err);
    free(out);
    free(err);
    char *path = jqt_fmt("%s/rope.gguf", dir);
    char e[512];
    jq_model *m = jq_model_load(path, e, sizeof e);
    if (!m)
        fail_msg("%s", e);
    assert_true(m->hp.rope_base == 500000.0f);
    jq_model_free(m);
    free(path);
    free(args);
}

static void test_tied_embeddings(void **state)
{
    (void)state;
    const char *dir = jqt_tmpdir();
    int rc;
    char *err;
    char *args = jqt_fmt("pretrain " TINY "--tie-embeddings --steps 6 "
                         "--eval-every 100 --out '%s/tied.gguf'", dir);
    char *out = judgeq(args, &rc, &err);
    if (rc != 0)
        fail_msg("exit %d: %s", rc, err);
    free(out);
    free(err);
    char *path = jqt_fmt("%s/tied.gguf", dir);
    char e[512];
    jq_gguf *g = jq_gguf_open(path, e, sizeof e);
    assert_non_null(g);
    assert_null(jq_gguf_find_tensor(g, "output.weight"));
    jq_gguf_close(g);
    jq_model *m = jq_model_load(path, e, sizeof e);
    if (!m)
        fail_msg("%s", e);
    assert_true(m->output_tied);
    jq_model_free(m);
    /* resuming the finished run's checkpoint without the option is refused */
    char *other = jqt_fmt("pretrain " TINY "--steps 6 --eval-every 100 "
                          "--out '%s/tied.gguf' --resume", dir);
    out = judgeq(other, &rc, &err);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "tie_embd"));
    free(out);
    free(err);
    free(other);
    free(path);
    free(args);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_usage_errors),
        cmocka_unit_test(test_tiny_run_loads),
        cmocka_unit_test(test_interrupt_and_resume_bit_exact),
        cmocka_unit_test(test_init_from_continues_a_stage),
        cmocka_unit_test(test_tied_embeddings),
        cmocka_unit_test(test_context_loss),
        cmocka_unit_test(test_rope_base),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
