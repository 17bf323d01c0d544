#!/usr/bin/env bash
# Command two of the README: set up and build if needed, run every test (ctest), then the
# AddressSanitizer + UndefinedBehaviorSanitizer stage (scripts/sanitize.sh: the parser, data,
# optimizer, reliability and resource tests rebuilt with -DSPIN_SANITIZE=ON in build-asan/).
# SPIN_SKIP_SANITIZE=1 skips the sanitizer stage for a quick edit-test loop.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
(cd build && ctest --output-on-failure -j2 --timeout 600)
if [[ ${SPIN_SKIP_SANITIZE:-0} != 1 ]]; then
  scripts/sanitize.sh
fi
