#!/usr/bin/env bash
# interop tier: safetensors files written by the official Python package (PyPI) read
# bit-identically by ffnjit and the reverse, plus the profile JSON schema check.
# Needs the venv scripts/test.sh creates; without it the test says [SKIP] and is skipped.
tool=$1 ffnjit=$2 venv=$3 src=$4
py=$venv/bin/python
if [ ! -x "$py" ]; then
  echo "[SKIP] python venv $venv is missing; scripts/test.sh creates it (python3 -m venv build/pyenv;"\
       "build/pyenv/bin/pip install safetensors numpy ml_dtypes jsonschema)"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
exec "$py" "$src/tests/interop/interop.py" "$tool" "$ffnjit" "$src" "$tmp"
