#!/usr/bin/env bash
# Sets everything up and runs the test suite: installs packages, builds (warnings
# as errors) and the Python wheel, runs every ctest tier, then the host tests again
# under ASan+UBSan.
# GPU tests print [SKIP] on a machine without a GPU and are counted as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)

# Python venv for the tests' Python packages (Debian's PEP 668 blocks system pip):
# python/tests/requirements.txt (safetensors interop; PyTorch, transformers and
# scikit-build-core for the ffnjit package), reinstalled when that file changes. A failed
# install removes the venv, so that a later run retries instead of testing with half of it.
req=python/tests/requirements.txt
if [ ! -x build/pyenv/bin/python ] || ! cmp -s "$req" build/pyenv/requirements.txt; then
  rm -rf build/pyenv
  python3 -m venv build/pyenv
  build/pyenv/bin/pip install -q -r "$req" || { rm -rf build/pyenv; exit 1; }
  cp "$req" build/pyenv/requirements.txt
fi

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFFNJIT_WERROR=ON >/dev/null
cmake --build build -j "$jobs"
# The Python wheel (python/pyproject.toml), built from this build tree: scikit-build-core
# reconfigures it with the same options and installs the library and CLI (seconds, no
# recompilation). ctest's package tier installs it into fresh venvs.
rm -rf build/dist
build/pyenv/bin/pip wheel -q --no-deps --no-build-isolation ./python -w build/dist -C build-dir="$PWD/build" \
  -C cmake.build-type=RelWithDebInfo -C cmake.define.FFNJIT_BUILD_TESTS=ON -C cmake.define.FFNJIT_WERROR=ON
ctest --test-dir build -j "$jobs" --output-on-failure

cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFFNJIT_SANITIZE=ON -DFFNJIT_WERROR=ON >/dev/null
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan -j "$jobs" --output-on-failure -L 'unit|errors|codegen'

# libFuzzer targets (safetensors header, profile parser): a bounded run each.
scripts/fuzz.sh "${FFNJIT_FUZZ_SECONDS:-60}"
