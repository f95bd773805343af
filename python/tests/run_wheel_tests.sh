#!/usr/bin/env bash
# package tier: the wheel scripts/test.sh built, installed into a fresh venv, imported,
# and its CPU tests run there (python/tests/run_tests.py).
#   bare:  the venv holds the wheel only (no PyTorch): import and the torch-free tests.
#   torch: the venv also sees the test dependencies (PyTorch, transformers) of build/pyenv
#          through a .pth file, so that the 5 GB of PyTorch is installed once, not per run.
# usage: run_wheel_tests.sh bare|torch <dist dir> <deps venv> <source dir>
mode=$1 dist=$2 deps=$3 src=$4
wheel=$(ls -t "$dist"/ffnjit-*.whl 2>/dev/null | head -1)
if [ -z "$wheel" ]; then
  echo "[SKIP] no ffnjit wheel in $dist; scripts/test.sh builds it (pip wheel ./python -w build/dist)"
  exit 0
fi
if [ ! -x "$deps/bin/python" ]; then
  echo "[SKIP] python venv $deps is missing; scripts/test.sh creates it (python/tests/requirements.txt)"
  exit 0
fi
if [ "$mode" = torch ] && ! "$deps/bin/python" -c 'import torch, transformers, safetensors' 2>/dev/null; then
  echo "[SKIP] torch, transformers or safetensors is not installed in $deps; scripts/test.sh installs" \
       "python/tests/requirements.txt there"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$deps/bin/python" -m venv "$tmp/venv" || exit 1
py=$tmp/venv/bin/python
"$py" -m pip install -q --no-index --no-deps "$wheel" || exit 1
args=(--no-torch)
if [ "$mode" = torch ]; then
  "$deps/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
    >"$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/ffnjit_test_deps.pth"
  args=(--torch)  # the torch-free modules ran in the bare venv
fi
# Run from an empty directory: only the installed package can be imported as ffnjit.
cd "$tmp" && FFNJIT_SOURCE_DIR=$src exec "$py" "$src/python/tests/run_tests.py" "${args[@]}"
