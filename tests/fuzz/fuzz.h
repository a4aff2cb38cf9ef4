/* fuzz.h — judgeq's fuzz targets as plain functions.
 *
 * Each target is a function jq_fuzz_NAME(data, size) in tests/fuzz/fuzz_NAME.c
 * and, when it needs state that is expensive to build (vocabularies), an
 * initialiser jq_fuzz_NAME_init(). The same objects serve two builds:
 *
 *   - libFuzzer (make fuzz): fuzz_main.c, compiled with -DJQ_FUZZ_TARGET=NAME,
 *     defines LLVMFuzzerInitialize / LLVMFuzzerTestOneInput for one target;
 *   - the regression test (tests/test_fuzz_regress.c, make test): calls every
 *     target on every file of tests/fuzz/regress/NAME/ and
 *     tests/fuzz/corpus/NAME/, under the normal and the ASan build.
 *
 * A target returns 0 for every input; it aborts (jq_fuzz_check) when an
 * invariant that must hold for any input fails, so both builds see the
 * failure as a crash.
 */
#ifndef JQ_FUZZ_H
#define JQ_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int jq_fuzz_gguf(const uint8_t *data, size_t size);
int jq_fuzz_soft_tokens_init(void);
int jq_fuzz_soft_tokens(const uint8_t *data, size_t size);
int jq_fuzz_tokenizer_init(void);
int jq_fuzz_tokenizer(const uint8_t *data, size_t size);
int jq_fuzz_daemon_frame(const uint8_t *data, size_t size);
int jq_fuzz_train_jsonl_init(void);
int jq_fuzz_train_jsonl(const uint8_t *data, size_t size);

/* Aborts with file:line and the message when cond is false: an invariant
 * violation is a bug, and abort() is what libFuzzer records as a crash. */
#define jq_fuzz_check(cond, ...)                                              \
    do {                                                                      \
        if (!(cond))                                                          \
            jq_fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);             \
    } while (0)

_Noreturn void jq_fuzz_fail(const char *file, int line, const char *cond,
                            const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Path of a file under JUDGEQ_TEST_REFERENCE / JUDGEQ_TEST_MODELS (what
 * tests/run.sh sets), else under ../shared/reference or ../shared/models
 * relative to the working directory (make runs from the repository root).
 * Returns a static buffer overwritten by the next call. */
const char *jq_fuzz_reference_path(const char *rel);
const char *jq_fuzz_model_path(const char *rel);

/* For loaders that take a path: makes data[0..size) the contents of one
 * memory file (memfd, created on first use, rewritten each call) and
 * returns its /proc/self/fd path. */
const char *jq_fuzz_memfile(const uint8_t *data, size_t size);

#endif
