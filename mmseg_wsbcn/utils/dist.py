# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The one collective that :mod:`mmengine.dist` lacks: a differentiable
all-reduce.

World size, rank and plain (no-gradient) all-reduces come from
:mod:`mmengine.dist`. The differentiable sum follows detectron2's
``layers/wrappers.py::differentiable_all_reduce`` (after fvcore): the
forward pass sums a tensor over all processes, and the backward pass sums
the incoming gradients over all processes, because every rank's output
depends on every rank's input.
"""
from typing import Optional

import torch
import torch.distributed as dist
from mmengine.dist import get_world_size
from torch import Tensor

ProcessGroup = Optional['dist.ProcessGroup']


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes, with the gradient summed over processes too."""

    @staticmethod
    def forward(ctx, input: Tensor, group: ProcessGroup) -> Tensor:
        ctx.group = group
        output = input.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(output, op=dist.ReduceOp.SUM, group=group)
        return output

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        grad = grad_output.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad, None


def differentiable_all_reduce(input: Tensor,
                              group: ProcessGroup = None) -> Tensor:
    """Sum ``input`` over all processes, differentiably.

    With ``y = sum_r x_r`` on every rank and the total loss taken as the sum
    of the ranks' losses (as DDP and SyncBatchNorm do), the gradient of
    ``x_r`` is the sum over ranks of the gradients of ``y``, so the backward
    pass is itself an all-reduce. The input is not modified.

    Like any collective, it must be called by every rank of ``group`` in the
    same order, in the forward and (when it is part of the graph) in the
    backward pass.

    Args:
        input (Tensor): Tensor of any shape, same shape and dtype on every
            rank.
        group (ProcessGroup, optional): The process group. ``None`` means
            the default (world) group.

    Returns:
        Tensor: The element-wise sum over ranks, same shape as ``input``.
        Without a multi-process group (``torch.distributed`` unavailable,
        not initialized, or one process), ``input`` itself.
    """
    if get_world_size(group) == 1:
        return input
    return _AllReduceSum.apply(input, group)
