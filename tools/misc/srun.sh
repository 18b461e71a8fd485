#!/usr/bin/env bash
# The srun launch shared by tools/slurm_train.sh and tools/slurm_test.sh:
#
#   tools/misc/srun.sh PARTITION JOB_NAME N TOOL [TOOL arguments]
#
# runs the Python script TOOL as one slurm task per GPU, adding
# `--launcher=slurm` after the first N (positional) arguments.
#
# Environment:
#   GPUS           total number of tasks (GPUs) (default 4)
#   GPUS_PER_NODE  tasks (GPUs) per node (default 4)
#   CPUS_PER_TASK  CPU cores per task (default 5)
#   SRUN_ARGS      extra srun options, e.g. "--quotatype=auto"
#   GRES           generic resources per node (default gpu:$GPUS_PER_NODE;
#                  set GRES= to request none on CPU-only partitions, where
#                  the tasks use the gloo backend)
#   PORT           rendezvous port on the first node (default 29500)
#   PYTHON         the Python interpreter (default: python)
set -euo pipefail

PARTITION=$1
JOB_NAME=$2
N=$3
TOOL=$4
shift 4
GPUS=${GPUS:-4}
GPUS_PER_NODE=${GPUS_PER_NODE:-4}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
GRES=${GRES-gpu:$GPUS_PER_NODE}
PYTHON=${PYTHON:-python}
if [ -n "${PORT:-}" ]; then
    export MASTER_PORT=$PORT
fi

# shellcheck disable=SC2086  # SRUN_ARGS is a list of options
PYTHONPATH="$(dirname "$TOOL")/..${PYTHONPATH:+:$PYTHONPATH}" \
exec srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    ${GRES:+--gres="$GRES"} \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "$PYTHON" -u "$TOOL" "${@:1:$N}" --launcher=slurm "${@:$((N + 1))}"
