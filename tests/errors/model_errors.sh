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
finish
