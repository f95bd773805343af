#!/usr/bin/env bash
# Builds here and copies stripped binaries into .device-carry/ (git-ignored), which
# the device tool carries to the GPU machine for scripts/gpu-check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --build build -j "$(nproc)" >/dev/null
rm -rf .device-carry && mkdir -p .device-carry
for b in build/cli/ffnjit build/tests/test_gpu_sparse_ffn build/tests/test_gpu_c_api build/bench/bench_kernels \
         build/bench/bench_host_overhead build/examples/c_engine; do
  strip -o ".device-carry/$(basename "$b")" "$b"
done
for t in build/tests/test_gpu_*; do
  [ -x "$t" ] && [ ! -e ".device-carry/$(basename "$t")" ] && strip -o ".device-carry/$(basename "$t")" "$t"
done
strip --strip-unneeded -o .device-carry/libffnjit.so build/runtime/libffnjit.so
# Programs linked against it load it by its soname (libffnjit.so.0.MINOR).
soname=$(readelf -d build/runtime/libffnjit.so | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
cp .device-carry/libffnjit.so ".device-carry/$soname"
du -sh .device-carry
