/* convert_avx512.c — F32 -> F16 rows with VCVTPS2PH (compiled with the
 * AVX-512 flags; only called after jq_cpu_has_avx512()).
 *
 * The KV cache stores every new key and value through jq_quantize_row, so
 * with an F16 cache this runs for every token, layer and head. The
 * instruction rounds to nearest even when told so in its immediate (not
 * from MXCSR, which a caller could have changed), keeps subnormal halves,
 * overflows to infinity and quiets NaNs keeping their top payload bits:
 * exactly jq_f32_to_f16 in types.c, which tests/test_kernels_ops.c checks
 * bit for bit around every half value. Float subnormal inputs round to a
 * signed zero either way, so MXCSR.DAZ cannot change a result.
 */
#include <immintrin.h>
#include <stdint.h>

#include "kernels.h"

#define CVT_RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

void jq_avx512_quantize_row_f16(const float *src, void *dst, int64_t n)
{
    /* dst is only guaranteed 2-byte alignment (a row inside a tensor or a
     * cache): unaligned stores, addressed in bytes */
    unsigned char *o = dst;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i h0 = _mm512_cvtps_ph(_mm512_loadu_ps(src + i), CVT_RNE);
        const __m256i h1 =
            _mm512_cvtps_ph(_mm512_loadu_ps(src + i + 16), CVT_RNE);
        _mm256_storeu_si256((void *)(o + 2 * i), h0);
        _mm256_storeu_si256((void *)(o + 2 * i + 32), h1);
    }
    for (; i < n; i += 16) {
        const int64_t left = n - i;
        const __mmask16 m = left >= 16 ? (__mmask16)0xFFFF
                                       : (__mmask16)((1u << left) - 1u);
        _mm256_mask_storeu_epi16(
            o + 2 * i, m, _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, src + i),
                                          CVT_RNE));
    }
}
