#!/usr/bin/env bash
# Sets everything up and runs the test suite: installs packages, builds (warnings
# as errors), runs every ctest tier, then the host tests again under ASan+UBSan.
# GPU tests print [SKIP] on a machine without a GPU and are counted as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)

# Python venv for the safetensors interop test (Debian's PEP 668 blocks system pip).
# A failed install removes the venv, so that a later run retries instead of testing with half of it.
if [ ! -x build/pyenv/bin/python ]; then
  python3 -m venv build/pyenv
  build/pyenv/bin/pip install -q safetensors numpy ml_dtypes jsonschema || { rm -rf build/pyenv; exit 1; }
fi

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFFNJIT_WERROR=ON >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build -j "$jobs" --output-on-failure

cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFFNJIT_SANITIZE=ON -DFFNJIT_WERROR=ON >/dev/null
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan -j "$jobs" --output-on-failure -L 'unit|errors|codegen'

# libFuzzer targets (safetensors header, profile parser): a bounded run each.
scripts/fuzz.sh "${FFNJIT_FUZZ_SECONDS:-60}"
