/* pretok_dump.c — prints the words judgeq's pre-tokenizers make, for
 * tools/check_pretokenizers.py. Not part of the build:
 *
 *   make build-all
 *   cc -O2 -std=c17 -D_GNU_SOURCE -Iengine -o build/pretok_dump \
 *      tools/pretok_dump.c build/lib/libjudgeq-engine.a -lm
 *
 * Reads lines "KIND N CP1 ... CPN" (jq_pre_kind, code points in hex) and
 * prints the word lengths of each, in code points, on one line. */
#include <stdio.h>
#include <stdlib.h>

#include "tokenizer_internal.h"

int main(void)
{
    int kind;
    size_t n;
    jq_sizevec words = {0}, tmp = {0};
    while (scanf("%d %zu", &kind, &n) == 2) {
        uint32_t *cps = malloc((n + 1) * sizeof *cps);
        if (!cps)
            return 1;
        for (size_t i = 0; i < n; i++)
            if (scanf("%x", &cps[i]) != 1)
                return 1;
        if (jq_pretokenize((jq_pre_kind)kind, cps, n, &words, &tmp))
            return 1;
        for (size_t i = 0; i < words.n; i++)
            printf("%zu ", words.v[i]);
        printf("\n");
        fflush(stdout);
        free(cps);
    }
    free(words.v);
    free(tmp.v);
    return 0;
}
