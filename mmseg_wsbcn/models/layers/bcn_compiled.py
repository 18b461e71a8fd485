# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""BCN's fused tier: the closed form, compiled by ``torch.compile``.

The function compiled is the closed form of :mod:`.bcn_function` written in
plain tensor operations: per-``(sample, channel)`` moments, the small
coefficient graph (:func:`.bcn_function.group_coefficients`) and the
output ``A * (x - m) + D``. TorchInductor fuses the moments into one reduction
and the output into one elementwise kernel, and derives a backward pass of
the same shape, so the layer runs at GroupNorm's cost: Triton kernels on
CUDA, C++/OpenMP kernels on CPU.

Which tier runs is chosen per call by :func:`select_impl`:

- ``'eager'``: always :class:`.bcn_function.BCNFunction`;
- ``'compile'``: the fused tier, except in a call synchronized across
  processes (the statistics are all-reduced between the two passes, which
  the eager tier does);
- ``'auto'`` (BCN's default): ``'compile'`` for CUDA inputs when Triton is
  importable, else ``'eager'``.

If compiling fails (no compiler, an unsupported platform), a warning names
the error once and every later call runs the eager tier.
"""
import warnings
from functools import lru_cache
from importlib.util import find_spec
from typing import Optional, Tuple

import torch
from torch import Tensor

from .bcn_function import (BCNFunction, cast_optional, check_count,
                           group_coefficients, stat_dtype)

__all__ = ['IMPLS', 'select_impl', 'compiled_batch_channel_norm']

IMPLS = ('auto', 'eager', 'compile')

_state = {'failed': None}  # the error that disabled the fused tier


@lru_cache(maxsize=None)
def _triton_available() -> bool:
    return find_spec('triton') is not None


def select_impl(impl: str, x: Tensor, distributed: bool) -> str:
    """The tier that runs this call: ``'eager'`` or ``'compile'``.

    Args:
        impl (str): ``'auto'``, ``'eager'`` or ``'compile'``.
        x (Tensor): The input.
        distributed (bool): Whether the call synchronizes its statistics
            across processes.

    Returns:
        str: ``'compile'`` when ``impl`` asks for the fused tier (or
        ``'auto'`` meets a CUDA input and Triton), the call is not
        synchronized, and compiling has not failed before; else
        ``'eager'``.
    """
    if impl == 'eager' or distributed or _state['failed'] is not None:
        return 'eager'
    if impl == 'auto' and not (x.is_cuda and _triton_available()):
        return 'eager'
    return 'compile'


def closed_form(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                batch_weight: Optional[Tensor], batch_bias: Optional[Tensor],
                mean: Tensor, var: Tensor, num_groups: int, mode: str,
                momentum: float, eps: float) -> Tuple[Tensor, Tensor, Tensor]:
    """BCN in plain tensor operations, for ``torch.compile`` to fuse.

    Args:
        x (Tensor): Input, ``(N, C, H, W)``.
        weight, bias (Tensor, optional): Group affine, ``(G,)``.
        batch_weight, batch_bias (Tensor, optional): Batch-step affine,
            ``(C,)``.
        mean, var (Tensor): Running statistics (``mode='eval'``) or the
            estimates before this step (``mode='estimate'``), ``(C,)``, in
            the statistics dtype; unused for ``mode='batch'``.
        num_groups (int): ``G``.
        mode (str): ``'eval'``, ``'estimate'`` or ``'batch'``.
        momentum (float): Update rate of the estimates (``'estimate'``).
        eps (float): Added to both variances.

    Returns:
        tuple[Tensor, Tensor, Tensor]: The output (dtype of ``x``), and the
        batch step's mean and (biased) variance as used, without gradient,
        for the caller's buffer update.
    """
    dtype = stat_dtype(x)
    xs = x.to(dtype)
    m = xs.mean((2, 3))
    v = (xs - m[..., None, None]).square().mean((2, 3))
    if mode == 'batch':
        mean = m.mean(0)
        var = (v + (m - mean).square()).mean(0)
    elif mode == 'estimate':
        md, vd = m.detach(), v.detach()
        second = (vd + (md - mean).square()).mean(0)
        mean = torch.lerp(mean, md.mean(0), momentum)
        var = torch.lerp(var, second, momentum)
    co = group_coefficients(m, v, mean, var, weight, bias, batch_weight,
                            batch_bias, num_groups, eps)
    out = (xs - m[..., None, None]) * co.A[..., None, None] + co.D[..., None,
                                                                   None]
    return out.to(x.dtype), mean.detach(), var.detach()


@lru_cache(maxsize=None)
def _compiled():
    return torch.compile(closed_form, dynamic=None)


def compiled_batch_channel_norm(x: Tensor, num_groups: int,
                                running_mean: Tensor, running_var: Tensor,
                                weight: Optional[Tensor],
                                bias: Optional[Tensor],
                                batch_weight: Optional[Tensor],
                                batch_bias: Optional[Tensor], mode: str,
                                momentum: float, eps: float) -> Tensor:
    """The fused tier of :func:`.bcn.batch_channel_norm` (one process).

    Same arguments and result as the eager tier; the running statistics
    are updated in place after the compiled call. Falls back to the eager
    tier (with one warning) if compiling fails.
    """
    dtype = stat_dtype(x)
    size = x.size()
    hw = size[2] * size[3]
    # the eager tier's errors, before any compiling
    check_count(mode, size[0] * hw, size)
    args = (x, cast_optional(weight, dtype), cast_optional(bias, dtype),
            cast_optional(batch_weight,
                          dtype), cast_optional(batch_bias, dtype),
            running_mean.to(dtype), running_var.to(dtype), num_groups, mode,
            float(momentum), float(eps))
    try:
        out, mean, var = _compiled()(*args)
    except Exception as err:  # noqa: B902 - any compiler failure
        _state['failed'] = err
        warnings.warn(
            'BCN: torch.compile failed, so BCN runs its eager tier from '
            f'now on: {type(err).__name__}: {str(err).splitlines()[0]}')
        return BCNFunction.apply(x, weight, bias, batch_weight, batch_bias,
                                 running_mean, running_var, num_groups, mode,
                                 momentum, eps, False)
    with torch.no_grad():
        if mode == 'batch':
            count = size[0] * hw
            running_mean.lerp_(mean.to(running_mean.dtype), momentum)
            running_var.lerp_(
                (var * (count / (count - 1))).to(running_var.dtype), momentum)
        elif mode == 'estimate':
            running_mean.copy_(mean)
            running_var.copy_(var)
    return out
