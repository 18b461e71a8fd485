#!/usr/bin/env bash
# Train on GPUS processes per node with torchrun, as mmseg's dist_train.sh.
#
#   tools/dist_train.sh CONFIG GPUS [tools/train.py options]
#
# Environment: NNODES, NODE_RANK, MASTER_ADDR, PORT (default 29500) and
# PYTHON, described in tools/misc/torchrun.sh. Without CUDA the processes use
# the gloo backend on CPU (GPUS = number of CPU processes).
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [train.py options]" >&2
    exit 2
fi
TOOLS=$(dirname "$0")
exec "$TOOLS/misc/torchrun.sh" "$(basename "$0")" "$2" 1 "$TOOLS/train.py" \
    "$1" "${@:3}"
