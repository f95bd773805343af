# Sourced by the errors-tier scripts: `expect "<message>" args...` runs `$ffnjit args...`
# and passes when it exits non-zero with exactly one stderr line containing the
# message; `finish` prints "N passed, N failed" and sets the exit status.
pass=0 fail=0
expect() {
  local want=$1; shift
  local err rc lines
  err=$("$ffnjit" "$@" 2>&1 >/dev/null); rc=$?
  lines=$(printf '%s' "$err" | grep -c '')
  if [ "$rc" -ne 0 ] && [ "$lines" -eq 1 ] && [[ "$err" == *"$want"* ]]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL: ffnjit $* -> rc=$rc, $lines line(s): $err"
    echo "      wanted: $want"
  fi
}
finish() {
  echo "$pass passed, $fail failed"
  [ "$fail" -eq 0 ]
}
