# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
r"""EvoNorm-B0: a batch-dependent normalization-activation layer.

Paper: H. Liu, A. Brock, K. Simonyan and Q. V. Le, *Evolving
Normalization-Activation Layers*, NeurIPS 2020 (arXiv:2004.02967), its
pseudo-code in Appendix A. Reference code: the authors' TensorFlow
``evonorm`` in ``tensorflow/tpu`` ``models/official/resnet/
resnet_model.py``, and timm's ``timm/layers/evo_norm.py`` (``EvoNorm2dB0``).

For an input ``x`` of shape ``(N, C, H, W)``::

    batch_std[c]    = sqrt(s2[c] + eps)
    inst_std[n, c]  = sqrt(var_{h, w}(x[n, c]) + eps)         # biased var
    out = x / max(batch_std[c], v[c] * x + inst_std[n, c]) * gamma[c]
          + beta[c]

``v, gamma, beta`` have shape ``(C,)`` and start at 1, 1 and 0. ``s2`` is,
in training, the biased variance of ``x`` over ``(N, H, W)`` with gradient
through it, and in eval the buffer ``running_var`` (init 1). Each training
step updates it as BatchNorm does, with ``momentum`` (default 0.1) and the
unbiased batch variance ``s2 * n / (n - 1)`` for ``n = N * H * W`` values
per channel (timm's rule; the authors' code keeps the biased one). With
``n = 1`` (batch 1 on a 1x1 map, the ASPP image-pooling branch) the batch
variance is 0 and has no unbiased form: the running variance then moves
towards 0, the variance the step normalized with. Output: the shape and
dtype of ``x``.

The activation is built in (the ``max`` in the denominator): in mmseg's
heads set ``act_cfg=None`` next to ``norm_cfg=dict(type='EvoNormB0')``.
mmseg's ``ResNet`` / ``ResNetV1c`` apply a fixed ``nn.ReLU`` after their
norms; where it directly follows this layer it clips the layer's negative
outputs, and at the end of a residual branch and on the projection
shortcut the layer runs whole before the addition (the authors' ResNet
uses ``gamma * x + beta`` alone there, with ReLU after the addition).

Several processes: with ``sync=True`` (default) and ``torch.distributed``
running more than one process, the training variance covers the global
batch. The per-channel sums of ``x`` and then of ``(x - mean) ** 2`` and the
value counts are all-reduced by a differentiable all-reduce (its backward
all-reduces the gradients), so the gradient flows across processes as in
``SyncBatchNorm``, unequal per-rank batches (0 included) give the exact
global variance, and every rank holds the same running variance. Every rank
must then run the layer (and its backward pass) the same number of times in
the same order. ``sync=False``: per-process variance, as ``nn.BatchNorm2d``.
In one process both are the same. An empty batch gives an empty output and,
in one process, leaves ``running_var`` as it is.

Half-precision inputs (autocast's fp16/bf16) are computed in float32 with
autocast off, the output cast back, as :class:`~.BCN` does.
:func:`evonorm_b0` is the definition in plain tensor ops (autograd
differentiates it, the all-reduce included); :class:`EvoNormB0` is its
module.
"""
import math
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.dist import all_reduce, get_world_size
from mmengine.registry import MODELS
from torch import Tensor

from ...utils.errors import LayerArgumentError
from .bcn_function import stat_dtype
from .layer_kind import LayerKind
from .ws_conv import _autocast_off

__all__ = ['EvoNormB0', 'evonorm_b0']


class _AllReduceSum(torch.autograd.Function):
    """The sum of a tensor over all processes; its gradient is the sum of
    the output gradients over all processes (``SyncBatchNorm``'s rule)."""

    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:
        out = t.clone(memory_format=torch.contiguous_format)
        all_reduce(out, op='sum')  # in place
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return _AllReduceSum.apply(grad)


def _all_reduce_sum(t: Tensor) -> Tensor:
    """The sum of ``t`` over all processes, differentiable."""
    return _AllReduceSum.apply(t)


