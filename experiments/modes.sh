#!/usr/bin/env bash
# docs/RESULTS.md "Modes" table: end-to-end (with and without learnable scales), block-wise and adapt on
# stories260K, W4 per-row and W4A4KV4 (R3+R4), 3 seeds, 128 calibration rows of 256 tokens, 100 steps
# (per layer for block-wise), eval on 64 held-out rows. Resumable (finished runs are skipped).
# usage: experiments/modes.sh [OUT_DIR]   (default out/)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out}
for name in modes_w4 modes_w4a4kv4; do
  /usr/bin/python3 experiments/sweep.py experiments/configs/$name.json --out "$out/$name" --jobs 2 --threads 1
  mkdir -p docs/results/$name
  cp "$out/$name"/{eval_nll,loss_curves}.png "$out/$name/results.csv" docs/results/$name/
done
/usr/bin/python3 experiments/results_table.py --by variant "W4 per-row=$out/modes_w4" "W4A4KV4 (R3+R4)=$out/modes_w4a4kv4"
