// Scalar reference kernels. Fast variants (issue: fast path) are tested against these.
#include "ckernels.h"

#include <float.h>
#include <math.h>
#include <string.h>

// ---- half precision -------------------------------------------------------

static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

uint16_t palr_fp32_to_fp16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t a = x & 0x7fffffffu;
    if (a >= 0x7f800000u) {                       // Inf or NaN (NaN stays a quiet NaN)
        return sign | 0x7c00u | (a > 0x7f800000u ? (0x0200u | ((a >> 13) & 0x03ffu)) : 0u);
    }
    if (a >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to infinity
    if (a < 0x38800000u) {                        // below 2^-14: half subnormal or zero
        // Adding 0.5 puts the value in a binade whose ulp is 2^-24, the half
        // subnormal spacing, so the FPU does the round-to-nearest-even for us.
        float r = bits_f32(a) + 0.5f;
        return sign | (uint16_t)(f32_bits(r) - 0x3f000000u);
    }
    uint32_t odd = (a >> 13) & 1u;                // round to nearest, ties to even
    a += 0xc8000fffu + odd;                       // rebias exponent (-112 << 23) and round
    return sign | (uint16_t)(a >> 13);
}

float palr_fp16_to_fp32(uint16_t h) {
    uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x03ffu;
    if (exp == 0) {
        float v = (float)mant * 5.9604644775390625e-8f;   // mant * 2^-24
        return bits_f32(f32_bits(v) | sign);
    }
    if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
    return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t palr_fp32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

float palr_bf16_to_fp32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

void palr_fp16_to_fp32_row(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = palr_fp16_to_fp32(src[i]);
}
void palr_fp32_to_fp16_row(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = palr_fp32_to_fp16(src[i]);
}
void palr_bf16_to_fp32_row(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = palr_bf16_to_fp32(src[i]);
}
void palr_fp32_to_bf16_row(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = palr_fp32_to_bf16(src[i]);
}

// ---- reference quantizers ---------------------------------------------------

static inline void store_f16(uint8_t *p, float v) { uint16_t h = palr_fp32_to_fp16(v); memcpy(p, &h, 2); }
static inline float load_f16(const uint8_t *p) { uint16_t h; memcpy(&h, p, 2); return palr_fp16_to_fp32(h); }

// Q4_0: the scale is the signed value of largest magnitude divided by -8, so that
// value maps to nibble 0. Each element is rounded as x*id + 8.5 in float with two
// separate roundings (no FMA: the target builds with -ffp-contract=off), then
// truncated: the arithmetic of ggml's C reference and gguf-py alike.
void palr_quantize_row_q4_0(const float *src, void *dst, size_t n) {
    uint8_t *out = (uint8_t *)dst;
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const float *x = src + b * PALR_QK;
        uint8_t *blk = out + b * PALR_Q4_0_BLOCK_BYTES;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < PALR_QK; j++) {
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        }
        const float d = max / -8.0f;
        // 1/d overflows for a block below 2.4e-38: such a block quantizes to zeros.
        const float id = d != 0.0f && fabsf(1.0f / d) <= FLT_MAX ? 1.0f / d : 0.0f;
        store_f16(blk, d);
        for (int j = 0; j < PALR_QK / 2; j++) {
            float p0 = x[j] * id, p1 = x[j + PALR_QK / 2] * id;
            // Clamped as floats before the conversion (a NaN becomes 0): converting an
            // out-of-range float to int is undefined. Same result as clamping the ints.
            float v0 = fminf(fmaxf(p0 + 8.5f, 0.0f), 15.0f), v1 = fminf(fmaxf(p1 + 8.5f, 0.0f), 15.0f);
            const int q0 = (int)truncf(v0), q1 = (int)truncf(v1);
            blk[2 + j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

// Round half away from zero, in float, as roundf and gguf-py's np_roundf do.
void palr_quantize_row_q8_0(const float *src, void *dst, size_t n) {
    uint8_t *out = (uint8_t *)dst;
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const float *x = src + b * PALR_QK;
        uint8_t *blk = out + b * PALR_Q8_0_BLOCK_BYTES;
        float amax = 0.0f;
        for (int j = 0; j < PALR_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        // 1/d overflows for a block below 3.7e-37: such a block quantizes to zeros.
        const float id = d != 0.0f && 1.0f / d <= FLT_MAX ? 1.0f / d : 0.0f;
        store_f16(blk, d);
        for (int j = 0; j < PALR_QK; j++) blk[2 + j] = (uint8_t)palr_round_q8(x[j] * id);
    }
}

void palr_dequantize_row_q4_0(const void *src, float *dst, size_t n) {
    const uint8_t *in = (const uint8_t *)src;
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const uint8_t *blk = in + b * PALR_Q4_0_BLOCK_BYTES;
        const float d = load_f16(blk);
        float *y = dst + b * PALR_QK;
        for (int j = 0; j < PALR_QK / 2; j++) {
            y[j] = d * (float)((int)(blk[2 + j] & 0x0f) - 8);
            y[j + PALR_QK / 2] = d * (float)((int)(blk[2 + j] >> 4) - 8);
        }
    }
}

void palr_dequantize_row_q8_0(const void *src, float *dst, size_t n) {
    const uint8_t *in = (const uint8_t *)src;
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const uint8_t *blk = in + b * PALR_Q8_0_BLOCK_BYTES;
        const float d = load_f16(blk);
        float *y = dst + b * PALR_QK;
        for (int j = 0; j < PALR_QK; j++) y[j] = d * (float)(int8_t)blk[2 + j];
    }
}

// ---- dot products -----------------------------------------------------------

float palr_dot_f32(const float *w, const float *x, size_t n) {
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) s += w[i] * x[i];
    return s;
}

float palr_dot_f16_f32(const uint16_t *w, const float *x, size_t n) {
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) s += palr_fp16_to_fp32(w[i]) * x[i];
    return s;
}

float palr_dot_bf16_f32(const uint16_t *w, const float *x, size_t n) {
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) s += palr_bf16_to_fp32(w[i]) * x[i];
    return s;
}

// Fused: the weights are never materialised as floats; each block's nibble sum
// is scaled once by d.
float palr_dot_q4_0_f32(const void *w, const float *x, size_t n) {
    const uint8_t *in = (const uint8_t *)w;
    float s = 0.0f;
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const uint8_t *blk = in + b * PALR_Q4_0_BLOCK_BYTES;
        const float *xb = x + b * PALR_QK;
        float acc = 0.0f;
        for (int j = 0; j < PALR_QK / 2; j++) {
            acc += (float)((int)(blk[2 + j] & 0x0f) - 8) * xb[j];
            acc += (float)((int)(blk[2 + j] >> 4) - 8) * xb[j + PALR_QK / 2];
        }
        s += load_f16(blk) * acc;
    }
    return s;
}

float palr_dot_q8_0_f32(const void *w, const float *x, size_t n) {
    const uint8_t *in = (const uint8_t *)w;
    float s = 0.0f;
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const uint8_t *blk = in + b * PALR_Q8_0_BLOCK_BYTES;
        const float *xb = x + b * PALR_QK;
        float acc = 0.0f;
        for (int j = 0; j < PALR_QK; j++) acc += (float)(int8_t)blk[2 + j] * xb[j];
        s += load_f16(blk) * acc;
    }
    return s;
}
