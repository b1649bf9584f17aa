#!/usr/bin/env bash
# Real SLURM: a preemptible `continua run --requeue` batch job survives
# `scontrol requeue` and preemption by a job in a higher-priority partition,
# completes with the state_digest of an uninterrupted run, and its restart
# count rises. Then a 2-task job (`srun`, data-parallel over Gloo, ranks from
# SLURM_PROCID/SLURM_NTASKS) is requeued while it trains and completes with
# the state_digest of an uninterrupted 2-rank run on both ranks.
#
# Brings up a single-node cluster on localhost (scripts/slurm-local.sh) and
# tears down everything it started, by PID. Exit status: 0 passed, 1 failed,
# 77 skipped (SLURM cannot be brought up here; ctest reports SKIPPED through
# SKIP_RETURN_CODE 77, never passed).
#
# Usage: tests/slurm/slurm_requeue_test.sh path/to/continua
set -uo pipefail

bin=$(readlink -f "${1:?usage: $0 path/to/continua}")
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/continua-slurm-XXXXXX)
export SLURM_LOCAL_PORT=${SLURM_LOCAL_PORT:-$((20000 + RANDOM % 20000))}
export PATH=$PATH:/usr/sbin

cleanup() {
  "$src/scripts/slurm-local.sh" down "$work/cluster" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAILED: $*"
  echo "--- job output"; cat "$work/job.out" 2>/dev/null
  echo "--- slurmctld log (tail)"; tail -n 20 "$work/cluster/log/slurmctld.log" 2>/dev/null
  exit 1
}

if [[ $(id -u) != 0 ]]; then echo "SKIPPED: needs root to run slurmctld/slurmd"; exit 77; fi
"$src/scripts/slurm-local.sh" up "$work/cluster" > "$work/up.log" 2>&1
rc=$?
if [[ $rc != 0 ]]; then
  echo "SKIPPED: cannot bring up SLURM here (status $rc):"
  cat "$work/up.log"
  exit 77
fi
export SLURM_CONF=$work/cluster/slurm.conf

# About 20-30 s of training on 1 thread: long enough to preempt twice.
args=(run --benchmark split-synthetic --experiences 2 --epochs 60 --train-mb-size 8 --hidden 64
      --seed 9 --strategy replay --threads 1 --verbosity quiet)

echo "reference run..."
"$bin" "${args[@]}" --out "$work/ref" >/dev/null || fail "reference run"
ref=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["state_digest"])' "$work/ref/results.json")

cat > "$work/job.sh" <<EOF
#!/bin/bash
echo "start restart=\${SLURM_RESTART_COUNT:-0} job=\$SLURM_JOB_ID \$(date +%T)"
# A USR1 before continua installs its handler (its first second) must not
# kill it: ignored dispositions survive exec, continua's handler replaces it.
trap '' USR1
# exec: continua must be the batch shell to receive --signal=B:USR1.
exec "$bin" ${args[*]} --out "$work/out" --checkpoint-dir "$work/ck" --checkpoint-every 40 --requeue
EOF
chmod +x "$work/job.sh"
job=$(sbatch --parsable --requeue --signal=B:USR1@30 --open-mode=append -o "$work/job.out" \
        -c "$(nproc)" -p low "$work/job.sh") || fail "sbatch"
echo "submitted job $job"

