/* topk_avx512.c — top-k with the candidate scan vectorised.
 *
 * Same heap as the reference (topk.c). Once the heap holds k indices, a
 * later index j can only enter by scoring strictly above the root: every
 * kept index is lower than j, so a tie with the root loses. One compare
 * against the root's score therefore rejects 16 candidates at a time; for a
 * vocabulary-sized row and small k almost every block is rejected, and only
 * the few surviving lanes go through the exact (scalar) order and the heap.
 * The threshold can only rise while a block's survivors are processed, so
 * re-checking each survivor against the current root is enough.
 */
#include <assert.h>
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "kernels.h"
#include "ops_internal.h"

/* Lanes of v that may rank above root score r. A NaN root is beaten by any
 * non-NaN; otherwise only by a strictly greater score (ordered compares
 * are false for NaN lanes, which never beat a non-NaN root). */
static inline __mmask16 may_enter(__m512 v, float r, __mmask16 valid)
{
    if (isnan(r))
        return _mm512_mask_cmp_ps_mask(valid, v, v, _CMP_ORD_Q);
    return _mm512_mask_cmp_ps_mask(valid, v, _mm512_set1_ps(r), _CMP_GT_OQ);
}

int64_t jq_avx512_topk(const float *scores, int64_t n, int64_t k,
                       int32_t *idx)
{
    if (n <= 0 || k <= 0)
        return 0;
    assert(n <= INT32_MAX);
    if (k > n)
        k = n;
    for (int64_t i = 0; i < k; i++)
        idx[i] = (int32_t)i;
    jq_topk_heap_build(scores, idx, k);
    for (int64_t base = k; base < n; base += 16) {
        const int64_t left = n - base;
        const __mmask16 valid = left >= 16
                                    ? (__mmask16)0xFFFF
                                    : (__mmask16)((1u << (unsigned)left) - 1u);
        const __m512 v = _mm512_maskz_loadu_ps(valid, scores + base);
        unsigned m = may_enter(v, scores[idx[0]], valid);
        while (m) {
            const int32_t j = (int32_t)(base + __builtin_ctz(m));
            m &= m - 1;
            if (jq_topk_ranks_above(scores, j, idx[0]))
                jq_topk_heap_replace_root(scores, idx, k, j);
        }
    }
    jq_topk_heap_sort(scores, idx, k);
    return k;
}
