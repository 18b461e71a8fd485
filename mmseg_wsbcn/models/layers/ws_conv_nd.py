# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Weight Standardization for 1-D and 3-D convolutions.

The same standardization as :class:`~.ws_conv.WSConv2d` (Qiao et al.,
arXiv:1903.10520), asked for in the WS repository's issues for temporal
(``Conv1d``) and video / volumetric (``Conv3d``) networks: a weight ``W``
of shape ``(O, I / groups, *kernel_size)`` is standardized per output
channel over its ``n = (I / groups) * prod(kernel_size)`` fan-in values,
with the unbiased variance::

    'var' form:  W_hat[o] = (W[o] - mu_o) / sqrt(var_o + eps)    # default
    'std' form:  W_hat[o] = (W[o] - mu_o) / (sqrt(var_o) + eps)

It is :func:`~.ws_conv.weight_standardize` itself (it reads any weight as
``(O, n)``): float32 statistics (float64 for a float64 weight) with
autocast off, so mixed precision convolves the ``W_hat`` of float32
training in the autocast dtype. Autograd differentiates it; unlike
``WSConv2d``'s fused training pass this keeps one standardized copy of the
weight for the backward pass (small next to 1-D / 3-D activations).
"""
import math
from typing import ClassVar, Dict, Tuple, Type

import torch
import torch.nn as nn
from mmengine.registry import MODELS
from torch import Tensor

from ...utils.errors import LayerArgumentError
from .layer_kind import LayerKind
from .ws_conv import _MODES, _check_eps_mode, weight_standardize

__all__ = ['WSConv1d', 'WSConv3d']

_SHAPES = {1: '(N, C, L)', 3: '(N, C, D, H, W)'}
_KERNEL = {1: 'k', 3: 'kd * kh * kw'}


class _WSConvNd:
    """What ``WSConv1d`` and ``WSConv3d`` share, on top of their
    ``nn.ConvNd`` (the class attributes ``_plain`` and ``_dims`` say
    which)."""

    _plain: ClassVar[Type[nn.Module]]
    _dims: ClassVar[int]

    #: The allowed values of the arguments with a fixed set, checked in the
    #: config before the model is built (``launch/build_checks.py``).
    argument_choices: ClassVar[Dict[str, Tuple[str, ...]]] = {'mode': _MODES}

    def __init__(self,
                 *args,
                 eps: float = 1e-5,
                 mode: str = 'var',
                 **kwargs) -> None:
        """``nn.Conv1d`` / ``nn.Conv3d``'s arguments (positional or by
        name), then the keyword-only ``eps`` and ``mode``."""
        _check_eps_mode(eps, mode)
        self._plain.__init__(self, *args, **kwargs)
        self._init_ws(eps, mode)

    def _init_ws(self, eps: float, mode: str) -> None:
        n = math.prod(self.weight.shape[1:])
        if n < 2:
            raise LayerArgumentError(
                f'{type(self).__name__} needs a fan-in of at least 2 '
                f'elements per output channel, but the weight of shape '
                f'{tuple(self.weight.shape)} has n = (in_channels / groups) '
                f'* {_KERNEL[self._dims]} = {n}; the unbiased variance over '
                f'n - 1 = {n - 1} is undefined. Use a plain '
                f'{self._plain.__name__} for this layer.')
        self.eps = eps
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        """Convolve ``x`` of shape ``(N, in_channels, *spatial)`` with the
        standardized weight."""
        if x.dim() != self._dims + 2:
            raise ValueError(
                f'{type(self).__name__} expects a {self._dims + 2}-D input '
                f'of shape {_SHAPES[self._dims]}, got shape '
                f'{tuple(x.shape)}')
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f'{type(self).__name__} expected in_channels='
                f'{self.in_channels}, got an input with {x.shape[1]} '
                f'channels (shape {tuple(x.shape)})')
        return self._conv_forward(
            x, weight_standardize(self.weight, self.eps, self.mode), self.bias)

    def extra_repr(self) -> str:
        return (f'{super().extra_repr()}, eps={self.eps}, '
                f'mode={self.mode!r}')

    # -- the layer protocol (layer_kind.py) ------------------------------
    def layer_kind(self) -> LayerKind:
        """``LayerKind('conv', 'ws_conv', 'WSConv1d(mode=var)')`` (the
        class name and mode vary): a WS conv, as ``WSConv2d``."""
        return LayerKind('conv', 'ws_conv',
                         f'{type(self).__name__}(mode={self.mode})')

    def eval_form(self) -> nn.Module:
        """The plain conv of :meth:`to_conv`."""
        return self.to_conv()

    def to_conv(self) -> nn.Module:
        """A plain ``nn.Conv1d`` / ``nn.Conv3d`` computing the same
        outputs: the same hyper-parameters, device, dtype, training flag
        and ``requires_grad`` flags, a copy of ``W_hat`` as its weight and
        of the bias (``self`` is unchanged)."""
        conv = self._plain(self.in_channels, self.out_channels,
                           self.kernel_size, self.stride, self.padding,
                           self.dilation, self.groups, self.bias is not None,
                           self.padding_mode, self.weight.device,
                           self.weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(
                weight_standardize(self.weight, self.eps, self.mode))
            conv.weight.requires_grad_(self.weight.requires_grad)
            if self.bias is not None:
                conv.bias.copy_(self.bias)
                conv.bias.requires_grad_(self.bias.requires_grad)
        conv.train(self.training)
        return conv


@MODELS.register_module('WSConv1d')
class WSConv1d(_WSConvNd, nn.Conv1d):
    """Conv1d with Weight Standardization (see the module docstring).

    Parameters and state-dict keys are ``nn.Conv1d``'s (the raw weight is
    stored). Input ``(N, in_channels, L)``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation,
        groups, bias, padding_mode, device, dtype: As ``nn.Conv1d``, so
            ``mmcv.cnn.build_conv_layer(dict(type='WSConv1d'), ...)`` swaps
            it in for any 1-D conv.
        eps (float): Keyword-only. Defaults to 1e-5.
        mode (str): Keyword-only. ``'var'`` (default) or ``'std'``.

    Raises:
        ValueError: If ``mode``/``eps`` are invalid or the fan-in
            ``(in_channels / groups) * k`` is 1.
    """

    _plain = nn.Conv1d
    _dims = 1


@MODELS.register_module('WSConv3d')
class WSConv3d(_WSConvNd, nn.Conv3d):
    """Conv3d with Weight Standardization (see the module docstring).

    Parameters and state-dict keys are ``nn.Conv3d``'s (the raw weight is
    stored). Input ``(N, in_channels, D, H, W)``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation,
        groups, bias, padding_mode, device, dtype: As ``nn.Conv3d``, so
            ``mmcv.cnn.build_conv_layer(dict(type='WSConv3d'), ...)`` swaps
            it in for any 3-D conv.
        eps (float): Keyword-only. Defaults to 1e-5.
        mode (str): Keyword-only. ``'var'`` (default) or ``'std'``.

    Raises:
        ValueError: If ``mode``/``eps`` are invalid or the fan-in
            ``(in_channels / groups) * kd * kh * kw`` is 1.
    """

    _plain = nn.Conv3d
    _dims = 3
