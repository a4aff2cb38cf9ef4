/* fuzz_main.c — the libFuzzer entry points of one target, chosen at
 * compile time with -DJQ_FUZZ_TARGET=NAME (make fuzz builds this file once
 * per target). The targets themselves are plain functions (fuzz.h), so the
 * regression test links all of them into one binary without clashing
 * LLVMFuzzerTestOneInput definitions. Never part of the normal build. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz.h"

#ifndef JQ_FUZZ_TARGET
#error "build with -DJQ_FUZZ_TARGET=NAME (gguf, soft_tokens, tokenizer, ...)"
#endif

#define JQ_CAT_(a, b) a##b
#define JQ_CAT(a, b) JQ_CAT_(a, b)
#define JQ_ENTRY JQ_CAT(jq_fuzz_, JQ_FUZZ_TARGET)
#define JQ_INIT JQ_CAT(JQ_ENTRY, _init)

/* Targets without state to prepare have no _init; a weak reference lets
 * this file serve both kinds without a per-target table. */
int JQ_INIT(void) __attribute__((weak));

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (JQ_INIT)
        JQ_INIT();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return JQ_ENTRY(data, size);
}
