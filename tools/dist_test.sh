#!/usr/bin/env bash
# Test (evaluate) a checkpoint on GPUS processes per node with torchrun, as
# mmseg's dist_test.sh. The ranks share the dataset; the metrics are those
# of one process.
#
#   tools/dist_test.sh CONFIG CHECKPOINT GPUS [tools/test.py options]
#
# Environment: NNODES, NODE_RANK, MASTER_ADDR, PORT (default 29500) and
# PYTHON, described in tools/misc/torchrun.sh.
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT GPUS [test.py options]" >&2
    exit 2
fi
TOOLS=$(dirname "$0")
exec "$TOOLS/misc/torchrun.sh" "$(basename "$0")" "$3" 2 "$TOOLS/test.py" \
    "$1" "$2" "${@:4}"
