# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Weight Standardization (WS) for 2-D convolutions.

Paper: "Micro-Batch Training with Batch-Channel Normalization and Weight
Standardization", Siyuan Qiao, Huiyu Wang, Chenxi Liu, Wei Shen and Alan
Yuille, arXiv:1903.10520. Authors' code:
https://github.com/joe-siyuan-qiao/WeightStandardization

A conv weight ``W`` of shape ``(O, I / groups, kh, kw)`` is standardized per
output channel ``o`` over its ``n = (I / groups) * kh * kw`` fan-in elements,
and the convolution runs with ``W_hat`` in place of ``W``::

    mu_o  = sum(W[o]) / n
    var_o = sum((W[o] - mu_o) ** 2) / (n - 1)        # unbiased variance

    'std' form:  W_hat[o] = (W[o] - mu_o) / (sqrt(var_o) + eps)
    'var' form:  W_hat[o] = (W[o] - mu_o) / sqrt(var_o + eps)    # default

The ``std`` form is the one of the WS README and of the authors' GN+WS
ImageNet, COCO and DeepLab code (and of mmcv's ``ConvWS2d``); the ``var``
form is the one of the authors' BCN+WS ImageNet models. The bias is never
standardized and there is no gain.

Contents: :func:`weight_standardize`, the definition in plain tensor ops
(autograd differentiates it); the registered :class:`WSConv2d`
(``conv_cfg=dict(type='WSConv2d')``), whose training pass fuses WS with the
conv so that no standardized copy of the weights is kept for the backward
pass, and :meth:`WSConv2d.to_conv2d` (for inference, :func:`~mmseg_wsbcn.
models.utils.fold_ws_conv` turns a model's WS convs into plain ones).
"""
import contextlib
import math
from typing import ClassVar, Dict, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable
from torch.nn.common_types import _size_2_t

from ...utils.errors import LayerArgumentError
from .layer_kind import LayerKind

__all__ = ['weight_standardize', 'WSConv2d']

_MODES = ('std', 'var')


def _check_eps_mode(eps: float, mode: str) -> None:
    """Raise ``ValueError`` for a bad ``eps`` or ``mode``."""
    if mode not in _MODES:
        raise LayerArgumentError(
            f'mode must be one of {_MODES}, got mode={mode!r}')
    if (isinstance(eps, bool) or not isinstance(eps, (int, float))
            or not 0 < eps < math.inf):
        raise LayerArgumentError(
            f'eps must be a finite number > 0, got eps={eps!r}')


def _check_fan_in(shape: torch.Size) -> int:
    """The fan-in ``n`` of a weight of ``shape``; ``ValueError`` when it
    is below 2 (the unbiased variance is undefined)."""
    if len(shape) < 2:
        raise LayerArgumentError(
            'weight_standardize expects a weight of shape '
            f'(O, I / groups, *kernel_size), got shape {tuple(shape)}')
    n = math.prod(shape[1:])
    if n < 2:
        raise LayerArgumentError(
            f'Weight Standardization needs a fan-in of at least 2 '
            f'elements per output channel, but the weight of shape '
            f'{tuple(shape)} has n = (in_channels / groups) * kh * kw = '
            f'{n}; the unbiased variance over n - 1 = {n - 1} is undefined. '
            f'Use a plain nn.Conv2d for this layer.')
    return n


def _autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast disabled on ``device_type`` (the layers pick their
    dtypes)."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def _calc_dtype(weight: Tensor) -> torch.dtype:
    """Float64 for a float64 weight, else float32."""
    return torch.float64 if weight.dtype == torch.float64 else torch.float32


def _standardize_rows(w: Tensor, eps: float,
                      mode: str) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """``W_hat = (w - mean) * scale`` of a ``(O, n)`` weight, with the row
    ``mean``, ``scale`` and unbiased ``std``, each ``(O, 1)``."""
    mean = w.mean(1, keepdim=True)
    centred = w - mean
    # the norm of the centred rows: no cancellation, and a zero gradient
    # (not NaN) for a constant row
    std = torch.linalg.vector_norm(
        centred, dim=1, keepdim=True) / math.sqrt(w.size(1) - 1)
    if mode == 'var':
        scale = torch.rsqrt(std.square() + eps)
    else:
        scale = 1 / (std + eps)
    return centred * scale, mean, scale, std


def weight_standardize(weight: Tensor,
                       eps: float = 1e-5,
                       mode: str = 'var') -> Tensor:
    """Standardize a conv weight per output channel (the definition).

    See the module docstring for the two forms. Plain tensor ops over the
    weight viewed as ``(O, n)``, differentiated by autograd. For a constant
    filter (zero variance) the gradient is the finite ``(g - mean(g)) /
    eps`` (``std``) or ``(g - mean(g)) / sqrt(eps)`` (``var``), not NaN.
    The statistics are computed in float32 (float64 for a float64 weight)
    with autocast disabled, so mixed precision training sees the ``W_hat``
    of float32 training; the result has the weight's dtype.

    Args:
        weight (Tensor): Conv weight ``(O, I / groups, kh, kw)`` (any
            ``(O, ...)`` shape, any memory format).
        eps (float): Added to the unbiased std (``std``) or variance
            (``var``). Must be > 0. Defaults to 1e-5.
        mode (str): ``'var'`` (default, BCN+WS) or ``'std'`` (GN+WS, as
            mmcv ``ConvWS2d``).

    Returns:
        Tensor: ``W_hat``, shape and dtype of ``weight`` (contiguous).

    Raises:
        ValueError: If ``mode`` is not ``'std'``/``'var'``, ``eps <= 0``, or
            the fan-in ``n`` is below 2.
    """
    _check_eps_mode(eps, mode)
    n = _check_fan_in(weight.shape)
    with _autocast_off(weight.device.type):
        w = weight.to(_calc_dtype(weight)).reshape(weight.size(0), n)
        w_hat = _standardize_rows(w, eps, mode)[0]
    return w_hat.reshape(weight.shape).to(weight.dtype)


class _WSConv2dFunction(Function):
    """WS then ``conv2d``, saving only the input, the raw weight and the
    per-row statistics for the backward pass.

    The backward pass recomputes ``W_hat`` from the saved row means and
    scales (the same values), runs the convolution's backward, and turns
    the gradient ``g`` of ``W_hat`` into that of ``W``; with ``k = sum(g *
    W_hat) / (n - 1)`` per row::

        'var':  scale * (g - mean(g) - W_hat * k)
        'std':  scale * (g - mean(g) - W_hat * k * (std + eps) / std)

    (0 for the last term of a constant ``'std'`` row, its limit). Under
    autocast the conv runs in the autocast dtype, as ``F.conv2d`` would,
    and the standardization in float32.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor],
                eps: float, mode: str, stride, padding, dilation,
                groups: int) -> Tensor:
        device_type = x.device.type
        cast = (
            torch.get_autocast_dtype(device_type)
            if torch.is_autocast_enabled(device_type) else weight.dtype)
        bias_dtype = None if bias is None else bias.dtype
        with _autocast_off(device_type):
            w = weight.to(_calc_dtype(weight)).reshape(weight.size(0), -1)
            w_hat, mean, scale, std = _standardize_rows(w, eps, mode)
            x = x.to(cast)
            out = F.conv2d(x,
                           w_hat.view(weight.shape).to(cast),
                           _cast(bias,
                                 cast), stride, padding, dilation, groups)
        ctx.save_for_backward(x, weight, mean, scale, std)
        ctx.conf = (mode, stride, padding, dilation, groups, cast, bias_dtype)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, weight, mean, scale, std = ctx.saved_tensors
        mode, stride, padding, dilation, groups, cast, bias_dtype = ctx.conf
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        with _autocast_off(x.device.type):
            w = weight.to(_calc_dtype(weight)).reshape(weight.size(0), -1)
            w_hat = (w - mean).mul_(scale)
            grad_x, g, grad_b = torch.ops.aten.convolution_backward(
                grad.to(x.dtype), x,
                w_hat.view(weight.shape).to(cast),
                None if bias_dtype is None else [weight.size(0)], list(stride),
                list(padding), list(dilation), False, [0, 0], groups,
                [need_x, need_w, need_b and bias_dtype is not None])
            grad_w = None
            if need_w:
                g = g.to(w_hat.dtype).reshape(w_hat.shape)
                k = torch.linalg.vecdot(
                    g, w_hat, dim=1).unsqueeze(1) / (
                        w_hat.size(1) - 1)
                if mode == 'std':
                    k = torch.where(std > 0, k / (scale * std), 0.)
                g = g - g.mean(1, keepdim=True)
                grad_w = g.addcmul_(w_hat, k, value=-1).mul_(scale)
                grad_w = grad_w.view(weight.shape).to(weight.dtype)
        return (grad_x, grad_w, _cast(grad_b, bias_dtype), None, None, None,
                None, None, None)