def _batch_variance(xs: Tensor,
                    distributed: bool) -> Tuple[Tensor, Union[int, Tensor]]:
    """The biased variance of ``xs`` over ``(N, H, W)``, ``(C,)``, and the
    number of values per channel: an int, or when ``distributed`` the
    global count as a 0-d tensor (no host synchronization)."""
    c = xs.size(1)
    count = xs.numel() // c if c else 0
    if not distributed:
        if count == 0:
            return xs.new_full((c, ), math.nan), count
        return xs.var(dim=(0, 2, 3), unbiased=False), count
    # the per-channel sums and the count in one all-reduce, then the sums
    # of squares about the global mean (no cancellation)
    packed = torch.cat([xs.sum(dim=(0, 2, 3)), xs.new_full((1, ), count)])
    packed = _all_reduce_sum(packed)
    total, global_count = packed[:c], packed[c].detach()
    mean = total / global_count
    centred = xs - mean.view(1, -1, 1, 1)
    var = _all_reduce_sum(centred.square().sum(dim=(0, 2, 3))) / global_count
    return var, global_count


def _update_running_var(running_var: Tensor, var: Tensor,
                        count: Union[int, Tensor], momentum: float) -> None:
    """BatchNorm's update, in place: ``running_var`` moves by ``momentum``
    towards ``var * n / (n - 1)`` (towards ``var`` for ``n = 1``); nothing
    for ``n = 0``."""
    with torch.no_grad():
        var = var.detach()
        if isinstance(count, Tensor):  # stays on the device
            factor = torch.where(count > 1, count / (count - 1).clamp(min=1),
                                 torch.ones_like(count))
            new = running_var.lerp((var * factor).to(running_var.dtype),
                                   momentum)
            running_var.copy_(torch.where(count > 0, new, running_var))
        elif count > 0:
            factor = count / (count - 1) if count > 1 else 1.0
            running_var.lerp_((var * factor).to(running_var.dtype), momentum)


def evonorm_b0(x: Tensor,
               running_var: Tensor,
               v: Tensor,
               weight: Optional[Tensor] = None,
               bias: Optional[Tensor] = None,
               training: bool = False,
               momentum: float = 0.1,
               eps: float = 1e-5,
               sync: bool = True) -> Tensor:
    """EvoNorm-B0, functional form.

    In training the batch variance (global with ``sync`` and several
    processes) normalizes and ``running_var`` is updated in place; in eval
    ``running_var`` normalizes. With ``sync`` and several processes every
    rank must call this the same number of times in the same order (also
    the backward pass).

    Args:
        x (Tensor): ``(N, C, H, W)``.
        running_var (Tensor): ``(C,)``, the running variance.
        v (Tensor): ``(C,)``, the slope in the denominator.
        weight, bias (Tensor, optional): ``gamma, beta``, ``(C,)``.
        training (bool): Use (and track) the batch variance. Defaults to
            False.
        momentum (float): Update rate of ``running_var``. Defaults to 0.1.
        eps (float): Added to both variances. Defaults to 1e-5.
        sync (bool): All-reduce the training variance across processes.
            Defaults to True.

    Returns:
        Tensor: ``x / max(batch_std, v * x + inst_std) * gamma + beta``,
        dtype of ``x`` (computed in float32 for fp16/bf16).
    """
    dtype = stat_dtype(x)
    distributed = training and sync and get_world_size() > 1
    with _autocast_off(x.device.type):
        xs = x.to(dtype)
        if training:
            var, count = _batch_variance(xs, distributed)
            _update_running_var(running_var, var, count, momentum)
        else:
            var = running_var.to(dtype)
        left = torch.sqrt(var + eps).view(1, -1, 1, 1)
        inst_var = xs.var(dim=(2, 3), unbiased=False, keepdim=True)
        right = xs * v.to(dtype).view(1, -1, 1, 1) + torch.sqrt(inst_var + eps)
        out = xs / torch.maximum(left, right)
        if weight is not None:
            out = out * weight.to(dtype).view(1, -1, 1, 1)
        if bias is not None:
            out = out + bias.to(dtype).view(1, -1, 1, 1)
    return out.to(x.dtype)


