#!/usr/bin/env bash
# Runs on the GPU machine (through the device tool): the gpu test tier, compute-
# sanitizer memcheck + racecheck on a representative set, and the benchmark. Full
# logs go to $OUT; a short summary table is printed last.
# Binaries come prebuilt in $BIN (default .device-carry, made by scripts/gpu-pack.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.device-carry}
OUT=${OUT:-/tmp/ffnjit-gpu-check}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
STEPS=${STEPS:-tests sanitize bench}
summary=()

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv >"$OUT/gpu.txt" 2>&1
summary+=("device: $(sed -n 2p "$OUT/gpu.txt")")

if [[ " $STEPS " == *" tests "* ]]; then
  start=$(date +%s)
  "$BIN/test_gpu_sparse_ffn" ~[sanitize] >"$OUT/gpu-tests.log" 2>&1
  rc=$?
  summary+=("gpu tests: rc=$rc, $(grep -E '^(test cases|All tests passed)' "$OUT/gpu-tests.log" | tail -2 | tr '\n' ' ') ($(( $(date +%s) - start )) s)")
fi

if [[ " $STEPS " == *" sanitize "* ]]; then
  for tool in memcheck racecheck; do
    compute-sanitizer --tool "$tool" --error-exitcode 99 "$BIN/test_gpu_sparse_ffn" "[sanitize]" \
      >"$OUT/sanitize-$tool.log" 2>&1
    rc=$?
    summary+=("compute-sanitizer $tool: rc=$rc, $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitize-$tool.log" | tail -1)")
  done
fi

if [[ " $STEPS " == *" bench "* ]]; then
  "$BIN/ffnjit" bench --tokens "${BENCH_TOKENS:-1,16,128,2048,8192,32768}" --k "${BENCH_K:-29,56,112,282}" \
    --csv "$OUT/bench.csv" >"$OUT/bench.txt" 2>"$OUT/bench.err"
  summary+=("bench: rc=$?")
fi

echo "==== logs ===="
for f in "$OUT"/*.log; do echo "--- $f (tail)"; tail -n 25 "$f"; done
echo "==== bench ===="
cat "$OUT/bench.txt" 2>/dev/null; tail -n 3 "$OUT/bench.err" 2>/dev/null
echo "==== summary ===="
printf '%s\n' "${summary[@]}"
