/* cli.h — shared plumbing of the judgeq subcommands.
 *
 * Exit codes: 0 success, 1 a failure at run time (a bad model file, an
 * I/O error), 2 a usage error (one line naming what was wrong, then the
 * usage, on stderr).
 */
#ifndef JQ_CLI_H
#define JQ_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdnoreturn.h>

#define JQ_VERSION "0.1.0"

enum { JQ_EXIT_OK = 0, JQ_EXIT_FAIL = 1, JQ_EXIT_USAGE = 2 };

typedef struct {
    const char *name;  /* "run" */
    const char *usage; /* full usage text, first line "usage: judgeq run ..." */
} jq_cmd_info;

/* Prints "judgeq CMD: message" and the usage to stderr, exits 2. */
noreturn void jq_cli_usage_error(const jq_cmd_info *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prints "judgeq CMD: message" to stderr, exits 1. */
noreturn void jq_cli_fail(const jq_cmd_info *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The usage error for getopt_long's ':' (an option without its value) or
 * '?' (an unknown option), with opterr = 0 and optstring starting ':'. */
noreturn void jq_cli_bad_option(const jq_cmd_info *cmd, int c, char **argv);
/* Prints the usage to stdout, exits 0. */
noreturn void jq_cli_help(const jq_cmd_info *cmd);

/* Strict number parsing: the whole string, in range; usage error otherwise
 * naming the option. */
long long jq_cli_int(const jq_cmd_info *cmd, const char *opt, const char *s,
                     long long lo, long long hi);
double jq_cli_float(const jq_cmd_info *cmd, const char *opt, const char *s,
                    double lo, double hi);
uint64_t jq_cli_u64(const jq_cmd_info *cmd, const char *opt, const char *s);

/* Monotonic clock in seconds. */
double jq_now(void);
/* Reads a whole file into a NUL-terminated malloc'd buffer (exit 1 with a
 * message on failure). */
char *jq_cli_read_file(const jq_cmd_info *cmd, const char *path, size_t *len);
/* The text of a -p TEXT / -f FILE pair (exactly one is non-NULL): a
 * malloc'd NUL-terminated copy, its length in *len (exit 1 on failure). */
char *jq_cli_text_arg(const jq_cmd_info *cmd, const char *text,
                      const char *file, size_t *len);
/* Copies s[0..n) replacing invalid UTF-8 with U+FFFD, so JSON encoders
 * accept it. Malloc'd, NUL-terminated. */
char *jq_utf8_sanitize(const char *s, size_t n, size_t *out_len);

struct jq_model;
/* Loads a model; exit 1 with the loader's message on failure. */
struct jq_model *jq_cli_load_model(const jq_cmd_info *cmd, const char *path);
/* Tokenizes text with the model's vocabulary (BOS as the vocabulary says,
 * unless no_bos); exit 1 with a message on failure. */
int32_t *jq_cli_tokenize(const jq_cmd_info *cmd, const struct jq_model *m,
                         const char *text, size_t len, bool no_bos,
                         size_t *n);
/* Default thread count: the CPUs this process may use. */
int jq_cli_default_threads(void);

int jq_cmd_run(int argc, char **argv);
int jq_cmd_hitrate(int argc, char **argv);
int jq_cmd_eval(int argc, char **argv);
int jq_cmd_bench(int argc, char **argv);
int jq_cmd_tokenize(int argc, char **argv);
int jq_cmd_logits(int argc, char **argv);
int jq_cmd_gen_model(int argc, char **argv);
int jq_cmd_soft_init(int argc, char **argv);
int jq_cmd_train(int argc, char **argv);
int jq_cmd_recall_data(int argc, char **argv);
int jq_cmd_pretrain(int argc, char **argv);

#endif
