// Checks the NEON kernels against the scalar reference. Built for aarch64 with
// gcc-aarch64-linux-gnu and run under qemu-aarch64-static by tools/arm/run.sh (CI).
// It compiles the CKernels sources directly, so it tests exactly what ships.
#include "../../Sources/CKernels/include/ckernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 4096
static int passed, failed;

static void check(int ok, const char *table, const char *what, double worst) {
    if (ok) passed++; else failed++;
    printf("%s %-12s %-28s worst %.3g\n", ok ? "ok  " : "FAIL", table, what, worst);
}

static float frand(unsigned *s) { *s = *s * 1664525u + 1013904223u; return ((*s >> 8) / 16777216.0f) * 2.0f - 1.0f; }

// C(i, j) = sum_p a[i * lda + p] * b[j * ldb + p] + beta C(i, j), with C(i, j) at
// c[i * row_step + j * col_step]: a plain reference standing in for BLAS (the shapes
// below are small: qemu is slow).
static void sgemm_strided(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float beta,
                          float *c, int row_step, int col_step) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++) s += (double)a[i * lda + p] * b[j * ldb + p];
            float *out = &c[i * row_step + j * col_step];
            *out = (float)(s + (beta != 0.0f ? (double)beta * *out : 0.0));
        }
}

// C (m x n, ldc) = A (m x k, lda) . Bᵀ (B: n x k, ldb) + beta C, row-major.
static void sgemm_ref(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float beta, float *c,
                      int ldc) {
    sgemm_strided(m, n, k, a, lda, b, ldb, beta, c, ldc, 1);
}

// Column-major C (m x n, ldc) = Aᵀ (A: k x m, lda) . B (k x n, ldb) + beta C, all
// column-major as BLAS reads them: A(p, i) = a[i * lda + p], B(p, j) = b[j * ldb + p].
static void sgemm_tn_ref(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float beta, float *c,
                         int ldc) {
    sgemm_strided(m, n, k, a, lda, b, ldb, beta, c, 1, ldc);
}

