#!/usr/bin/env bash
# The docs/RESULTS.md table: the two final sweeps (3 seeds each, with downstream GPTQ), then one table
# and the plots copied to docs/results/. Resumable (finished runs are skipped). The 50-step version took
# ~25 min on 2 cores; the current 100-step configs take longer (not yet timed end to end).
# usage: experiments/results.sh [OUT_DIR]   (default out/)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out}
for name in final_w4a16 final_w4a4kv4; do
  /usr/bin/python3 experiments/sweep.py experiments/configs/$name.json --out "$out/$name" --jobs 2 --threads 1
  mkdir -p docs/results/$name
  cp "$out/$name"/{eval_nll,loss_curves,orth_err}.png "$out/$name/results.csv" docs/results/$name/
done
/usr/bin/python3 experiments/results_table.py "W4A16 g128=$out/final_w4a16" "W4A4KV4 (R3+R4 on)=$out/final_w4a4kv4"
