#!/usr/bin/env bash
# Test (evaluate) a checkpoint on a slurm cluster with srun, as mmseg's
# slurm_test.sh.
#
#   tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]
#
# Environment: GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS, GRES, PORT and
# PYTHON, as for tools/slurm_train.sh (tools/misc/srun.sh describes them).
set -euo pipefail

if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]" >&2
    exit 2
fi
TOOLS=$(dirname "$0")
exec "$TOOLS/misc/srun.sh" "$1" "$2" 2 "$TOOLS/test.py" "${@:3}"
