# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
r"""EvoNorm-S0: a batch-independent normalization-activation layer.

Paper: H. Liu, A. Brock, K. Simonyan and Q. V. Le, *Evolving
Normalization-Activation Layers*, NeurIPS 2020 (arXiv:2004.02967), its
pseudo-code in Appendix A. Reference code: the authors' TensorFlow
``evonorm`` in ``tensorflow/tpu`` ``models/official/resnet/
resnet_model.py``, and timm's ``timm/layers/evo_norm.py`` (``EvoNorm2dS0``).

For an input ``x`` of shape ``(N, C, H, W)`` whose ``C`` channels form
``G`` groups of ``C // G``::

    group_std[n, g] = sqrt(var_{c in g, h, w}(x[n]) + eps)   # biased var
    out[n, c] = x * sigmoid(v[c] * x) / group_std[n, g(c)] * gamma[c]
                + beta[c]

``v, gamma, beta`` have shape ``(C,)`` and start at 1, 1 and 0. The
statistics are per sample (GroupNorm's), so the layer computes the same
function in training and eval and at any batch size; 1x1 maps still have
``C // G`` values per group. Output: the shape and dtype of ``x``.

The activation is built in (``x * sigmoid(v * x)`` is a SiLU with a
learned slope): in mmseg's heads set ``act_cfg=None`` next to
``norm_cfg=dict(type='EvoNormS0')``. mmseg's ``ResNet`` / ``ResNetV1c``
apply a fixed ``nn.ReLU`` after their norms; where it directly follows
this layer it clips the layer's negative outputs, and at the end of a
residual branch and on the projection shortcut the layer's activation runs
before the addition (the authors' ResNet uses ``gamma * x + beta`` alone
there, with ReLU after the addition).

Half-precision inputs (autocast's fp16/bf16) are computed in float32 with
autocast off, the output cast back, as :class:`~.BCN` does.
:func:`evonorm_s0` is the definition in plain tensor ops (autograd
differentiates it); :class:`EvoNormS0` is its module.
"""
import math
from typing import Optional

import torch
import torch.nn as nn
from mmengine.registry import MODELS
from torch import Tensor

from ...utils.errors import LayerArgumentError
from .bcn_function import stat_dtype
from .layer_kind import LayerKind
from .ws_conv import _autocast_off

__all__ = ['EvoNormS0', 'evonorm_s0']


def evonorm_s0(x: Tensor,
               num_groups: int,
               v: Tensor,
               weight: Optional[Tensor] = None,
               bias: Optional[Tensor] = None,
               eps: float = 1e-5) -> Tensor:
    """EvoNorm-S0, functional form.

    Args:
        x (Tensor): ``(N, C, H, W)``.
        num_groups (int): ``G``, must divide ``C``.
        v (Tensor): The activation's slope, ``(C,)``.
        weight, bias (Tensor, optional): ``gamma, beta``, ``(C,)``.
        eps (float): Added to the group variance. Defaults to 1e-5.

    Returns:
        Tensor: ``x * sigmoid(v * x) / group_std(x) * gamma + beta``,
        dtype of ``x`` (computed in float32 for fp16/bf16).
    """
    dtype = stat_dtype(x)
    n, c, h, w = x.shape
    group_shape = (n, num_groups, c // num_groups * h * w)
    with _autocast_off(x.device.type):
        xs = x.to(dtype)
        var = xs.reshape(group_shape).var(dim=2, unbiased=False, keepdim=True)
        num = xs * torch.sigmoid(xs * v.to(dtype).view(1, -1, 1, 1))
        out = (num.reshape(group_shape) * torch.rsqrt(var + eps)).view(x.shape)
        if weight is not None:
            out = out * weight.to(dtype).view(1, -1, 1, 1)
        if bias is not None:
            out = out + bias.to(dtype).view(1, -1, 1, 1)
    return out.to(x.dtype)


def _check_args(num_features, num_groups, eps) -> None:
    """Validate :class:`EvoNormS0`'s arguments, naming the culprit."""
    for name, value in (('num_features', num_features), ('num_groups',
                                                         num_groups)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f'EvoNormS0: {name} must be an int, got '
                            f'{value!r}')
        if value <= 0:
            raise LayerArgumentError(f'EvoNormS0: {name} must be a '
                                     f'positive int, got {value}')
    if num_features % num_groups != 0:
        raise LayerArgumentError(f'EvoNormS0: num_groups={num_groups} must '
                                 f'divide num_features={num_features}')
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise TypeError(f'EvoNormS0: eps must be a float, got {eps!r}')
    if not 0 < eps < math.inf:
        raise LayerArgumentError(
            f'EvoNormS0: eps must be a finite number > 0, got {eps}')


@MODELS.register_module('EvoNormS0')
class EvoNormS0(nn.Module):
    """EvoNorm-S0 (Liu et al., NeurIPS 2020): GroupNorm's statistics, a
    SiLU-like activation with a learned slope, no mean subtraction.

    Input ``(N, C, H, W)``; output: same shape and dtype. See the module
    docstring for the formula. Built by ``mmcv.cnn.build_norm_layer`` as
    ``norm_cfg=dict(type='EvoNormS0', num_groups=32)``; abbreviation
    ``'evonorm'``. State-dict keys (timm's names)::

        weight  (C,)  gamma, init 1
        bias    (C,)  beta, init 0
        v       (C,)  activation slope, init 1

    Args:
        num_features (int): ``C``, the number of channels.
        num_groups (int): ``G``; must divide ``num_features``. Defaults
            to 32 (the paper's).
        eps (float): Added to the group variance. Defaults to 1e-5.
        device (torch.device, optional): Device of the parameters.
        dtype (torch.dtype, optional): Dtype of the parameters.

    Example:
        >>> from mmcv.cnn import build_norm_layer
        >>> name, layer = build_norm_layer(
        ...     dict(type='EvoNormS0', num_groups=2), 8)
        >>> name
        'evonorm'
        >>> layer(torch.randn(1, 8, 1, 1)).shape
        torch.Size([1, 8, 1, 1])
    """

    _abbr_ = 'evonorm'

    def __init__(self,
                 num_features: int,
                 num_groups: int = 32,
                 eps: float = 1e-5,
                 device=None,
                 dtype=None) -> None:
        _check_args(num_features, num_groups, eps)
        super().__init__()
        factory = {'device': device, 'dtype': dtype}
        self.num_features = num_features
        self.num_groups = num_groups
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(num_features, **factory))
        self.bias = nn.Parameter(torch.empty(num_features, **factory))
        self.v = nn.Parameter(torch.empty(num_features, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``gamma = v = 1``, ``beta = 0``."""
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)
        nn.init.ones_(self.v)

    def forward(self, x: Tensor) -> Tensor:
        """Normalize and activate ``x`` of shape ``(N, C, H, W)``."""
        if x.dim() != 4 or x.size(1) != self.num_features:
            raise ValueError(f'EvoNormS0 expects an input (N, '
                             f'{self.num_features}, H, W), got size '
                             f'{tuple(x.shape)}')
        return evonorm_s0(x, self.num_groups, self.v, self.weight, self.bias,
                          self.eps)

    # -- the layer protocol (layer_kind.py) ------------------------------
    def layer_kind(self) -> LayerKind:
        """``LayerKind('norm', 'evonorm-s0', 'EvoNorm-S0(G=32)')``."""
        return LayerKind('norm', 'evonorm-s0',
                         f'EvoNorm-S0(G={self.num_groups})')

    def extra_repr(self) -> str:
        return (f'{self.num_features}, num_groups={self.num_groups}, '
                f'eps={self.eps}')
