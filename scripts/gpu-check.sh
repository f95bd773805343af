#!/usr/bin/env bash
# Runs on the GPU machine (through the device tool): every gpu test binary,
# compute-sanitizer memcheck + racecheck on a representative set, the examples
# (C engine on a demo checkpoint, PyTorch operator eager + CUDA graph), the host
# overhead benchmark and `ffnjit bench`. Full logs go to $OUT; a short summary
# table is printed last. Binaries come prebuilt in $BIN (scripts/gpu-pack.sh).
# STEPS selects a subset: tests sanitize examples verify overhead bench kernels ncu.
# bench runs `ffnjit bench --tuned` (BENCH_TUNED= for the untuned defaults).
# (kernels: per-kernel timings at BENCH_M tokens; ncu: L2/DRAM counters of the
# up/down kernels there. Neither runs by default.)
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${BIN:-.device-carry}")
OUT=${OUT:-/tmp/ffnjit-gpu-check}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$BIN:${LD_LIBRARY_PATH:-}
STEPS=${STEPS:-tests sanitize examples verify overhead bench}
summary=()
has() { [[ " $STEPS " == *" $1 "* ]]; }

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv >"$OUT/gpu.txt" 2>&1
summary+=("device: $(sed -n 2p "$OUT/gpu.txt")")

if has tests; then
  for t in "$BIN"/test_gpu_*; do
    n=$(basename "$t")
    start=$(date +%s)
    "$t" '~[sanitize]' >"$OUT/$n.log" 2>&1
    rc=$?
    summary+=("$n: rc=$rc, $(grep -E '^(test cases|All tests passed)' "$OUT/$n.log" | tail -1) ($(( $(date +%s) - start )) s)")
  done
  bash tests/gpu/tune_sigint.sh "$BIN/ffnjit" >"$OUT/tune_sigint.log" 2>&1
  summary+=("tune_sigint: rc=$?, $(tail -1 "$OUT/tune_sigint.log")")
fi

if has sanitize; then
  compute-sanitizer --tool memcheck --error-exitcode 99 "$BIN/test_gpu_sparse_ffn" "[sanitize]" \
    >"$OUT/sanitize-memcheck.log" 2>&1
  summary+=("compute-sanitizer memcheck: rc=$?, $(grep -E 'ERROR SUMMARY' "$OUT/sanitize-memcheck.log" | tail -1)")
  # racecheck also instruments cuBLASLt's own GEMM kernels (nvjet_*, the GEMM gate),
  # whose mbarrier synchronization it reports as hazards (and excluding them makes it
  # fail); ffnjit's kernels must have none.
  compute-sanitizer --tool racecheck --print-limit 1000 "$BIN/test_gpu_sparse_ffn" "[sanitize]" \
    >"$OUT/sanitize-racecheck.log" 2>&1
  rc=$?
  ours=$(grep -A1 "Race reported" "$OUT/sanitize-racecheck.log" | grep -vc -e nvjet -e '^--$')
  theirs=$(grep -c "Race reported.*nvjet" "$OUT/sanitize-racecheck.log")
  tests=$(grep -E '^(All tests passed|test cases)' "$OUT/sanitize-racecheck.log" | tail -1)
  summary+=("compute-sanitizer racecheck: rc=$rc, hazards in ffnjit kernels: $ours (cuBLASLt nvjet: $theirs), $tests")
fi

if has examples; then
  demo=/tmp/ffnjit-demo
  rm -rf "$demo"
  if "$BIN/ffnjit" demo-checkpoint "$demo" >"$OUT/example-c.log" 2>&1; then
    "$BIN/c_engine" "$demo" >>"$OUT/example-c.log" 2>&1
    summary+=("example c_engine: rc=$?, $(tail -1 "$OUT/example-c.log")")
  else
    summary+=("example c_engine: demo-checkpoint failed: $(tail -1 "$OUT/example-c.log")")
  fi
  PYTHONUNBUFFERED=1 python3 examples/torch/compare.py "$PWD/include" "$BIN" >"$OUT/example-torch.log" 2>&1
  summary+=("example torch: rc=$?, $(tail -1 "$OUT/example-torch.log")")
fi

if has verify; then
  rm -rf /tmp/ffnjit-verify && "$BIN/ffnjit" demo-checkpoint /tmp/ffnjit-verify/ckpt >/dev/null &&
    "$BIN/ffnjit" tune /tmp/ffnjit-verify/ckpt --cache /tmp/ffnjit-verify/c.db >/dev/null 2>&1 &&
    "$BIN/ffnjit" cache verify --cache /tmp/ffnjit-verify/c.db >"$OUT/cache-verify.log" 2>&1
  summary+=("cache verify: rc=$?, $(grep -iE 'loaded|ok' "$OUT/cache-verify.log" | tail -1)")
fi

if has overhead; then
  "$BIN/bench_host_overhead" >"$OUT/overhead.txt" 2>&1
  summary+=("host overhead: rc=$?")
fi

if has kernels; then
  "$BIN/bench_kernels" "${BENCH_M:-8192}" 29 >"$OUT/kernels.txt" 2>&1
  summary+=("bench_kernels: rc=$?")
fi

if has ncu; then
  ncu --clock-control none -k "regex:${NCU_KERNELS:-ffnjit_(up_down|up|down)_sm}" --launch-skip ${NCU_SKIP:-0} -c ${NCU_COUNT:-6} \
    --metrics gpu__time_duration.sum,lts__t_sector_hit_rate.pct,dram__bytes_read.sum,lts__t_bytes.sum,sm__warps_active.avg.pct_of_peak_sustained_active \
    "$BIN/bench_kernels" "${BENCH_M:-8192}" 29 >"$OUT/ncu.txt" 2>&1
  summary+=("ncu: rc=$?")
fi

if has bench; then
  "$BIN/ffnjit" bench ${BENCH_TUNED---tuned} --tokens "${BENCH_TOKENS:-1,16,128,2048,8192,32768}" --k "${BENCH_K:-29,56,112,282}" \
    --csv "$OUT/bench.csv" >"$OUT/bench.txt" 2>"$OUT/bench.err"
  summary+=("bench: rc=$?")
  python3 scripts/plot_bench.py "$OUT/bench.csv" "$OUT/bench.png" >/dev/null 2>&1 ||
    echo "note: no PNG plot (python3 scripts/plot_bench.py needs matplotlib)" >>"$OUT/bench.err"
fi

echo "==== failures (first lines) ===="
grep -h -B2 -A12 "FAILED" "$OUT"/*.log 2>/dev/null | head -60
echo "==== example logs (tail) ===="
tail -n 6 "$OUT"/example-*.log 2>/dev/null
echo "==== host overhead ===="
cat "$OUT/overhead.txt" 2>/dev/null
echo "==== kernels ===="
cat "$OUT/kernels.txt" 2>/dev/null
grep -E "ffnjit_|duration|hit_rate|bytes|warps_active" "$OUT/ncu.txt" 2>/dev/null | head -60
echo "==== bench ===="
cat "$OUT/bench.txt" 2>/dev/null; tail -n 2 "$OUT/bench.err" 2>/dev/null
echo "==== summary ===="
printf '%s\n' "${summary[@]}"
