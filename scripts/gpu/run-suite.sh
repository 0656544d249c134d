#!/usr/bin/env bash
# On the GPU machine, from the repo root, after `source .carry/gpu/on-device.sh`:
#   bash scripts/gpu/run-suite.sh engine|correctness|speed|multi|batch|profile
# Binaries come from .carry/ (built here with `cargo build --release` and
# `../shared/gpu/prepare target/release/shaderlm target/release/examples/engine_bench ...`).
# Writes what it prints to $OUT/<part>.txt as well.
set -u
part=$1
B=.carry/shaderlm
M=/tmp/models
mkdir -p $M
log=${OUT:-/tmp}/$part.txt
exec > >(tee -a "$log") 2>&1
echo "== $part on $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader), $(date -u +%F)"
case $part in
engine)
    $B info
    [ -x .carry/kernels ] && .carry/kernels 2>&1 | tail -4
    .carry/engine_bench
    ;;
correctness)
    ids=1,450,1209,3323,29871,13,4013,338,263,1243,310,278,2323,7646,29889,887,671,8271
    $B synth --shape tinyllama-1.1b --out $M/tinyllama-1.1b
    $B synth --shape llama3-8b --layers 4 --out $M/llama3-8b-4l
    for m in tinyllama-1.1b llama3-8b-4l; do
        $B logits --model $M/$m --ids $ids --gen 32 > /tmp/$m.json
        python3 scripts/gpu/hf_reference.py compare --model $M/$m --ours /tmp/$m.json --ids $ids --gen 32
    done
    ;;
speed)
    shift
    for shape in "$@"; do
        [ -d $M/$shape ] || $B synth --shape $shape --out $M/$shape
        $B bench --model $M/$shape --prompt-len 512 --gen 128 --json
        python3 scripts/gpu/hf_reference.py speed --model $M/$shape --prompt-len 512 --gen 128
    done
    ;;
multi)
    # Several GPUs (issue 8): one GPU, one replica per GPU, and the layers split across them
    # (forced, whether or not the model fits one); the split must give one GPU's logits and ids.
    shift
    $B info
    for shape in "${@:-llama2-7b}"; do
        [ -d $M/$shape ] || $B synth --shape $shape --out $M/$shape
        # batch 32 per GPU: one GPU alone, then one replica per GPU at once
        $B bench --model $M/$shape --prompt-len 64 --gen 64 --batch 32 --gpus all --json
        $B bench --model $M/$shape --prompt-len 512 --gen 128 --gpus 0 --json
        $B bench --model $M/$shape --prompt-len 512 --gen 128 --gpus all --json
        $B bench --model $M/$shape --prompt-len 512 --gen 128 --gpus all --split-layers --json
        $B logits --model $M/$shape --ids 1,450,1209,3323 --gen 16 --gpus 0 | tail -1 > /tmp/one.json
        $B logits --model $M/$shape --ids 1,450,1209,3323 --gen 16 --gpus all --split-layers | tail -1 > /tmp/split.json
        cmp -s /tmp/one.json /tmp/split.json && echo "$shape: split logits and greedy ids identical to one GPU" \
            || echo "$shape: split output DIFFERS from one GPU"
    done
    ;;
formats)
    # Decode by weight format (issues 5 and 6): dense f16, 2:4 f16, q4, 2:4 q4.
    shift
    for shape in "${@:-llama2-7b}"; do
        [ -d $M/$shape ] || $B synth --shape $shape --out $M/$shape
        for plan in "--quant f16" "--quant f16 --prune magnitude:2:4" "--quant q4" "--quant q4 --prune magnitude:2:4"; do
            echo "== $shape $plan"
            $B bench --model $M/$shape $plan --prompt-len 512 --gen 128 --json | tail -1
        done
    done
    ;;
batch)
    # Batched decode on one GPU (issue 8): B sequences together, B = 1, 4, 16, 64.
    shift
    for shape in "${@:-tinyllama-1.1b}"; do
        [ -d $M/$shape ] || $B synth --shape $shape --out $M/$shape
        for b in 1 4 16 64; do
            $B bench --model $M/$shape --prompt-len 128 --gen 64 --batch $b --json | tail -1
        done
    done
    ;;
profile)
    # Per-dispatch GPU time of a short run (SHADERLM_DEBUG=2: each dispatch timed in its own
    # pass), summed by kernel over the last decode step; beside it, bench's GPU time per step.
    shift
    for shape in "${@:-smollm2-135m}"; do
        [ -d $M/$shape ] || $B synth --shape $shape --out $M/$shape
        SHADERLM_DEBUG=2 $B bench --model $M/$shape --prompt-len 8 --gen 2 --warmup 0 > /tmp/prof.txt 2>&1
        cp /tmp/prof.txt ${OUT:-/tmp}/profile-$shape.txt
        $B bench --model $M/$shape --prompt-len 512 --gen 128 | grep -E "GPU time|time per output|decode"
    done
    ;;
esac
