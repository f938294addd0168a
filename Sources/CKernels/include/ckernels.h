// CKernels: the numeric leaf of palr.
//
// Block layouts are ggml's, byte for byte:
//   Q4_0: 32 weights in 18 bytes: fp16 scale d, then 16 bytes of nibbles.
//         x[j] = d * ((qs[j] & 0xF) - 8), x[j+16] = d * ((qs[j] >> 4) - 8), j < 16.
//   Q8_0: 32 weights in 34 bytes: fp16 scale d, then 32 int8 q; x[j] = d * q[j].
// Every function takes raw pointers and counts; the caller owns all memory.
// `n` is always a multiple of the block size (32) for the quantized kernels.
#ifndef PALR_CKERNELS_H
#define PALR_CKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PALR_QK 32
#define PALR_Q4_0_BLOCK_BYTES 18
#define PALR_Q8_0_BLOCK_BYTES 34

// ---- half precision -------------------------------------------------------
// IEEE binary16 <-> binary32, round to nearest even (as F16C / numpy do).
uint16_t palr_fp32_to_fp16(float f);
float palr_fp16_to_fp32(uint16_t h);
// bfloat16: the top 16 bits of a binary32, rounded to nearest even (NaN kept quiet).
uint16_t palr_fp32_to_bf16(float f);
float palr_bf16_to_fp32(uint16_t h);

void palr_fp16_to_fp32_row(const uint16_t *src, float *dst, size_t n);
void palr_fp32_to_fp16_row(const float *src, uint16_t *dst, size_t n);
void palr_bf16_to_fp32_row(const uint16_t *src, float *dst, size_t n);
void palr_fp32_to_bf16_row(const float *src, uint16_t *dst, size_t n);

// ---- reference quantizers (bit-identical to ggml's *_ref and gguf-py) ----
void palr_quantize_row_q4_0(const float *src, void *dst, size_t n);
void palr_quantize_row_q8_0(const float *src, void *dst, size_t n);
void palr_dequantize_row_q4_0(const void *src, float *dst, size_t n);
void palr_dequantize_row_q8_0(const void *src, float *dst, size_t n);

// ---- dot products of one weight row with a float activation vector -------
// Scalar references. Accumulation order: block by block, in float.
float palr_dot_f32(const float *w, const float *x, size_t n);
float palr_dot_f16_f32(const uint16_t *w, const float *x, size_t n);
float palr_dot_bf16_f32(const uint16_t *w, const float *x, size_t n);
float palr_dot_q4_0_f32(const void *w, const float *x, size_t n);
float palr_dot_q8_0_f32(const void *w, const float *x, size_t n);

// ---- CPU features -----------------------------------------------------------
#define PALR_CPU_AVX2       (1u << 0)
#define PALR_CPU_FMA        (1u << 1)
#define PALR_CPU_F16C       (1u << 2)
#define PALR_CPU_AVX512F    (1u << 3)
#define PALR_CPU_AVX512BW   (1u << 4)
#define PALR_CPU_AVX512VL   (1u << 5)
#define PALR_CPU_AVX512VNNI (1u << 6)
#define PALR_CPU_NEON       (1u << 16)
#define PALR_CPU_DOTPROD    (1u << 17)
// cpuid (and XGETBV: the OS saves the vector state) on x86; HWCAP on ARM.
uint32_t palr_cpu_features(void);

#ifdef __cplusplus
}
#endif
#endif
