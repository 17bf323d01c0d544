#!/usr/bin/env bash
# The no-training (QuaRot-style) table of README.md: eval NLL/ppl of stories260K as float, RTN without
# rotation, and RTN with random-Hadamard R1+R2+R3+R4 (spin-rotate), at W4A4KV4 and W4A16 g128.
# usage: experiments/quarot_table.sh [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
seed=${1:-0}
M=assets/models/stories260K D=assets/data/stories260K-eval.h5 R=out/stories260K-quarot-s$seed
build/bin/spin-rotate --model $M --out $R --rotations r1,r2,r3,r4 --init random-hadamard --seed $seed >/dev/null
W4A4KV4="--wbits 4 --abits 4 --kbits 4 --vbits 4"
W4A16="--wbits 4 --groupsize 128"
echo "| model | quantization | eval NLL | ppl |"
echo "|---|---|---|---|"
row() { build/bin/spin-eval --model "$1" --data $D --json "${@:3}" |
        /usr/bin/python3 -c "import json,sys; r=json.load(sys.stdin); print(f'| $2 | {r[\"quant\"].split(\" \")[0]} | {r[\"nll\"]:.4f} | {r[\"ppl\"]:.2f} |')"; }
row $M "float" 
row $M "RTN, no rotation" $W4A4KV4
row $R "RTN, random Hadamard R1-R4 (seed $seed)" $W4A4KV4
row $M "RTN, no rotation" $W4A16
row $R "RTN, random Hadamard R1-R4 (seed $seed)" $W4A16
