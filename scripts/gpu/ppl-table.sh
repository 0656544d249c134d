#!/usr/bin/env bash
# On the GPU machine: SmolLM2-135M-Instruct perplexity under every load plan of issues #5 and #6
# (llama.cpp protocol on wiki.test.raw, the first CHUNKS windows of 512), calibration text from
# wikitext-2 valid.txt. Usage: bash scripts/gpu/ppl-table.sh MODEL.gguf WIKI_TEST VALID [CHUNKS]
set -u
M=$1; T=$2; V=$3; N=${4:-40}
B=${B:-.carry/shaderlm}
run() {
    local name=$1; shift
    local t0=$SECONDS
    local out=$($B perplexity --model $M --file $T --protocol llama.cpp --max-chunks $N --json "$@" 2>/tmp/ppl_err.txt | tail -1)
    printf '| %-28s | %-60s | %s | %d s |\n' "$name" "$*" "$out" $((SECONDS - t0))
    grep -iE "error" /tmp/ppl_err.txt | head -2
}
run f16
run q8 --quant q8
run q4 --quant q4
run q4g128 --quant q4g128
run "q4 AWQ" --quant q4 --calib $V
run "q4g128 AWQ" --quant q4g128 --calib $V
run "magnitude 50%" --prune magnitude:0.5
run "wanda 50%" --prune wanda:0.5 --calib $V
run "magnitude 2:4" --prune magnitude:2:4
run "wanda 2:4" --prune wanda:2:4 --calib $V
run "wanda 4:8" --prune wanda:4:8 --calib $V
run "2 layers dropped" --prune layers:2 --calib $V
run "4 layers dropped" --prune layers:4 --calib $V
run "ffn -20%" --prune ffn:0.2 --calib $V
run "wanda 2:4 + q4" --prune wanda:2:4 --quant q4 --calib $V
