#!/usr/bin/env bash
# Command one of the README: set up, build, and run spintrain end to end on the bundled stories260K
# model (learn R1/R2 under W4A16 per-channel RTN, fuse, export to out/stories260K-w4, and print the
# before/after table on the bundled eval set), then the greedy continuations of one prompt by the
# float model, the RTN-quantized one and the learned-rotation one side by side (as token ids:
# stories260K's tokenizer is not available).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
build/bin/spintrain --config experiments/configs/demo.json
build/bin/spin-eval --model out/stories260K-w4 --data assets/data/stories260K-eval.h5 --wbits 4 --groupsize 128

echo "greedy continuations (prompt ids | 24 new ids), W4 g128 RTN:"
for run in "float assets/models/stories260K 16" "rtn assets/models/stories260K 4" "learned out/stories260K-w4 4"; do
  read -r label model wbits <<<"$run"
  printf '  %-8s %s\n' "$label" \
    "$(build/bin/spin-generate --model "$model" --prompt-ids 1,403,407 --tokens 24 --wbits "$wbits" --groupsize 128)"
done
