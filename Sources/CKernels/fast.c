// Fast kernels (AVX2, AVX-512 VNNI, NEON, NEON dotprod), their run-time dispatch,
// the thread pool and the threaded matrix-vector product.
//
// Each SIMD function is compiled for its ISA with a target attribute, so one binary
// runs on any CPU of its architecture; the table is chosen from palr_cpu_features().
// Every kernel is tested against the scalar reference (Tests/CKernelsTests).
#define _GNU_SOURCE
#include "ckernels.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__aarch64__)
// AArch64 converts half precision in one instruction.
static inline float f16_at(const uint8_t *p) { __fp16 h; memcpy(&h, p, 2); return (float)h; }
#else
static inline float f16_at(const uint8_t *p) { uint16_t h; memcpy(&h, p, 2); return palr_fp16_to_fp32(h); }
#endif

// ---- scalar references ---------------------------------------------------------

void palr_quantize_act_ref(const float *x, palr_q8_block *y, size_t n) {
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const float *xb = x + b * PALR_QK;
        float amax = 0.0f;
        for (int j = 0; j < PALR_QK; j++) amax = fmaxf(amax, fabsf(xb[j]));
        const float d = amax / 127.0f;
        // A block so small that 127/amax overflows (amax < 3.7e-37), or with a NaN amax,
        // quantizes to zeros: an infinite scale would turn every value into ±inf or NaN.
        const float id = d != 0.0f && 127.0f / amax <= FLT_MAX ? 127.0f / amax : 0.0f;
        y[b].d = d;
        for (int j = 0; j < PALR_QK; j++) y[b].qs[j] = palr_round_q8(xb[j] * id);
    }
}

float palr_dot_q4_0_q8_ref(const void *w, const palr_q8_block *a, size_t n) {
    const uint8_t *in = (const uint8_t *)w;
    float s = 0.0f;
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const uint8_t *blk = in + b * PALR_Q4_0_BLOCK_BYTES;
        int acc = 0;
        for (int j = 0; j < PALR_QK / 2; j++) {
            acc += ((int)(blk[2 + j] & 0x0f) - 8) * a[b].qs[j];
            acc += ((int)(blk[2 + j] >> 4) - 8) * a[b].qs[j + PALR_QK / 2];
        }
        s += f16_at(blk) * a[b].d * (float)acc;
    }
    return s;
}

float palr_dot_q8_0_q8_ref(const void *w, const palr_q8_block *a, size_t n) {
    const uint8_t *in = (const uint8_t *)w;
    float s = 0.0f;
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const uint8_t *blk = in + b * PALR_Q8_0_BLOCK_BYTES;
        int acc = 0;
        for (int j = 0; j < PALR_QK; j++) acc += (int8_t)blk[2 + j] * a[b].qs[j];
        s += f16_at(blk) * a[b].d * (float)acc;
    }
    return s;
}

// Sixteen rows of t at a time: their cache lines stay in L1 while the columns walk
// down, and each row of y gets 64 contiguous bytes. Measured on a 5,632 x 64 result:
// 1.5x faster than row by row; an AVX2 8 x 8 register transpose was no faster (the
// strided stores decide).
void palr_transpose(const float *t, int rows, int cols, float *y, size_t ldy) {
    for (int j0 = 0; j0 < rows; j0 += 16) {
        const int jn = j0 + 16 <= rows ? 16 : rows - j0;
        for (int i = 0; i < cols; i++) {
            float *yi = y + (size_t)i * ldy + j0;
            const float *ti = t + (size_t)j0 * (size_t)cols + i;
            for (int j = 0; j < jn; j++) yi[j] = ti[(size_t)j * (size_t)cols];
        }
    }
}

static const palr_kernel_table table_scalar = {
    "scalar", palr_quantize_act_ref, palr_dot_q4_0_q8_ref, palr_dot_q8_0_q8_ref,
    palr_dot_q4_0_f32, palr_dot_q8_0_f32, palr_dot_f16_f32, palr_dot_f32, palr_dequantize_row_q4_0, palr_dequantize_row_q8_0,
    palr_fp16_to_fp32_row,
};

// ---- x86: AVX2 and AVX-512 VNNI ---------------------------------------------------
#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

AVX2 static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// The block scale with the F16C instruction (the portable converter is a call).
AVX2 static inline float f16_at_c(const uint8_t *p) { uint16_t h; memcpy(&h, p, 2); return _cvtsh_ss(h); }

// 16 bytes of nibbles -> 32 signed bytes in [-8, 7]: low nibbles first, then high.
AVX2 static inline __m256i q4_unpack(const uint8_t *qs) {
    const __m128i t = _mm_loadu_si128((const __m128i *)qs);
    const __m256i both = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_sub_epi8(_mm256_and_si256(both, _mm256_set1_epi8(0x0f)), _mm256_set1_epi8(8));
}

// Same rounding as the reference: round half away from zero.
AVX2 static void quantize_act_avx2(const float *x, palr_q8_block *y, size_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const float *xb = x + b * PALR_QK;
        __m256 v[4];
        __m256 m = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(xb + 8 * i);
            // NaN lanes count as 0, as fmaxf skips them in the reference (maxps would
            // return a NaN operand).
            const __m256 ordered = _mm256_cmp_ps(v[i], v[i], _CMP_ORD_Q);
            m = _mm256_max_ps(m, _mm256_and_ps(_mm256_andnot_ps(sign, v[i]), ordered));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float d = amax / 127.0f;
        // A block so small that 127/amax overflows (amax < 3.7e-37), or with a NaN amax,
        // quantizes to zeros: an infinite scale would turn every value into ±inf or NaN.
        const float id = d != 0.0f && 127.0f / amax <= FLT_MAX ? 127.0f / amax : 0.0f;
        y[b].d = d;
        const __m256 vid = _mm256_set1_ps(id);
        const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
        __m256i q[4];
        for (int i = 0; i < 4; i++) {
            __m256 s = _mm256_mul_ps(v[i], vid);
            s = _mm256_and_ps(s, _mm256_cmp_ps(s, s, _CMP_ORD_Q));   // NaN (NaN·id, ∞·0) → 0, as palr_round_q8
            // roundf exactly: t = trunc(|s|), plus one when the (exact) fraction is ≥ ½.
            const __m256 a = _mm256_andnot_ps(sign, s);
            __m256 t = _mm256_round_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __m256 up = _mm256_cmp_ps(_mm256_sub_ps(a, t), half, _CMP_GE_OQ);
            t = _mm256_add_ps(t, _mm256_and_ps(up, one));
            q[i] = _mm256_cvttps_epi32(_mm256_or_ps(t, _mm256_and_ps(sign, s)));
        }
        // Pack 32 int32 -> 32 int8 in order.
        __m256i p01 = _mm256_packs_epi32(q[0], q[1]);
        __m256i p23 = _mm256_packs_epi32(q[2], q[3]);
        __m256i p = _mm256_packs_epi16(p01, p23);
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)y[b].qs, p);
    }
}

