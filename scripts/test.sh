#!/usr/bin/env bash
# Command two of the README: set up and build if needed, run every test (ctest), then the
# AddressSanitizer + UndefinedBehaviorSanitizer stage (scripts/sanitize.sh: the parser, data,
# optimizer, reliability and resource tests rebuilt with -DSPIN_SANITIZE=ON in build-asan/).
# SPIN_SKIP_SANITIZE=1 skips the sanitizer stage for a quick edit-test loop.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/setup.sh
built=$(date +%s)

# ctest starts the tests that took longest in earlier runs first (their costs are in
# Testing/Temporary/CTestCostData.txt); a fresh build has none yet, so it gets the committed ones.
costs=build/Testing/Temporary/CTestCostData.txt
if [[ ! -f $costs ]]; then
  mkdir -p "$(dirname "$costs")"
  cp tests/ctest_costs.txt "$costs"
fi
# The runtime settings every test process and tool would otherwise restart itself to apply
# (src/base/runtime_env.h), set once for all of them.
eval "$(build/bin/spin-runtime-env)"
status=0
(cd build && ctest --output-on-failure -j2 --timeout 600) || status=$?
tested=$(date +%s)
if [[ ${SPIN_SKIP_SANITIZE:-0} != 1 && $status == 0 ]]; then
  scripts/sanitize.sh || status=$?
fi
end=$(date +%s)
echo "test.sh: setup and build $((built - start)) s, ctest $((tested - built)) s, sanitizer stage $((end - tested)) s, total $((end - start)) s"
exit $status
