#!/usr/bin/env bash
# gpu tier: Ctrl-C in the middle of `ffnjit tune` stops after the current entry with
# exit code 130, and running the same command again finishes the rest without
# redoing the finished entries (2 layers x 4 buckets = 8 entries).
ffnjit=$1
if ! "$ffnjit" doctor 2>/dev/null | grep -Eq '^GPUs: +[1-9]'; then
  echo "[SKIP] no GPU: ffnjit doctor finds none"
  exit 0
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$ffnjit" demo-checkpoint "$dir/ckpt" --layers 2 >/dev/null || exit 1
"$ffnjit" tune "$dir/ckpt" --cache "$dir/c.db" --buckets 1,2-4,5-16,17-64 --json >"$dir/first.json" 2>"$dir/first.err" &
pid=$!
for _ in $(seq 1 1200); do grep -q '^\[2/8\]' "$dir/first.err" && break; sleep 0.1; done  # entry 2 started: 1 is committed
kill -INT "$pid"
wait "$pid"
rc=$?
[ "$rc" -eq 130 ] || { echo "FAIL: interrupted tune exited $rc, expected 130"; cat "$dir/first.err"; exit 1; }
"$ffnjit" tune "$dir/ckpt" --cache "$dir/c.db" --buckets 1,2-4,5-16,17-64 --json >"$dir/second.json" 2>/dev/null || { echo "FAIL: rerun failed"; exit 1; }
python3 - "$dir/first.json" "$dir/second.json" <<'PY'
import json, sys
first, second = (json.load(open(p)) for p in sys.argv[1:3])
done_first = len(first["entries"])
resumed = sum(e["resumed"] for e in second["entries"])
ok = first["interrupted"] and 1 <= done_first < 8 and second["entries_left"] == 0 \
     and len(second["entries"]) == 8 and resumed == done_first
print(f"interrupted after {done_first} of 8 entries; rerun resumed {resumed}, tuned {8 - resumed}")
print("1 passed, 0 failed" if ok else "0 passed, 1 failed")
sys.exit(0 if ok else 1)
PY
