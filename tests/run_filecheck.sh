#!/usr/bin/env bash
# Runs one FileCheck golden test: the file's "RUN: ffnjit ..." line is executed with
# the built ffnjit and its output checked against the file's CHECK lines.
set -euo pipefail
ffnjit=$1 filecheck=$2 test=$3
run=$(grep -m1 '^# RUN: ffnjit ' "$test" | sed 's/^# RUN: ffnjit //')
[ -n "$run" ] || { echo "no '# RUN: ffnjit' line in $test"; exit 1; }
# shellcheck disable=SC2086
"$ffnjit" $run | "$filecheck" --match-full-lines=false "$test"
