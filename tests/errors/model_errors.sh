#!/usr/bin/env bash
# errors tier for `ffnjit profile` and `ffnjit demo-checkpoint`: each bad invocation exits
# non-zero with one line on stderr that contains the promised message (which names the fix).
ffnjit=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source "$(dirname "$0")/expect.sh"
"$ffnjit" demo-checkpoint "$tmp/demo" --layers 2 --d-model 64 --d-ff 128 --tokens 32 >/dev/null || { echo "FAIL: demo-checkpoint"; exit 1; }
in=$tmp/demo/inputs.safetensors

# demo-checkpoint
expect "already holds a config.json; pass --force to overwrite it" demo-checkpoint "$tmp/demo"
expect "d_ff=100 must be a multiple of 8 in [16, 65536]" demo-checkpoint "$tmp/x" --d-ff 100
expect "--layers=0 is out of range; use a value in [1, 1024]" demo-checkpoint "$tmp/x" --layers 0
expect "missing <dir>; run \`ffnjit demo-checkpoint --help\`" demo-checkpoint

# profile: arguments
expect "--inputs is required" profile "$tmp/demo"
expect "--held-out must be a fraction in [0, 1), got '1.5'" profile "$tmp/demo" --inputs "$in" --held-out 1.5
expect "--prune-dead measures its error on held-out tokens; pass --specialize --held-out 0.2" profile "$tmp/demo" --inputs "$in" --prune-dead
expect "--tile-n takes comma-separated tile widths such as 64,128,256; got '64,x'" profile "$tmp/demo" --inputs "$in" --tile-n 64,x
expect "--spec-tile-n 128 is not among --tile-n 64; add it" profile "$tmp/demo" --inputs "$in" --tile-n 64 --specialize
expect "unknown option --input; run \`ffnjit profile --help\`" profile "$tmp/demo" --input "$in"
expect "--screen-tokens=0 is out of range; use a value in [1, 1048576]" profile "$tmp/demo" --inputs "$in" --screen --screen-tokens 0

# profile: checkpoints
expect "not a directory; a checkpoint is a directory with config.json" profile "$in" --inputs "$in"
expect "config.json: missing" profile "$tmp" --inputs "$in"
mkdir -p "$tmp/silu" && cp "$tmp/demo/model.safetensors" "$tmp/silu/"
sed -e 's/llama_sparse_relu/llama/' -e 's/"relu"/"silu"/' "$tmp/demo/config.json" > "$tmp/silu/config.json"
expect "model_type 'llama' uses hidden_act 'silu', not ReLU: the sparsity kernels skip neurons" profile "$tmp/silu" --inputs "$in"
mkdir -p "$tmp/trunc" && cp "$tmp/demo/config.json" "$tmp/trunc/"
head -c 5000 "$tmp/demo/model.safetensors" > "$tmp/trunc/model.safetensors"
expect "model.safetensors: not a valid safetensors file: tensor '" profile "$tmp/trunc" --inputs "$in"
mkdir -p "$tmp/noweights" && cp "$tmp/demo/config.json" "$tmp/noweights/"
expect "holds neither model.safetensors nor model.safetensors.index.json" profile "$tmp/noweights" --inputs "$in"

