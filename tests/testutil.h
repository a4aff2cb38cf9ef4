/* testutil.h — shared helpers for judgeq's cmocka tests.
 *
 * Include after <cmocka.h>'s prerequisites; it includes them itself.
 * Paths come from the environment that tests/run.sh sets:
 *   JUDGEQ_TEST_MODELS     models folder (default ../shared/models)
 *   JUDGEQ_TEST_REFERENCE  reference data (default ../shared/reference)
 *   JUDGEQ_BIN             the judgeq binary (default build/bin/judgeq)
 */
#ifndef JQ_TESTUTIL_H
#define JQ_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

struct json_t; /* jansson's json_t */

/* Full path of a model in JUDGEQ_TEST_MODELS. A missing file fails the
 * current test with a message naming where it looked (never a skip).
 * Returns a static buffer (overwritten by the next call). */
const char *jqt_model_path(const char *file);
/* Full path of a file under JUDGEQ_TEST_REFERENCE; fails like above. */
const char *jqt_reference_path(const char *rel);
/* Path of the judgeq binary. */
const char *jqt_judgeq_bin(void);
/* A fresh temporary directory for this process (removed by run.sh). */
const char *jqt_tmpdir(void);

/* Runs a shell command line; returns its stdout (malloc'd, NUL-terminated)
 * and stores the exit status (or 128+signal) in *status. stderr goes to
 * *err_out when non-NULL (malloc'd), else is discarded. */
char *jqt_run(const char *cmdline, int *status, char **err_out);
/* Runs a shell command line that must exit 0 and print one JSON document
 * (a `judgeq ... --json`); returns it parsed (json_decref it). Anything
 * else fails the test, quoting the command, its exit status and stderr. */
struct json_t *jqt_run_json(const char *cmdline);
/* `judgeq ARGS --json` through jqt_run_json. */
struct json_t *jqt_judgeq_json(const char *args);
/* The "tokens" array of a --json document into out; fails the test when
 * there are more than cap. Returns how many. */
size_t jqt_json_tokens(const struct json_t *doc, int32_t *out, size_t cap);
/* Runs the judgeq binary with args (shell words); like jqt_run. */
char *jqt_judgeq(const char *args, int *status, char **err_out);
/* Runs judgeq with args, failing the test (with its stderr) unless it
 * exits 0; returns its stdout (malloc'd). */
char *jqt_judgeq_ok(const char *args);
/* Runs judgeq with args and fails the test unless it exits with want_rc
 * and (when want_err is not NULL) its stderr contains want_err. */
void jqt_expect_exit(const char *args, int want_rc, const char *want_err);
/* "B=DIR [SANITIZE=1]" for a nested `make` to use the build directory
 * of this test run (JUDGEQ_BUILD, when it is below JUDGEQ_ROOT), or ""
 * (malloc'd). */
char *jqt_make_build_arg(void);
/* printf-style formatting into a malloc'd string. */
char *jqt_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Reads a whole file (malloc'd, NUL-terminated); NULL if unreadable. */
char *jqt_read_file(const char *path, size_t *len);

/* Deterministic pseudo-random numbers (xorshift64*). */
typedef struct { uint64_t s; } jqt_rng;
void jqt_rng_seed(jqt_rng *r, uint64_t seed);
uint64_t jqt_rng_u64(jqt_rng *r);
float jqt_rng_uniform(jqt_rng *r, float lo, float hi);
void jqt_fill_uniform(jqt_rng *r, float *x, size_t n, float lo, float hi);

/* Guard values for kernel outputs: a NaN whose payload no kernel computes
 * from the tests' inputs. Tests fill output arrays (and the space after
 * them) with it; any stray store changes the bits. */
#define JQT_GUARD_BITS 0x7fa5a5a5u
float jqt_guard(void);
int jqt_is_guard(float f);

#endif
