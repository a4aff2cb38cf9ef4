/* test_fuzz_regress.c — replays the fuzzing corpora in the normal suite.
 *
 * Every file of tests/fuzz/regress/NAME/ (inputs that once crashed a
 * target) and tests/fuzz/corpus/NAME/ (committed seeds) goes through the
 * same jq_fuzz_NAME function libFuzzer calls (tests/fuzz/fuzz.h), so a fixed
 * bug stays fixed under the normal and the SANITIZE=1 build. A target
 * aborts on a broken invariant, and ASan stops the process on a memory
 * error: either kills this binary, which tests/run.sh counts as a failure;
 * the file being replayed is named on stderr just before it runs.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "testutil.h"

typedef int (*fuzz_fn)(const uint8_t *, size_t);

/* Replays every regular file of ROOT/tests/fuzz/KIND/NAME (sorted, so a
 * failure reproduces in the same order); returns how many. A missing
 * folder holds no files. */
static size_t replay_dir(const char *kind, const char *name, fuzz_fn fn)
{
    const char *root = getenv("JUDGEQ_ROOT");
    char *dir = jqt_fmt("%s/tests/fuzz/%s/%s", root ? root : ".", kind, name);
    struct dirent **ents;
    int n = scandir(dir, &ents, NULL, alphasort);
    if (n < 0) {
        free(dir);
        return 0;
    }
    size_t done = 0;
    for (int i = 0; i < n; i++) {
        if (ents[i]->d_name[0] != '.') {
            char *path = jqt_fmt("%s/%s", dir, ents[i]->d_name);
            size_t len;
            char *data = jqt_read_file(path, &len);
            if (data) { /* NULL for a folder or an unreadable file */
                fprintf(stderr, "replay %s\n", path);
                /* an exactly-sized copy: jqt_read_file adds a NUL */
                uint8_t *copy = malloc(len ? len : 1);
                assert_non_null(copy);
                memcpy(copy, data, len);
                assert_int_equal(fn(copy, len), 0);
                free(copy);
                free(data);
                done++;
            }
            free(path);
        }
        free(ents[i]);
    }
    free(ents);
    free(dir);
    return done;
}

/* Each target has committed seeds, so a replay of nothing means the
 * folders were not found (wrong JUDGEQ_ROOT), not that all is well. */
static void replay(const char *name, fuzz_fn fn)
{
    size_t r = replay_dir("regress", name, fn);
    size_t c = replay_dir("corpus", name, fn);
    print_message("%s: replayed %zu regression and %zu corpus inputs\n", name,
                  r, c);
    assert_true(r + c > 0);
}

static void test_gguf(void **state)
{
    (void)state;
    replay("fuzz_gguf", jq_fuzz_gguf);
}

static void test_soft_tokens(void **state)
{
    (void)state;
    jq_fuzz_soft_tokens_init();
    replay("fuzz_soft_tokens", jq_fuzz_soft_tokens);
}

static void test_tokenizer(void **state)
{
    (void)state;
    jq_fuzz_tokenizer_init();
    replay("fuzz_tokenizer", jq_fuzz_tokenizer);
}

static void test_daemon_frame(void **state)
{
    (void)state;
    replay("fuzz_daemon_frame", jq_fuzz_daemon_frame);
}

static void test_train_jsonl(void **state)
{
    (void)state;
    jq_fuzz_train_jsonl_init();
    replay("fuzz_train_jsonl", jq_fuzz_train_jsonl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf),
        cmocka_unit_test(test_soft_tokens),
        cmocka_unit_test(test_tokenizer),
        cmocka_unit_test(test_daemon_frame),
        cmocka_unit_test(test_train_jsonl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
