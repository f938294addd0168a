#!/usr/bin/env bash
# Cross-compiles the C kernels for aarch64 and checks the NEON paths against the
# scalar reference under qemu user-mode emulation; then the signal-cleanup registry and
# the mapped-file SIGBUS handler (Sources/CFileSafety). Needs gcc-aarch64-linux-gnu and qemu-user-static (Debian);
# skips with a message when they are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64-static >/dev/null; then
  echo "arm: SKIPPED: gcc-aarch64-linux-gnu or qemu-user-static is not installed"
  exit 0
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
aarch64-linux-gnu-gcc -O2 -std=gnu11 -ffp-contract=off -fno-math-errno -static -pthread \
  -I Sources/CKernels/include tools/arm/check_kernels.c \
  Sources/CKernels/kernels.c Sources/CKernels/fast.c Sources/CKernels/cpu.c -lm -o "$out/check_kernels"
echo "arm: running the NEON kernel checks under qemu-aarch64-static"
qemu-aarch64-static "$out/check_kernels"
aarch64-linux-gnu-gcc -O2 -std=gnu11 -static -I Sources/CFileSafety/include tools/arm/check_cleanup.c \
  Sources/CFileSafety/cleanup.c -o "$out/check_cleanup"
echo "arm: running the signal-cleanup checks under qemu-aarch64-static"
qemu-aarch64-static "$out/check_cleanup"
aarch64-linux-gnu-gcc -O2 -std=gnu11 -static -I Sources/CFileSafety/include tools/arm/check_mapped.c \
  Sources/CFileSafety/cleanup.c Sources/CFileSafety/mapped.c -o "$out/check_mapped"
echo "arm: running the mapped-file SIGBUS checks under qemu-aarch64-static"
qemu-aarch64-static "$out/check_mapped"
