#!/usr/bin/env bash
# Command one of the README: set up, build, and run spintrain end to end on the bundled stories260K
# model (learn R1/R2 under W4A16 per-channel RTN, fuse, export to out/stories260K-w4, and print the
# before/after table on the bundled eval set).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
build/bin/spintrain --config experiments/configs/demo.json
build/bin/spin-eval --model out/stories260K-w4 --data assets/data/stories260K-eval.h5 --wbits 4 --groupsize 128