AVX2 static float dot_q4_0_q8_avx2(const void *w, const palr_q8_block *a, size_t n) {
    const uint8_t *in = (const uint8_t *)w;
    __m256 acc = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const uint8_t *blk = in + b * PALR_Q4_0_BLOCK_BYTES;
        const __m256i qx = q4_unpack(blk + 2);
        const __m256i qy = _mm256_loadu_si256((const __m256i *)a[b].qs);
        // |x| (unsigned) times y with x's sign: maddubs needs one unsigned operand.
        const __m256i ax = _mm256_sign_epi8(qx, qx);
        const __m256i sy = _mm256_sign_epi8(qy, qx);
        const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), ones);
        const __m256 d = _mm256_set1_ps(f16_at_c(blk) * a[b].d);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot), acc);
    }
    return hsum256(acc);
}

AVX2 static float dot_q8_0_q8_avx2(const void *w, const palr_q8_block *a, size_t n) {
    const uint8_t *in = (const uint8_t *)w;
    __m256 acc = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const uint8_t *blk = in + b * PALR_Q8_0_BLOCK_BYTES;
        const __m256i qx = _mm256_loadu_si256((const __m256i *)(blk + 2));
        const __m256i qy = _mm256_loadu_si256((const __m256i *)a[b].qs);
        const __m256i ax = _mm256_sign_epi8(qx, qx);
        const __m256i sy = _mm256_sign_epi8(qy, qx);
        const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), ones);
        const __m256 d = _mm256_set1_ps(f16_at_c(blk) * a[b].d);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot), acc);
    }
    return hsum256(acc);
}

// Float activations: the weights are widened in registers, never stored as floats.
AVX2 static float dot_q4_0_f32_avx2(const void *w, const float *x, size_t n) {
    const uint8_t *in = (const uint8_t *)w;
    __m256 acc = _mm256_setzero_ps();
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const uint8_t *blk = in + b * PALR_Q4_0_BLOCK_BYTES;
        const float *xb = x + b * PALR_QK;
        const __m256i q = q4_unpack(blk + 2);
        const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
        __m256 s = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), _mm256_loadu_ps(xb));
        s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), _mm256_loadu_ps(xb + 8), s);
        s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), _mm256_loadu_ps(xb + 16), s);
        s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), _mm256_loadu_ps(xb + 24), s);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_at_c(blk)), s, acc);
    }
    return hsum256(acc);
}

AVX2 static float dot_q8_0_f32_avx2(const void *w, const float *x, size_t n) {
    const uint8_t *in = (const uint8_t *)w;
    __m256 acc = _mm256_setzero_ps();
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const uint8_t *blk = in + b * PALR_Q8_0_BLOCK_BYTES;
        const float *xb = x + b * PALR_QK;
        __m256 s = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            const __m128i q = _mm_loadl_epi64((const __m128i *)(blk + 2 + 8 * i));
            s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), _mm256_loadu_ps(xb + 8 * i), s);
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_at_c(blk)), s, acc);
    }
    return hsum256(acc);
}

AVX2 static float dot_f32_avx2(const float *w, const float *x, size_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

AVX2 static float dot_f16_f32_avx2(const uint16_t *w, const float *x, size_t n) {
    __m256 a0 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 wf = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i)));
        a0 = _mm256_fmadd_ps(wf, _mm256_loadu_ps(x + i), a0);
    }
    float s = hsum256(a0);
    for (; i < n; i++) s += palr_fp16_to_fp32(w[i]) * x[i];
    return s;
}

AVX2 static void dequant_q4_0_avx2(const void *src, float *dst, size_t n) {
    const uint8_t *in = (const uint8_t *)src;
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const uint8_t *blk = in + b * PALR_Q4_0_BLOCK_BYTES;
        const __m256 d = _mm256_set1_ps(f16_at_c(blk));
        const __m256i q = q4_unpack(blk + 2);
        const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
        float *y = dst + b * PALR_QK;
        _mm256_storeu_ps(y + 0, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
        _mm256_storeu_ps(y + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
        _mm256_storeu_ps(y + 16, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
        _mm256_storeu_ps(y + 24, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
    }
}

AVX2 static void dequant_q8_0_avx2(const void *src, float *dst, size_t n) {
    const uint8_t *in = (const uint8_t *)src;
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const uint8_t *blk = in + b * PALR_Q8_0_BLOCK_BYTES;
        const __m256 d = _mm256_set1_ps(f16_at_c(blk));
        float *y = dst + b * PALR_QK;
        for (int i = 0; i < 4; i++) {
            const __m128i q = _mm_loadl_epi64((const __m128i *)(blk + 2 + 8 * i));
            _mm256_storeu_ps(y + 8 * i, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))));
        }
    }
}

AVX2 static void dequant_f16_avx2(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = palr_fp16_to_fp32(src[i]);
}

