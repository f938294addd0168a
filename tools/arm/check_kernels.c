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
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}
