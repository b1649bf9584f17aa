#!/usr/bin/env bash
# The test suite under AddressSanitizer + UndefinedBehaviorSanitizer.
#
#   scripts/sanitize.sh                 # build-asan/, both test executables
#   TARGETS=continua_io_tests scripts/sanitize.sh     # the torch-free layer only
#   FILTER='Crafted*:CorruptionSweep*' scripts/sanitize.sh
#
# Configures with -DCONTINUA_SANITIZE=ON (the top CMakeLists adds
# -fsanitize=address,undefined to every target of continua), builds, and runs
# each test executable directly. LibTorch itself is not instrumented: memory
# it allocates is not checked, and ASan's container-overflow checks are off
# because instrumented and uninstrumented code share std::vector (false
# positives otherwise). Leak detection is off too: LibTorch keeps global
# allocations alive until exit. Any report fails the run (halt_on_error).
# Tests that need RLIMIT_AS (memory budgets) skip themselves under ASan.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-asan}
TARGETS=${TARGETS:-"continua_io_tests continua_tests"}
FILTER=${FILTER:-*}

cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCONTINUA_SANITIZE=ON -DCONTINUA_BUILD_BENCH=OFF >/dev/null
# shellcheck disable=SC2086
ninja -C "$BUILD_DIR" -j "${JOBS:-2}" $TARGETS

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:detect_container_overflow=0:halt_on_error=1:abort_on_error=0:detect_odr_violation=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for t in $TARGETS; do
  echo "=== $t under ASan+UBSan (filter $FILTER)"
  "$BUILD_DIR/tests/$t" --gtest_filter="$FILTER" || status=1
done
exit $status