// AVX-512 VNNI: vpdpbusd does maddubs + madd in one instruction, without the
// int16 saturation of maddubs.
AVX512 static float dot_q4_0_q8_avx512(const void *w, const palr_q8_block *a, size_t n) {
    const uint8_t *in = (const uint8_t *)w;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t b = 0;
    const size_t nb = n / PALR_QK;
    for (; b + 2 <= nb; b += 2) {
        const uint8_t *b0 = in + b * PALR_Q4_0_BLOCK_BYTES, *b1 = b0 + PALR_Q4_0_BLOCK_BYTES;
        _mm_prefetch((const char *)(b0 + 512), _MM_HINT_T0);   // the weights stream from DRAM: ask early
        const __m256i x0 = q4_unpack(b0 + 2), x1 = q4_unpack(b1 + 2);
        const __m256i y0 = _mm256_loadu_si256((const __m256i *)a[b].qs);
        const __m256i y1 = _mm256_loadu_si256((const __m256i *)a[b + 1].qs);
        const __m256i d0 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(x0, x0), _mm256_sign_epi8(y0, x0));
        const __m256i d1 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(x1, x1), _mm256_sign_epi8(y1, x1));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(f16_at_c(b0) * a[b].d), _mm256_cvtepi32_ps(d0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(f16_at_c(b1) * a[b + 1].d), _mm256_cvtepi32_ps(d1), acc1);
    }
    for (; b < nb; b++) {
        const uint8_t *b0 = in + b * PALR_Q4_0_BLOCK_BYTES;
        const __m256i x0 = q4_unpack(b0 + 2);
        const __m256i y0 = _mm256_loadu_si256((const __m256i *)a[b].qs);
        const __m256i d0 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(x0, x0), _mm256_sign_epi8(y0, x0));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(f16_at_c(b0) * a[b].d), _mm256_cvtepi32_ps(d0), acc0);
    }
    return hsum256(_mm256_add_ps(acc0, acc1));
}

AVX512 static float dot_q8_0_q8_avx512(const void *w, const palr_q8_block *a, size_t n) {
    const uint8_t *in = (const uint8_t *)w;
    __m256 acc = _mm256_setzero_ps();
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const uint8_t *blk = in + b * PALR_Q8_0_BLOCK_BYTES;
        const __m256i qx = _mm256_loadu_si256((const __m256i *)(blk + 2));
        const __m256i qy = _mm256_loadu_si256((const __m256i *)a[b].qs);
        const __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(qx, qx), _mm256_sign_epi8(qy, qx));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_at_c(blk) * a[b].d), _mm256_cvtepi32_ps(dot), acc);
    }
    return hsum256(acc);
}

// Eight rows at a time. One zmm holds the 16 quant bytes of block b of four rows (a
// 128-bit lane per row); the activation block is broadcast to every lane. vpdpbusd needs
// an unsigned operand, so the weights enter as stored (Q4_0 nibbles 0..15, Q8_0 bytes
// + 128 by flipping the sign bit) and the offset comes off afterwards:
//   Σ (q - c)·y = Σ q·y - c·Σ y,  with c·Σ y also a vpdpbusd (of the constant c and y).
// No saturation is possible (vpdpbusd adds four u8·s8 products into int32 exactly).
// Each row ends as four partial sums, one per 32-bit lane of its 128-bit lane.
AVX512 static inline __m512 row_scales4(const uint8_t *r0, size_t row_bytes, size_t off, float dy) {
    uint16_t h[4];
    for (int i = 0; i < 4; i++) memcpy(&h[i], r0 + (size_t)i * row_bytes + off, 2);
    uint64_t packed;
    memcpy(&packed, h, 8);
    const __m128 d = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi64_si128((long long)packed)), _mm_set1_ps(dy));
    const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    return _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(d));
}

AVX512 static inline __m512i load4x16(const uint8_t *p, size_t stride) {
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)p));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + stride)), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + 2 * stride)), 2);
    return _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + 3 * stride)), 3);
}

// Sums each 128-bit lane of a and of b: out[0..3] from a, out[4..7] from b.
AVX512 static inline void store_lane_sums(__m512 a, __m512 b, float *out) {
    // Pairwise: lanes (a0 a1 a2 a3) -> per-lane totals via two horizontal adds.
    const __m512 ta = _mm512_add_ps(a, _mm512_permute_ps(a, 0x4e));   // x0+x2, x1+x3, ...
    const __m512 tb = _mm512_add_ps(b, _mm512_permute_ps(b, 0x4e));
    const __m512 sa = _mm512_add_ps(ta, _mm512_permute_ps(ta, 0xb1));  // every element = lane total
    const __m512 sb = _mm512_add_ps(tb, _mm512_permute_ps(tb, 0xb1));
    const __m512i pick = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0);
    _mm256_storeu_ps(out, _mm512_castps512_ps256(_mm512_permutex2var_ps(sa, pick, sb)));
}

