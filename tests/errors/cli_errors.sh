#!/usr/bin/env bash
# errors tier: each bad invocation exits non-zero with one line on stderr that
# contains the promised message (which names the fix).
ffnjit=$1
source "$(dirname "$0")/expect.sh"
expect "unknown command 'frobnicate'; run \`ffnjit --help\`" frobnicate
expect "unknown option --dmodel; run \`ffnjit inspect --help\`" inspect --dmodel 2048
expect "--d-model and --d-ff are required; e.g. --d-model 2048 --d-ff 5632" inspect --d-ff 5632
expect "d_ff=5630 is not a positive multiple of 8; pad the weights to a multiple of 8" inspect --d-model 2048 --d-ff 5630
expect "d_model=100 is not a positive multiple of 8" inspect --d-model 100 --d-ff 5632
expect "--d-model must be an integer, got 'big'" inspect --d-model big --d-ff 5632
expect "--tokens=0 is out of range; use a value in [1," inspect --d-model 2048 --d-ff 5632 --tokens 0
expect "unsupported arch 'sm_70'; use sm_80, sm_89 or sm_90a" inspect --d-model 2048 --d-ff 5632 --arch sm_70
expect "lacks the Hopper-specific instructions ffnjit targets; use sm_90a" inspect --d-model 2048 --d-ff 5632 --arch sm_90
expect "unknown kernel family 'gemm'; use gate_pack, gate_gemv, pack, up_down, up, down, transpose, dense_act or stats" inspect --d-model 2048 --d-ff 5632 --family gemm
expect "--emit asm is not one of source, ptx, resources, name, spec" inspect --d-model 2048 --d-ff 5632 --emit asm
expect "--d-model needs a value (N); run \`ffnjit inspect --help\`" inspect --d-ff 5632 --d-model
expect "pass either --gated or --non-gated, not both" inspect --d-model 2048 --d-ff 5632 --gated --non-gated
expect "tile_n=96 must be 32, 64, 128 or 256" inspect --d-model 2048 --d-ff 5632 --tile-n 96
expect "capacity=300 must be in [1, tile_n=128]" inspect --d-model 2048 --d-ff 5632 --capacity 300
expect "bytes of shared memory; sm_89 allows" inspect --d-model 2048 --d-ff 5632 --arch sm_89 --bk 64 --stages 6 --tile-n 256 --bm 256 --warps-m 4
expect "unexpected argument 'extra'; run \`ffnjit doctor --help\`" doctor extra
# Integers: strict, and no option can overflow the int it is stored in (2^31 used to wrap).
expect "--tokens=2147483648 is out of range; use a value in [1, 2147483647]" inspect --d-model 2048 --d-ff 5632 --tokens 2147483648
expect "--tokens=99999999999999999999" inspect --d-model 2048 --d-ff 5632 --tokens 99999999999999999999
expect "--d-model must be an integer, got ' 2048'" inspect --d-model " 2048" --d-ff 5632
expect "--d-model must be an integer, got '2048x'" inspect --d-model 2048x --d-ff 5632
expect "--bm=4294967297 is out of range; use a value in [1, 65536]" inspect --d-model 2048 --d-ff 5632 --bm 4294967297
finish
