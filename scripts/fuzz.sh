#!/usr/bin/env bash
# Builds the libFuzzer targets (clang-14, ASan + UBSan + libFuzzer) in build-fuzz/ and
# runs each for a bounded time: scripts/fuzz.sh [seconds per target, default 60]
# (FUZZ_MAX_LEN: largest input in bytes, default 1 MiB).
# Fails on any crash, leak, timeout or sanitizer report; reproducers land in
# build-fuzz/artifacts/. The seed corpora in fuzz/corpus/ are copied, never modified.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
# 1 MiB: crafted inputs need room (a 47k-character name, 57k levels of JSON nesting in
# 114 KB); the seed corpora hold such inputs, each < 200 KB.
max_len=${FUZZ_MAX_LEN:-1048576}
for tool in clang-14 clang++-14; do
  command -v "$tool" >/dev/null || { echo "fuzz: $tool is missing; run scripts/install-deps.sh (clang-14, libclang-rt-14-dev)" >&2; exit 1; }
done
CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFFNJIT_FUZZ=ON -DFFNJIT_BUILD_TESTS=OFF -DFFNJIT_WERROR=ON >/dev/null
cmake --build build-fuzz -j "${FUZZ_JOBS:-$(nproc)}" --target fuzz_safetensors fuzz_profile fuzz_cache_import
mkdir -p build-fuzz/artifacts
for t in safetensors profile cache_import; do
  work=build-fuzz/corpus/$t
  mkdir -p "$work"
  cp -n fuzz/corpus/$t/* "$work"/ 2>/dev/null || true
  log=build-fuzz/fuzz_$t.log
  echo "fuzz: $t for ${secs}s (log: $log)"
  if ! ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
      build-fuzz/fuzz/fuzz_$t "$work" -dict=fuzz/$t.dict -max_total_time="$secs" -timeout=10 \
      -rss_limit_mb=2048 -max_len="$max_len" -print_final_stats=1 -artifact_prefix=build-fuzz/artifacts/ >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz: $t FAILED (crash, leak, hang or sanitizer report); reproducer in build-fuzz/artifacts/" >&2
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | grep -oE '(cov|ft|exec/s): *[0-9]+' | tr '\n' ' ' || true)
  echo "fuzz: $t ok: $runs runs in ${secs}s, no crash, leak or hang; last: ${cov:-?}"
done
