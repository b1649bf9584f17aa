#!/usr/bin/env bash
# The long fuzz runs (not part of ctest):
#   fuzz/run_long.sh [seconds, default 1200] [target: reader|dataset|config, default reader]
#   RUNS=10000000 fuzz/run_long.sh 0 dataset     # a number of executions instead
# Keeps the grown corpus in build-fuzz/<target>/corpus-long (reused by the next
# run), writes the log to build-fuzz/<target>/long.log and prints libFuzzer's
# final stats.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
seconds=${1:-1200}
target=${2:-reader}
build=${FUZZ_BUILD_DIR:-$src/build-fuzz}
mkdir -p "$build/$target"
limit=(--seconds "$seconds")
if [ -n "${RUNS:-}" ]; then limit=(--runs "$RUNS"); fi
"$src/fuzz/run_fuzz.sh" --target "$target" "${limit[@]}" --build-dir "$build" \
  --keep-corpus "$build/$target/corpus-long" 2>&1 | tee "$build/$target/long.log" |
  grep -E '^#[0-9]+ +(pulse|DONE|NEW)|stat::|ERROR|SUMMARY' | tail -40