// AVX2 (no VNNI): eight Q4_0 rows, two per ymm (a 128-bit lane each), same offset scheme:
// maddubs takes the nibbles (0..15) unsigned, so lo·y + hi·y pairs stay ≤ 4·15·127 in
// int16, far from saturation. (Q8_0 weights + 128 would saturate maddubs: no eight-row
// Q8_0 kernel here.)
AVX2 static void dot8_q4_0_q8_avx2(const void *w, size_t row_bytes, const palr_q8_block *a, size_t n, float *out) {
    const uint8_t *r0 = (const uint8_t *)w;
    const __m256i m4 = _mm256_set1_epi8(0x0f), eight = _mm256_set1_epi8(8), ones = _mm256_set1_epi16(1);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const size_t off = b * PALR_Q4_0_BLOCK_BYTES;
        if ((b & 1) == 0)   // the next group of eight rows, at this offset (see prefetch8)
            for (int i = 8; i < 16; i++) _mm_prefetch((const char *)(r0 + (size_t)i * row_bytes + off), _MM_HINT_T0);
        const __m256i ylo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)a[b].qs));
        const __m256i yhi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(a[b].qs + 16)));
        const __m256i corr = _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(eight, ylo), _mm256_maddubs_epi16(eight, yhi)), ones);
        uint16_t h[8];
        for (int i = 0; i < 8; i++) memcpy(&h[i], r0 + (size_t)i * row_bytes + off, 2);
        const __m256 d8 = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h)), _mm256_set1_ps(a[b].d));
        for (int p = 0; p < 4; p++) {
            const uint8_t *q = r0 + (size_t)(2 * p) * row_bytes + off + 2;
            const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)q)),
                                                      _mm_loadu_si128((const __m128i *)(q + row_bytes)), 1);
            const __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            const __m256i pairs = _mm256_add_epi16(_mm256_maddubs_epi16(lo, ylo), _mm256_maddubs_epi16(hi, yhi));
            const __m256i dot = _mm256_sub_epi32(_mm256_madd_epi16(pairs, ones), corr);
            const __m256 d = _mm256_permutevar8x32_ps(d8, _mm256_setr_epi32(2 * p, 2 * p, 2 * p, 2 * p, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1));
            acc[p] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), d, acc[p]);
        }
    }
    // Lane sums: hadd twice gives (r0 r2 r4 r6 | r1 r3 r5 r7), then restore the order.
    const __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
    _mm256_storeu_ps(out, _mm256_permutevar8x32_ps(s, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

// Asks for one line in each of eight rows (at p, p + row_bytes, ...). The kernels below
// ask for the next group of eight rows at the offset they are reading: the rows are
// contiguous, so that is one group (≈9 KiB for 2,048 columns) ahead in the stream.
static inline void prefetch8(const uint8_t *p, size_t row_bytes) {
    for (int i = 0; i < 8; i++) _mm_prefetch((const char *)(p + (size_t)i * row_bytes), _MM_HINT_T0);
}

AVX512 static void dot8_q4_0_q8_avx512(const void *w, size_t row_bytes, const palr_q8_block *a, size_t n, float *out) {
    const uint8_t *r0 = (const uint8_t *)w, *r4 = r0 + 4 * row_bytes;
    const __m512i m4 = _mm512_set1_epi8(0x0f), eight = _mm512_set1_epi8(8);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const size_t off = b * PALR_Q4_0_BLOCK_BYTES;
        if ((b & 1) == 0) prefetch8(r0 + 8 * row_bytes + off, row_bytes);   // the next group of eight rows
        const __m512i ylo = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)a[b].qs));
        const __m512i yhi = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(a[b].qs + 16)));
        const __m512i corr = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), eight, ylo), eight, yhi);
        const __m512i q0 = load4x16(r0 + off + 2, row_bytes), q1 = load4x16(r4 + off + 2, row_bytes);
        __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(q0, m4), ylo);
        __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(q1, m4), ylo);
        s0 = _mm512_dpbusd_epi32(s0, _mm512_and_si512(_mm512_srli_epi16(q0, 4), m4), yhi);
        s1 = _mm512_dpbusd_epi32(s1, _mm512_and_si512(_mm512_srli_epi16(q1, 4), m4), yhi);
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(s0, corr)), row_scales4(r0, row_bytes, off, a[b].d), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(s1, corr)), row_scales4(r4, row_bytes, off, a[b].d), acc1);
    }
    store_lane_sums(acc0, acc1, out);
}

AVX512 static void dot8_q8_0_q8_avx512(const void *w, size_t row_bytes, const palr_q8_block *a, size_t n, float *out) {
    const uint8_t *r0 = (const uint8_t *)w, *r4 = r0 + 4 * row_bytes;
    const __m512i flip = _mm512_set1_epi8((char)0x80), c128 = _mm512_set1_epi8((char)0x80);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const size_t off = b * PALR_Q8_0_BLOCK_BYTES;
        prefetch8(r0 + 8 * row_bytes + off, row_bytes);
        const __m512i ylo = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)a[b].qs));
        const __m512i yhi = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(a[b].qs + 16)));
        // 128 as an unsigned byte is 0x80.
        const __m512i corr = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), c128, ylo), c128, yhi);
        const __m512i l0 = _mm512_xor_si512(load4x16(r0 + off + 2, row_bytes), flip);
        const __m512i h0 = _mm512_xor_si512(load4x16(r0 + off + 18, row_bytes), flip);
        const __m512i l1 = _mm512_xor_si512(load4x16(r4 + off + 2, row_bytes), flip);
        const __m512i h1 = _mm512_xor_si512(load4x16(r4 + off + 18, row_bytes), flip);
        const __m512i s0 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), l0, ylo), h0, yhi);
        const __m512i s1 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), l1, ylo), h1, yhi);
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(s0, corr)), row_scales4(r0, row_bytes, off, a[b].d), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(s1, corr)), row_scales4(r4, row_bytes, off, a[b].d), acc1);
    }
    store_lane_sums(acc0, acc1, out);
}

static const palr_kernel_table table_avx2 = {
    "avx2", quantize_act_avx2, dot_q4_0_q8_avx2, dot_q8_0_q8_avx2, dot_q4_0_f32_avx2, dot_q8_0_f32_avx2, dot_f16_f32_avx2, dot_f32_avx2,
    dequant_q4_0_avx2, dequant_q8_0_avx2, dequant_f16_avx2, dot8_q4_0_q8_avx2, NULL,
};
static const palr_kernel_table table_avx512 = {
    "avx512", quantize_act_avx2, dot_q4_0_q8_avx512, dot_q8_0_q8_avx512, dot_q4_0_f32_avx2, dot_q8_0_f32_avx2, dot_f16_f32_avx2, dot_f32_avx2,
    dequant_q4_0_avx2, dequant_q8_0_avx2, dequant_f16_avx2, dot8_q4_0_q8_avx512, dot8_q8_0_q8_avx512,
};
#endif  // __x86_64__

// ---- ARM: NEON and NEON dotprod --------------------------------------------------
#if defined(__aarch64__)
#include <arm_neon.h>

#if defined(__clang__)
#define DOTPROD __attribute__((target("dotprod")))
#else
#define DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#endif

static inline int8x16x2_t q4_unpack_neon(const uint8_t *qs) {
    const uint8x16_t v = vld1q_u8(qs);
    const int8x16_t eight = vdupq_n_s8(8);
    int8x16x2_t r;
    r.val[0] = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f))), eight);
    r.val[1] = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), eight);
    return r;
}

// int8 x int8 products of 16 lanes, widened and summed into 4 int32 lanes.
static inline int32x4_t dot16_neon(int8x16_t x, int8x16_t y) {
    const int16x8_t lo = vmull_s8(vget_low_s8(x), vget_low_s8(y));
    const int16x8_t hi = vmull_high_s8(x, y);
    return vaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi));
}

static float dot_q4_0_q8_neon(const void *w, const palr_q8_block *a, size_t n) {
    const uint8_t *in = (const uint8_t *)w;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const uint8_t *blk = in + b * PALR_Q4_0_BLOCK_BYTES;
        const int8x16x2_t x = q4_unpack_neon(blk + 2);
        const int32x4_t s = vaddq_s32(dot16_neon(x.val[0], vld1q_s8(a[b].qs)), dot16_neon(x.val[1], vld1q_s8(a[b].qs + 16)));
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(s), f16_at(blk) * a[b].d);
    }
    return vaddvq_f32(acc);
}

