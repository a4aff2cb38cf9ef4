/* test_daemon_bad_files.c — judgeqd started on a damaged model or
 * soft-token file exits 1 with one line that names the option, the file
 * and what is wrong with it (the line systemd shows in `systemctl status`
 * and the journal), never a crash, a hang or a sanitizer report.
 *
 * The damaged files are made here from stories260K.gguf and from soft
 * tokens made by `judgeq soft-init`: cut inside the header, cut inside the
 * tensor data, a wrong magic, an empty file, a key length and a tensor
 * count that cannot fit, a directory, a missing file, soft tokens as the
 * model; soft tokens for another model, cut short, a model as soft
 * tokens, a wrong magic.
 *
 * Also here: jq_load_error (the line itself) and --frame-timeout-ms's
 * place among the options.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#include "daemon_harness.h"
#include "load_error.h"
#include "options.h"

#define MODEL "stories260K.gguf"

/* A copy of src (its first `len` bytes; all when len < 0) with `patch`
 * written at offset `at` (when patch_len > 0), as TMP/name. */
static const char *damaged(const char *name, const char *src, long len,
                           long at, const void *patch, size_t patch_len)
{
    static char path[8][512];
    static int next;
    char *dst = path[next++ % 8];
    snprintf(dst, 512, "%s/%s", jqt_tmpdir(), name);
    size_t n;
    char *data = jqt_read_file(src, &n);
    assert_non_null(data);
    if (len >= 0 && (size_t)len < n)
        n = (size_t)len;
    if (patch_len) {
        assert_true((size_t)at + patch_len <= n);
        memcpy(data + at, patch, patch_len);
    }
    FILE *f = fopen(dst, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
    free(data);
    return dst;
}

static const char *soft_tokens(const char *name, const char *model)
{
    static char path[2][512];
    static int next;
    char *dst = path[next++ % 2];
    snprintf(dst, 512, "%s/%s", jqt_tmpdir(), name);
    char *cmd = jqt_fmt("'%s' soft-init -m '%s' -o '%s' --n 2",
                        jqt_judgeq_bin(), model, dst);
    int st;
    free(jqt_run(cmd, &st, NULL));
    assert_int_equal(st, 0);
    free(cmd);
    return dst;
}

/* Starts judgeqd with --model model (and --soft soft when non-NULL; with
 * NOTIFY_SOCKET=notify when that is non-NULL) and checks its failure: exit
 * 1 (not a signal) within a liveness bound, one error line "<3>cannot load
 * --OPTION FILE: ..." containing `problem`. */
static void expect_refused_notify(const char *model, const char *soft,
                                  const char *problem, const char *notify)
{
    const char *extra[3] = {NULL};
    if (soft) {
        extra[0] = "--soft";
        extra[1] = soft;
    }
    char *notify_env = notify ? jqt_fmt("NOTIFY_SOCKET=%s", notify) : NULL;
    const char *const env[] = {notify_env, NULL};
    jqt_daemon_opts opts = {.env = env};
    jqt_daemon d;
    jqt_daemon_spawn(&d, "bad", model, extra, &opts);
    free(notify_env); /* the child has its copy */
    if (!jqt_daemon_wait(&d, 120)) {
        jqt_daemon_kill(&d);
        fail_msg("judgeqd still running 120 s after a bad %s",
                 soft ? soft : model);
    }
    char *log = jqt_daemon_log(&d);
    if (!WIFEXITED(d.status) || WEXITSTATUS(d.status) != 1) {
        fprintf(stderr, "%s\n", log);
        fail_msg("judgeqd on a bad %s: wait status 0x%x, not exit 1",
                 soft ? soft : model, d.status);
    }
    char *want = jqt_fmt("<3>cannot load --%s %s: ", soft ? "soft" : "model",
                         soft ? soft : model);
    const char *line = strstr(log, want);
    if (!line || strstr(line + 1, "<3>") || strstr(log, "Sanitizer")) {
        fprintf(stderr, "%s\n", log);
        fail_msg("want exactly one error line starting \"%s\"", want);
    }
    const char *eol = strchr(line, '\n');
    assert_non_null(eol);
    char *msg = strndup(line, (size_t)(eol - line));
    if (!strstr(msg, problem))
        fail_msg("\"%s\" does not say \"%s\"", msg, problem);
    printf("  %s\n", msg + 3);
    free(msg);
    free(want);
    free(log);
}

static void expect_refused(const char *model, const char *soft,
                           const char *problem)
{
    expect_refused_notify(model, soft, problem, NULL);
}

static void test_damaged_model(void **state)
{
    (void)state;
    const char *m = jqt_model_path(MODEL);
    char good[512];
    snprintf(good, sizeof good, "%s", m);
    const uint8_t huge_len[8] = {0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
    const uint8_t huge_count[8] = {0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0x0f};
    expect_refused(damaged("cut-header.gguf", good, 20, 0, NULL, 0), NULL,
                   "header");
    expect_refused(damaged("cut-data.gguf", good, 600000, 0, NULL, 0), NULL,
                   "exceeds file size 600000");
    expect_refused(damaged("magic.gguf", good, -1, 0, "GGXF", 4), NULL,
                   "not a GGUF file");
    expect_refused(damaged("empty.gguf", good, 0, 0, NULL, 0), NULL,
                   "empty");
    /* the first key's name length (offset 24) and the tensor count (8) */
    expect_refused(damaged("keylen.gguf", good, -1, 24, huge_len, 8), NULL,
                   "name length");
    expect_refused(damaged("count.gguf", good, -1, 8, huge_count, 8), NULL,
                   "tensor infos cannot fit");
    char *dir = jqt_fmt("%s/dir.gguf", jqt_tmpdir());
    mkdir(dir, 0755);
    expect_refused(dir, NULL, "not a regular file");
    free(dir);
    char *missing = jqt_fmt("%s/missing.gguf", jqt_tmpdir());
    expect_refused(missing, NULL, "No such file");
    free(missing);
    expect_refused(soft_tokens("soft-as-model.gguf", good), NULL,
                   "architecture 'judgeq-soft-tokens' is not supported");
}

static void test_damaged_soft_tokens(void **state)
{
    (void)state;
    char good[512];
    snprintf(good, sizeof good, "%s", jqt_model_path(MODEL));
    const char *other = jqt_gen_model(
        "other", "--n-embd 32 --n-layer 1 --n-head 2 --n-head-kv 1 --n-ff 32 "
                 "--ctx 64");
    expect_refused(good, soft_tokens("soft-other.gguf", other),
                   "made for a model with n_embd 32, this model has 64");
    const char *soft = soft_tokens("soft.gguf", good);
    struct stat sb;
    assert_int_equal(stat(soft, &sb), 0);
    expect_refused(good, damaged("soft-cut.gguf", soft, sb.st_size - 10, 0,
                                 NULL, 0),
                   "exceeds file size");
    expect_refused(good, damaged("soft-magic.gguf", soft, -1, 0, "XXXX", 4),
                   "not a GGUF file");
    expect_refused(good, good, "not a judgeq soft-token file");
}

/* Under systemd (Type=notify) the reason is also the unit's status. */
static void test_status_for_systemd(void **state)
{
    (void)state;
    char *path = jqt_fmt("%s/notify.dgram", jqt_tmpdir());
    int ns = jqt_unix_listen(path, SOCK_DGRAM);
    char good[512];
    snprintf(good, sizeof good, "%s", jqt_model_path(MODEL));
    const char *bad = damaged("status.gguf", good, 20, 0, NULL, 0);
    expect_refused_notify(bad, NULL, "header", path);
    char msg[1024];
    ssize_t n = recv(ns, msg, sizeof msg - 1, MSG_DONTWAIT);
    assert_true(n > 0);
    msg[n] = 0;
    char *want = jqt_fmt("STATUS=failed to start: cannot load --model %s: "
                         "header",
                         bad);
    if (!strstr(msg, want))
        fail_msg("sd_notify got \"%s\"", msg);
    free(want);
    close(ns);
    free(path);
}

static void test_load_error_line(void **state)
{
    (void)state;
    char line[256];
    jq_load_error(line, sizeof line, "model", "m.gguf",
                  "m.gguf: gguf: m.gguf: header: truncated");
    assert_string_equal(line, "cannot load --model m.gguf: header: truncated");
    jq_load_error(line, sizeof line, "soft", "/a/s.gguf",
                  "gguf: /a/s.gguf: bad\nsecond line\r");
    assert_string_equal(line, "cannot load --soft /a/s.gguf: bad second line ");
    /* a message that does not start with the path is kept whole */
    jq_load_error(line, sizeof line, "model", "m.gguf", "model: out of memory");
    assert_string_equal(line, "cannot load --model m.gguf: model: out of memory");
    /* nothing after the prefixes: the message as it was */
    jq_load_error(line, sizeof line, "model", "m", "m: ");
    assert_string_equal(line, "cannot load --model m: m: ");
    /* truncated, still terminated */
    char small[16];
    jq_load_error(small, sizeof small, "model", "m.gguf", "x");
    assert_string_equal(small, "cannot load --m");
}

static void test_frame_timeout_option(void **state)
{
    (void)state;
    jq_config cfg;
    char err[256];
    char *a0[] = {"judgeqd", "--model", "m.gguf"};
    assert_int_equal(jq_options_parse(3, a0, &cfg, stdout, err, sizeof err), 0);
    assert_int_equal(cfg.frame_timeout_ms, 30000);
    assert_int_equal(cfg.max_output_bytes, 256u << 20);
    char *a1[] = {"judgeqd", "--model", "m.gguf", "--frame-timeout-ms", "0"};
    assert_int_equal(jq_options_parse(5, a1, &cfg, stdout, err, sizeof err), 0);
    assert_int_equal(cfg.frame_timeout_ms, 0);
    char *a2[] = {"judgeqd", "--model", "m.gguf", "--frame-timeout-ms=3600001"};
    assert_int_equal(jq_options_parse(4, a2, &cfg, stdout, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "--frame-timeout-ms 3600001 is outside "
                                "0..3600000"));
    char *help = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&help, &len);
    assert_non_null(f);
    jq_options_help(f);
    fclose(f);
    assert_non_null(strstr(help, "--frame-timeout-ms MS"));
    assert_non_null(strstr(help, "--max-output-bytes BYTES"));
    free(help);
}

int main(void)
{
    alarm(1800);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_error_line),
        cmocka_unit_test(test_frame_timeout_option),
        cmocka_unit_test(test_damaged_model),
        cmocka_unit_test(test_damaged_soft_tokens),
        cmocka_unit_test(test_status_for_systemd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
