#!/bin/bash
# Installs continua from a build directory into a temporary prefix, builds
# examples/ out of tree against the installed CMake package, and runs them:
# the quick start interrupted and resumed must end with the digest of an
# uninterrupted run; the custom plugin's state must survive a checkpoint;
# a resumed replay buffer must refer to the live datasets and the file hold
# none of their bytes; every form of map_location must load the saved state;
# two data-parallel ranks must agree on their digests; and, when a local
# SLURM cluster can be brought up (root, Debian's slurm packages), requeued
# preemptible jobs must end with the digests of uninterrupted runs (else
# that part prints SKIP).
#   tests/package/package_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$2" && pwd)
TMP=$(mktemp -d /tmp/continua-package.XXXXXX)
CLUSTER=""
cleanup() {
  if [ -n "$CLUSTER" ]; then "$SRC/scripts/slurm-local.sh" down "$CLUSTER" > /dev/null 2>&1 || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
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

# stop_and_resume NAME PROGRAM: the program run whole, and stopped after 2
# experiences then resumed, ends with the same state digest; leaves the
# resumed run's output in $TMP/NAME-split2.txt.
stop_and_resume() {
  local name=$1 prog=$2
  "$prog" "$TMP/$name-whole.safetensors" | tee "$TMP/$name-whole.txt"
  "$prog" "$TMP/$name-split.safetensors" --stop-after 2 | tee "$TMP/$name-split1.txt"
  grep -q "stopping after 2" "$TMP/$name-split1.txt"
  "$prog" "$TMP/$name-split.safetensors" | tee "$TMP/$name-split2.txt"
  grep -q "starting at experience 2" "$TMP/$name-split2.txt"
  local whole split
  whole=$(grep "state digest" "$TMP/$name-whole.txt")
  split=$(grep "state digest" "$TMP/$name-split2.txt")
  if [ -z "$whole" ] || [ "$whole" != "$split" ]; then
    echo "FAIL: $name: resumed run ends with '$split', uninterrupted with '$whole'"; exit 1
  fi
}

echo "== quickstart: interrupted after 2 experiences, resumed, equals an uninterrupted run"
stop_and_resume quickstart "$TMP/examples/quickstart/quickstart"
"$PREFIX/bin/continua" verify "$TMP/quickstart-split.safetensors"

echo "== custom_model: a user's own feature extractor, interrupted after 2 experiences, resumes to the same digest"
stop_and_resume custom_model "$TMP/examples/custom_model/custom_model"
grep -q "features of 4 samples: \[4, 24\]" "$TMP/custom_model-split2.txt"

echo "== custom_plugin: the plugin's state is checkpointed"
"$TMP/examples/custom_plugin/custom_plugin" "$TMP/plugin.safetensors" | tee "$TMP/plugin.txt"
grep -q "restored: OK" "$TMP/plugin.txt"
"$PREFIX/bin/continua" inspect "$TMP/plugin.safetensors" | grep -q "plugins.label_counter.counts" || {
  echo "FAIL: inspect does not show the plugin's state"; exit 1; }
# The value after "$2" on the last line of file $1 that has it.
value_after() {
  local line
  line=$(grep -F "$2" "$1" | tail -n 1) || true
  if [ -n "$line" ]; then line=${line##*"$2"}; echo "${line# }"; fi
}
same_digest() {  # same_digest WHAT A B
  if [ -z "$2" ] || [ "$2" != "$3" ]; then echo "FAIL: $1: '$2' != '$3'"; exit 1; fi
}

echo "== replay_unique_objects: resumed with the live benchmark, the replay buffer refers to it; no dataset bytes in the file"
RU=$TMP/examples/replay_unique_objects/replay_unique_objects
RU_ARGS=(--benchmark split-synthetic)
if [ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  RU_ARGS=(--benchmark split-fmnist --subset 500)
fi
"$RU" "$TMP/ru-whole.safetensors" "${RU_ARGS[@]}" | tee "$TMP/ru-whole.txt"
"$RU" "$TMP/ru.safetensors" "${RU_ARGS[@]}" --stop-after 2 | tee "$TMP/ru1.txt"
grep -q "stopping after 2" "$TMP/ru1.txt"
"$RU" "$TMP/ru.safetensors" "${RU_ARGS[@]}" | tee "$TMP/ru2.txt"  # exits 1 when a check fails
for want in "starting at experience 2" "ok: the replay buffer refers to the live benchmark object" \
            "ok: and to the live training dataset" "ok: the replay memory is stored as indices" \
            "ok: the checkpoint is smaller than the datasets" "0 given the benchmark"; do
  grep -q "$want" "$TMP/ru2.txt" || { echo "FAIL: replay_unique_objects did not print '$want'"; exit 1; }
done
if grep -q FAILED "$TMP/ru2.txt"; then echo "FAIL: replay_unique_objects: a check failed"; exit 1; fi
same_digest "replay_unique_objects resumed vs uninterrupted" \
  "$(value_after "$TMP/ru2.txt" "state digest")" "$(value_after "$TMP/ru-whole.txt" "state digest")"

echo "== map_location: a device, a string, a map, a callable; a cuda:0 checkpoint loads on CPU through the map"
"$TMP/examples/map_location/map_location" "$TMP/ml" | tee "$TMP/ml.txt"
grep -q "loaded the saved state: OK" "$TMP/ml.txt"
[ "$(grep -c "  ok: " "$TMP/ml.txt")" -ge 9 ] || { echo "FAIL: map_location ran fewer checks than expected"; exit 1; }
grep -q "ok: without map_location: .*cuda:0" "$TMP/ml.txt" || {
  echo "FAIL: loading the cuda:0 checkpoint without map_location did not fail naming cuda:0"; exit 1; }
if grep -q FAILED "$TMP/ml.txt"; then echo "FAIL: map_location: a check failed"; exit 1; fi
"$PREFIX/bin/continua" verify "$TMP/ml/cuda.safetensors"

echo "== two_process: 2 data-parallel ranks (--nproc 2, then by hand with RANK/WORLD_SIZE) agree; the checkpoint loads"
TP=$TMP/examples/two_process/two_process
timeout 300 "$TP" "$TMP/tp.safetensors" --nproc 2 | tee "$TMP/tp.txt"
PORT=$((20000 + RANDOM % 20000))
RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$PORT timeout 300 "$TP" "$TMP/tp-env.safetensors" \
  > "$TMP/tp-env0.txt" 2>&1 &
RANK0=$!
RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$PORT timeout 300 "$TP" "$TMP/tp-env.safetensors" \
  > "$TMP/tp-env1.txt" 2>&1 || { cat "$TMP/tp-env1.txt"; echo "FAIL: two_process rank 1 (by hand)"; exit 1; }
wait $RANK0 || { cat "$TMP/tp-env0.txt"; echo "FAIL: two_process rank 0 (by hand)"; exit 1; }
cat "$TMP/tp-env0.txt" "$TMP/tp-env1.txt"
for what in "parameter digest" "state digest"; do
  d0=$(value_after "$TMP/tp.txt" "rank 0/2: $what")
  same_digest "two_process --nproc 2: $what of rank 1 vs rank 0" "$(value_after "$TMP/tp.txt" "rank 1/2: $what")" "$d0"
  same_digest "two_process by hand: $what of rank 0 vs --nproc 2" "$(value_after "$TMP/tp-env0.txt" "rank 0/2: $what")" "$d0"
  same_digest "two_process by hand: $what of rank 1 vs --nproc 2" "$(value_after "$TMP/tp-env1.txt" "rank 1/2: $what")" "$d0"
done
# Each rank trained on its own share of every mini-batch: together, on the
# samples one process alone trains on.
"$TP" "$TMP/tp-single.safetensors" | tee "$TMP/tp-single.txt"
n0=$(grep "rank 0/2: trained on" "$TMP/tp.txt" | awk '{print $5}')
n1=$(grep "rank 1/2: trained on" "$TMP/tp.txt" | awk '{print $5}')
nall=$(grep "rank 0/2: trained on" "$TMP/tp.txt" | awk '{print $NF}')
nsingle=$(grep "rank 0/1: trained on" "$TMP/tp-single.txt" | awk '{print $5}')
if [ -z "$n0" ] || [ -z "$n1" ] || [ "$n0" -le 0 ] || [ "$n1" -le 0 ] || [ $((n0 + n1)) != "$nall" ] ||
   [ "$nall" != "$nsingle" ]; then
  echo "FAIL: two_process: the ranks did not split the batches ($n0 + $n1 samples, $nall in all, $nsingle in one process)"
  exit 1
fi
[ "$(grep -c "loaded at experience 5: same state" "$TMP/tp.txt")" = 2 ] || {
  echo "FAIL: two_process: not every rank loaded the checkpoint with its state"; exit 1; }
"$PREFIX/bin/continua" verify "$TMP/tp.safetensors"

echo "== own_npy: a user's arrays saved by NumPy, a class split trained through the API, stopped and resumed"
NP=$TMP/npy-data
mkdir -p "$NP"
/usr/bin/python3 - "$NP" <<'PY'
import sys, numpy as np
rng = np.random.default_rng(0)
for split, n in (("train", 90), ("test", 30)):
    y = np.arange(n) % 6
    x = (rng.normal(0, 0.5, (len(y), 4, 4)) + (np.arange(16).reshape(4, 4)[None] % 6 == y[:, None, None])).astype(np.float32)
    np.save(f"{sys.argv[1]}/{split}_x.npy", x)
    np.save(f"{sys.argv[1]}/{split}_y.npy", y)
PY
ON=$TMP/examples/own_npy/own_npy
"$ON" "$NP" "$TMP/on-whole.safetensors" | tee "$TMP/on-whole.txt"
grep -q "90 training samples of shape \[4, 4\], 6 classes, 3 experiences" "$TMP/on-whole.txt" || {
  echo "FAIL: own_npy did not read the arrays NumPy wrote"; exit 1; }
"$ON" "$NP" "$TMP/on.safetensors" --stop-after 2 | tee "$TMP/on1.txt"
grep -q "stopping after 2" "$TMP/on1.txt"
"$ON" "$NP" "$TMP/on.safetensors" | tee "$TMP/on2.txt"
grep -q "starting at experience 2" "$TMP/on2.txt"
same_digest "own_npy resumed vs uninterrupted" \
  "$(value_after "$TMP/on2.txt" "state digest")" "$(value_after "$TMP/on-whole.txt" "state digest")"
"$PREFIX/bin/continua" inspect "$TMP/on.safetensors" | grep -q "npy:$NP" || {
  echo "FAIL: the checkpoint does not name the arrays' folder"; exit 1; }
# The same arrays through the command line.
"$PREFIX/bin/continua" run --benchmark split --dataset "npy:$NP" --experiences 3 --threads 1 --out "$TMP/on-cli" > "$TMP/on-cli.txt"
grep -q '"complete": true' "$TMP/on-cli/results.json" || { echo "FAIL: continua run on the arrays"; exit 1; }

echo "== slurm_preemptible: jobs stopped by USR1 requeue themselves and end with the digest of uninterrupted runs"
SL=$TMP/slurm
mkdir -p "$SL"
CLI_ARGS=(--benchmark split-synthetic --experiences 2 --epochs 40 --train-mb-size 8 --hidden 64 --seed 9
          --strategy replay)
PE=$TMP/examples/slurm_preemptible/preemptible
slurm_up() {
  [ "$(id -u)" = 0 ] || { echo "needs root to run slurmctld/slurmd"; return 1; }
  export SLURM_LOCAL_PORT=$((20000 + RANDOM % 20000)) PATH=$PATH:/usr/sbin
  CLUSTER=$SL/cluster
  "$SRC/scripts/slurm-local.sh" up "$CLUSTER" > "$SL/up.log" 2>&1 || { tail -n 5 "$SL/up.log"; return 1; }
  export SLURM_CONF=$CLUSTER/slurm.conf
}
if ! slurm_up; then
  echo "SKIP: slurm_preemptible: no local SLURM cluster here (see above)"
else
  jcli=$(cd "$SL" && WORK=$SL CONTINUA=$PREFIX/bin/continua sbatch --parsable -p low -o "$SL/continua.out" \
           "$SRC/examples/slurm_preemptible/continua_job.sh" "${CLI_ARGS[@]}")
  jcpp=$(cd "$SL" && WORK=$SL PREEMPTIBLE=$PE sbatch --parsable -p low -o "$SL/preemptible.out" \
           "$SRC/examples/slurm_preemptible/preemptible_job.sh")
  echo "submitted jobs $jcli (continua run) and $jcpp (preemptible)"
  # The uninterrupted references, outside SLURM, while the jobs run and wait to be requeued.
  ( "$PREFIX/bin/continua" run "${CLI_ARGS[@]}" --threads 1 --verbosity quiet --out "$SL/ref" > /dev/null &&
    "$PE" "$SL/ref-ckpt" > "$SL/ref-cpp.txt" ) &
  REFS=$!
  job_state() { scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
  wait_for() {  # wait_for SECONDS WHAT COMMAND...
    local t=$1 what=$2; shift 2
    for _ in $(seq $((t * 5))); do "$@" && return 0; sleep 0.2; done
    echo "FAIL: slurm_preemptible: $what"; cat "$SL"/*.out; exit 1
  }
  has_checkpoint() { [ "$(job_state "$1")" = RUNNING ] && ls "$2" 2>/dev/null | grep -q '^ckpt-.*\.safetensors$'; }
  wait_for 60 "job $jcli did not start and checkpoint" has_checkpoint "$jcli" "$SL/ckpt"
  wait_for 60 "job $jcpp did not start and checkpoint" has_checkpoint "$jcpp" "$SL/ckpt-cpp"
  # What SLURM sends before a time limit or on preemption (--signal=B:USR1@30).
  scancel --batch --signal=USR1 "$jcli" "$jcpp"
  completed() { [ "$(job_state "$jcli")" = COMPLETED ] && [ "$(job_state "$jcpp")" = COMPLETED ]; }
  wait_for 150 "the jobs did not complete (states $(job_state "$jcli"), $(job_state "$jcpp"))" completed
  cat "$SL/continua.out" "$SL/preemptible.out"
  for f in continua.out preemptible.out; do
    grep -q "requeued SLURM job" "$SL/$f" || { echo "FAIL: $f: the job did not requeue itself"; exit 1; }
    grep -q "resumed from" "$SL/$f" || { echo "FAIL: $f: the job did not resume"; exit 1; }
    [ "$(grep -c '^start restart=' "$SL/$f")" -ge 2 ] || { echo "FAIL: $f: the job started only once"; exit 1; }
  done
  grep -q "stopped by SIGUSR1" "$SL/continua.out" || { echo "FAIL: continua run was not stopped by USR1"; exit 1; }
  wait $REFS || { echo "FAIL: slurm_preemptible: a reference run failed"; exit 1; }
  ref_cli=$(grep -o '"state_digest": *"[0-9a-f]*"' "$SL/ref/results.json" | grep -o '[0-9a-f]\{64\}')
  ref_cpp=$(value_after "$SL/ref-cpp.txt" "state digest")
  got_cli=$(grep -o '"state_digest": *"[0-9a-f]*"' "$SL/out/results.json" | grep -o '[0-9a-f]\{64\}')
  grep -q '"complete": *true' "$SL/out/results.json" || { echo "FAIL: continua run's results are incomplete"; exit 1; }
  same_digest "slurm_preemptible: continua run requeued vs uninterrupted" "$got_cli" "$ref_cli"
  same_digest "slurm_preemptible: preemptible requeued vs uninterrupted" \
    "$(value_after "$SL/preemptible.out" "state digest")" "$ref_cpp"
  "$SRC/scripts/slurm-local.sh" down "$CLUSTER" > /dev/null 2>&1 || true
  CLUSTER=""
fi
echo "PASS"