static float dot_q8_0_q8_neon(const void *w, const palr_q8_block *a, size_t n) {
    const uint8_t *in = (const uint8_t *)w;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const uint8_t *blk = in + b * PALR_Q8_0_BLOCK_BYTES;
        const int32x4_t s = vaddq_s32(dot16_neon(vld1q_s8((const int8_t *)blk + 2), vld1q_s8(a[b].qs)),
                                      dot16_neon(vld1q_s8((const int8_t *)blk + 18), vld1q_s8(a[b].qs + 16)));
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(s), f16_at(blk) * a[b].d);
    }
    return vaddvq_f32(acc);
}

DOTPROD static float dot_q4_0_q8_neon_dot(const void *w, const palr_q8_block *a, size_t n) {
    const uint8_t *in = (const uint8_t *)w;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const uint8_t *blk = in + b * PALR_Q4_0_BLOCK_BYTES;
        const int8x16x2_t x = q4_unpack_neon(blk + 2);
        int32x4_t s = vdotq_s32(vdupq_n_s32(0), x.val[0], vld1q_s8(a[b].qs));
        s = vdotq_s32(s, x.val[1], vld1q_s8(a[b].qs + 16));
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(s), f16_at(blk) * a[b].d);
    }
    return vaddvq_f32(acc);
}

DOTPROD static float dot_q8_0_q8_neon_dot(const void *w, const palr_q8_block *a, size_t n) {
    const uint8_t *in = (const uint8_t *)w;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const uint8_t *blk = in + b * PALR_Q8_0_BLOCK_BYTES;
        int32x4_t s = vdotq_s32(vdupq_n_s32(0), vld1q_s8((const int8_t *)blk + 2), vld1q_s8(a[b].qs));
        s = vdotq_s32(s, vld1q_s8((const int8_t *)blk + 18), vld1q_s8(a[b].qs + 16));
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(s), f16_at(blk) * a[b].d);
    }
    return vaddvq_f32(acc);
}

static float dot_q4_0_f32_neon(const void *w, const float *x, size_t n) {
    const uint8_t *in = (const uint8_t *)w;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const uint8_t *blk = in + b * PALR_Q4_0_BLOCK_BYTES;
        const float *xb = x + b * PALR_QK;
        const int8x16x2_t q = q4_unpack_neon(blk + 2);
        float32x4_t s = vdupq_n_f32(0.0f);
        for (int h = 0; h < 2; h++) {
            const int16x8_t lo = vmovl_s8(vget_low_s8(q.val[h])), hi = vmovl_high_s8(q.val[h]);
            s = vfmaq_f32(s, vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), vld1q_f32(xb + 16 * h + 0));
            s = vfmaq_f32(s, vcvtq_f32_s32(vmovl_high_s16(lo)), vld1q_f32(xb + 16 * h + 4));
            s = vfmaq_f32(s, vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), vld1q_f32(xb + 16 * h + 8));
            s = vfmaq_f32(s, vcvtq_f32_s32(vmovl_high_s16(hi)), vld1q_f32(xb + 16 * h + 12));
        }
        acc = vfmaq_n_f32(acc, s, f16_at(blk));
    }
    return vaddvq_f32(acc);
}

static float dot_f32_neon(const float *w, const float *x, size_t n) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 = vfmaq_f32(a0, vld1q_f32(w + i), vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, vld1q_f32(w + i + 4), vld1q_f32(x + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(a0, a1));
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

static void dequant_q4_0_neon(const void *src, float *dst, size_t n) {
    const uint8_t *in = (const uint8_t *)src;
    for (size_t b = 0; b < n / PALR_QK; b++) {
        const uint8_t *blk = in + b * PALR_Q4_0_BLOCK_BYTES;
        const float d = f16_at(blk);
        const int8x16x2_t x = q4_unpack_neon(blk + 2);
        float *y = dst + b * PALR_QK;
        for (int h = 0; h < 2; h++) {
            const int16x8_t lo = vmovl_s8(vget_low_s8(x.val[h])), hi = vmovl_high_s8(x.val[h]);
            vst1q_f32(y + 16 * h + 0, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), d));
            vst1q_f32(y + 16 * h + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(lo)), d));
            vst1q_f32(y + 16 * h + 8, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), d));
            vst1q_f32(y + 16 * h + 12, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(hi)), d));
        }
    }
}

static const palr_kernel_table table_neon = {
    "neon", palr_quantize_act_ref, dot_q4_0_q8_neon, dot_q8_0_q8_neon, dot_q4_0_f32_neon, palr_dot_q8_0_f32, palr_dot_f16_f32, dot_f32_neon,
    dequant_q4_0_neon, palr_dequantize_row_q8_0, palr_fp16_to_fp32_row,
};
static const palr_kernel_table table_neon_dot = {
    "neon_dotprod", palr_quantize_act_ref, dot_q4_0_q8_neon_dot, dot_q8_0_q8_neon_dot, dot_q4_0_f32_neon, palr_dot_q8_0_f32, palr_dot_f16_f32, dot_f32_neon,
    dequant_q4_0_neon, palr_dequantize_row_q8_0, palr_fp16_to_fp32_row,
};
#endif  // __aarch64__

// ---- dispatch ----------------------------------------------------------------------

static const palr_kernel_table *table_named(const char *name) {
    const uint32_t f = palr_cpu_features();
    if (!name) return NULL;
    if (strcmp(name, "scalar") == 0) return &table_scalar;
#if defined(__x86_64__)
    const uint32_t avx2 = PALR_CPU_AVX2 | PALR_CPU_FMA | PALR_CPU_F16C;
    const uint32_t avx512 = avx2 | PALR_CPU_AVX512F | PALR_CPU_AVX512BW | PALR_CPU_AVX512VL | PALR_CPU_AVX512VNNI;
    if (strcmp(name, "avx2") == 0) return (f & avx2) == avx2 ? &table_avx2 : NULL;
    if (strcmp(name, "avx512") == 0) return (f & avx512) == avx512 ? &table_avx512 : NULL;
#endif
#if defined(__aarch64__)
    if (strcmp(name, "neon") == 0) return &table_neon;
    if (strcmp(name, "neon_dotprod") == 0) return (f & PALR_CPU_DOTPROD) ? &table_neon_dot : NULL;
#endif
    (void)f;
    return NULL;
}

