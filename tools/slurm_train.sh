#!/usr/bin/env bash
# Train on a slurm cluster with srun (one task per GPU), as mmseg's
# slurm_train.sh.
#
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py options]
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

if [ $# -lt 3 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py options]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
shift 3
PY_ARGS=()
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then  # optional WORK_DIR
    PY_ARGS=(--work-dir="$1")
    shift
fi
PY_ARGS+=("$@")
GPUS=${GPUS:-4}
GPUS_PER_NODE=${GPUS_PER_NODE:-4}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
GRES=${GRES-gpu:$GPUS_PER_NODE}
PYTHON=${PYTHON:-python}
TOOLS=$(dirname "$0")
if [ -n "${PORT:-}" ]; then
    export MASTER_PORT=$PORT
fi

# shellcheck disable=SC2086  # SRUN_ARGS is a list of options
PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}" \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    ${GRES:+--gres="$GRES"} \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "$PYTHON" -u "$TOOLS/train.py" "$CONFIG" --launcher=slurm \
    ${PY_ARGS[@]+"${PY_ARGS[@]}"}
