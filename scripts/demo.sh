#!/usr/bin/env bash
# Sets everything up and runs ffnjit's main job on the bundled demo: writes a small
# ReLU-gated checkpoint (SparseLM-like sparsity), profiles its sparsity, and pre-tunes
# every FFN layer for the default batch buckets into a demo cache. With a GPU the
# tuner times candidates; without one it compiles the default kernels (--compile-only).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)"
ffnjit=build/cli/ffnjit
demo=build/demo
rm -rf "$demo" && mkdir -p "$demo"
$ffnjit doctor --cache "$demo/cache.db"
$ffnjit demo-checkpoint "$demo/checkpoint"
$ffnjit profile "$demo/checkpoint" --inputs "$demo/checkpoint/inputs.safetensors" -o "$demo/profile.json" --specialize
# (Outputs are captured before they are filtered: with pipefail, a reader that stops
# early, like grep -q or head, would fail the pipeline through SIGPIPE.)
mode=()
doctor=$($ffnjit doctor)
grep -Eq '^GPUs: +[1-9]' <<<"$doctor" || mode=(--compile-only)
$ffnjit tune "$demo/checkpoint" --profile "$demo/profile.json" --cache "$demo/cache.db" "${mode[@]}"
listing=$($ffnjit cache ls --cache "$demo/cache.db")
head -n 12 <<<"$listing"
