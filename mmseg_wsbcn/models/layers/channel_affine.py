# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""A fixed per-channel affine: a BatchNorm (or BCN's batch step) in eval.
"""
from typing import Tuple

import torch
import torch.nn as nn
from torch import Tensor

__all__ = ['ChannelAffine', 'batch_norm_affine']


class ChannelAffine(nn.Module):
    """A fixed per-channel affine ``x * scale + shift`` (BCN's batch step in
    eval, where no conv could absorb it).

    Args:
        scale (Tensor): Shape ``(C,)``.
        shift (Tensor): Shape ``(C,)``.
    """

    def __init__(self, scale: Tensor, shift: Tensor) -> None:
        super().__init__()
        self.register_buffer('scale', scale.detach().clone().view(1, -1, 1, 1))
        self.register_buffer('shift', shift.detach().clone().view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Apply the affine to ``x`` of shape ``(N, C, H, W)``."""
        return x * self.scale + self.shift


def batch_norm_affine(bn: nn.Module) -> Tuple[Tensor, Tensor]:
    """The eval-mode per-channel ``(scale, shift)`` of a BatchNorm.

    ``scale = gamma / sqrt(running_var + eps)``, ``shift = beta - scale *
    running_mean``, computed in float64.

    Args:
        bn (nn.Module): A BatchNorm with running statistics (any
            ``_BatchNorm``, mmcv's ``SyncBatchNorm``, BCN's ``pbn``).

    Returns:
        tuple[Tensor, Tensor]: ``scale`` and ``shift``, float64, ``(C,)``.
    """
    mean = bn.running_mean.detach().double()
    var = bn.running_var.detach().double()
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach().double()
    shift = -mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach().double()
    return scale, shift
