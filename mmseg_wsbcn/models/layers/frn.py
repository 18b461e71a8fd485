# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
r"""Filter Response Normalization (FRN) with its Thresholded Linear Unit.

Paper: S. Singh and S. Krishnan, *Filter Response Normalization Layer:
Eliminating Batch Dependence in the Training of Deep Neural Networks*,
CVPR 2020 (arXiv:1911.09737), Algorithm 1. Reference code: timm's
``timm/layers/filter_response_norm.py`` (``FilterResponseNormTlu2d``;
``FilterResponseNormAct2d`` pairs FRN with another activation).

For an input ``x`` of shape ``(N, C, H, W)``, per sample ``n`` and channel
``c`` (no mean is subtracted; nothing is shared across the batch)::

    nu2[n, c]  = mean_{h, w} x[n, c, h, w] ** 2
    y          = gamma[c] * x / sqrt(nu2[n, c] + eps) + beta[c]
    out        = max(y, tau[c])                       # TLU (tlu=True)

``gamma, beta, tau`` have shape ``(C,)`` and start at 1, 0 and 0. With
``learnable_eps`` the constant is ``eps + |eps_l|`` with a learned scalar
``eps_l`` (the paper's remedy for 1x1 maps, where ``nu2 = x ** 2`` makes
FRN a near sign function); ``eps`` stays a lower bound. Output: the shape,
dtype and memory format of ``x``. The layer computes the same function in
training and in eval; batch 1 and 1x1 maps need no special case.

FRN with TLU is a normalization *and* an activation: it replaces a
``norm -> ReLU`` pair. In mmseg's heads (``ConvModule``) set
``act_cfg=None`` next to ``norm_cfg=dict(type='FRN')``. mmseg's
``ResNet`` / ``ResNetV1c`` blocks apply a fixed ``nn.ReLU`` after their
norms; where it directly follows this layer the pair computes ``max(y,
tau, 0) = max(y, max(tau, 0))``: FRN+TLU exactly while ``tau >= 0`` (as at
its initial 0), FRN+ReLU for a channel whose ``tau`` falls below 0. At the
end of a residual branch and on the projection shortcut the TLU runs
before the addition (the norm-activation ResNets of timm and of the
EvoNorm authors' TPU code have no activation there), and ResNet's ReLU
after the addition stays. ``tlu=False`` gives FRN alone.

Half-precision inputs (autocast's fp16/bf16) are computed in float32 with
autocast off, the output cast back, as :class:`~.BCN` does.
:func:`filter_response_norm` is the definition in plain tensor ops
(autograd differentiates it); :class:`FRN` is its module.
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

__all__ = ['FRN', 'filter_response_norm']


def _per_channel(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``(C,)`` -> ``(1, C, 1, 1)`` in ``dtype``."""
    return t.to(dtype).view(1, -1, 1, 1)


def filter_response_norm(x: Tensor,
                         weight: Optional[Tensor] = None,
                         bias: Optional[Tensor] = None,
                         tau: Optional[Tensor] = None,
                         eps: float = 1e-6,
                         learned_eps: Optional[Tensor] = None) -> Tensor:
    """FRN (and TLU when ``tau`` is given), functional form.

    Args:
        x (Tensor): ``(N, C, H, W)``.
        weight, bias (Tensor, optional): ``gamma, beta``, ``(C,)``.
        tau (Tensor, optional): TLU threshold, ``(C,)``; ``None``: no TLU.
        eps (float): Added to ``nu2`` (a lower bound with
            ``learned_eps``). Defaults to 1e-6.
        learned_eps (Tensor, optional): The learned ``eps_l`` (any shape
            that broadcasts to ``(N, C, 1, 1)``); ``|eps_l|`` is added.

    Returns:
        Tensor: ``max(gamma * x / sqrt(nu2 + eps) + beta, tau)``, dtype of
        ``x`` (computed in float32 for fp16/bf16).
    """
    dtype = stat_dtype(x)
    with _autocast_off(x.device.type):
        xs = x.to(dtype)
        nu2 = xs.square().mean(dim=(2, 3), keepdim=True)
        if learned_eps is not None:
            nu2 = nu2 + learned_eps.to(dtype).abs()
        y = xs * torch.rsqrt(nu2 + eps)
        if weight is not None:
            y = y * _per_channel(weight, dtype)
        if bias is not None:
            y = y + _per_channel(bias, dtype)
        if tau is not None:
            y = torch.maximum(y, _per_channel(tau, dtype))
    return y.to(x.dtype)


