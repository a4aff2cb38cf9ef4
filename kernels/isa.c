/* isa.c — run-time choice of the kernel implementation.
 *
 * The AVX-512 paths need AVX-512 F/BW/VL/DQ in the CPU (CPUID leaf 7) and
 * the OS saving the ZMM/opmask state on context switches (XCR0 bits 1,2,5,6,7
 * via XGETBV, after checking OSXSAVE). BF16 and VNNI are optional extras that
 * individual kernels check through jq_cpu_has_avx512_bf16/_vnni. The choice
 * is made once; JUDGEQ_ISA=scalar forces the reference everywhere.
 */
#include "kernels.h"
#include "blas.h"
#include "isa_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

int jq_isa_active = JQ_ISA_SCALAR;
static bool has_avx512, has_bf16, has_vnni;
static pthread_once_t isa_once = PTHREAD_ONCE_INIT;

static void detect_cpu(void)
{
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return;
    if (!(c & (1u << 27))) /* OSXSAVE: XGETBV is usable */
        return;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    const unsigned zmm_state = (1u << 1) | (1u << 2) | (1u << 5) | (1u << 6) | (1u << 7);
    if ((lo & zmm_state) != zmm_state)
        return;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return;
    bool f = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30),
         vl = b & (1u << 31);
    has_avx512 = f && dq && bw && vl;
    has_vnni = has_avx512 && (c & (1u << 11));
    if (has_avx512 && __get_cpuid_count(7, 1, &a, &b, &c, &d))
        has_bf16 = a & (1u << 5);
#endif
}

static void init_once(void)
{
    detect_cpu();
    const char *want = getenv("JUDGEQ_ISA");
    /* OpenBLAS's kernels follow the ISA judgeq uses */
    jq_blas_choose_core(has_avx512 && !(want && strcmp(want, "scalar") == 0));
    if (want && strcmp(want, "scalar") == 0)
        jq_isa_active = JQ_ISA_SCALAR;
    else
        jq_isa_active = has_avx512 ? JQ_ISA_AVX512 : JQ_ISA_SCALAR;
}

jq_isa jq_kernels_init(void)
{
    pthread_once(&isa_once, init_once);
    return (jq_isa)jq_isa_active;
}

jq_isa jq_kernels_isa(void)
{
    return jq_kernels_init();
}

bool jq_cpu_has_avx512(void)
{
    jq_kernels_init();
    return has_avx512;
}

bool jq_cpu_has_avx512_bf16(void)
{
    jq_kernels_init();
    return has_bf16;
}

bool jq_cpu_has_avx512_vnni(void)
{
    jq_kernels_init();
    return has_vnni;
}

jq_isa jq_kernels_force_isa(jq_isa isa)
{
    jq_kernels_init();
    if (isa == JQ_ISA_AVX512 && !has_avx512)
        isa = JQ_ISA_SCALAR;
    jq_isa_active = isa;
    return isa;
}

const char *jq_isa_name(jq_isa isa)
{
    return isa == JQ_ISA_AVX512 ? "avx512" : "scalar";
}
