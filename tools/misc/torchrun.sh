#!/usr/bin/env bash
# The torchrun launch shared by tools/dist_train.sh and tools/dist_test.sh:
#
#   tools/misc/torchrun.sh SCRIPT_NAME GPUS N TOOL [TOOL arguments]
#
# starts GPUS processes of the Python script TOOL on this node with torchrun
# (PyTorch's elastic launcher, not the deprecated torch.distributed.launch),
# adding `--launcher pytorch` after the first N (positional) arguments.
# SCRIPT_NAME names the calling script in messages.
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

SCRIPT_NAME=$1
GPUS=$2
N=$3
TOOL=$4
shift 4
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}

# Node 0 hosts the rendezvous on PORT: fail early, in one line, if the port
# is taken (torchrun would print a long traceback instead).
if [ "$NODE_RANK" = "0" ]; then
    "$PYTHON" "$(dirname "$0")/check_port.py" "$PORT" "$SCRIPT_NAME" || exit 1
fi

PYTHONPATH="$(dirname "$TOOL")/..${PYTHONPATH:+:$PYTHONPATH}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$TOOL" "${@:1:$N}" --launcher pytorch "${@:$((N + 1))}"
