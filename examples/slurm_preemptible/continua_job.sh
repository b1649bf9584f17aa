#!/bin/bash
# A preemptible `continua run` batch job: on SIGUSR1 (sent by SLURM 30 s
# before the time limit or on preemption, --signal below) or SIGTERM
# (scontrol requeue, scancel, preemption after GraceTime) it finishes the
# iteration in flight, writes a checkpoint into $WORK/ckpt, requeues itself
# and exits 75; the next start resumes from the newest checkpoint that
# verifies, and the run ends bit-identical to one never interrupted.
#
#   sbatch continua_job.sh --strategy replay --subset 2000   # training options
#
# Environment (sbatch passes it on): CONTINUA (default: continua on PATH),
# WORK (default: the submit directory) for out/ and ckpt/.
#SBATCH --job-name=continua-preemptible
#SBATCH --requeue                  # the job may be requeued (and requeues itself)
#SBATCH --signal=B:USR1@30         # USR1 to the batch shell 30 s before the end / on preemption
#SBATCH --open-mode=append         # keep the output of earlier starts
#SBATCH --output=continua-%j.out
#SBATCH --cpus-per-task=1
WORK=${WORK:-${SLURM_SUBMIT_DIR:-$PWD}}
echo "start restart=${SLURM_RESTART_COUNT:-0} job=${SLURM_JOB_ID:-none} $(date +%T)"
# A USR1 before continua installs its handler would kill the shell; ignored
# dispositions survive exec, and continua's handler replaces this one.
trap '' USR1
# exec: continua must BE the batch shell to receive the B: signal.
exec "${CONTINUA:-continua}" run --threads "${SLURM_CPUS_PER_TASK:-1}" --verbosity quiet \
  --out "$WORK/out" --checkpoint-dir "$WORK/ckpt" --checkpoint-every 50 \
  --signal USR1,TERM --requeue "$@"
