#!/usr/bin/env bash
# Builds here and copies stripped binaries into .device-carry/ (git-ignored), which
# the device tool carries to the GPU machine for scripts/gpu-check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --build build -j "$(nproc)" >/dev/null
mkdir -p .device-carry
for b in build/cli/ffnjit build/tests/test_gpu_sparse_ffn build/bench/bench_kernels; do
  strip -o ".device-carry/$(basename "$b")" "$b"
done
du -sh .device-carry
