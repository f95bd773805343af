#!/usr/bin/env bash
# Runs on the GPU machine (through the device tool): the GPU tests, compute-sanitizer
# memcheck + racecheck on the [sanitize] cases, the examples, the Python package's GPU
# test, a reference model trained on the spot (tuned and benchmarked as an engine serves
# it) and `ffnjit bench`. Full logs go to $OUT; a short summary table is printed last.
# Binaries come prebuilt in $BIN (scripts/gpu-pack.sh), with the realmodel scripts and the
# wheel beside them.
#
# STEPS selects what runs (one device call is limited to 10 minutes, so a full check is
# two calls):
#   tests     every test_gpu_* binary (correctness, in parallel: they do not time) + tune_sigint
#   sanitize  compute-sanitizer memcheck and racecheck on the [sanitize] cases
#   python    the ffnjit wheel's GPU test on tiny transformers models (+ its host-overhead bench)
#   examples  the C engine on a demo checkpoint
#   train     train ../shared/realmodel (RM_SECONDS) in the background into /tmp/ffnjit-rm
#   realmodel profile, tune and bench --checkpoint it (training first if no earlier call did)
#   bench     ffnjit bench --tuned: uniform, --heavy and --shift (BENCH_TOKENS, BENCH_K)
#   overhead  bench_host_overhead
#   kernels / ncu  per-kernel timings at BENCH_M tokens, and their counters
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${BIN:-.device-carry}")
OUT=${OUT:-/tmp/ffnjit-gpu-check}
mkdir -p "$OUT/logs"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
STEPS=${STEPS:-tests sanitize}
summary=()
has() { [[ " $STEPS " == *" $1 "* ]]; }
t0=$(date +%s)
elapsed() { echo "$(( $(date +%s) - t0 )) s"; }

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv >"$OUT/gpu.txt" 2>&1
summary+=("device: $(sed -n 2p "$OUT/gpu.txt")")

# Runs a test binary into logs/NAME.log and reports its Catch summary line.
run_test() {
  local n=$1
  shift
  local start
  start=$(date +%s)
  "$@" >"$OUT/logs/$n.log" 2>&1
  local rc=$?
  echo "$n: rc=$rc, $(grep -E '^(test cases|All tests passed)' "$OUT/logs/$n.log" | tail -1) ($(( $(date +%s) - start )) s)" \
    >"$OUT/logs/$n.summary"
}

rm=/tmp/ffnjit-rm
train_model() {
  [ -f "$rm/ckpt/stats.json" ] && return 0  # trained by an earlier call on this machine
  rm -rf "$rm" && mkdir -p "$rm"
  bash "$BIN/realmodel/make.sh" "$rm/ckpt" "${RM_SECONDS:-60}" >"$OUT/logs/realmodel-train.log" 2>&1
}
if has train; then
  # In the background: a later call on the same (warm) machine tunes and benchmarks it.
  train_model &
  train_pid=$!
fi

if has sanitize; then
  # In the background while the tests run: the sanitizers' slowdown is host-side.
  (
    for t in ${SANITIZE_TESTS:-test_gpu_sparse_ffn test_gpu_dense_switch}; do
      compute-sanitizer --tool memcheck --error-exitcode 99 "$BIN/$t" "[sanitize]" >"$OUT/logs/memcheck-$t.log" 2>&1
      echo "memcheck $t: rc=$?, $(grep -E 'ERROR SUMMARY' "$OUT/logs/memcheck-$t.log" | tail -1)" \
        >"$OUT/logs/memcheck-$t.summary"
      # racecheck also instruments cuBLASLt's own GEMM kernels (nvjet_*), whose mbarrier
      # synchronization it reports as hazards; ffnjit's kernels must have none.
      compute-sanitizer --tool racecheck --print-limit 1000 "$BIN/$t" "[sanitize]" >"$OUT/logs/racecheck-$t.log" 2>&1
      rc=$?
      ours=$(grep -A1 "Race reported" "$OUT/logs/racecheck-$t.log" | grep -vc -e nvjet -e '^--$')
      theirs=$(grep -c "Race reported.*nvjet" "$OUT/logs/racecheck-$t.log")
      echo "racecheck $t: rc=$rc, hazards in ffnjit kernels: $ours (cuBLASLt nvjet: $theirs)," \
        "$(grep -E '^(All tests passed|test cases)' "$OUT/logs/racecheck-$t.log" | tail -1)" >"$OUT/logs/racecheck-$t.summary"
    done
  ) &
  sanitize_pid=$!
fi

if has tests; then
  pids=()
  for t in "$BIN"/test_gpu_*; do
    n=$(basename "$t")
    [ "$n" = test_gpu_tune ] && continue  # it times: run alone below
    [ -n "${TESTS:-}" ] && [[ " $TESTS " != *" $n "* ]] && continue
    run_test "$n" "$t" '~[sanitize]' &
    pids+=($!)
  done
  wait "${pids[@]}"
  [ -z "${TESTS:-}" ] || [[ " $TESTS " == *" test_gpu_tune "* ]] && run_test test_gpu_tune "$BIN/test_gpu_tune"
  if [ -z "${TESTS:-}" ]; then
    bash tests/gpu/tune_sigint.sh "$BIN/ffnjit" >"$OUT/logs/tune_sigint.log" 2>&1
    echo "tune_sigint: rc=$?, $(tail -1 "$OUT/logs/tune_sigint.log")" >"$OUT/logs/tune_sigint.summary"
  fi
  for s in "$OUT"/logs/test_gpu_*.summary "$OUT"/logs/tune_sigint.summary; do [ -f "$s" ] && summary+=("$(cat "$s")"); done
