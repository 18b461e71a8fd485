#!/usr/bin/env bash
# Train on a slurm cluster with srun (one task per GPU), as mmseg's
# slurm_train.sh.
#
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py options]
#
# Environment: GPUS (default 4), GPUS_PER_NODE (default 4), CPUS_PER_TASK
# (default 5), SRUN_ARGS, GRES (default gpu:$GPUS_PER_NODE; GRES= requests
# none on CPU-only partitions, where the tasks use the gloo backend), PORT
# and PYTHON, described in tools/misc/srun.sh; and
#   SIGNAL_SECONDS  when srun creates the job (run from a login node): ask
#                   slurm for SIGUSR1 this many seconds before the time
#                   limit (srun --signal=USR1@N; default 120, 0: do not ask)
#   REQUEUE         in a batch job: requeue it when training stopped on the
#                   warning signal (default 1, 0: do not)
#
# Preemption (docs/distributed.md#preemption-and-requeue): on SIGUSR1 or
# SIGTERM, train.py finishes the iteration, saves a checkpoint and exits
# with status 75. In a batch job (SLURM_JOB_ID set; ask for the signal with
# `#SBATCH --signal=B:USR1@120` and run this script with `exec`), the
# script passes a SIGUSR1 or SIGTERM it receives on to the tasks as SIGUSR1
# (on SIGTERM, srun would kill them), and when training exits with status
# 75, or fails after a SIGUSR1, it runs `scontrol requeue $SLURM_JOB_ID`;
# never after a SIGTERM (scancel, the time limit itself). The requeued job
# runs the script again (SLURM_RESTART_COUNT > 0), which then adds --resume.
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py options]" >&2
    exit 2
fi
ARGS=("$3")
if [ $# -gt 3 ] && [[ "$4" != -* ]]; then  # optional WORK_DIR
    ARGS+=(--work-dir="$4" "${@:5}")
else
    ARGS+=("${@:4}")
fi
if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ] && [[ " ${ARGS[*]} " != *" --resume "* ]]; then
    ARGS+=(--resume)  # a requeued job continues from its checkpoint
fi
TOOLS=$(dirname "$0")
SRUN=("$TOOLS/misc/srun.sh" "$1" "$2" 1 "$TOOLS/train.py" "${ARGS[@]}")

if [ -z "${SLURM_JOB_ID:-}" ]; then  # srun creates the job
    SIGNAL_SECONDS=${SIGNAL_SECONDS:-120}
    if [ "$SIGNAL_SECONDS" != 0 ]; then
        export SRUN_ARGS="--signal=USR1@$SIGNAL_SECONDS${SRUN_ARGS:+ $SRUN_ARGS}"
    fi
    exec "${SRUN[@]}"
fi

# In a batch job: srun in the background, so that the traps run at once.
"${SRUN[@]}" &
SRUN_PID=$!
WARNED=0
ENDING=0
trap 'WARNED=1; kill -USR1 "$SRUN_PID" 2>/dev/null || true' USR1
trap 'ENDING=1; kill -USR1 "$SRUN_PID" 2>/dev/null || true' TERM

# The exit status of process $1. A trapped signal ends `wait` early (with a
# status above 128) while the process runs on: then wait again.
wait_for() {
    local status again
    while :; do
        status=0
        wait "$1" || status=$?
        if [ "$status" -le 128 ]; then
            return "$status"
        fi
        if kill -0 "$1" 2>/dev/null; then
            continue
        fi
        again=0  # it ended meanwhile: its status, unless `wait` returned it
        wait "$1" 2>/dev/null || again=$?
        [ "$again" -eq 127 ] || status=$again
        return "$status"
    done
}

STATUS=0
wait_for "$SRUN_PID" || STATUS=$?
if [ "${REQUEUE:-1}" != 0 ] && [ "$ENDING" = 0 ] && { [ "$STATUS" -eq 75 ] ||
        { [ "$WARNED" = 1 ] && [ "$STATUS" -ne 0 ]; }; }; then
    echo "slurm_train.sh: training stopped on a signal (exit status" \
        "$STATUS); requeueing job $SLURM_JOB_ID, which resumes from its" \
        "last checkpoint" >&2
    scontrol requeue "$SLURM_JOB_ID" ||
        echo "slurm_train.sh: could not requeue job $SLURM_JOB_ID;" \
            "resubmit it with --resume" >&2
fi
exit "$STATUS"
