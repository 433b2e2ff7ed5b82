/*
 * cpu.c -- which SIMD level this CPU and OS can run. AVX-512 needs the OS to
 * save the ZMM state; __builtin_cpu_supports checks that through XGETBV.
 */
#include <string.h>

#include "sfp/common.h"

int sfp_cpu_isa(void)
{
#if defined(__x86_64__)
	__builtin_cpu_init();
	int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2") &&
		   __builtin_cpu_supports("fma") && __builtin_cpu_supports("popcnt");
	int avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
		     __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
		     __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512cd") &&
		     __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vbmi2") &&
		     __builtin_cpu_supports("avx512bitalg") &&
		     __builtin_cpu_supports("avx512vpopcntdq");
	if (avx512)
		return SFP_ISA_AVX512;
	if (avx2)
		return SFP_ISA_AVX2;
#endif
	return SFP_ISA_SCALAR;
}

const char *sfp_isa_name(int isa)
{
	switch (isa) {
	case SFP_ISA_SCALAR: return "scalar";
	case SFP_ISA_AVX2: return "avx2";
	case SFP_ISA_AVX512: return "avx512";
	default: return "unknown";
	}
}

int sfp_isa_parse(const char *name)
{
	for (int i = SFP_ISA_SCALAR; i <= SFP_ISA_AVX512; i++)
		if (strcmp(name, sfp_isa_name(i)) == 0)
			return i;
	return SFP_EINVAL;
}
