#!/usr/bin/env bash
# Installs what continua needs on Debian 12 (as root, or with sudo) and builds
# it into ./build. Safe to run again: installed packages are skipped and the
# build is incremental.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  # toolchain
  g++ cmake ninja-build ccache pkg-config
  # LibTorch (CPU) and a fast BLAS under it: with OpenBLAS installed, the
  # alternatives system points libblas.so.3 at it (see docs/benchmarks.md)
  libtorch-dev libopenblas0-pthread
  # libraries: CLI11 (command line), nlohmann-json (checkpoint metadata),
  # fmt (formatting), yaml-cpp (config files), OpenSSL (SHA-256), zlib (IDX .gz),
  # Gloo headers (c10d process groups)
  libcli11-dev nlohmann-json3-dev libfmt-dev libyaml-cpp-dev libssl-dev zlib1g-dev libgloo-dev
  # the data readers (src/data/readers/, docs/datasets.md): libzip (.npz archives),
  # libcsv (CSV fields and quoting), libpng and TurboJPEG (PNG and JPEG image folders)
  libzip-dev libcsv-dev libpng-dev libturbojpeg0-dev
  # tests and benchmarks: GoogleTest, Google Benchmark; numpy for the
  # independent Python safetensors reader
  libgtest-dev libgmock-dev libbenchmark-dev python3-numpy
  # the default benchmark's data: real Fashion-MNIST (MIT licence)
  dataset-fashion-mnist
  # a single-node SLURM cluster on localhost for the preemption test (tests/slurm)
  slurmctld slurmd slurm-client munge
  # headless Chromium renders the HTML report in its test; python3-torch checks the
  # state_dict converter (tools/to_state_dict.py) against PyTorch
  chromium python3-torch
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} ${CMAKE_ARGS:-}
cmake --build "$BUILD_DIR" -j "${JOBS:-$(nproc)}"
