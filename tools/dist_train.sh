#!/usr/bin/env bash
# Train on GPUS processes per node with torchrun (PyTorch's elastic launcher;
# not the deprecated torch.distributed.launch), as mmseg's dist_train.sh.
#
#   tools/dist_train.sh CONFIG GPUS [tools/train.py options]
#
# Environment (multi-node: run the same command on every node):
#   NNODES       number of nodes (default 1)
#   NODE_RANK    this node's rank, 0 .. NNODES-1 (default 0)
#   MASTER_ADDR  address of node 0, reachable from every node (default
#                127.0.0.1)
#   PORT         free TCP port on node 0 for the rendezvous (default 29500)
#   PYTHON       the Python interpreter (default: python)
# Without CUDA the processes use the gloo backend on CPU (GPUS = number of
# CPU processes).
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [train.py options]" >&2
    exit 2
fi
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}
TOOLS=$(dirname "$0")

# Node 0 hosts the rendezvous on PORT: fail early, in one line, if the port
# is taken (torchrun would print a long traceback instead).
if [ "$NODE_RANK" = "0" ]; then
    "$PYTHON" "$TOOLS/misc/check_port.py" "$PORT" "$(basename "$0")" || exit 1
fi

PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$TOOLS/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
