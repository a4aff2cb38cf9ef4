/* testutil.c — see testutil.h. */
#include "testutil.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return (v && *v) ? v : fallback;
}

static const char *existing_path(const char *dir, const char *rel,
                                 const char *var)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    if (access(path, R_OK) != 0)
        fail_msg("test input %s not found (looked in %s, set by %s): %s",
                 rel, dir, var, strerror(errno));
    return path;
}

const char *jqt_model_path(const char *file)
{
    return existing_path(env_or("JUDGEQ_TEST_MODELS", "../shared/models"),
                         file, "JUDGEQ_TEST_MODELS");
}

const char *jqt_reference_path(const char *rel)
{
    return existing_path(
        env_or("JUDGEQ_TEST_REFERENCE", "../shared/reference"), rel,
        "JUDGEQ_TEST_REFERENCE");
}

const char *jqt_judgeq_bin(void)
{
    return env_or("JUDGEQ_BIN", "build/bin/judgeq");
}

const char *jqt_tmpdir(void)
{
    static char dir[4096];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%s/jqt.XXXXXX", env_or("TMPDIR", "/tmp"));
        if (!mkdtemp(dir))
            fail_msg("mkdtemp(%s): %s", dir, strerror(errno));
    }
    return dir;
}

char *jqt_fmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    assert_non_null(s);
    return s;
}

char *jqt_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf)
        return NULL;
    buf[n] = 0;
    if (len)
        *len = n;
    return buf;
}

char *jqt_run(const char *cmdline, int *status, char **err_out)
{
    const char *dir = jqt_tmpdir();
    static unsigned counter;
    char *out_path = jqt_fmt("%s/run%u.out", dir, counter);
    char *err_path = jqt_fmt("%s/run%u.err", dir, counter++);
    char *full = jqt_fmt("(%s) >'%s' 2>'%s'", cmdline, out_path, err_path);
    int rc = system(full);
    int st = -1;
    if (rc != -1) {
        if (WIFEXITED(rc))
            st = WEXITSTATUS(rc);
        else if (WIFSIGNALED(rc))
            st = 128 + WTERMSIG(rc);
    }
    if (status)
        *status = st;
    char *out = jqt_read_file(out_path, NULL);
    if (err_out)
        *err_out = jqt_read_file(err_path, NULL);
    unlink(out_path);
    unlink(err_path);
    free(out_path);
    free(err_path);
    free(full);
    assert_non_null(out);
    return out;
}

json_t *jqt_run_json(const char *cmdline)
{
    int rc;
    char *err = NULL;
    char *out = jqt_run(cmdline, &rc, &err);
    if (rc != 0)
        fail_msg("%s: exit %d: %s", cmdline, rc, err ? err : "");
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    if (!j)
        fail_msg("%s: stdout is not JSON (%s): %s", cmdline, je.text, out);
    free(out);
    free(err);
    return j;
}

json_t *jqt_judgeq_json(const char *args)
{
    char *cmd = jqt_fmt("'%s' %s --json", jqt_judgeq_bin(), args);
    json_t *j = jqt_run_json(cmd);
    free(cmd);
    return j;
}

size_t jqt_json_tokens(const json_t *doc, int32_t *out, size_t cap)
{
    const json_t *toks = json_object_get(doc, "tokens");
    size_t n = json_array_size(toks);
    if (n > cap)
        fail_msg("%zu tokens, room for %zu", n, cap);
    for (size_t i = 0; i < n; i++)
        out[i] = (int32_t)json_integer_value(json_array_get(toks, i));
    return n;
}

char *jqt_judgeq(const char *args, int *status, char **err_out)
{
    char *cmd = jqt_fmt("'%s' %s", jqt_judgeq_bin(), args);
    char *out = jqt_run(cmd, status, err_out);
    free(cmd);
    return out;
}

char *jqt_judgeq_ok(const char *args)
{
    int rc;
    char *err;
    char *out = jqt_judgeq(args, &rc, &err);
    if (rc != 0)
        fail_msg("judgeq %s: exit %d: %s", args, rc, err);
    free(err);
    return out;
}

void jqt_expect_exit(const char *args, int want_rc, const char *want_err)
{
    int rc;
    char *err;
    char *out = jqt_judgeq(args, &rc, &err);
    if (rc != want_rc || (want_err && !strstr(err, want_err)))
        fail_msg("judgeq %s: exit %d (want %d), stderr: %s", args, rc, want_rc,
                 err);
    free(out);
    free(err);
}

void jqt_rng_seed(jqt_rng *r, uint64_t seed)
{
    r->s = seed ? seed : 0x9e3779b97f4a7c15ull;
}

uint64_t jqt_rng_u64(jqt_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545f4914f6cdd1dull;
}

float jqt_rng_uniform(jqt_rng *r, float lo, float hi)
{
    double u = (double)(jqt_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(lo + (hi - lo) * u);
}

void jqt_fill_uniform(jqt_rng *r, float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = jqt_rng_uniform(r, lo, hi);
}

char *jqt_make_build_arg(void)
{
    const char *root = getenv("JUDGEQ_ROOT");
    const char *b = getenv("JUDGEQ_BUILD");
    assert_non_null(root);
    size_t n = strlen(root);
    if (b && !strncmp(b, root, n) && b[n] == '/')
        return jqt_fmt("B=%s%s", b + n + 1,
                       strstr(b + n + 1, "asan") ? " SANITIZE=1" : "");
    return jqt_fmt("%s", "");
}

float jqt_guard(void)
{
    const uint32_t u = JQT_GUARD_BITS;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

int jqt_is_guard(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u == JQT_GUARD_BITS;
}
