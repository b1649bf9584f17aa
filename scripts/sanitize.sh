#!/usr/bin/env bash
# The test suite under AddressSanitizer + UndefinedBehaviorSanitizer.
#
#   scripts/sanitize.sh                 # build-asan/, both test executables
#   TARGETS=continua_io_tests scripts/sanitize.sh     # the torch-free layer only
#   FILTER='Crafted*:CorruptionSweep*' scripts/sanitize.sh
#   SHARDS=2 scripts/sanitize.sh        # each executable in 2 parallel shards
#   ninja -C build sanitize             # the same, as a build target (not in ctest)
#
# Configures with -DCONTINUA_SANITIZE=ON (the top CMakeLists adds
# -fsanitize=address,undefined to every target of continua), builds, and runs
# each test executable directly. LibTorch itself is not instrumented: memory
# it allocates is not checked, and ASan's container-overflow checks are off
# because instrumented and uninstrumented code share std::vector (false
# positives otherwise). Leak detection is off too: LibTorch keeps global
# allocations alive until exit. Any report fails the run (halt_on_error).
# A report in a child process (the `continua` binary a test spawns, a forked
# writer) must not pass for an expected failure: ASan reports go to files
# under $BUILD_DIR/sanitizer-reports/ (log_path; any file fails the run and is
# printed at the end), and the sanitizers exit with their own status, 86
# (ASan) and 87 (UBSan), not the 1 that tests expect from a refused input.
# (GCC 12's combined runtime ignores log_path for UBSan: its reports go to the
# child's stderr, so for a child only the exit status tells.)
# Tests that need RLIMIT_AS (memory budgets) skip themselves under ASan.
# Measured here (2 cores, shared with other builds): build 46 min from
# scratch; SHARDS=2 run 6 min (continua_io_tests 4 s, continua_tests 353 s).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-asan}
TARGETS=${TARGETS:-"continua_io_tests continua_tests"}
FILTER=${FILTER:-*}

cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCONTINUA_SANITIZE=ON -DCONTINUA_BUILD_BENCH=OFF >/dev/null
# shellcheck disable=SC2086
ninja -C "$BUILD_DIR" -j "${JOBS:-2}" $TARGETS

REPORTS="$PWD/$BUILD_DIR/sanitizer-reports"
rm -rf "$REPORTS"
mkdir -p "$REPORTS"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:detect_container_overflow=0:halt_on_error=1:abort_on_error=0:detect_odr_violation=0:exitcode=86:log_path=$REPORTS/asan}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:exitcode=87}
SHARDS=${SHARDS:-1}
status=0
for t in $TARGETS; do
  echo "=== $t under ASan+UBSan (filter $FILTER, $SHARDS shard(s))"
  start=$(date +%s)
  pids=()
  for ((i = 0; i < SHARDS; ++i)); do
    GTEST_TOTAL_SHARDS=$SHARDS GTEST_SHARD_INDEX=$i "$BUILD_DIR/tests/$t" --gtest_filter="$FILTER" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || status=1; done
  echo "=== $t: $(( $(date +%s) - start )) s"
done
if compgen -G "$REPORTS/*" >/dev/null; then
  echo "=== sanitizer reports (in $REPORTS):"
  for f in "$REPORTS"/*; do echo "--- $f"; cat "$f"; done
  status=1
else
  echo "=== no sanitizer report"
fi
exit $status