state() { scontrol show job "$job" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
restarts() { scontrol show job "$job" 2>/dev/null | grep -o 'Restarts=[0-9]*' | cut -d= -f2; }
newest() { ls "$work/ck" 2>/dev/null | grep '^ckpt-.*\.safetensors$' | sort | tail -n 1; }
count() { grep -c "$1" "$work/job.out" 2>/dev/null || true; }
wait_until() {  # wait_until SECONDS COMMAND...
  local t=$1; shift
  for _ in $(seq $((t * 5))); do "$@" && return 0; sleep 0.2; done
  return 1
}
# Running its start number $1 (it printed "resumed from" $1 times, so its
# signal handlers are installed) and saved a checkpoint after $2.
trained_after() {
  [[ $(state) == RUNNING && $(count "resumed from") -ge $1 && -n $(newest) && $(newest) > "$2" ]]
}

# 1. scontrol requeue while it trains.
wait_until 60 trained_after 0 "" || fail "job did not start and checkpoint"
echo "requeue 1 (scontrol requeue) after $(newest)"
scontrol requeue "$job" || fail "scontrol requeue"
wait_until 60 bash -c "grep -q 'stopped by' '$work/job.out'" || fail "no checkpoint after scontrol requeue"
wait_until 90 trained_after 1 "$(newest)" || fail "job did not resume after scontrol requeue"
[[ $(restarts) -ge 1 ]] || fail "restart count did not rise after scontrol requeue"

# 2. Preemption by a job in the high partition: USR1 (--signal), checkpoint,
#    the job requeues itself (--requeue).
echo "requeue 2 (preempted by a high-priority job) after $(newest)"
sbatch --parsable -p high -c 1 -o /dev/null --wrap "sleep 2" >/dev/null || fail "sbatch high"
wait_until 60 bash -c "[[ \$(grep -c 'stopped by' '$work/job.out') -ge 2 ]]" || fail "no checkpoint after preemption"
wait_until 90 trained_after 2 "$(newest)" || fail "job did not resume after preemption"
[[ $(restarts) -ge 2 ]] || fail "restart count did not rise after preemption ($(restarts))"

wait_until 240 bash -c "[[ \$(scontrol show job $job | grep -o 'JobState=[A-Z_]*') == JobState=COMPLETED ]]" ||
  fail "job did not complete (state $(state))"
grep -q "stopped by SIGUSR1" "$work/job.out" || fail "no stop by SIGUSR1 in the job output"
grep -q "stopped by SIGTERM" "$work/job.out" || fail "no stop by SIGTERM in the job output"
grep -q "requeued SLURM job $job" "$work/job.out" || fail "the job did not requeue itself"
got=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["state_digest"] if r["complete"] else "incomplete")' "$work/out/results.json")
echo "--- job output"; cat "$work/job.out"
echo "restarts: $(restarts); starts: $(grep -c '^start' "$work/job.out")"
[[ "$got" == "$ref" ]] || fail "state_digest $got differs from the uninterrupted run's $ref"
# metrics.jsonl equals the uninterrupted run's but for the wall times of its "costs" rows.
python3 - "$work/ref/metrics.jsonl" "$work/out/metrics.jsonl" <<'PY' || fail "metrics.jsonl differs from the uninterrupted run's"
import json, sys
def rows(p):
    rows = [json.loads(l) for l in open(p)]
    return [r for r in rows if r.get("event") != "costs"], sum(r.get("event") == "costs" for r in rows)
sys.exit(0 if rows(sys.argv[1]) == rows(sys.argv[2]) else 1)
PY
echo "job $job completed after $(restarts) restarts with the uninterrupted state_digest"

# --- A 2-task job: `srun` starts both ranks; scontrol requeue stops them
# (SIGTERM to every task: the ranks agree on an iteration, rank 0 saves) and
# the restarted job resumes both ranks from rank 0's checkpoint.
echo "reference 2-rank run..."
"$bin" "${args[@]}" --nproc 2 --out "$work/ref2" >/dev/null || fail "reference 2-rank run"
ref2=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["state_digest"])' "$work/ref2/results.json")
[[ $(cat "$work/ref2/rank-1.digest") == "$ref2" ]] || fail "the reference ranks disagree"
cat > "$work/job2.sh" <<EOF
#!/bin/bash
echo "start restart=\${SLURM_RESTART_COUNT:-0} job=\$SLURM_JOB_ID tasks=\$SLURM_NTASKS \$(date +%T)"
srun --kill-on-bad-exit=1 "$bin" ${args[*]} --out "$work/out2" --checkpoint-dir "$work/ck2" --checkpoint-every 40
echo "srun status \$?"
EOF
chmod +x "$work/job2.sh"
: > "$work/job.out"
job=$(sbatch --parsable --requeue --open-mode=append -o "$work/job.out" -n 2 -c 1 -p low "$work/job2.sh") ||
  fail "sbatch 2 tasks"
echo "submitted 2-task job $job"
newest2() { ls "$work/ck2" 2>/dev/null | grep '^ckpt-.*\.safetensors$' | sort | tail -n 1; }
wait_until 90 bash -c "ls '$work/ck2' 2>/dev/null | grep -q '^ckpt-.*safetensors$'" ||
  fail "2-task job did not start and checkpoint"
before=$(newest2)
echo "requeue the 2-task job after $before"
scontrol requeue "$job" || fail "scontrol requeue (2 tasks)"
wait_until 240 bash -c "[[ \$(scontrol show job $job | grep -o 'JobState=[A-Z_]*') == JobState=COMPLETED ]]" ||
  fail "2-task job did not complete (state $(state))"
echo "--- 2-task job output"; cat "$work/job.out"
[[ $(restarts) -ge 1 ]] || fail "the 2-task job was not restarted"
grep -q "resumed from" "$work/job.out" || fail "the 2-task job did not resume from a checkpoint"
got2=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["state_digest"] if r["complete"] else "incomplete")' "$work/out2/results.json")
[[ "$got2" == "$ref2" ]] || fail "2-task state_digest $got2 differs from the uninterrupted 2-rank run's $ref2"
for r in 0 1; do
  [[ $(cat "$work/out2/rank-$r.digest") == "$ref2" ]] || fail "rank $r's digest differs from the uninterrupted run's"
done
echo "PASSED: the 1-task job and the 2-task job $job (requeued after $before) completed with the uninterrupted state_digest"