// The threaded matrix-vector and matrix-matrix products (the decode and prompt paths)
// with the table forced to `name`, on a 2-thread pool, against rows computed one by one
// with the scalar reference: odd row counts (not a multiple of 8 or of the panel), a
// k-chunk smaller than a row, both sgemm operand orders, and the fused SwiGLU.
static void check_products(const char *name) {
    enum { ROWS = 75, COLS = 96, BATCH = 5 };
    static float w[ROWS * COLS], w2[ROWS * COLS], x[BATCH * COLS], y[BATCH * ROWS], ref_y[BATCH * ROWS],
        g2[BATCH * ROWS];
    static uint8_t q4[ROWS * (COLS / 32) * 18], q8[ROWS * (COLS / 32) * 34];
    static uint8_t q4b[ROWS * (COLS / 32) * 18], q8b[ROWS * (COLS / 32) * 34];
    static palr_q8_block xq[COLS / 32];
    static float scratch[2 * 16 * (COLS + BATCH)];
    unsigned seed = 777;
    const palr_kernel_table *ref = palr_kernels_named("scalar");
    if (!palr_kernels_force(name)) {   // a table that cannot be forced is a failure, not a skip
        check(0, name, "force the table", 0);
        return;
    }
    palr_pool *pool = palr_pool_create(2);
    for (int i = 0; i < ROWS * COLS; i++) w[i] = 0.1f * frand(&seed);
    for (int i = 0; i < ROWS * COLS; i++) w2[i] = 0.1f * frand(&seed);   // SwiGLU's up: another matrix
    for (int i = 0; i < BATCH * COLS; i++) x[i] = frand(&seed);
    for (int r = 0; r < ROWS; r++) {
        palr_quantize_row_q4_0(w + r * COLS, q4 + (size_t)r * (COLS / 32) * 18, COLS);
        palr_quantize_row_q8_0(w + r * COLS, q8 + (size_t)r * (COLS / 32) * 34, COLS);
        palr_quantize_row_q4_0(w2 + r * COLS, q4b + (size_t)r * (COLS / 32) * 18, COLS);
        palr_quantize_row_q8_0(w2 + r * COLS, q8b + (size_t)r * (COLS / 32) * 34, COLS);
    }
    const void *second[] = {q4b, q8b, w2};
    const float nan = nanf("");
    const struct { int type; const void *data; size_t row_bytes; const char *label; } kinds[] = {
        {2, q4, (COLS / 32) * 18, "Q4_0"}, {8, q8, (COLS / 32) * 34, "Q8_0"}, {0, w, COLS * 4, "F32"}};
    char what[64];
    for (int t = 0; t < 3; t++) {
        palr_weights m = {kinds[t].type, kinds[t].data, kinds[t].row_bytes, ROWS, COLS};
        // matvec, int8 activations for the quantized types and float ones for all.
        for (int quantized = 0; quantized < (kinds[t].type ? 2 : 1); quantized++) {
            ref->quantize_act(x, xq, COLS);
            for (int i = 0; i < BATCH * ROWS; i++) y[i] = nan;   // a row left unwritten fails
            palr_matvec_args a = {m, x, quantized ? xq : NULL, y};
            palr_matvec(pool, &a);
            double worst = 0;
            for (int r = 0; r < ROWS; r++) {
                const uint8_t *row = (const uint8_t *)kinds[t].data + (size_t)r * kinds[t].row_bytes;
                float want;
                if (kinds[t].type == 2) want = quantized ? ref->dot_q4_0_q8(row, xq, COLS) : ref->dot_q4_0_f32(row, x, COLS);
                else if (kinds[t].type == 8) want = quantized ? ref->dot_q8_0_q8(row, xq, COLS) : ref->dot_q8_0_f32(row, x, COLS);
                else want = ref->dot_f32((const float *)row, x, COLS);
                double scale = 0;
                for (int c = 0; c < COLS; c++) scale += fabs((double)w[r * COLS + c] * x[c]);
                const double d = fabs((double)y[r] - want) / scale;
                if (!(d <= worst)) worst = d;   // NaN (an unwritten row) is the worst
            }
            snprintf(what, sizeof what, "matvec %s %s", kinds[t].label, quantized ? "int8" : "float");
            check(worst < 1e-5, name, what, worst);
        }
        // matmul: both operand orders, 16-row panels, 64-column chunks (a row is 96).
        for (int tn = 0; tn < 2; tn++) {
            for (int i = 0; i < BATCH * ROWS; i++) y[i] = nan;
            palr_matmul_args a = {m, x, BATCH, y, ROWS, scratch, 16 * (COLS + BATCH), 16, 64, sgemm_ref,
                                  tn ? sgemm_tn_ref : NULL};
            palr_matmul(pool, &a);
            double worst = 0;
            for (int b = 0; b < BATCH; b++)
                for (int r = 0; r < ROWS; r++) {
                    double want = 0, scale = 0;
                    float deq[COLS];
                    const uint8_t *row = (const uint8_t *)kinds[t].data + (size_t)r * kinds[t].row_bytes;
                    if (kinds[t].type == 2) ref->dequant_q4_0(row, deq, COLS);
                    else if (kinds[t].type == 8) ref->dequant_q8_0(row, deq, COLS);
                    else memcpy(deq, row, sizeof deq);
                    for (int c = 0; c < COLS; c++) {
                        want += (double)deq[c] * x[b * COLS + c];
                        scale += fabs((double)deq[c] * x[b * COLS + c]);
                    }
                    ref_y[b * ROWS + r] = (float)want;
                    const double d = fabs((double)y[b * ROWS + r] - want) / scale;
                    if (!(d <= worst)) worst = d;
                }
            snprintf(what, sizeof what, "matmul %s %s", kinds[t].label, tn ? "tn" : "nt");
            check(worst < 1e-5, name, what, worst);
        }
        // SwiGLU: gate = silu(x.Wᵀ) * (x.W2ᵀ), up a different matrix (so a swapped
        // gate/up or one product used twice is caught); ref_y holds x.Wᵀ from above.
        for (int i = 0; i < BATCH * ROWS; i++) y[i] = g2[i] = nan;
        palr_matmul_args gate = {m, x, BATCH, y, ROWS, scratch, 16 * (COLS + BATCH), 16, 64, sgemm_ref, NULL};
        palr_matmul_args up = gate;
        up.m.w = second[t];
        up.y = g2;
        palr_matmul_swiglu(pool, &gate, &up);
        double worst = 0;
        for (int b = 0; b < BATCH; b++)
            for (int r = 0; r < ROWS; r++) {
                float deq[COLS];
                const uint8_t *row = (const uint8_t *)second[t] + (size_t)r * kinds[t].row_bytes;
                if (kinds[t].type == 2) ref->dequant_q4_0(row, deq, COLS);
                else if (kinds[t].type == 8) ref->dequant_q8_0(row, deq, COLS);
                else memcpy(deq, row, sizeof deq);
                double u = 0;
                for (int c = 0; c < COLS; c++) u += (double)deq[c] * x[b * COLS + c];
                const double v = ref_y[b * ROWS + r], want = v / (1.0 + exp(-v)) * u;
                const double d = fabs(y[b * ROWS + r] - want) / (fabs(want) + 1e-3);
                if (!(d <= worst)) worst = d;   // NaN (an unwritten row) is the worst
            }
        snprintf(what, sizeof what, "matmul_swiglu %s", kinds[t].label);
        check(worst < 1e-4, name, what, worst);
    }
    palr_pool_destroy(pool);
}

