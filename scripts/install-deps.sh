#!/usr/bin/env bash
# Installs the Debian 12 packages ffnjit builds and tests with (run as root).
# The CUDA 13 toolkit is expected in /usr/local/cuda (NVRTC, cuBLASLt, headers).
set -euo pipefail
pkgs=(cmake ninja-build g++ pkg-config catch2 nlohmann-json3-dev libsqlite3-dev sqlite3 llvm-14-tools
      clang-14 libclang-rt-14-dev python3 python3-pip python3-venv)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then echo "install-deps: run as root to install: ${missing[*]}" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -x /usr/local/cuda/bin/nvcc ] && [ ! -e /usr/local/cuda/include/nvrtc.h ]; then
  echo "install-deps: the CUDA 13 toolkit is missing from /usr/local/cuda" >&2
  exit 1
fi
