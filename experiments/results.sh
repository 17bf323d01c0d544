#!/usr/bin/env bash
# The docs/RESULTS.md tables from sweeps (experiments/sweep.py), with plots and CSVs copied to
# docs/results/<sweep>/. Resumable (finished runs are skipped).
#   final: the GPTQ table: final_w4a16 + final_w4a4kv4 (3 seeds each, downstream GPTQ). The 50-step
#          version took ~25 min on 2 cores; the 100-step configs longer (not timed end to end).
#   recipe: how the defaults were chosen (docs/RESULTS.md, "The default recipe"): the eval files split
#          into rows for choosing and held-out rows, the tinystories656k screens (seed 0, rows for
#          choosing), then the defaults on the held-out rows (3 seeds, downstream GPTQ, and learning
#          at W16A4KV4 for GPTQ) and on stories260K's eval rows. The recipe configs read OUT_DIR=out.
#          The screens pin the defaults of before (lr 0.1, no scales), which their variants change.
#   modes: the "Modes" table: modes_w4 + modes_w4a4kv4 (e2e with/without learnable scales and with
#          --quant-grad ste, block-wise, adapt; 3 seeds; ~27 min on 2 cores), split by variant, with
#          training time and peak memory.
# usage: experiments/results.sh [OUT_DIR] [final|recipe|modes]   (defaults out/, final)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out}
case ${2:-final} in
  final) sweeps=(final_w4a16 final_w4a4kv4)
         table=("W4A16 g128=$out/final_w4a16" "W4A4KV4 (R3+R4 on)=$out/final_w4a4kv4") ;;
  recipe) mkdir -p "$out/recipe"
          for m in tinystories656k:ts stories260K:s260; do
            [[ -f $out/recipe/${m##*:}-holdout.h5 ]] ||
              /usr/bin/python3 experiments/split_rows.py ../shared/data/${m%%:*}-eval.h5 \
                "$out/recipe/${m##*:}-select.h5" "$out/recipe/${m##*:}-holdout.h5" --first 32
          done
          sweeps=(recipe_screen_ts_w4a4kv4 recipe_screen_ts_w4a16 recipe_final_ts_w4a4kv4 recipe_final_ts_w4a16
                  recipe_final_s260_w4a4kv4 recipe_final_s260_w4a16)
          table=(--by variant "W4A4KV4 (R3+R4)=$out/recipe_final_ts_w4a4kv4" "W4A16 g128=$out/recipe_final_ts_w4a16") ;;
  modes) sweeps=(modes_w4 modes_w4a4kv4)
         table=(--by variant "W4 per-row=$out/modes_w4" "W4A4KV4 (R3+R4)=$out/modes_w4a4kv4") ;;
  *) echo "usage: $0 [OUT_DIR] [final|modes]" >&2; exit 2 ;;
esac
for name in "${sweeps[@]}"; do
  /usr/bin/python3 experiments/sweep.py experiments/configs/$name.json --out "$out/$name" --jobs 2 --threads 1
  mkdir -p docs/results/$name
  cp "$out/$name"/{eval_nll,loss_curves,orth_err}.png "$out/$name/results.csv" docs/results/$name/
done
/usr/bin/python3 experiments/results_table.py "${table[@]}"