int main(void) {
    static float w[N], x[N], dq_ref[N], dq[N];
    static uint8_t q4[N / 32 * 18], q8[N / 32 * 34];
    static uint16_t h[N];
    static palr_q8_block xa[N / 32], xb[N / 32];
    unsigned seed = 12345;
    const palr_kernel_table *ref = palr_kernels_named("scalar");
    const char *names[] = {"neon", "neon_dotprod"};
    printf("cpu features 0x%x\n", palr_cpu_features());
    for (int t = 0; t < 2; t++) {
        const palr_kernel_table *k = palr_kernels_named(names[t]);
        if (!k) { printf("skip %s: not available on this CPU\n", names[t]); continue; }
        double worst_dot = 0, worst_q = 0;
        int act_ok = 1, deq_ok = 1;
        for (int round = 0; round < 20; round++) {
            for (int i = 0; i < N; i++) {
                w[i] = (i % 97 == 0) ? 0.0f : 0.1f * frand(&seed);
                x[i] = (i % 61 == 0) ? 0.5f : frand(&seed) * (round + 1);
            }
            palr_quantize_row_q4_0(w, q4, N);
            palr_quantize_row_q8_0(w, q8, N);
            palr_fp32_to_fp16_row(w, h, N);
            ref->quantize_act(x, xa, N);
            k->quantize_act(x, xb, N);
            if (memcmp(xa, xb, sizeof xa) != 0) act_ok = 0;
            double scale = 0;
            for (int i = 0; i < N; i++) scale += fabs((double)w[i] * x[i]);
            double d;
            d = fabs(k->dot_q4_0_q8(q4, xa, N) - ref->dot_q4_0_q8(q4, xa, N)) / scale; if (d > worst_q) worst_q = d;
            d = fabs(k->dot_q8_0_q8(q8, xa, N) - ref->dot_q8_0_q8(q8, xa, N)) / scale; if (d > worst_q) worst_q = d;
            d = fabs(k->dot_q4_0_f32(q4, x, N) - ref->dot_q4_0_f32(q4, x, N)) / scale; if (d > worst_dot) worst_dot = d;
            d = fabs(k->dot_q8_0_f32(q8, x, N) - ref->dot_q8_0_f32(q8, x, N)) / scale; if (d > worst_dot) worst_dot = d;
            d = fabs(k->dot_f16_f32(h, x, N) - ref->dot_f16_f32(h, x, N)) / scale; if (d > worst_dot) worst_dot = d;
            d = fabs(k->dot_f32(w, x, N) - ref->dot_f32(w, x, N)) / scale; if (d > worst_dot) worst_dot = d;
            ref->dequant_q4_0(q4, dq_ref, N); k->dequant_q4_0(q4, dq, N);
            if (memcmp(dq_ref, dq, sizeof dq) != 0) deq_ok = 0;
            ref->dequant_q8_0(q8, dq_ref, N); k->dequant_q8_0(q8, dq, N);
            if (memcmp(dq_ref, dq, sizeof dq) != 0) deq_ok = 0;
        }
        check(act_ok, names[t], "activation quantization", 0);
        check(worst_q < 1e-5, names[t], "int8 dots (rel. to sum|w.x|)", worst_q);
        check(worst_dot < 1e-5, names[t], "float dots (rel. to sum|w.x|)", worst_dot);
        check(deq_ok, names[t], "dequantization", 0);
        check_products(names[t]);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}