def _check_args(num_features, eps, momentum, sync) -> None:
    """Validate :class:`EvoNormB0`'s arguments, naming the culprit."""
    if isinstance(num_features, bool) or not isinstance(num_features, int):
        raise TypeError(f'EvoNormB0: num_features must be an int, got '
                        f'{num_features!r}')
    if num_features <= 0:
        raise LayerArgumentError(f'EvoNormB0: num_features must be a '
                                 f'positive int, got {num_features}')
    for name, value in (('eps', eps), ('momentum', momentum)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f'EvoNormB0: {name} must be a float, got '
                            f'{value!r}')
    if not 0 < eps < math.inf:
        raise LayerArgumentError(
            f'EvoNormB0: eps must be a finite number > 0, got {eps}')
    if not 0 <= momentum <= 1:
        raise LayerArgumentError(
            f'EvoNormB0: momentum must be in [0, 1], got {momentum}')
    if not isinstance(sync, bool):
        raise TypeError(f'EvoNormB0: sync must be a bool, got {sync!r}')


@MODELS.register_module('EvoNormB0')
class EvoNormB0(nn.Module):
    """EvoNorm-B0 (Liu et al., NeurIPS 2020): the larger of a batch and an
    instance standard deviation (the latter shifted by ``v * x``) divides
    ``x``; no mean subtraction.

    Input ``(N, C, H, W)``; output: same shape and dtype. See the module
    docstring for the formula, the running variance and several processes.
    Built by ``mmcv.cnn.build_norm_layer`` as
    ``norm_cfg=dict(type='EvoNormB0')``; abbreviation ``'evonorm'``.
    Training and eval differ as in BatchNorm (``model.train()`` /
    ``model.eval()``). State-dict keys (timm's names)::

        weight       (C,)  gamma, init 1
        bias         (C,)  beta, init 0
        v            (C,)  slope, init 1
        running_var  (C,)  running variance, init 1

    Not a ``_BatchNorm``: mmseg's ``norm_eval`` and mmengine's
    ``norm_decay_mult`` do not reach it.

    Args:
        num_features (int): ``C``, the number of channels.
        eps (float): Added to both variances. Defaults to 1e-5 (the
            authors' code).
        momentum (float): Update rate of ``running_var``, in ``[0, 1]``.
            Defaults to 0.1.
        sync (bool): Compute the training variance over the global batch
            when ``torch.distributed`` runs several processes. Defaults to
            True.
        device (torch.device, optional): Device of the parameters.
        dtype (torch.dtype, optional): Dtype of the parameters.

    Example:
        >>> from mmcv.cnn import build_norm_layer
        >>> name, layer = build_norm_layer(dict(type='EvoNormB0'), 8)
        >>> name
        'evonorm'
        >>> layer(torch.randn(1, 8, 1, 1)).shape
        torch.Size([1, 8, 1, 1])
    """

    _abbr_ = 'evonorm'

    def __init__(self,
                 num_features: int,
                 eps: float = 1e-5,
                 momentum: float = 0.1,
                 sync: bool = True,
                 device=None,
                 dtype=None) -> None:
        _check_args(num_features, eps, momentum, sync)
        super().__init__()
        factory = {'device': device, 'dtype': dtype}
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.sync = sync
        self.weight = nn.Parameter(torch.empty(num_features, **factory))
        self.bias = nn.Parameter(torch.empty(num_features, **factory))
        self.v = nn.Parameter(torch.empty(num_features, **factory))
        self.register_buffer('running_var',
                             torch.empty(num_features, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``gamma = v = 1``, ``beta = 0``, ``running_var = 1``."""
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)
        nn.init.ones_(self.v)
        nn.init.ones_(self.running_var)

    def forward(self, x: Tensor) -> Tensor:
        """Normalize and activate ``x`` of shape ``(N, C, H, W)``."""
        if x.dim() != 4 or x.size(1) != self.num_features:
            raise ValueError(f'EvoNormB0 expects an input (N, '
                             f'{self.num_features}, H, W), got size '
                             f'{tuple(x.shape)}')
        return evonorm_b0(x, self.running_var, self.v, self.weight, self.bias,
                          self.training, self.momentum, self.eps, self.sync)

    # -- the layer protocol (layer_kind.py) ------------------------------
    def layer_kind(self) -> LayerKind:
        """``LayerKind('norm', 'evonorm-b0', 'EvoNorm-B0(batch var)')``."""
        return LayerKind('norm', 'evonorm-b0', 'EvoNorm-B0(batch var)')

    def extra_repr(self) -> str:
        return (f'{self.num_features}, eps={self.eps}, '
                f'momentum={self.momentum}, sync={self.sync}')
