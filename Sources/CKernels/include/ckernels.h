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
#include <math.h>
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

// ---- activations quantized for the fused kernels -------------------------
// Activations are quantized per 32-block to int8 with a float scale, as llama.cpp
// does for its Q4_0 x Q8_0 path (it stores the scale as fp16; a float is kept here).
typedef struct {
    float d;
    int8_t qs[PALR_QK];
} palr_q8_block;

// Scalar reference (round half away from zero); the SIMD variants must match it exactly.
/// roundf(v) as int8, half away from zero, clamped to ±127; NaN gives 0. (A plain
/// `(int8_t)roundf(v)` is undefined for NaN and out-of-range values.)
static inline int8_t palr_round_q8(float v) {
    const float r = roundf(v);
    return r != r ? 0 : r >= 127.0f ? 127 : r <= -127.0f ? -127 : (int8_t)r;
}

void palr_quantize_act_ref(const float *x, palr_q8_block *y, size_t n);
// Reference dot products of one quantized weight row with quantized activations.
float palr_dot_q4_0_q8_ref(const void *w, const palr_q8_block *a, size_t n);
float palr_dot_q8_0_q8_ref(const void *w, const palr_q8_block *a, size_t n);

// ---- dispatched kernels -------------------------------------------------------
// One table of function pointers, chosen once from the CPU's features, or forced by
// the environment variable PALR_KERNELS (scalar | avx2 | avx512 | neon | neon_dotprod).
typedef struct {
    const char *name;
    void (*quantize_act)(const float *x, palr_q8_block *y, size_t n);
    float (*dot_q4_0_q8)(const void *w, const palr_q8_block *a, size_t n);
    float (*dot_q8_0_q8)(const void *w, const palr_q8_block *a, size_t n);
    float (*dot_q4_0_f32)(const void *w, const float *x, size_t n);
    float (*dot_q8_0_f32)(const void *w, const float *x, size_t n);
    float (*dot_f16_f32)(const uint16_t *w, const float *x, size_t n);
    float (*dot_f32)(const float *w, const float *x, size_t n);
    void (*dequant_q4_0)(const void *src, float *dst, size_t n);
    void (*dequant_q8_0)(const void *src, float *dst, size_t n);
    void (*dequant_f16)(const uint16_t *src, float *dst, size_t n);
    // Eight consecutive rows (row r at w + r * row_bytes) against one quantized input:
    // out[r] for r in 0..<8. Reading eight rows at once shares each activation block and
    // keeps eight memory streams in flight. NULL in tables without them (the matvec then
    // uses the one-row kernels). Each out[r] matches the one-row reference within rounding.
    void (*dot8_q4_0_q8)(const void *w, size_t row_bytes, const palr_q8_block *a, size_t n, float *out);
    void (*dot8_q8_0_q8)(const void *w, size_t row_bytes, const palr_q8_block *a, size_t n, float *out);
} palr_kernel_table;

// y[i * ldy + j] = t[j * cols + i] for i < cols, j < rows: t (rows x cols, row-major)
// transposed into y, as the prompt path does with a small batch's result.
void palr_transpose(const float *t, int rows, int cols, float *y, size_t ldy);

// The active table (selected on first call).
const palr_kernel_table *palr_kernels(void);
// Makes the named table active; returns 0 if it is unknown or this CPU cannot run it.
int palr_kernels_force(const char *name);
// Whether this CPU can run the named table.
int palr_kernels_available(const char *name);
// The named table, or NULL when unknown or not runnable here (for tests).
const palr_kernel_table *palr_kernels_named(const char *name);

// ---- thread pool ------------------------------------------------------------------
// Persistent workers; `palr_pool_run` runs fn(arg, i, n) for i in 0..<n on n threads
// (the caller is thread 0) and returns when all are done. Workers spin briefly, then
// sleep. No allocation after create.
typedef struct palr_pool palr_pool;
typedef void (*palr_task_fn)(void *arg, int ith, int nth);
palr_pool *palr_pool_create(int n_threads);
void palr_pool_destroy(palr_pool *pool);
int palr_pool_size(const palr_pool *pool);
void palr_pool_run(palr_pool *pool, palr_task_fn fn, void *arg);

