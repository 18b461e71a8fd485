# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
r"""Moving Average Batch Normalization (MABN).

Paper: J. Yan, R. Wan, X. Zhang, W. Zhang, Y. Wei and J. Sun, *Towards
Stabilizing Batch Statistics in Backward Propagation of Batch
Normalization*, ICLR 2020 (arXiv:2001.06838). Authors' code:
``megvii-model/MABN`` on GitHub (``MABN.py``: ``BatchNormFunction`` and
``MABN2d``). Use it with :class:`~.cen_conv.CenConv2d` in front: MABN does
not subtract a mean, the centred weights take its place.

For an input ``x`` of shape ``(N, C, H, W)``, at the training step ``t``
(1 for the first training call), with ``B = buffer_num``, ``W =
warmup_iters`` and per-channel statistics over ``(N, H, W)``::

    forward   chi_t = mean(x ** 2)                       second moment
              buffer_x2[t % B] = chi_t
              psi   = chi_t                 if t <= B or t < W
                      mean(buffer_x2)       otherwise   (SMA, last B steps)
              z     = x / sqrt(psi + eps)
              r     = 1                     if t <= max(renorm_iters, W)
                      clip(sqrt(psi + eps) / sqrt(running_var + eps),
                           1 / rmax, rmax)  otherwise
              running_var <- (1 - momentum) * running_var + momentum * psi
              y     = weight * r * z + bias

    backward  g     = dy * weight * r
              gz_t  = mean(g * z)
              buffer_gz[t % B] = gz_t
              mgz   = gz_t                  if t <= B or t < W
                      mean(buffer_gz)       otherwise
              dx    = (g - z * mgz) / sqrt(psi + eps)
              dweight = sum(dy * r * z),   dbias = sum(dy)

That is the authors' ``BatchNormFunction`` step for step. ``dx`` is *not*
the gradient of the forward pass: ``psi`` and ``r`` are constants for
autograd, and the gradient statistic ``mgz`` is itself a moving average
(the paper's point: both the forward statistic and the backward one are
averaged over the last ``B`` steps, so that they stay stable with 1 or 2
images). In eval, ``y = weight * x / sqrt(running_var + eps) + bias``, a
per-channel affine.

What differs from the authors' code, and why:

- ``momentum`` is PyTorch's update rate (``running_var`` moves by
  ``momentum`` towards ``psi``, as for ``nn.BatchNorm2d`` and BCN); the
  authors' ``momentum=0.98`` keeps 0.98 of the old value, i.e.
  ``momentum=0.02`` here (the default).
- The authors' forward compares the iteration counter on the host
  (``iters.item()``); here the branches are ``torch.where`` on the
  counter's tensor, so a training step never waits for the GPU.
- Their constants are arguments: the warmup (``warmup_iters``, 100), the
  SMA length (``buffer_num``, their ``real_B // B``, 16 in their detection
  code), the step after which renormalization starts (``renorm_iters``,
  their hard-coded 1000) and its clip (``rmax``, their 5).
- With ``sync`` and several processes the per-step statistics ``chi_t``
  and ``gz_t`` are the global batch's (the ranks all-reduce the
  per-channel sums and the element count, as BCN does), so every rank
  holds the same buffers; the authors' layer is per GPU.
- Half-precision inputs are reduced in float32 (the output has the input's
  dtype); an empty batch gives an empty output.

State-dict keys are the authors' (their detection code's shapes):
``weight``, ``bias``, ``running_var`` ``(C,)``, ``iters`` ``(1,)``,
``buffer_x2``, ``buffer_gz`` ``(buffer_num, C)``; a ``running_var`` of
their ``MABN.py`` shape ``(1, C, 1, 1)`` loads too.
"""
import math
from typing import Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.dist import all_reduce, get_world_size
from mmengine.registry import MODELS
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from ...utils.errors import LayerArgumentError
from .channel_affine import ChannelAffine
from .layer_kind import LayerKind
from .ws_conv import _autocast_off

__all__ = ['MABN', 'MABNFunction']

_DIMS = (0, 2, 3)  # the statistics' dims: (N, H, W)


def _stat_dtype(x: Tensor) -> torch.dtype:
    """float32 for half-precision inputs, else ``x``'s dtype."""
    return torch.float32 if x.dtype in (torch.float16,
                                        torch.bfloat16) else x.dtype


def _bc(t: Tensor) -> Tensor:
    """``(C,)`` -> ``(1, C, 1, 1)``."""
    return t.view(1, -1, 1, 1)