# profile: inputs
expect "inputs.safetensors: no such file" profile "$tmp/demo" --inputs "$tmp/inputs.safetensors"
"$ffnjit" demo-checkpoint "$tmp/wide" --layers 1 --d-model 128 --d-ff 128 --tokens 4 >/dev/null
expect "inputs tensor 'layers.0.input' must be [tokens, 64]" profile "$tmp/demo" --inputs "$tmp/wide/inputs.safetensors"
expect "holds no tensor named layers.<N>.input (found: model.embed_tokens.weight" profile "$tmp/demo" --inputs "$tmp/demo/model.safetensors"
"$ffnjit" demo-checkpoint "$tmp/deep" --layers 3 --d-model 64 --d-ff 128 --tokens 4 >/dev/null
expect "inputs tensor 'layers.2.input' is for layer 2, but the checkpoint has 2 FFN layers" profile "$tmp/demo" --inputs "$tmp/deep/inputs.safetensors"
# Input files that are not regular files are refused at once (a FIFO used to hang forever,
# /dev/zero to be read without end). `timeout` turns a hang into a failure.
expect_within() {
  local secs=$1 want=$2; shift 2
  local err rc
  err=$(timeout "$secs" "$ffnjit" "$@" 2>&1 >/dev/null); rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [[ "$err" == *"$want"* ]]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL: ffnjit $* -> rc=$rc (124: hung): $err"
    echo "      wanted within ${secs}s: $want"
  fi
}
mkfifo "$tmp/fifo.safetensors"
expect_within 10 "fifo.safetensors: is a FIFO (named pipe), not a regular file" profile "$tmp/demo" --inputs "$tmp/fifo.safetensors"
mkdir -p "$tmp/fifocfg" && cp "$tmp/demo/model.safetensors" "$tmp/fifocfg/" && mkfifo "$tmp/fifocfg/config.json"
expect_within 10 "config.json: is a FIFO (named pipe), not a regular file; config.json must be a regular file" profile "$tmp/fifocfg" --inputs "$in"
mkdir -p "$tmp/zerocfg" && cp "$tmp/demo/model.safetensors" "$tmp/zerocfg/" && ln -s /dev/zero "$tmp/zerocfg/config.json"
expect_within 10 "config.json: is a character device, not a regular file" profile "$tmp/zerocfg" --inputs "$in"
mkdir -p "$tmp/fifoidx" && cp "$tmp/demo/config.json" "$tmp/fifoidx/" && mkfifo "$tmp/fifoidx/model.safetensors.index.json"
expect_within 10 "model.safetensors.index.json: is a FIFO (named pipe)" profile "$tmp/fifoidx" --inputs "$in"
"$ffnjit" demo-checkpoint "$tmp/sharded" --layers 2 --d-model 64 --d-ff 128 --tokens 4 --shards 2 >/dev/null
rm "$tmp/sharded/model-00002-of-00002.safetensors" && mkfifo "$tmp/sharded/model-00002-of-00002.safetensors"
expect_within 10 "model-00002-of-00002.safetensors: is a FIFO (named pipe), not a regular file" profile "$tmp/sharded" --inputs "$in"
head -c $((17 << 20)) /dev/zero | tr '\0' ' ' > "$tmp/big.json"
mkdir -p "$tmp/bigcfg" && cp "$tmp/demo/model.safetensors" "$tmp/bigcfg/" && cp "$tmp/big.json" "$tmp/bigcfg/config.json"
expect_within 10 "config.json: config.json is 17825792 bytes, more than ffnjit reads (16 MiB)" profile "$tmp/bigcfg" --inputs "$in"
mkfifo "$tmp/fifo.json"
expect_within 10 "fifo.json: is a FIFO (named pipe), not a regular file; a profile must be a regular file" tune "$tmp/demo" --compile-only --profile "$tmp/fifo.json" --cache "$tmp/c.db"

# tune: --shard is parsed strictly (1/2/3, 0/2junk and 1/2.5 used to be accepted).
for bad in 1/2/3 0/2junk 1/2.5 2/2 -1/2; do
  expect "--shard $bad is not I/N with integers 0 <= I < N <= 65536, e.g. --shard 0/2" tune "$tmp/demo" --compile-only --shard "$bad" --cache "$tmp/c.db"
done

# Outputs: written through a fresh temporary file, never through a symlink.
echo precious > "$tmp/victim"
ln -s "$tmp/victim" "$tmp/profile.json"
check() {  # check <description> <command...>: passes when the command succeeds
  local what=$1; shift
  if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $what"; fi
}
check "profile -o runs" "$ffnjit" profile "$tmp/demo" --inputs "$in" --cpu -o "$tmp/profile.json" >/dev/null
check "profile -o did not write through the symlink" grep -qx precious "$tmp/victim"
check "profile -o replaced the symlink with the profile" test -f "$tmp/profile.json" -a ! -L "$tmp/profile.json"
mkdir -p "$tmp/demo2"
for f in config.json model.safetensors.tmp inputs.safetensors.tmp; do ln -s "$tmp/victim" "$tmp/demo2/$f"; done
check "demo-checkpoint runs" "$ffnjit" demo-checkpoint "$tmp/demo2" --force --layers 1 --d-model 64 --d-ff 128 --tokens 4 >/dev/null
check "demo-checkpoint did not write through a symlink" grep -qx precious "$tmp/victim"
check "demo-checkpoint left no temporary files" test -z "$(ls -A "$tmp/demo2" | grep '^\.')"

# profile --screen: the certified int8 screen's table, one row per layer, every neuron
# it rules out inactive (the command fails otherwise).
"$ffnjit" profile "$tmp/demo" --inputs "$in" --cpu --screen --screen-tokens 16 >"$tmp/screen.txt" 2>&1
rc=$?
check "profile --screen exits 0 (got $rc)" test "$rc" -eq 0
check "profile --screen prints the screen table" grep -q "certified int8 gate screen" "$tmp/screen.txt"
check "profile --screen reports both layers on 16 tokens" test "$(grep -cE '^ +[01] +128 +[0-9]+ +[0-9.]+ +16 \|' "$tmp/screen.txt")" -eq 2

# tune --json with a path that is not UTF-8: valid JSON with U+FFFD (it used to abort, 134).
bad=$(printf 'ck\377')
"$ffnjit" demo-checkpoint "$tmp/$bad" --layers 1 --d-model 64 --d-ff 128 --tokens 4 >/dev/null
"$ffnjit" tune "$tmp/$bad" --compile-only --json --buckets 1 --cache "$tmp/j.db" >"$tmp/tune.json" 2>/dev/null
rc=$?
check "tune --json with a non-UTF-8 path exits 0 (got $rc)" test "$rc" -eq 0
check "tune --json printed the path with U+FFFD" grep -q "ck$(printf '\357\277\275')\"" "$tmp/tune.json"
finish
