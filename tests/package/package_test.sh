#!/bin/bash
# Installs continua from a build directory into a temporary prefix, builds
# examples/ out of tree against the installed CMake package, and runs them:
# the quick start interrupted and resumed must end with the digest of an
# uninterrupted run; the custom plugin's state must survive a checkpoint.
#   tests/package/package_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$2" && pwd)
TMP=$(mktemp -d /tmp/continua-package.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
PREFIX=$TMP/prefix

echo "== install into $PREFIX"
cmake --install "$BUILD" --prefix "$PREFIX" > "$TMP/install.log"
for f in include/continua/continua.h include/continua/format/safetensors.h lib/libcontinua.so \
         lib/libcontinua_io.a bin/continua lib/cmake/continua/continuaConfig.cmake \
         lib/cmake/continua/continuaTargets.cmake lib/cmake/continua/continuaConfigVersion.cmake; do
  if [ ! -e "$PREFIX/$f" ]; then echo "FAIL: $f was not installed"; exit 1; fi
done

echo "== the installed executable runs"
"$PREFIX/bin/continua" run --benchmark split-synthetic --experiences 2 --threads 1 --verbosity quiet \
  --out "$TMP/cli-out"
test -s "$TMP/cli-out/results.json"

echo "== configure and build examples/ against the package"
LAUNCHER=()
if command -v ccache > /dev/null; then LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
cmake -S "$SRC/examples" -B "$TMP/examples" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$PREFIX" "${LAUNCHER[@]}" > "$TMP/configure.log" || { cat "$TMP/configure.log"; exit 1; }
cmake --build "$TMP/examples" -j2 > "$TMP/build.log" || { cat "$TMP/build.log"; exit 1; }

echo "== quickstart: interrupted after 2 experiences, resumed, equals an uninterrupted run"
QS=$TMP/examples/quickstart/quickstart
"$QS" "$TMP/whole.safetensors" | tee "$TMP/whole.txt"
"$QS" "$TMP/split.safetensors" --stop-after 2 | tee "$TMP/split1.txt"
grep -q "stopping after 2" "$TMP/split1.txt"
"$QS" "$TMP/split.safetensors" | tee "$TMP/split2.txt"
grep -q "starting at experience 2" "$TMP/split2.txt"
whole=$(grep "state digest" "$TMP/whole.txt")
split=$(grep "state digest" "$TMP/split2.txt")
if [ -z "$whole" ] || [ "$whole" != "$split" ]; then
  echo "FAIL: resumed run ends with '$split', uninterrupted with '$whole'"; exit 1
fi
"$PREFIX/bin/continua" verify "$TMP/split.safetensors"

echo "== custom_plugin: the plugin's state is checkpointed"
"$TMP/examples/custom_plugin/custom_plugin" "$TMP/plugin.safetensors" | tee "$TMP/plugin.txt"
grep -q "restored: OK" "$TMP/plugin.txt"
"$PREFIX/bin/continua" inspect "$TMP/plugin.safetensors" | grep -q "plugins.label_counter.counts" || {
  echo "FAIL: inspect does not show the plugin's state"; exit 1; }
echo "PASS"