class MABNFunction(Function):
    """One MABN training step (see the module docstring), in place on the
    buffers.

    ``MABNFunction.apply(x, weight, bias, running_var, iters, buffer_x2,
    buffer_gz, eps, momentum, buffer_num, warmup_iters, renorm_iters, rmax,
    distributed)``. The forward pass writes ``buffer_x2``, ``running_var``
    and ``iters``; the backward pass writes ``buffer_gz``. With
    ``distributed`` each pass all-reduces one ``(C,)`` (forward: ``C + 1``)
    tensor, so every rank must run both passes, in the same order. Saves
    ``x`` and ``(C,)`` tensors for the backward pass.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor,
                running_var: Tensor, iters: Tensor, buffer_x2: Tensor,
                buffer_gz: Tensor, eps: float, momentum: float,
                buffer_num: int, warmup_iters: int, renorm_iters: int,
                rmax: float, distributed: bool) -> Tensor:
        dtype = _stat_dtype(x)
        c = x.size(1)
        local = x.numel() // max(c, 1)
        ctx.conf = (distributed, buffer_gz, weight.dtype, bias.dtype)
        with _autocast_off(x.device.type):
            # sum of x ** 2 over (N, H, W), accumulated in `dtype`
            sumsq = torch.linalg.vector_norm(
                x, 2, dim=_DIMS, dtype=dtype).square()
            stats = torch.cat([sumsq, sumsq.new_full((1, ), float(local))])
            if distributed:
                all_reduce(stats, op='sum')  # in place
            count = stats[c:]
            if local == 0 and count.item() == 0:  # an empty global batch
                ctx.empty = True
                return x.clone()
            ctx.empty = False
            chi = stats[:c] / count
            t = iters + 1  # (1,), this step
            slot = t % buffer_num
            use_sma = (t > buffer_num) & (t >= warmup_iters)
            buffer_x2.index_copy_(0, slot, chi.to(buffer_x2.dtype)[None])
            psi = torch.where(use_sma, buffer_x2.to(dtype).mean(0), chi)
            inv = torch.rsqrt(psi + eps)
            ratio = torch.sqrt(psi +
                               eps) * torch.rsqrt(running_var.to(dtype) + eps)
            r = torch.where(t > max(renorm_iters, warmup_iters),
                            ratio.clamp(1 / rmax, rmax),
                            torch.ones_like(ratio))
            running_var.lerp_(psi.to(running_var.dtype), momentum)
            iters.copy_(t)
            w, b = weight.to(dtype), bias.to(dtype)
            out = torch.addcmul(_bc(b), x.to(dtype), _bc(w * r * inv))
        ctx.save_for_backward(x, w, inv, r, slot, use_sma, count)
        return out.to(x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        distributed, buffer_gz, w_dtype, b_dtype = ctx.conf
        nones = (None, ) * 11
        if ctx.empty:  # zeros, so that every parameter has a gradient
            c = grad.size(1)
            return (torch.zeros_like(grad), grad.new_zeros(c, dtype=w_dtype),
                    grad.new_zeros(c, dtype=b_dtype), *nones)
        x, w, inv, r, slot, use_sma, count = ctx.saved_tensors
        dtype = inv.dtype
        with _autocast_off(x.device.type):
            g = grad.to(dtype)
            xs = x.to(dtype)
            # the local sums sum(dy * x) and sum(dy) over (N, H, W)
            s_gx = (g * xs).sum(_DIMS)
            s_g = g.sum(_DIMS)
            total = s_gx.clone()
            if distributed:
                all_reduce(total, op='sum')
            # gz_t = mean(dy * w * r * z), z = x * inv, over the global batch
            gz = total * w * r * inv / count
            buffer_gz.index_copy_(0, slot, gz.to(buffer_gz.dtype)[None])
            mgz = torch.where(use_sma, buffer_gz.to(dtype).mean(0), gz)
            grad_x = None
            if ctx.needs_input_grad[0]:
                # (g - z * mgz) / sqrt(psi + eps), g = dy * w * r
                grad_x = (g * _bc(w * r * inv)).sub_(
                    xs * _bc(inv * inv * mgz)).to(x.dtype)
            grad_w = (s_gx * r * inv).to(w_dtype)
            grad_b = s_g.to(b_dtype)
        return (grad_x, grad_w, grad_b, *nones)


def _check_args(num_features, eps, momentum, buffer_num, warmup_iters,
                renorm_iters, rmax, sync) -> None:
    """Validate :class:`MABN`'s arguments, naming the culprit."""

    def number(name, value, kind):
        ok = (not isinstance(value, bool)) and isinstance(value, kind)
        if not ok:
            what = 'an int' if kind is int else 'a float'
            raise TypeError(f'MABN: {name} must be {what}, got {value!r} '
                            f'({type(value).__name__})')

    for name, value, low in (('num_features', num_features,
                              1), ('buffer_num', buffer_num,
                                   1), ('warmup_iters', warmup_iters, 0),
                             ('renorm_iters', renorm_iters, 0)):
        number(name, value, int)
        if value < low:
            raise LayerArgumentError(
                f'MABN: {name} must be an int >= {low}, got {value}')
    for name, value in (('eps', eps), ('momentum', momentum), ('rmax', rmax)):
        number(name, value, (int, float))
    if not 0 < eps < math.inf:
        raise LayerArgumentError(f'MABN: eps must be > 0, got {eps}')
    if not 0 <= momentum <= 1:
        raise LayerArgumentError(
            f'MABN: momentum must be in [0, 1], got {momentum}')
    if not 1 <= rmax < math.inf:
        raise LayerArgumentError(f'MABN: rmax must be >= 1, got {rmax}')
    if not isinstance(sync, bool):
        raise TypeError(f'MABN: sync must be a bool, got {sync!r}')


