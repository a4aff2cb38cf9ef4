/* topk.c — scalar reference top-k, the heap both paths share, and the
 * dispatcher.
 *
 * The order (jq_topk_ranks_above in ops_internal.h) is strict and total on
 * indices, so "the k best, best first" has exactly one answer; any correct
 * algorithm returns it. The reference keeps a k-element min-heap (root =
 * the weakest kept) in idx itself — no allocation, O(n log k), and still
 * fast enough when a sampler asks for k = n_vocab under JUDGEQ_ISA=scalar —
 * then heap-sorts it. The tests check it against a plain qsort.
 */
#include <assert.h>
#include <stdint.h>

#include "isa_internal.h"
#include "kernels.h"
#include "ops_internal.h"

static void sift_down(const float *s, int32_t *heap, int64_t size, int64_t p)
{
    for (;;) {
        int64_t low = p;
        const int64_t c = 2 * p + 1;
        /* move the lowest ranked of p and its children up to p */
        if (c < size && jq_topk_ranks_above(s, heap[low], heap[c]))
            low = c;
        if (c + 1 < size && jq_topk_ranks_above(s, heap[low], heap[c + 1]))
            low = c + 1;
        if (low == p)
            return;
        const int32_t t = heap[p];
        heap[p] = heap[low];
        heap[low] = t;
        p = low;
    }
}

void jq_topk_heap_build(const float *s, int32_t *heap, int64_t k)
{
    for (int64_t p = k / 2 - 1; p >= 0; p--)
        sift_down(s, heap, k, p);
}

void jq_topk_heap_replace_root(const float *s, int32_t *heap, int64_t k,
                               int32_t j)
{
    heap[0] = j;
    sift_down(s, heap, k, 0);
}

/* Repeatedly moves the weakest (the root) to the end of the shrinking heap,
 * which leaves the array ordered best first. */
void jq_topk_heap_sort(const float *s, int32_t *heap, int64_t k)
{
    for (int64_t end = k - 1; end > 0; end--) {
        const int32_t t = heap[0];
        heap[0] = heap[end];
        heap[end] = t;
        sift_down(s, heap, end, 0);
    }
}

/* Indices are int32_t, so n must fit in one (a vocabulary always does). */
int64_t jq_ref_topk(const float *scores, int64_t n, int64_t k, int32_t *idx)
{
    if (n <= 0 || k <= 0)
        return 0;
    assert(n <= INT32_MAX);
    if (k > n)
        k = n;
    for (int64_t i = 0; i < k; i++)
        idx[i] = (int32_t)i;
    jq_topk_heap_build(scores, idx, k);
    for (int64_t j = k; j < n; j++)
        if (jq_topk_ranks_above(scores, (int32_t)j, idx[0]))
            jq_topk_heap_replace_root(scores, idx, k, (int32_t)j);
    jq_topk_heap_sort(scores, idx, k);
    return k;
}

int64_t jq_topk(const float *scores, int64_t n, int64_t k, int32_t *idx)
{
    if (JQ_USE_AVX512())
        return jq_avx512_topk(scores, n, k, idx);
    return jq_ref_topk(scores, n, k, idx);
}