static const palr_kernel_table *best_table(void) {
    static const char *order[] = {"avx512", "avx2", "neon_dotprod", "neon", "scalar"};
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        const palr_kernel_table *t = table_named(order[i]);
        if (t) return t;
    }
    return &table_scalar;
}

static _Atomic(const palr_kernel_table *) active_table = NULL;

const palr_kernel_table *palr_kernels(void) {
    const palr_kernel_table *t = atomic_load_explicit(&active_table, memory_order_acquire);
    if (t) return t;
    const char *forced = getenv("PALR_KERNELS");
    t = forced ? table_named(forced) : NULL;
    if (!t) t = best_table();
    atomic_store_explicit(&active_table, t, memory_order_release);
    return t;
}

int palr_kernels_force(const char *name) {
    const palr_kernel_table *t = table_named(name);
    if (!t) return 0;
    atomic_store_explicit(&active_table, t, memory_order_release);
    return 1;
}

int palr_kernels_available(const char *name) { return table_named(name) != NULL; }

const palr_kernel_table *palr_kernels_named(const char *name) { return table_named(name); }

// ---- thread pool --------------------------------------------------------------------

struct palr_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic unsigned generation;   // bumped once per job
    _Atomic int pending;           // workers still running the current job
    _Atomic int stop;
    palr_task_fn fn;
    void *arg;
    struct worker_start *starts;   // one per worker, freed by palr_pool_destroy
};

// A worker's start record lives in the pool, not in a malloc the worker frees: a thread's
// first malloc or free makes glibc reserve a malloc arena for it (64 MiB of address space
// each, measured with strace), which under `ulimit -v` is room OpenBLAS's sgemm buffers
// then lack. The worker loop calls no malloc (strace: no arena for a worker in `palr demo`).
typedef struct worker_start { palr_pool *pool; int index; } worker_start;

static void *worker_main(void *p) {
    worker_start ws = *(worker_start *)p;
    palr_pool *pool = ws.pool;
    unsigned seen = 0;
    for (;;) {
        // Spin a little (the next matvec usually follows within microseconds), then sleep.
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen) {
            if (atomic_load_explicit(&pool->stop, memory_order_relaxed)) return NULL;
            if (++spins < 4000) {
#if defined(__x86_64__)
                __builtin_ia32_pause();
#elif defined(__aarch64__)
                __asm__ volatile("yield");
#endif
                continue;
            }
            pthread_mutex_lock(&pool->mu);
            while (atomic_load(&pool->generation) == seen && !atomic_load(&pool->stop)) pthread_cond_wait(&pool->cv, &pool->mu);
            pthread_mutex_unlock(&pool->mu);
        }
        if (atomic_load(&pool->stop)) return NULL;
        seen = g;
        pool->fn(pool->arg, ws.index, pool->n);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel);
    }
}

palr_pool *palr_pool_create(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    palr_pool *pool = calloc(1, sizeof(palr_pool));
    if (!pool) return NULL;
    pool->n = n_threads;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    pool->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    pool->starts = calloc((size_t)n_threads, sizeof(worker_start));
    if (!pool->threads || !pool->starts) {   // no memory for workers: run on the calling thread alone
        pool->n = 1;
        return pool;
    }
    for (int i = 1; i < n_threads; i++) {
        worker_start *ws = &pool->starts[i];
        ws->pool = pool;
        ws->index = i;
        if (pthread_create(&pool->threads[i], NULL, worker_main, ws) != 0) {
            pool->n = i;   // run with the threads we have
            break;
        }
    }
    return pool;
}

void palr_pool_destroy(palr_pool *pool) {
    if (!pool) return;
    atomic_store(&pool->stop, 1);
    pthread_mutex_lock(&pool->mu);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 1; i < pool->n; i++) pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv);
    free(pool->threads);
    free(pool->starts);
    free(pool);
}

int palr_pool_size(const palr_pool *pool) { return pool ? pool->n : 1; }

void palr_pool_run(palr_pool *pool, palr_task_fn fn, void *arg) {
    if (!pool || pool->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    atomic_store_explicit(&pool->pending, pool->n - 1, memory_order_release);
    pthread_mutex_lock(&pool->mu);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_acq_rel);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    fn(arg, 0, pool->n);
    while (atomic_load_explicit(&pool->pending, memory_order_acquire) > 0) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ volatile("yield");
#endif
    }
}

// ---- threaded matrix-vector product -----------------------------------------------

// One row's dot product with the job's input.
static inline float dot_row(const palr_matvec_args *a, const palr_kernel_table *k, const uint8_t *row) {
    const size_t n = (size_t)a->m.cols;
    switch (a->m.type) {
    case 2: return a->xq ? k->dot_q4_0_q8(row, a->xq, n) : k->dot_q4_0_f32(row, a->x, n);
    case 8: return a->xq ? k->dot_q8_0_q8(row, a->xq, n) : k->dot_q8_0_f32(row, a->x, n);
    case 1: return k->dot_f16_f32((const uint16_t *)row, a->x, n);
    case 30: return palr_dot_bf16_f32((const uint16_t *)row, a->x, n);
    default: return k->dot_f32((const float *)row, a->x, n);
    }
}

// Rows r0..<r1 of y = W x (r0 a multiple of 8). Groups of eight (where the table has
// eight-row kernels) start at multiples of 8, so a row's result does not depend on the
// thread count. (Asking for the row two ahead before each single row was measured on
// x86 with the eight-row kernels switched off: no gain, so single rows rely on their
// kernels' own prefetch.)
static void matvec_rows(const palr_matvec_args *a, const palr_kernel_table *k, int r0, int r1) {
    const uint8_t *w = (const uint8_t *)a->m.w;
    const size_t rb = a->m.row_bytes, n = (size_t)a->m.cols;
    void (*dot8)(const void *, size_t, const palr_q8_block *, size_t, float *) =
        !a->xq ? NULL : a->m.type == 2 ? k->dot8_q4_0_q8 : a->m.type == 8 ? k->dot8_q8_0_q8 : NULL;
    int r = r0;
    if (dot8)
        for (; r + 8 <= r1; r += 8) dot8(w + (size_t)r * rb, rb, a->xq, n, a->y + r);
    for (; r < r1; r++) {
        a->y[r] = dot_row(a, k, w + (size_t)r * rb);
    }
}