def _check_input(layer: str, x: Tensor, channels: int) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(N, channels, H, W)``."""
    if x.dim() != 4:
        raise ValueError(f'{layer} expects a 4-D input (N, C, H, W), got a '
                         f'{x.dim()}-D input of size {tuple(x.shape)}')
    if x.size(1) != channels:
        raise ValueError(f'{layer} was built for num_features={channels} '
                         f'channels, got an input with {x.size(1)} '
                         f'channels (size {tuple(x.shape)})')


def _check_args(num_features, eps, tlu, learnable_eps,
                learned_eps_init) -> None:
    """Validate :class:`FRN`'s arguments, naming the culprit."""
    if isinstance(num_features, bool) or not isinstance(num_features, int):
        raise TypeError(f'FRN: num_features must be an int, got '
                        f'{num_features!r}')
    if num_features <= 0:
        raise LayerArgumentError(f'FRN: num_features must be a positive '
                                 f'int, got {num_features}')
    for name, value in (('eps', eps), ('learned_eps_init', learned_eps_init)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f'FRN: {name} must be a float, got {value!r}')
    if not 0 < eps < math.inf:
        raise LayerArgumentError(
            f'FRN: eps must be a finite number > 0, got {eps}')
    if not math.isfinite(learned_eps_init):
        raise LayerArgumentError(f'FRN: learned_eps_init must be finite, '
                                 f'got {learned_eps_init}')
    for name, value in (('tlu', tlu), ('learnable_eps', learnable_eps)):
        if not isinstance(value, bool):
            raise TypeError(f'FRN: {name} must be a bool, got {value!r}')


@MODELS.register_module('FRN')
class FRN(nn.Module):
    """Filter Response Normalization + TLU (Singh & Krishnan, CVPR 2020).

    Input ``(N, C, H, W)``; output: same shape and dtype. See the module
    docstring for the formula. Built by ``mmcv.cnn.build_norm_layer`` as
    ``norm_cfg=dict(type='FRN', eps=1e-6)`` (``build_norm_layer`` passes
    ``eps=1e-5`` unless the config names it); abbreviation ``'frn'``.
    State-dict keys (timm's names)::

        weight       (C,)  gamma, init 1
        bias         (C,)  beta, init 0
        tau          (C,)  TLU threshold, init 0 (only with tlu=True)
        learned_eps  ()    eps_l (only with learnable_eps=True)

    Args:
        num_features (int): ``C``, the number of channels.
        eps (float): The constant added to ``nu2``, > 0; the lower bound
            of the learned one. Defaults to 1e-6 (the paper's).
        tlu (bool): Apply the TLU ``max(y, tau)``. Defaults to True.
        learnable_eps (bool): Add a learned ``|eps_l|`` to ``eps``.
            Defaults to False.
        learned_eps_init (float): The initial ``eps_l``. Defaults to 1e-4.
        device (torch.device, optional): Device of the parameters.
        dtype (torch.dtype, optional): Dtype of the parameters.

    Example:
        >>> from mmcv.cnn import build_norm_layer
        >>> name, layer = build_norm_layer(dict(type='FRN', eps=1e-6), 8)
        >>> name
        'frn'
        >>> layer(torch.randn(1, 8, 1, 1)).shape
        torch.Size([1, 8, 1, 1])
    """

    _abbr_ = 'frn'

    def __init__(self,
                 num_features: int,
                 eps: float = 1e-6,
                 tlu: bool = True,
                 learnable_eps: bool = False,
                 learned_eps_init: float = 1e-4,
                 device=None,
                 dtype=None) -> None:
        _check_args(num_features, eps, tlu, learnable_eps, learned_eps_init)
        super().__init__()
        factory = {'device': device, 'dtype': dtype}
        self.num_features = num_features
        self.eps = eps
        self.tlu = tlu
        self.learnable_eps = learnable_eps
        self.learned_eps_init = learned_eps_init
        self.weight = nn.Parameter(torch.empty(num_features, **factory))
        self.bias = nn.Parameter(torch.empty(num_features, **factory))
        self.tau: Optional[nn.Parameter] = None
        if tlu:
            self.tau = nn.Parameter(torch.empty(num_features, **factory))
        self.learned_eps: Optional[nn.Parameter] = None
        if learnable_eps:
            self.learned_eps = nn.Parameter(torch.empty((), **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``gamma = 1``, ``beta = tau = 0``, ``eps_l = learned_eps_init``.
        """
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)
        if self.tau is not None:
            nn.init.zeros_(self.tau)
        if self.learned_eps is not None:
            nn.init.constant_(self.learned_eps, self.learned_eps_init)

    def forward(self, x: Tensor) -> Tensor:
        """Normalize (and threshold) ``x`` of shape ``(N, C, H, W)``."""
        _check_input('FRN', x, self.num_features)
        return filter_response_norm(x, self.weight, self.bias, self.tau,
                                    self.eps, self.learned_eps)

    # -- the layer protocol (layer_kind.py) ------------------------------
    def layer_kind(self) -> LayerKind:
        """``LayerKind('norm', 'frn', 'FRN+TLU(eps=1e-06)')`` (``FRN``
        without TLU; ``, learned eps`` with ``learnable_eps``)."""
        name = 'FRN+TLU' if self.tlu else 'FRN'
        learned = ', learned eps' if self.learnable_eps else ''
        return LayerKind('norm', 'frn', f'{name}(eps={self.eps}{learned})')

    def extra_repr(self) -> str:
        return (f'{self.num_features}, eps={self.eps}, tlu={self.tlu}, '
                f'learnable_eps={self.learnable_eps}')
