#!/usr/bin/env bash
# Peak memory and time of the training phase per mode on the realistic benchmark shapes:
# a random Llama (hidden 2048, intermediate 5632, 32 heads, 4 KV heads, vocab 32000, LAYERS layers),
# 2 calibration rows of 2048 tokens, batch 1, W4 per row, 2 steps (per layer for block-wise).
# Prints one line per mode from spintrain_results.json (train_seconds, train_peak_rss_bytes).
# usage: experiments/mode_memory.sh [OUT_DIR] [LAYERS]   (defaults out/, 4)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out}
layers=${2:-4}
model="$out/bench-llama-$layers"
[ -d "$model" ] || build/bin/spin-bench --save-random "$model" --layers "$layers" --seq 2048 --batch 2
common=(--model "$model" --calib "$model-calib.h5" --batch-size 1 --steps 2 --threads 2 --quiet --skip-baselines)
run() {  # run NAME spintrain-flags...
  local name=$1; shift
  [ -f "$out/mem-$layers-$name/spintrain_results.json" ] || build/bin/spintrain "${common[@]}" --out "$out/mem-$layers-$name" "$@"
  /usr/bin/python3 -c "import json,sys; r=json.load(open(sys.argv[1])); \
print(f'{sys.argv[2]:28s} train {r[\"train_seconds\"]:7.1f} s   train peak RSS {r[\"train_peak_rss_bytes\"]/2**30:6.2f} GiB')" \
    "$out/mem-$layers-$name/spintrain_results.json" "$name"
}
run e2e
run e2e-quant-grad-ste --quant-grad ste
run e2e-scales --smooth --learn-clip
run e2e-scales-recompute --smooth --learn-clip --recompute
run blockwise-scales --mode blockwise --smooth --learn-clip
run adapt-3-steps --mode adapt --adapt-steps 3  # each R1 alternation is a float64 SVD at hidden 2048
