#!/usr/bin/env bash
# Data-parallel spintrain, 1 process x 2 threads vs 2 processes x 1 thread on stories260K:
# same global batch (8 rows x 512 tokens), KL loss, W4 per row, 12 steps; mean step seconds and
# tokens/s over steps 3..12 from each run's log, peak RSS from /usr/bin/time (largest process).
# usage: experiments/dp_bench.sh [OUT_DIR]   (default /tmp/dp_bench)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/dp_bench}
rm -rf "$out" && mkdir -p "$out"
common=(--model assets/models/stories260K --calib assets/data/stories260K-calib.h5 --steps 12 --batch-size 8
        --quiet --resource-check=false)
for setup in "1 2" "2 1"; do
  read -r nproc threads <<<"$setup"
  name="nproc${nproc}_threads${threads}"
  /usr/bin/time -f "%M" -o "$out/$name.rss" build/bin/spintrain "${common[@]}" --nproc "$nproc" --threads "$threads" \
    --out "$out/$name" >"$out/$name.txt" 2>&1
  /usr/bin/python3 - "$out/$name.log.jsonl" "$out/$name.rss" "$name" <<'PY'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l][2:]
s = sum(r["step_seconds"] for r in steps) / len(steps)
tok = sum(r["tokens_per_s"] for r in steps) / len(steps)
rss = int(open(sys.argv[2]).read().split()[-1]) / 1024
print(f"{sys.argv[3]:20s} step {s:.3f} s  {tok:7.0f} tok/s  peak RSS (largest process) {rss:.0f} MiB  final loss {steps[-1]['loss']:.4f}")
PY
done
