// Run-time CPU feature detection: the only platform #if for kernel dispatch.
#include "ckernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

uint32_t palr_cpu_features(void) {
    unsigned a, b, c, d;
    uint32_t f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int osxsave = (c >> 27) & 1;
    if (!osxsave) return 0;
    const uint64_t xcr0 = xgetbv0();
    const int ymm = (xcr0 & 0x6) == 0x6;            // SSE + AVX state
    const int zmm = (xcr0 & 0xe6) == 0xe6;          // + opmask, ZMM hi256, hi16 ZMM
    if (ymm && ((c >> 12) & 1)) f |= PALR_CPU_FMA;
    if (ymm && ((c >> 29) & 1)) f |= PALR_CPU_F16C;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
    if (ymm && ((b >> 5) & 1)) f |= PALR_CPU_AVX2;
    if (zmm && ((b >> 16) & 1)) f |= PALR_CPU_AVX512F;
    if (zmm && ((b >> 30) & 1)) f |= PALR_CPU_AVX512BW;
    if (zmm && ((b >> 31) & 1)) f |= PALR_CPU_AVX512VL;
    if (zmm && ((c >> 11) & 1)) f |= PALR_CPU_AVX512VNNI;
    return f;
}

#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
uint32_t palr_cpu_features(void) {
    unsigned long hw = getauxval(AT_HWCAP);
    uint32_t f = PALR_CPU_NEON;                     // Advanced SIMD is mandatory on AArch64
    if (hw & HWCAP_ASIMDDP) f |= PALR_CPU_DOTPROD;
    return f;
}

#else
uint32_t palr_cpu_features(void) { return 0; }
#endif