@MODELS.register_module('MABN')
class MABN(nn.Module):
    """Moving Average Batch Normalization (Yan et al., ICLR 2020).

    Input: ``(N, C, H, W)``; output: same shape and dtype. Normalizes by
    the second moment (no mean subtraction; put a
    :class:`~.cen_conv.CenConv2d` in front), averaged over the last
    ``buffer_num`` training steps, with the backward pass's gradient
    statistic averaged likewise (formulas in the module docstring).
    Batch 1 and 1x1 maps work. ``2 * C`` parameters.

    Built by ``mmcv.cnn.build_norm_layer`` as ``norm_cfg=dict(type='MABN')``;
    its abbreviation is ``'bn'``, so mmseg's ``ResNet`` names the layers
    ``bn1``, ``bn2``, ... It is no ``_BatchNorm``: ``norm_eval`` and
    ``norm_decay_mult`` do not reach it, and ``convert_sync_batchnorm``
    leaves it alone (``sync`` does its synchronization).

    Args:
        num_features (int): ``C``, the number of channels.
        eps (float): Added to the second moments. Defaults to 1e-5.
        momentum (float): Update rate of ``running_var`` (PyTorch's
            convention; the authors' 0.98 is 0.02 here). Defaults to 0.02.
        buffer_num (int): ``B``, the number of steps the moving averages
            cover. Defaults to 16.
        warmup_iters (int): Steps ``1 .. max(B, warmup_iters - 1)`` use the
            current batch's statistics (as BN does; the buffers still
            fill). Defaults to 100.
        renorm_iters (int): Renormalization by ``r`` starts after step
            ``max(renorm_iters, warmup_iters)``. Defaults to 1000.
        rmax (float): ``r`` is clipped to ``[1 / rmax, rmax]``. Defaults
            to 5.
        sync (bool): Compute the per-step statistics over the global batch
            when ``torch.distributed`` runs several processes. Defaults to
            True.
        device (torch.device, optional): Device of the parameters.
        dtype (torch.dtype, optional): Dtype of the parameters and buffers.

    Example:
        >>> from mmcv.cnn import build_norm_layer
        >>> name, layer = build_norm_layer(dict(type='MABN'), 8)
        >>> name
        'bn'
        >>> layer(torch.randn(1, 8, 1, 1)).shape
        torch.Size([1, 8, 1, 1])
    """

    _abbr_ = 'bn'

    def __init__(self,
                 num_features: int,
                 eps: float = 1e-5,
                 momentum: float = 0.02,
                 buffer_num: int = 16,
                 warmup_iters: int = 100,
                 renorm_iters: int = 1000,
                 rmax: float = 5.0,
                 sync: bool = True,
                 device=None,
                 dtype=None) -> None:
        _check_args(num_features, eps, momentum, buffer_num, warmup_iters,
                    renorm_iters, rmax, sync)
        super().__init__()
        factory = {'device': device, 'dtype': dtype}
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.buffer_num = buffer_num
        self.warmup_iters = warmup_iters
        self.renorm_iters = renorm_iters
        self.rmax = rmax
        self.sync = sync
        self.weight = nn.Parameter(torch.ones(num_features, **factory))
        self.bias = nn.Parameter(torch.zeros(num_features, **factory))
        self.register_buffer('running_var', torch.ones(num_features,
                                                       **factory))
        self.register_buffer('iters',
                             torch.zeros(1, dtype=torch.long, device=device))
        self.register_buffer('buffer_x2',
                             torch.zeros(buffer_num, num_features, **factory))
        self.register_buffer('buffer_gz',
                             torch.zeros(buffer_num, num_features, **factory))

    def reset_parameters(self) -> None:
        """Affine to 1, 0; statistics, buffers and step count to the start.
        """
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)
        self.running_var.fill_(1)
        self.iters.zero_()
        self.buffer_x2.zero_()
        self.buffer_gz.zero_()

    def forward(self, x: Tensor) -> Tensor:
        """Normalize ``x`` of shape ``(N, C, H, W)`` (same shape out)."""
        if x.dim() != 4:
            raise ValueError('MABN expects a 4-D input (N, C, H, W), got a '
                             f'{x.dim()}-D input of size {tuple(x.shape)}')
        if x.size(1) != self.num_features:
            raise ValueError(f'MABN was built for num_features='
                             f'{self.num_features} channels, got an input '
                             f'with {x.size(1)} channels (size '
                             f'{tuple(x.shape)})')
        if not self.training:
            dtype = _stat_dtype(x)
            with _autocast_off(x.device.type):
                scale = self.weight.to(dtype) * torch.rsqrt(
                    self.running_var.to(dtype) + self.eps)
                out = x.to(dtype) * _bc(scale) + _bc(self.bias.to(dtype))
            return out.to(x.dtype)
        distributed = self.sync and get_world_size() > 1
        if x.numel() == 0 and not distributed:
            # empty: nothing moves; autograd still reaches the parameters
            return x * 0 + (self.weight.sum() + self.bias.sum()).to(
                x.dtype) * 0
        return MABNFunction.apply(x, self.weight, self.bias, self.running_var,
                                  self.iters, self.buffer_x2, self.buffer_gz,
                                  self.eps, self.momentum, self.buffer_num,
                                  self.warmup_iters, self.renorm_iters,
                                  self.rmax, distributed)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                              missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # the authors' MABN.py stores running_var as (1, C, 1, 1)
        key = prefix + 'running_var'
        value = state_dict.get(key)
        if isinstance(value, Tensor) and self.accepts_checkpoint_shape(
                'running_var', value.shape, self.running_var.shape):
            state_dict[key] = value.reshape(self.running_var.shape)
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)

    # -- the layer protocol (layer_kind.py) ------------------------------
    def layer_kind(self) -> LayerKind:
        """``LayerKind('norm', 'mabn', 'MABN(B=16, warmup=100)')``."""
        return LayerKind(
            'norm', 'mabn',
            f'MABN(B={self.buffer_num}, warmup={self.warmup_iters})')

    def split_eval_affine(self) -> Tuple[Tensor, Tensor, nn.Identity]:
        """The layer in eval as ``x * scale + shift``: ``scale = weight /
        sqrt(running_var + eps)``, ``shift = bias`` (float64, ``(C,)``),
        and ``nn.Identity()``."""
        scale = self.weight.detach().double() * torch.rsqrt(
            self.running_var.detach().double() + self.eps)
        return scale, self.bias.detach().double().clone(), nn.Identity()

    def eval_form(self) -> ChannelAffine:
        """The layer in eval as a :class:`ChannelAffine` (in the layer's
        dtype)."""
        scale, shift, _ = self.split_eval_affine()
        dtype = self.weight.dtype
        return ChannelAffine(scale.to(dtype), shift.to(dtype)).eval()

    def accepts_checkpoint_shape(self, name: str, ckpt_shape: Sequence[int],
                                 model_shape: Sequence[int]) -> bool:
        """Whether loading converts ``name`` of ``ckpt_shape``: the
        ``running_var`` of the authors' ``MABN.py``, ``(1, C, 1, 1)``."""
        c = self.num_features
        return (name == 'running_var' and tuple(ckpt_shape) == (1, c, 1, 1)
                and tuple(model_shape) == (c, ))

    def extra_repr(self) -> str:
        return (f'{self.num_features}, eps={self.eps}, '
                f'momentum={self.momentum}, buffer_num={self.buffer_num}, '
                f'warmup_iters={self.warmup_iters}, '
                f'renorm_iters={self.renorm_iters}, rmax={self.rmax}, '
                f'sync={self.sync}')
