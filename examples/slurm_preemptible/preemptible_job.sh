#!/bin/bash
# The same preemptible job as continua_job.sh, running the C++ program
# preemptible.cc (built from this folder) instead of `continua run`.
#
#   sbatch preemptible_job.sh [--epochs N] [--save-every N]
#
# Environment: PREEMPTIBLE (default: ./preemptible in the submit directory),
# WORK (default: the submit directory) for ckpt-cpp/.
#SBATCH --job-name=continua-preemptible-cpp
#SBATCH --requeue
#SBATCH --signal=B:USR1@30
#SBATCH --open-mode=append
#SBATCH --output=preemptible-%j.out
#SBATCH --cpus-per-task=1
WORK=${WORK:-${SLURM_SUBMIT_DIR:-$PWD}}
echo "start restart=${SLURM_RESTART_COUNT:-0} job=${SLURM_JOB_ID:-none} $(date +%T)"
trap '' USR1
exec "${PREEMPTIBLE:-${SLURM_SUBMIT_DIR:-.}/preemptible}" "$WORK/ckpt-cpp" --requeue "$@"