// Below this many weights a matvec costs less than waking the workers.
#define PALR_PARALLEL_MIN_WEIGHTS (1 << 16)

typedef struct {
    const palr_matvec_args *a[3];
    int count;
    int chunk;                   // rows per claim, a multiple of 16
    int first[4];                // chunk index where product i starts; first[count] = total
    _Atomic int next;            // the next unclaimed chunk
} matvec_job;

// Threads claim chunks of rows in turn, across all the job's products, so a thread
// slowed by its sibling hyperthread or another process takes fewer, and products that
// share an input cost one wake-up. Chunks are multiples of 16 rows (threads never share
// a cache line of y) and start at multiples of 8 (results do not depend on the split).
static void matvec_task(void *p, int ith, int nth) {
    (void)ith;
    (void)nth;
    matvec_job *job = (matvec_job *)p;
    const palr_kernel_table *k = palr_kernels();
    for (;;) {
        const int c = atomic_fetch_add_explicit(&job->next, 1, memory_order_relaxed);
        if (c >= job->first[job->count]) return;
        int i = 0;
        while (c >= job->first[i + 1]) i++;
        const palr_matvec_args *a = job->a[i];
        const int r0 = (c - job->first[i]) * job->chunk;
        matvec_rows(a, k, r0, r0 + job->chunk < a->m.rows ? r0 + job->chunk : a->m.rows);
    }
}

void palr_matvec_multi(palr_pool *pool, const palr_matvec_args *a0, const palr_matvec_args *a1,
                       const palr_matvec_args *a2) {
    matvec_job job;
    job.count = 0;
    size_t weights = 0;
    int rows = 0;
    const palr_matvec_args *all[3] = {a0, a1, a2};
    for (int i = 0; i < 3; i++) {
        if (!all[i]) continue;
        job.a[job.count++] = all[i];
        weights += (size_t)all[i]->m.rows * (size_t)all[i]->m.cols;
        rows += all[i]->m.rows;
    }
    const int nth = palr_pool_size(pool);
    if (nth == 1 || weights < PALR_PARALLEL_MIN_WEIGHTS) {
        for (int i = 0; i < job.count; i++) matvec_rows(job.a[i], palr_kernels(), 0, job.a[i]->m.rows);
        return;
    }
    job.chunk = ((rows / (4 * nth)) + 15) & ~15;
    if (job.chunk < 16) job.chunk = 16;
    job.first[0] = 0;
    for (int i = 0; i < job.count; i++) job.first[i + 1] = job.first[i] + (job.a[i]->m.rows + job.chunk - 1) / job.chunk;
    atomic_init(&job.next, 0);
    palr_pool_run(pool, matvec_task, &job);
}

void palr_matvec(palr_pool *pool, const palr_matvec_args *args) { palr_matvec_multi(pool, args, NULL, NULL); }

// ---- matrix x matrix: per-thread panels ------------------------------------------

#define PALR_SWIGLU_MAX_PANELS 2048

typedef struct {
    const palr_matmul_args *a[3];
    int count;
    int first[4];                // panel index where product i starts; first[count] = total
    _Atomic int next;            // the next unclaimed panel
    // SwiGLU jobs (count 2: gate, up, same panels): claims alternate gate p, up p, and
    // halves[p] counts the finished halves of panel p; whoever finishes the second
    // applies gate = silu(gate) * up to those rows.
    int swiglu;
    _Atomic int halves[PALR_SWIGLU_MAX_PANELS];
} matmul_job;

// One stored row of weights to float.
static inline void dequant_row(const palr_kernel_table *k, int type, const uint8_t *row, float *dst, size_t n) {
    switch (type) {
    case 2: k->dequant_q4_0(row, dst, n); break;
    case 8: k->dequant_q8_0(row, dst, n); break;
    case 1: k->dequant_f16((const uint16_t *)row, dst, n); break;
    default: palr_bf16_to_fp32_row((const uint16_t *)row, dst, n); break;
    }
}

// Bytes of stored row before column c (c a multiple of 32).
static inline size_t row_offset(int type, int c) {
    switch (type) {
    case 2: return (size_t)(c / PALR_QK) * PALR_Q4_0_BLOCK_BYTES;
    case 8: return (size_t)(c / PALR_QK) * PALR_Q8_0_BLOCK_BYTES;
    default: return (size_t)c * 2;   // F16, BF16
    }
}

// The columns converted and multiplied at once: k_chunk, or whole rows (and always
// whole rows for F32, which goes to sgemm from the mapping).
static inline int chunk_cols(const palr_matmul_args *a) {
    return a->m.type != 0 && a->k_chunk > 0 && a->k_chunk < a->m.cols ? a->k_chunk : a->m.cols;
}

// Rows r0..r0+n: chunk by chunk, the chunk (n x kc floats) is converted into the start
// of the thread's slice and multiplied at once, accumulating (beta 1 after the first),
// so the converted weights are still in L2 when OpenBLAS packs them. Measured on the 1B
// shape: whole 256-row panels (2 MiB of floats) made the conversion wait on its stores
// and OpenBLAS re-read the panel from L3; 512 x 256 chunks gave +15-19% pp64 and pp512.
static void matmul_rows(const palr_matmul_args *a, const palr_kernel_table *k, float *panel, float *t, int r0, int n) {
    const palr_weights *m = &a->m;
    const uint8_t *src = (const uint8_t *)m->w + (size_t)r0 * m->row_bytes;
    const int span = chunk_cols(a);
    for (int c0 = 0; c0 < m->cols; c0 += span) {
        const int kc = c0 + span <= m->cols ? span : m->cols - c0;
        const float *b;
        int ldb;
        if (m->type == 0) {
            b = (const float *)src;
            ldb = (int)(m->row_bytes / sizeof(float));   // the stored row stride, as matvec uses
        } else {
            const size_t off = row_offset(m->type, c0), bytes = row_offset(m->type, kc);
            for (int r = 0; r < n; r++) {
                const uint8_t *row = src + (size_t)r * m->row_bytes + off;
                // Ask for the row two ahead: the weights stream from DRAM and the hardware
                // prefetcher alone leaves the loads waiting (measured on decode).
                for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch(row + 2 * m->row_bytes + o);
                dequant_row(k, m->type, row, panel + (size_t)r * (size_t)kc, (size_t)kc);
            }
            b = panel;
            ldb = kc;
        }
        const float beta = c0 == 0 ? 0.0f : 1.0f;
        if (a->sgemm_tn) a->sgemm_tn(a->batch, n, kc, a->x + c0, m->cols, b, ldb, beta, t, a->batch);
        else a->sgemm(a->batch, n, kc, a->x + c0, m->cols, b, ldb, beta, a->y + r0, a->ldy);
    }
    if (a->sgemm_tn) palr_transpose(t, n, a->batch, a->y + r0, (size_t)a->ldy);
}

