#!/usr/bin/env bash
# Train on a slurm cluster with srun (one task per GPU), as mmseg's
# slurm_train.sh.
#
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py options]
#
# Environment: GPUS (default 4), GPUS_PER_NODE (default 4), CPUS_PER_TASK
# (default 5), SRUN_ARGS, GRES (default gpu:$GPUS_PER_NODE; GRES= requests
# none on CPU-only partitions, where the tasks use the gloo backend), PORT
# and PYTHON, described in tools/misc/srun.sh.
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
TOOLS=$(dirname "$0")
exec "$TOOLS/misc/srun.sh" "$1" "$2" 1 "$TOOLS/train.py" "${ARGS[@]}"