fi

if has python; then
  if python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/ffnjit-site "$BIN"/dist/ffnjit-*.whl \
      >"$OUT/logs/python-install.log" 2>&1; then
    PYTHONPATH=/tmp/ffnjit-site PYTHONUNBUFFERED=1 timeout "${PY_TIMEOUT:-330}" python3 tests/gpu/test_python_hf.py \
      --work /tmp/ffnjit-hf ${PY_FAMILIES:+--families $PY_FAMILIES} >"$OUT/logs/python_hf.log" 2>&1
    summary+=("python hf: rc=$?, $(tail -1 "$OUT/logs/python_hf.log")")
    PYTHONPATH=/tmp/ffnjit-site timeout 120 python3 bench/bench_python_op.py >"$OUT/logs/bench_python_op.log" 2>&1
    summary+=("python op overhead bench: rc=$?")
  else
    summary+=("python: the wheel did not install: $(tail -1 "$OUT/logs/python-install.log")")
  fi
fi

if has sanitize; then
  wait "$sanitize_pid"
  for s in "$OUT"/logs/memcheck-*.summary "$OUT"/logs/racecheck-*.summary; do summary+=("$(cat "$s")"); done
fi

if has examples; then
  demo=/tmp/ffnjit-demo
  rm -rf "$demo"
  if "$BIN/ffnjit" demo-checkpoint "$demo" >"$OUT/logs/example-c.log" 2>&1; then
    "$BIN/c_engine" "$demo" >>"$OUT/logs/example-c.log" 2>&1
    summary+=("example c_engine: rc=$?, $(tail -1 "$OUT/logs/example-c.log")")
  else
    summary+=("example c_engine: demo-checkpoint failed: $(tail -1 "$OUT/logs/example-c.log")")
  fi
fi

if has train; then
  wait "$train_pid"
  summary+=("realmodel train: $([ -f "$rm/ckpt/stats.json" ] && echo ok || echo failed) ($(elapsed))")
fi

if has realmodel; then
  if train_model; then
    cp "$rm/ckpt/stats.json" "$OUT/logs/realmodel-stats.json"
    "$BIN/ffnjit" profile "$rm/ckpt" --inputs "$rm/ckpt/inputs.safetensors" -o "$rm/profile.json" --specialize \
      >"$OUT/logs/realmodel-profile.log" 2>&1
    summary+=("realmodel profile: rc=$? ($(elapsed))")
    start=$(date +%s)
    "$BIN/ffnjit" tune "$rm/ckpt" --profile "$rm/profile.json" --cache "$rm/cache.db" \
      >"$OUT/logs/realmodel-tune.log" 2>&1
    summary+=("realmodel tune: rc=$?, $(( $(date +%s) - start )) s for $(grep -c ' layer ' "$OUT/logs/realmodel-tune.log") entries")
    "$BIN/ffnjit" bench --checkpoint "$rm/ckpt" --cache "$rm/cache.db" --tokens "${RM_TOKENS:-1,16,128,2048,8192}" \
      --csv "$OUT/logs/realmodel.csv" >"$OUT/realmodel-bench.txt" 2>"$OUT/logs/realmodel-bench.err"
    summary+=("realmodel bench: rc=$? ($(elapsed))")
  else
    summary+=("realmodel: training failed: $(tail -1 "$OUT/logs/realmodel-train.log")")
  fi
fi

if has bench; then
  for mode in "" --heavy --shift; do
    name=bench${mode:+-${mode#--}}
    args=(--tuned)
    [ "$mode" = --heavy ] && args+=(--heavy)
    [ "$mode" = --shift ] && args=(--shift)
    "$BIN/ffnjit" bench "${args[@]}" --tokens "${BENCH_TOKENS:-1,16,128,2048,8192,32768}" \
      --k "${BENCH_K:-29,56}" --csv "$OUT/logs/$name.csv" >"$OUT/$name.txt" 2>"$OUT/logs/$name.err"
    summary+=("$name: rc=$? ($(elapsed))")
  done
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

# Only 8 files come back from $OUT: the logs travel as one archive.
tar -czf "$OUT/logs.tgz" -C "$OUT" logs && rm -rf "$OUT/logs"

echo "==== failures (first lines) ===="
tar -xzOf "$OUT/logs.tgz" --wildcards 'logs/*.log' 2>/dev/null | grep -B2 -A12 -E "FAILED|FAIL:|Traceback" | head -80
for f in "$OUT"/realmodel-bench.txt "$OUT"/bench*.txt "$OUT"/overhead.txt; do
  [ -f "$f" ] && { echo "==== $(basename "$f") ===="; cat "$f"; }
done
echo "==== summary ($(elapsed)) ===="
printf '%s\n' "${summary[@]}"