// gate[i][r] = silu(gate[i][r]) * up[i][r] for rows r0..r0+n of every batch row i, with
// the same float operations as the Swift `swiglu` (so results are identical).
static void swiglu_rows(const palr_matmul_args *g, const palr_matmul_args *u, int r0, int n) {
    for (int i = 0; i < g->batch; i++) {
        float *gi = g->y + (size_t)i * (size_t)g->ldy + r0;
        const float *ui = u->y + (size_t)i * (size_t)u->ldy + r0;
        for (int j = 0; j < n; j++) {
            const float x = gi[j];
            gi[j] = x / (1.0f + expf(-x)) * ui[j];
        }
    }
}

// Threads claim panels in turn across all the job's products (which share the input
// x), so a product's last panels overlap the next product's first ones: the threads
// wait for each other once per job, not once per matrix.
static void matmul_task(void *p, int ith, int nth) {
    (void)nth;
    matmul_job *job = (matmul_job *)p;
    const palr_kernel_table *k = palr_kernels();
    for (;;) {
        const int c = atomic_fetch_add_explicit(&job->next, 1, memory_order_relaxed);
        if (c >= job->first[job->count]) return;
        int i = 0, panel;
        if (job->swiglu) {
            i = c & 1;
            panel = c >> 1;
        } else {
            while (c >= job->first[i + 1]) i++;
            panel = c - job->first[i];
        }
        const palr_matmul_args *a = job->a[i];
        float *buf = a->scratch + (size_t)ith * a->scratch_floats_per_thread;
        // The transposed result (batch x panel rows, column-major) follows the converted chunk.
        float *t = a->m.type == 0 ? buf : buf + (size_t)a->panel_rows * (size_t)chunk_cols(a);
        const int r0 = panel * a->panel_rows;
        const int n = r0 + a->panel_rows < a->m.rows ? a->panel_rows : a->m.rows - r0;
        matmul_rows(a, k, buf, t, r0, n);
        // acq_rel: the second finisher sees the other half's results.
        if (job->swiglu && atomic_fetch_add_explicit(&job->halves[panel], 1, memory_order_acq_rel) == 1)
            swiglu_rows(job->a[0], job->a[1], r0, n);
    }
}

void palr_matmul_multi(palr_pool *pool, const palr_matmul_args *a0, const palr_matmul_args *a1,
                       const palr_matmul_args *a2) {
    matmul_job job;
    const palr_matmul_args *all[3] = {a0, a1, a2};
    job.count = 0;
    job.swiglu = 0;
    job.first[0] = 0;
    for (int i = 0; i < 3; i++) {
        if (!all[i]) continue;
        job.a[job.count] = all[i];
        job.first[job.count + 1] = job.first[job.count] + (all[i]->m.rows + all[i]->panel_rows - 1) / all[i]->panel_rows;
        job.count++;
    }
    atomic_init(&job.next, 0);
    palr_pool_run(pool, matmul_task, &job);
}

void palr_matmul(palr_pool *pool, const palr_matmul_args *args) { palr_matmul_multi(pool, args, NULL, NULL); }

void palr_matmul_swiglu(palr_pool *pool, const palr_matmul_args *gate, const palr_matmul_args *up) {
    const int panels = (gate->m.rows + gate->panel_rows - 1) / gate->panel_rows;
    if (panels > PALR_SWIGLU_MAX_PANELS || up->m.rows != gate->m.rows || up->panel_rows != gate->panel_rows ||
        up->batch != gate->batch) {
        palr_matmul_multi(pool, gate, up, NULL);
        // Only the rows and batch rows both products have (callers pass equal shapes).
        palr_matmul_args g = *gate;
        g.batch = gate->batch < up->batch ? gate->batch : up->batch;
        swiglu_rows(&g, up, 0, gate->m.rows < up->m.rows ? gate->m.rows : up->m.rows);
        return;
    }
    matmul_job job;   // on the caller's stack (8 KiB): no allocation per layer
    job.a[0] = gate;
    job.a[1] = up;
    job.count = 2;
    job.swiglu = 1;
    job.first[0] = 0;
    job.first[1] = panels;
    job.first[2] = 2 * panels;
    for (int p = 0; p < panels; p++) atomic_init(&job.halves[p], 0);
    atomic_init(&job.next, 0);
    palr_pool_run(pool, matmul_task, &job);
}

// ---- read bandwidth probe ------------------------------------------------------

typedef struct { const uint64_t *p; size_t words; _Atomic uint64_t total; } read_args;   // every thread adds its sum

static void read_task(void *p, int ith, int nth) {
    read_args *a = (read_args *)p;
    const size_t per = (a->words + (size_t)nth - 1) / (size_t)nth;
    const size_t w0 = (size_t)ith * per;
    const size_t w1 = w0 + per < a->words ? w0 + per : a->words;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = w0;
    for (; i + 4 <= w1; i += 4) { s0 += a->p[i]; s1 += a->p[i + 1]; s2 += a->p[i + 2]; s3 += a->p[i + 3]; }
    for (; i < w1; i++) s0 += a->p[i];
    atomic_fetch_add_explicit(&a->total, s0 + s1 + s2 + s3, memory_order_relaxed);
}

uint64_t palr_read_sum(palr_pool *pool, const void *buf, size_t bytes) {
    read_args a;
    a.p = (const uint64_t *)buf;
    a.words = bytes / 8;
    atomic_init(&a.total, 0);
    palr_pool_run(pool, read_task, &a);   // returns after every thread has added its sum
    return atomic_load(&a.total);
}
