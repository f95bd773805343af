#!/usr/bin/env bash
# Sets everything up and runs ffnjit's main job on the bundled demo layer: generate
# and compile the kernels for a SparseLM-1.5B-shaped FFN, print their resources.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)"
ffnjit=build/cli/ffnjit
$ffnjit doctor
for family in gate_pack up_down; do
  $ffnjit inspect --d-model 2048 --d-ff 5632 --gated --tokens 2048 --arch sm_90a --family "$family" --emit resources
  echo
done