def _cast(t: Optional[Tensor], dtype) -> Optional[Tensor]:
    return None if t is None else t.to(dtype)


@MODELS.register_module('WSConv2d')
class WSConv2d(nn.Conv2d):
    """Conv2d with Weight Standardization (Qiao et al., arXiv:1903.10520).

    Convolves with :func:`weight_standardize` of ``self.weight``, computed
    at every forward; the bias (if any) is used as is. When autograd records
    the weight, WS and the conv run as one function that keeps no
    standardized copy of the weight for the backward pass. Parameters and
    state-dict keys are those of ``nn.Conv2d``: the raw weight is stored,
    as in the authors' and mmcv's checkpoints. Put it on convs followed by
    a norm layer; keep classifier convs plain.

    Shapes: input ``(N, in_channels, H, W)``, output as ``nn.Conv2d``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation,
        groups, bias, padding_mode, device, dtype: As ``nn.Conv2d``, so
            ``mmcv.cnn.build_conv_layer(dict(type='WSConv2d'), ...)`` swaps
            it in for any conv.
        eps (float): Keyword-only. See :func:`weight_standardize`.
            Defaults to 1e-5.
        mode (str): Keyword-only. ``'var'`` (default) or ``'std'``.

    Raises:
        ValueError: If ``mode``/``eps`` are invalid or the fan-in
            ``(in_channels / groups) * kh * kw`` is 1 (e.g. a depthwise 1x1
            conv), for which the unbiased variance is undefined.

    Example:
        >>> from mmcv.cnn import build_conv_layer
        >>> conv = build_conv_layer(dict(type='WSConv2d'), 16, 32, 3)
        >>> conv(torch.randn(2, 16, 8, 8)).shape
        torch.Size([2, 32, 6, 6])
    """

    # No standardized weight is kept between calls (fold_ws_conv is the
    # inference path); None for code written against the former eval cache.
    _ws_cache = None

    #: The allowed values of the arguments with a fixed set, checked in the
    #: config before the model is built (``launch/build_checks.py``).
    argument_choices: ClassVar[Dict[str, Tuple[str, ...]]] = {'mode': _MODES}

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
                 dtype: Optional[torch.dtype] = None,
                 *,
                 eps: float = 1e-5,
                 mode: str = 'var') -> None:
        _check_eps_mode(eps, mode)
        super().__init__(in_channels, out_channels, kernel_size, stride,
                         padding, dilation, groups, bias, padding_mode, device,
                         dtype)
        _check_fan_in(self.weight.shape)
        self.eps = eps
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        """Convolve ``x`` with the standardized weight.

        Args:
            x (Tensor): Input of shape ``(N, in_channels, H, W)``.

        Returns:
            Tensor: Output of shape ``(N, out_channels, H_out, W_out)``.
        """
        if x.dim() != 4:
            raise ValueError(
                f'{self.__class__.__name__} expects a 4-D input of shape '
                f'(N, C, H, W), got shape {tuple(x.shape)}')
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f'{self.__class__.__name__} expected in_channels='
                f'{self.in_channels}, got an input with {x.shape[1]} '
                f'channels (shape {tuple(x.shape)})')
        # The fused function is for autograd; a JIT trace (FLOP counting
        # with mmengine.analysis, ONNX export) sees only standard ops.
        if (torch.is_grad_enabled() and self.weight.requires_grad
                and not isinstance(self.padding, str)
                and not torch.jit.is_tracing()):
            padding = self.padding
            if self.padding_mode != 'zeros':
                x = F.pad(
                    x,
                    self._reversed_padding_repeated_twice,
                    mode=self.padding_mode)
                padding = (0, 0)
            return _WSConv2dFunction.apply(x, self.weight, self.bias, self.eps,
                                           self.mode, self.stride, padding,
                                           self.dilation, self.groups)
        return self._conv_forward(
            x, weight_standardize(self.weight, self.eps, self.mode), self.bias)

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, eps={self.eps}, mode={self.mode!r}'

    # -- the layer protocol (layer_kind.py) ------------------------------
    def layer_kind(self) -> LayerKind:
        """``LayerKind('conv', 'ws_conv', 'WSConv2d(mode=var)')`` (or
        ``mode=std``)."""
        return LayerKind('conv', 'ws_conv', f'WSConv2d(mode={self.mode})')

    def eval_form(self) -> nn.Conv2d:
        """The plain conv of :meth:`to_conv2d` (what deployment folding
        puts in its place)."""
        return self.to_conv2d()

    def to_conv2d(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` computing the same outputs: the same
        hyper-parameters, device, dtype and ``requires_grad`` flags, a copy
        of ``W_hat`` as its weight and of the bias (hooks are not carried
        over; ``self`` is unchanged)."""
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size,
                         self.stride, self.padding, self.dilation, self.groups,
                         self.bias is not None, self.padding_mode,
                         self.weight.device, self.weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(
                weight_standardize(self.weight, self.eps, self.mode))
            conv.weight.requires_grad_(self.weight.requires_grad)
            if self.bias is not None:
                conv.bias.copy_(self.bias)
                conv.bias.requires_grad_(self.bias.requires_grad)
        conv.train(self.training)
        return conv
