#!/usr/bin/env bash
# Builds a fuzz target with clang (libFuzzer + ASan + UBSan) and runs it.
#
#   fuzz/run_fuzz.sh [--target reader|dataset|config] [--seconds N] [--runs N]
#                    [--build-dir DIR] [--keep-corpus DIR]
#
# Targets: reader (the checkpoint reader, fuzz/reader_fuzzer.cc, seeds in
# fuzz/corpus), dataset (the readers of users' data files,
# fuzz/dataset_fuzzer.cc, seeds in fuzz/corpus-dataset), config (the YAML
# configuration, fuzz/config_fuzzer.cc, seeds in fuzz/corpus-config).
# Default: reader for 45 s, the short run ctest does (tests `fuzz_*_short`).
# The long run is fuzz/run_long.sh. Exits 77 (ctest: skipped) when clang++ or the
# libFuzzer runtime is missing, non-zero when the fuzzer finds a crash (the
# input is left in <build dir>/artifacts/ and printed).
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
seconds=45
runs=-1
target=reader
build="$src/build-fuzz"
workcorpus=""
while (($#)); do
  case "$1" in
    --target) target="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --runs) runs="$2"; seconds=0; shift 2 ;;
    --build-dir) build="$2"; shift 2 ;;
    --keep-corpus) workcorpus="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

CXX=${FUZZ_CXX:-$(command -v clang++ || command -v clang++-14 || true)}
if [ -z "$CXX" ]; then
  echo "SKIP: clang++ not found (install clang and libclang-rt-14-dev to fuzz)"; exit 77
fi
if ! echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long){return 0;}' |
     "$CXX" -x c++ -fsanitize=fuzzer - -o /dev/null 2>/dev/null; then
  echo "SKIP: $CXX cannot link -fsanitize=fuzzer (install libclang-rt-14-dev)"; exit 77
fi

flags=(-std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined
       -fno-sanitize-recover=all -I"$src/include" -I"$src/src")
case "$target" in
  reader)
    sources=("$src"/src/io/*.cc "$src"/src/format/*.cc "$src/fuzz/reader_fuzzer.cc")
    libs=(-lcrypto); seeds="$src/fuzz/corpus" ;;
  dataset)
    # The system's zlib, libzip, libpng, TurboJPEG and libcsv are not
    # instrumented: crashes in them are caught, their coverage is not guided.
    sources=("$src"/src/data/readers/*.cc "$src/fuzz/dataset_fuzzer.cc")
    libs=(-lzip -lpng16 -lturbojpeg -lcsv -lz); seeds="$src/fuzz/corpus-dataset" ;;
  config)
    # yaml-cpp is the system's (not instrumented); CLI11 is header-only (instrumented).
    sources=("$src/src/cli/config_file.cc" "$src/fuzz/config_fuzzer.cc")
    libs=(-lyaml-cpp); seeds="$src/fuzz/corpus-config" ;;
  *) echo "unknown target $target (reader, dataset, config)" >&2; exit 2 ;;
esac
build="$build/$target"
mkdir -p "$build/obj" "$build/artifacts"
objs=()
stale=()
for s in "${sources[@]}"; do
  o="$build/obj/$(basename "${s%.cc}").o"
  objs+=("$o")
  # Rebuild when the source or any header is newer than the object.
  if [ ! -f "$o" ] || [ "$s" -nt "$o" ] ||
     [ -n "$(find "$src/include" "$src/src/format" "$src/src/data/readers" "$src/src/cli" -newer "$o" -name '*.h' -print -quit)" ]; then
    stale+=("$s")
  fi
done
if ((${#stale[@]})); then
  echo "compiling ${#stale[@]} files with $CXX"
  printf '%s\n' "${stale[@]}" | xargs -P "${JOBS:-2}" -I{} sh -c \
    '"$0" "$@" -fsanitize=fuzzer-no-link -c "{}" -o "'"$build"'/obj/$(basename "{}" .cc).o"' \
    "$CXX" "${flags[@]}"
fi
bin="$build/${target}_fuzzer"
if [ ! -f "$bin" ] || [ -n "$(find "$build/obj" -newer "$bin" -name '*.o' -print -quit)" ]; then
  "$CXX" "${flags[@]}" -fsanitize=fuzzer "${objs[@]}" "${libs[@]}" -o "$bin"
fi

# The committed corpus a long campaign grew (fuzz/corpus-grown/<target>,
# minimised with -merge=1) starts every run where that campaign ended.
grown=()
if [ -d "$src/fuzz/corpus-grown/$target" ]; then grown=("$src/fuzz/corpus-grown/$target"); fi
# New inputs go to a scratch corpus, never into the committed seeds.
if [ -z "$workcorpus" ]; then
  workcorpus="$(mktemp -d)"
  trap 'rm -rf "$workcorpus"' EXIT
fi
mkdir -p "$workcorpus"
if ((runs >= 0)); then echo "fuzzing for $runs runs: $bin"; else echo "fuzzing for ${seconds}s: $bin"; fi
"$bin" -max_total_time="$seconds" -runs="$runs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
  -max_len=65536 -print_final_stats=1 -artifact_prefix="$build/artifacts/" \
  "$workcorpus" "$seeds" "${grown[@]}"
