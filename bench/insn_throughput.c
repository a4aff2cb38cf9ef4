/* insn_throughput.c — issue rate of the 512-bit multiply-add instructions
 * the kernels could be built on (`make bench-kernels` runs it).
 *
 * 24 independent accumulator chains per instruction, so latency never
 * limits: the time per instruction is its reciprocal throughput. Measured
 * here (KVM guest, Xeon family 6 model 207, shared with other jobs):
 *   vfmadd231ps 0.22 ns   vpdpbusd 0.18-0.29 ns   vdpbf16ps 0.75-1.2 ns
 * vpdpbusd issues like an FMA (about two per cycle) but does 64 products
 * instead of 16: the int8 GEMM's case. vdpbf16ps does 32 products but
 * issues about one per two to three cycles (and with 12 chains it ran at
 * 1.06-1.26 ns: its latency is long too), so it does half the products of
 * two FMAs in the same time: BF16 and F16 prefill convert the weights to
 * F32 while packing them and use an FMA micro-kernel
 * (kernels/gemm_half_avx512.c), and BF16 decode keeps the exact shift
 * path. (A 12 x 32 micro-kernel of each, data in L1, on 2026-11-23:
 * FMA 170 GFLOP/s, vdpbf16ps 87.)
 */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

#define N 20000000L
#define CHAINS 24

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(void)
{
    __m512 f[CHAINS];
    __m512i a[CHAINS];
    for (int k = 0; k < CHAINS; k++) {
        f[k] = _mm512_setzero_ps();
        a[k] = _mm512_setzero_si512();
    }
    const __m512 p = _mm512_set1_ps(0.5f);
    const __m512i w = _mm512_set1_epi8(3), x = _mm512_set1_epi8(1);
    const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3f80); /* 1.0 */
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_s();
        for (long i = 0; i < N; i++) {
            _Pragma("GCC unroll 24")
            for (int k = 0; k < CHAINS; k++)
                f[k] = _mm512_fmadd_ps(f[k], p, p);
            __asm__ volatile("" ::"v"(p));
        }
        double t1 = now_s();
        for (long i = 0; i < N; i++) {
            _Pragma("GCC unroll 24")
            for (int k = 0; k < CHAINS; k++)
                a[k] = _mm512_dpbusd_epi32(a[k], w, x);
            __asm__ volatile("" ::"v"(w), "v"(x));
        }
        double t2 = now_s();
        for (long i = 0; i < N; i++) {
            _Pragma("GCC unroll 24")
            for (int k = 0; k < CHAINS; k++)
                f[k] = _mm512_dpbf16_ps(f[k], b, b);
            __asm__ volatile("" ::"v"(b));
        }
        double t3 = now_s();
        const double per = 1e9 / ((double)N * CHAINS);
        printf("{\"vfmadd231ps_ns\": %.3f, \"vpdpbusd_ns\": %.3f, "
               "\"vdpbf16ps_ns\": %.3f}\n",
               (t1 - t0) * per, (t2 - t1) * per, (t3 - t2) * per);
    }
    float s = 0;
    int si = 0;
    for (int k = 0; k < CHAINS; k++) {
        s += _mm512_reduce_add_ps(f[k]);
        si += _mm512_reduce_add_epi32(a[k]);
    }
    return s == 12345.0f && si == 7; /* keeps the chains live */
}
