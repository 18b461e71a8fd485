# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Small ``torch.distributed`` helpers for synchronized normalization.

The differentiable all-reduce follows detectron2's
``layers/wrappers.py::differentiable_all_reduce``: the forward pass sums a
tensor over all processes, and the backward pass sums the incoming
gradients over all processes, because every rank's output depends on
every rank's input.

Every helper degrades gracefully: when ``torch.distributed`` is not
available, not initialized, or has a single process, nothing is
communicated and the input comes back unchanged.
"""
from typing import Optional

import torch
import torch.distributed as dist
from torch import Tensor

ProcessGroup = Optional['dist.ProcessGroup']


def get_world_size(group: ProcessGroup = None) -> int:
    """Number of processes in ``group``, or 1 without a process group.

    Args:
        group (ProcessGroup, optional): The process group. ``None`` means
            the default (world) group.

    Returns:
        int: The group size; 1 when ``torch.distributed`` is unavailable
        or not initialized.
    """
    if not dist.is_available() or not dist.is_initialized():
        return 1
    return dist.get_world_size(group)


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
        Without a multi-process group, ``input`` itself.
    """
    if get_world_size(group) == 1:
        return input
    return _AllReduceSum.apply(input, group)


@torch.no_grad()
def all_reduce_sum(input: Tensor, group: ProcessGroup = None) -> Tensor:
    """Sum ``input`` over all processes, without gradient.

    Args:
        input (Tensor): Tensor of any shape, same shape and dtype on every
            rank. It is not modified.
        group (ProcessGroup, optional): The process group. ``None`` means
            the default (world) group.

    Returns:
        Tensor: The element-wise sum over ranks (a new tensor), or
        ``input`` itself without a multi-process group.
    """
    if get_world_size(group) == 1:
        return input
    output = input.clone(memory_format=torch.contiguous_format)
    dist.all_reduce(output, op=dist.ReduceOp.SUM, group=group)
    return output
