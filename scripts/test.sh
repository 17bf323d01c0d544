#!/usr/bin/env bash
# Command two of the README: set up and build if needed, then run every test (ctest).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cd build
ctest --output-on-failure -j2 --timeout 600
