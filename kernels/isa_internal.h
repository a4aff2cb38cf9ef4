/* isa_internal.h — dispatch state shared by the kernel files (not public). */
#ifndef JQ_ISA_INTERNAL_H
#define JQ_ISA_INTERNAL_H

#include <stdbool.h>

#include "kernels.h"

/* The ISA in use (a jq_isa). Public entry points read it after
 * jq_kernels_init() has run: JQ_USE_AVX512 does both. */
extern int jq_isa_active;
jq_isa jq_kernels_init(void);
bool jq_cpu_has_avx512_bf16(void);
bool jq_cpu_has_avx512_vnni(void);

#define JQ_USE_AVX512() (jq_kernels_init() == JQ_ISA_AVX512)

#endif
