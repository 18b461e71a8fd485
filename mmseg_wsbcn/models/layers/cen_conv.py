# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Conv2d with centred weights (weight centralization), MABN's conv.

Paper: J. Yan, R. Wan, X. Zhang, W. Zhang, Y. Wei and J. Sun, *Towards
Stabilizing Batch Statistics in Backward Propagation of Batch
Normalization*, ICLR 2020. Authors' code: ``megvii-model/MABN`` on GitHub
(``MABN.py``, class ``CenConv2d``).

A conv weight ``W`` of shape ``(O, I / groups, kh, kw)`` is centred per
output channel ``o`` over its ``n = (I / groups) * kh * kw`` fan-in
elements, and the convolution runs with ``W_hat`` in place of ``W``::

    W_hat[o] = W[o] - mean(W[o])

No division (unlike Weight Standardization): :class:`~.mabn.MABN`
normalizes by the second moment without subtracting a mean, and centred
weights keep the conv's output mean near 0 in its place. The bias (if
any) is used as is. Autograd differentiates the centring (its gradient is
the upstream gradient minus its per-row mean).

What differs from the authors' class: the signature, defaults and
initialization are ``nn.Conv2d``'s (theirs takes only square kernels,
``bias=False`` by default and draws the weight from ``randn``), so that
``conv_cfg=dict(type='CenConv2d')`` can replace any conv; OpenMMLab's
``ConvModule`` turns the bias off in front of a norm. The centring runs
in float32 for half-precision weights.
"""
from typing import Optional, Union

import torch
import torch.nn as nn
from mmengine.registry import MODELS
from torch import Tensor
from torch.nn.common_types import _size_2_t

from ...utils.errors import LayerArgumentError
from .layer_kind import LayerKind
from .ws_conv import _autocast_off

__all__ = ['CenConv2d', 'centre_weight']


def centre_weight(weight: Tensor) -> Tensor:
    """``W - mean(W)`` per output channel, over the fan-in (autograd).

    Args:
        weight (Tensor): Conv weight ``(O, I / groups, kh, kw)``.

    Returns:
        Tensor: ``W_hat``, shape and dtype of ``weight``.
    """
    dims = tuple(range(1, weight.dim()))
    with _autocast_off(weight.device.type):
        w = weight.float() if weight.dtype in (torch.float16,
                                               torch.bfloat16) else weight
        return (w - w.mean(dims, keepdim=True)).to(weight.dtype)


@MODELS.register_module('CenConv2d')
class CenConv2d(nn.Conv2d):
    """Conv2d with weight centralization (Yan et al., ICLR 2020).

    Convolves with :func:`centre_weight` of ``self.weight``, computed at
    every forward. Parameters and state-dict keys are those of
    ``nn.Conv2d`` (the raw weight is stored). Put it in front of
    :class:`~.mabn.MABN`.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation,
        groups, bias, padding_mode, device, dtype: As ``nn.Conv2d``, so
            ``mmcv.cnn.build_conv_layer(dict(type='CenConv2d'), ...)``
            swaps it in for any conv.

    Raises:
        ValueError: If the fan-in ``(in_channels / groups) * kh * kw`` is 1
            (e.g. a depthwise 1x1 conv): the centred weight would be 0.

    Example:
        >>> from mmcv.cnn import build_conv_layer
        >>> conv = build_conv_layer(dict(type='CenConv2d'), 16, 32, 3)
        >>> conv(torch.randn(2, 16, 8, 8)).shape
        torch.Size([2, 32, 6, 6])
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: _size_2_t,
                 stride: _size_2_t = 1,
                 padding: Union[str, _size_2_t] = 0,
                 dilation: _size_2_t = 1,
                 groups: int = 1,
                 bias: bool = True,
                 padding_mode: str = 'zeros',
                 device: Optional[torch.device] = None,
                 dtype: Optional[torch.dtype] = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride,
                         padding, dilation, groups, bias, padding_mode, device,
                         dtype)
        fan_in = self.weight[0].numel()
        if fan_in < 2:
            raise LayerArgumentError(
                f'CenConv2d needs a fan-in of at least 2 elements per output '
                f'channel, but the weight of shape '
                f'{tuple(self.weight.shape)} has (in_channels / groups) * kh '
                f'* kw = {fan_in}: its centred weight would be 0. Use a '
                f'plain nn.Conv2d for this layer.')

    def forward(self, x: Tensor) -> Tensor:
        """Convolve ``x`` ``(N, in_channels, H, W)`` with the centred
        weight."""
        if x.dim() != 4:
            raise ValueError(
                f'{type(self).__name__} expects a 4-D input of shape '
                f'(N, C, H, W), got shape {tuple(x.shape)}')
        return self._conv_forward(x, centre_weight(self.weight), self.bias)

    # -- the layer protocol (layer_kind.py) ------------------------------
    def layer_kind(self) -> LayerKind:
        """``LayerKind('conv', 'cen_conv', 'CenConv2d')``."""
        return LayerKind('conv', 'cen_conv', 'CenConv2d')

    def eval_form(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` computing the same outputs: the same
        hyper-parameters, device, dtype and ``requires_grad`` flags, the
        centred weight and a copy of the bias (``self`` is unchanged)."""
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size,
                         self.stride, self.padding, self.dilation, self.groups,
                         self.bias is not None, self.padding_mode,
                         self.weight.device, self.weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(centre_weight(self.weight))
            conv.weight.requires_grad_(self.weight.requires_grad)
            if self.bias is not None:
                conv.bias.copy_(self.bias)
                conv.bias.requires_grad_(self.bias.requires_grad)
        conv.train(self.training)
        return conv
