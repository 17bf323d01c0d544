#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run of the parser, data, optimizer and reliability
# unit tests: configures <build-dir> (default <repo>/build-asan) with -DSPIN_SANITIZE=ON,
# builds those test binaries and the tools they call, and runs them through ctest. Any sanitizer
# report fails the run. Usage: scripts/sanitize.sh [build-dir]; SPIN_JOBS sets build parallelism.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-asan}
jobs=${SPIN_JOBS:-2}
start=$(date +%s)

# The selection: every parser/data/optimizer/reliability/resource test except the optimizer benchmark,
# and the output guard (it reads whatever lies at an output path).
tests=()
for src in "$root"/tests/test_safetensors.cpp "$root"/tests/test_data_*.cpp "$root"/tests/test_optim_*.cpp \
           "$root"/tests/test_reliability_*.cpp "$root"/tests/test_resources.cpp "$root"/tests/test_output_guard.cpp; do
  name=$(basename "$src" .cpp)
  [[ -f $src && $name != test_optim_bench ]] && tests+=("$name")
done
tools=(spin-eval spin-calib spin-runtime-env)  # the first two run by test_reliability_corpus and test_data_spin_calib

# -O1 with line tables only (-g1): readable reports at a fraction of RelWithDebInfo's build time. A
# unity build (each library's sources compiled as one translation unit) parses LibTorch's headers and
# instantiates its templates once per library instead of once per file; both choices are timed in
# docs/BENCHMARKS.md ("Build and test times").
source "$root/scripts/cmake_generator.sh"
# shellcheck disable=SC2046
cmake -S "$root" -B "$build" $(cmake_generator "$build") -DSPIN_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" \
      -DCMAKE_UNITY_BUILD=ON >/dev/null
cmake --build "$build" -j"$jobs" --target "${tools[@]}" "${tests[@]}"
built=$(date +%s)

# LibTorch is not instrumented: its static initialisers and thread pools look like leaks to
# LeakSanitizer, so leak detection is off; everything else (heap/stack/global overflows, use after
# free, UB) aborts the test with a report. allocator_may_return_null: a corrupt HDF5 file makes
# libhdf5 ask malloc for 2^59 bytes and handle the NULL as an error, as glibc's malloc returns it;
# ASan's default would abort there instead.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_stack_use_after_return=0:strict_string_checks=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# The runtime settings every test process and tool would otherwise restart itself to apply
# (src/base/runtime_env.h), set once for all of them.
eval "$("$build/bin/spin-runtime-env")"

# ctest names tests Suite.Case; select the suites of the chosen binaries (the "Suite." lines of
# --gtest_list_tests; gtest_main's banner line is not one). A selection that matches nothing fails.
suites=()
for t in "${tests[@]}"; do
  while read -r s; do suites+=("${s%.}"); done < <(ASAN_OPTIONS=detect_leaks=0 "$build/tests/$t" --gtest_list_tests |
                                                     grep -E '^[A-Za-z_][A-Za-z0-9_]*\.$')
done
regex="^($(IFS='|'; echo "${suites[*]}"))\\."
status=0
(cd "$build" && ctest -R "$regex" --no-tests=error --output-on-failure -j2 --timeout 900) || status=$?
end=$(date +%s)
echo "sanitize.sh: ${#tests[@]} test binaries (${tests[*]}); build $((built - start)) s, tests $((end - built)) s, total $((end - start)) s"
exit $status