// ---- weights as stored --------------------------------------------------------
// `rows` rows of `cols` elements of ggml type `type` (0 F32, 1 F16, 2 Q4_0, 8 Q8_0,
// 30 BF16); row r starts at w + r * row_bytes (the mapped file).
typedef struct {
    int type;
    const void *w;
    size_t row_bytes;
    int rows;
    int cols;
} palr_weights;

// ---- matrix x vector ---------------------------------------------------------
// y[r] = W[r] . x for r in 0..<rows, rows split over the pool (pool may be NULL).
// Q4_0/Q8_0 rows use `xq` (x quantized by quantize_act) when it is not NULL, else the
// float `x`.
typedef struct {
    palr_weights m;
    const float *x;
    const palr_q8_block *xq;
    float *y;
} palr_matvec_args;
void palr_matvec(palr_pool *pool, const palr_matvec_args *args);
// Up to three products (a1, a2 may be NULL) in one pool run: products that share an
// input (q, k, v; gate, up) cost one wake-up and balance across threads together.
// Each y equals what palr_matvec gives.
void palr_matvec_multi(palr_pool *pool, const palr_matvec_args *a0, const palr_matvec_args *a1,
                       const palr_matvec_args *a2);

// ---- matrix x matrix (the prompt path) ------------------------------------------
// y (batch x ldy, columns 0..<rows) = x (batch x cols, row-major) . Wᵀ, with W's rows
// converted to float panel by panel. `sgemm` computes one product: C (m x n, ldc) =
// A (m x k, lda) . Bᵀ (B: n x k, ldb) + beta C, the caller's BLAS, run single-threaded:
// every pool thread claims panels (panel_rows rows) in turn and, k_chunk columns at a
// time, dequantizes the chunk into its own slice of `scratch`
// (`scratch_floats_per_thread` each, owned by the caller) and multiplies it at once,
// accumulating, while the chunk is still in L2. F32 weights skip the conversion.
typedef void (*palr_sgemm_nt_fn)(int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                                 float beta, float *c, int ldc);
typedef struct {
    palr_weights m;
    const float *x;
    int batch;
    float *y;
    int ldy;
    float *scratch;
    size_t scratch_floats_per_thread;
    int panel_rows;              // rows per panel, ≥ 1 (see below for the scratch it needs)
    int k_chunk;                 // columns per chunk, a multiple of 32; 0: whole rows
    palr_sgemm_nt_fn sgemm;
    // Optional (the caller sets it for small batches): column-major C (m x n, ldc) =
    // Aᵀ (A: k x m, lda) . B (k x n, ldb). The panel then enters OpenBLAS as the B
    // operand, whose packing is cheaper (measured: 64 x 256 x 2048 ≈ 10% faster), and
    // the result, batch x panel_rows column-major, is transposed into y from the
    // thread's slice of scratch. With span = min(k_chunk or cols, cols), each slice must
    // hold panel_rows x (span + batch) floats (F32 weights: panel_rows x batch), else
    // panel_rows x span.
    palr_sgemm_nt_fn sgemm_tn;
} palr_matmul_args;
void palr_matmul(palr_pool *pool, const palr_matmul_args *args);
// Up to three products (a1, a2 may be NULL) in one pool run, panels claimed across them
// in order; they must share scratch and must not write each other's inputs.
void palr_matmul_multi(palr_pool *pool, const palr_matmul_args *a0, const palr_matmul_args *a1,
                       const palr_matmul_args *a2);
// gate.y = silu(gate.x . gateᵀ) * (up.x . upᵀ), elementwise (SwiGLU), in one pool run:
// the two products' panels alternate and each panel's rows are combined by the thread
// that finishes the second of the pair, so no serial pass over the result remains.
// gate and up must have the same rows, panels and batch (else: products, then a pass).
void palr_matmul_swiglu(palr_pool *pool, const palr_matmul_args *gate, const palr_matmul_args *up);

// Reads `bytes` of `buf` (split over the pool) and returns a checksum: times a
// memory read-bandwidth measurement for `palr bench`.
uint64_t palr_read_sum(palr_pool *pool, const void *buf, size_t bytes);

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
// Physical cores this process may run on (its affinity mask; SMT siblings count once),
// from Linux sysfs topology; the online CPU count where that is unavailable.
int palr_physical_cores(void);

#ifdef __cplusplus
}
#endif
#endif
