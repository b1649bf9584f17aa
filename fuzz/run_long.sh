#!/usr/bin/env bash
# The long fuzz run (not part of ctest): fuzz/run_long.sh [seconds, default 1200]
# Keeps the grown corpus in build-fuzz/corpus-long (reused by the next run),
# writes the log to build-fuzz/long.log and prints libFuzzer's final stats.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
seconds=${1:-1200}
build=${FUZZ_BUILD_DIR:-$src/build-fuzz}
mkdir -p "$build"
"$src/fuzz/run_fuzz.sh" --seconds "$seconds" --build-dir "$build" \
  --keep-corpus "$build/corpus-long" 2>&1 | tee "$build/long.log" | grep -E '^#[0-9]+ +(pulse|DONE|NEW)|stat::|ERROR|SUMMARY' | tail -40
