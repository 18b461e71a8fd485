# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
r"""BCN's eager tier: the closed form, as one autograd function.

BCN (see :mod:`.bcn`) is a per-channel affine batch step ``y = s * x + t``
followed by group normalization of ``y`` and the group affine ``a, b``.
Because the batch step is a per-channel affine map, the group statistics
of ``y`` follow exactly from the per-``(sample, channel)`` mean ``m`` and
biased variance ``v`` of ``x`` (the parallel-variance formula)::

    u[n, c]    = s[c] * m[n, c] + t[c]                  mean of y[n, c]
    mu[n, g]   = mean_{c in g} u[n, c]
    var[n, g]  = mean_{c in g} (s[c]^2 v[n, c] + (u[n, c] - mu[n, g])^2)
    R[n, g]    = 1 / sqrt(var[n, g] + eps)

and the whole layer is one per-``(sample, channel)`` affine map of ``x``::

    out = A[n, c] * (x - m[n, c]) + D[n, c]
    A = a[g] R[n, g] s[c],   D = a[g] R[n, g] (u[n, c] - mu[n, g]) + b[g]

The batch step's ``s, t`` come from the running (or estimated) statistics,
or, for ``estimate=False`` in training, from the batch statistics, which
follow from ``m, v`` as well (``mean_c = mean_n m``, ``var_c = mean_n (v +
(m - mean_c)^2)``, over the global batch when synchronized).

So the layer costs what group normalization costs: one reduction over
``x`` and one elementwise pass forward; one fused reduction (``sum g``,
``sum g (x - m)``) and one elementwise pass backward. Everything else works on
``(N, C)`` tensors, and the backward pass through them is written out
below. Only ``x`` and small statistics are saved for the backward pass.

The full-size passes use native fused kernels that exist on every device:

- moments: ``native_group_norm`` with one group per channel returns
  ``m`` and ``1 / sqrt(v + eps)`` (with a normalized copy of ``x`` that the
  output then overwrites in place);
- the backward reductions: ``native_group_norm_backward`` on the
  ``(1, N * C, H, W)`` view with mean ``m`` and unit scale returns
  ``sum g * (x - m)`` and ``sum g`` per ``(sample, channel)``.

Half-precision inputs are reduced in float32, and all the statistics and
coefficients are float32; the output has the input's dtype.
"""
from typing import NamedTuple, Optional, Tuple, Union

import torch
from mmengine.dist import all_reduce
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from .ws_conv import _autocast_off

__all__ = [
    'stat_dtype', 'cast_optional', 'check_count', 'channel_moments',
    'batch_statistics', 'estimate_statistics', 'Coefficients',
    'group_coefficients', 'bcn_inference', 'BCNFunction'
]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def stat_dtype(x: Tensor) -> torch.dtype:
    """Statistics dtype: float32 for half-precision inputs, else x's."""
    return torch.float32 if x.dtype in _LOW_PRECISION else x.dtype


def cast_optional(t: Optional[Tensor], dtype: torch.dtype) -> Optional[Tensor]:
    """``t`` in ``dtype``, or None for None."""
    return None if t is None else t.to(dtype)


def check_count(mode: str,
                count: int,
                size: torch.Size,
                distributed: bool = False) -> None:
    """Raise the error of a training batch with too few values.

    Args:
        mode (str): ``'batch'`` (batch statistics need more than one value
            per channel, BatchNorm's message) or ``'estimate'`` (the
            estimates need at least one).
        count (int): Values per channel in the (global) batch.
        size (torch.Size): The input's size, for the message.
        distributed (bool): Whether ``count`` is the global batch's.
    """
    if mode == 'batch' and count <= 1:
        raise ValueError('Expected more than 1 value per channel when '
                         f'training, got input size {size}')
    if mode == 'estimate' and count == 0:
        where = 'global batch' if distributed else 'batch'
        raise ValueError(f'BCN got an empty {where} (input size {size})')


def channel_moments(x: Tensor,
                    eps: float,
                    precise: bool = False
                    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-``(sample, channel)`` moments of ``x``, in one fused pass.

    Args:
        x (Tensor): Contiguous input of shape ``(N, C, H, W)``.
        eps (float): Added to the variance inside the kernel.
        precise (bool): Compute the variance from the normalized values
            (one more read pass, accurate to float rounding even when
            ``|mean| >> std``), for statistics that the running buffers
            keep. Otherwise it is recovered from the kernel's ``rstd``
            (about 1e-6 relative when ``|mean| / std ~ 25``, which is
            immaterial to the output). Defaults to False.

    Returns:
        tuple[Tensor, Tensor, Tensor, Tensor]: ``xn`` of shape
        ``(N, C, H, W)``, ``(x - m) * rstd`` (a fresh tensor the caller may
        overwrite); then, of shape ``(N, C)``, the mean ``m``, the biased
        variance ``v`` and ``rstd = 1 / sqrt(v + eps)``. All in
        :func:`stat_dtype` of ``x``.
    """
    n, c, h, w = x.shape
    dtype = stat_dtype(x)
    if x.numel() == 0:
        zeros = x.new_zeros((n, c), dtype=dtype)
        return (x.new_empty(x.shape,
                            dtype=dtype), zeros, zeros.clone(), zeros + 1)
    xs = x if x.dtype == dtype else x.to(dtype)
    xn, mean, rstd = torch.native_group_norm(xs, None, None, n, c, h * w, c,
                                             eps)
    rstd = rstd.view(n, c)
    if precise:
        # sum xn^2 = rstd^2 sum (x - m)^2, with the kernel's own rstd: one
        # more read of xn, but the variance is then as exact as a centred
        # two-pass sum (the kernel's rstd carries its variance to ~1e-6
        # relative only when |mean| >> std)
        norm = torch.linalg.vector_norm(xn, dim=(2, 3)).view(n, c)
        var = (norm / rstd).square_().div_(h * w)
    else:
        var = rstd.pow(-2).sub_(eps).clamp_min_(0)
    return xn, mean.view(n, c), var, rstd


def _affine_reductions(grad: Tensor, x: Tensor, m: Tensor,
                       dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
    """``sum g * (x - m)`` and ``sum g`` over ``(H, W)``, shape ``(N, C)``.
    """
    n, c, h, w = x.shape
    if x.numel() == 0:
        zeros = x.new_zeros((n, c), dtype=dtype)
        return zeros, zeros.clone()
    if x.dtype == dtype and grad.dtype == dtype:
        # GroupNorm's backward with one group per (sample, channel), mean m
        # and unit scale: its dgamma, dbeta are exactly these sums
        ones = x.new_ones(n * c)
        _, sum_gx, sum_g = torch.ops.aten.native_group_norm_backward(
            grad.view(1, n * c, h, w), x.view(1, n * c, h, w),
            m.reshape(1, n * c), ones.view(1, -1), ones, 1, n * c, h * w,
            n * c, [False, True, True])
        return sum_gx.view(n, c), sum_g.view(n, c)
    grad32 = grad.to(dtype)
    centred = x.to(dtype) - m.view(n, c, 1, 1)
    return (grad32 * centred).sum((2, 3)), grad32.sum((2, 3))


def batch_statistics(m: Tensor, v: Tensor, hw: int, sync: bool,
                     size: torch.Size
                     ) -> Tuple[Tensor, Tensor, Union[int, Tensor]]:
    """Batch mean and biased variance per channel, from ``m, v``.

    Args:
        m (Tensor): Per-``(sample, channel)`` means, ``(N, C)``.
        v (Tensor): Per-``(sample, channel)`` biased variances, ``(N, C)``.
        hw (int): Values per ``(sample, channel)``.
        sync (bool): All-reduce the sums over the default process group
            (two small all-reduces: the sums and the count, then the
            squared deviations about the global mean).
        size (torch.Size): The input's size, for the error message.

    Returns:
        tuple: ``mean (C,)``, ``var (C,)`` (biased) and the global element
        count (an int, or a 0-d tensor when synchronized).

    Raises:
        ValueError: BatchNorm's message when the (global) batch has only one
            value per channel.
    """
    channels = m.size(1)
    local = count = m.size(0) * hw
    total = m.sum(0) * hw
    if sync:
        sums = torch.cat([total, total.new_full((1, ), float(count))])
        all_reduce(sums, op='sum')  # in place; no-op for one process
        total, count = sums[:channels], sums[-1]
    # a global count of 1 implies a local count <= 1 on every rank, so all
    # ranks raise together; larger local counts skip the host sync
    if local <= 1:
        check_count('batch', int(count), size, sync)
    mean = total / count
    sq_total = (v + (m - mean).square()).sum(0) * hw
    if sync:
        all_reduce(sq_total, op='sum')
    return mean, sq_total / count, count


def estimate_statistics(m: Tensor, v: Tensor, hw: int, running_mean: Tensor,
                        running_var: Tensor, momentum: float, sync: bool,
                        size: torch.Size) -> Tuple[Tensor, Tensor]:
    """Update the estimated statistics in place; return the new values.

    ``mu_hat <- lerp(mu_hat, mean, r)`` and ``var_hat <- lerp(var_hat, s,
    r)`` with ``s`` the mean of ``(x - old mu_hat) ** 2``, which is
    ``mean_n (v + (m - old mu_hat) ** 2)`` exactly (no cancellation). Over
    the global batch when ``sync`` (one all-reduce of the two sums and the
    count).

    Args:
        m (Tensor): Per-``(sample, channel)`` means, ``(N, C)``.
        v (Tensor): Per-``(sample, channel)`` biased variances, ``(N, C)``.
        hw (int): Values per ``(sample, channel)``.
        running_mean (Tensor): ``mu_hat``, ``(C,)``, updated in place.
        running_var (Tensor): ``var_hat``, ``(C,)``, updated in place.
        momentum (float): The update rate ``r``.
        sync (bool): All-reduce over the default process group.
        size (torch.Size): The input's size, for the error message.

    Returns:
        tuple[Tensor, Tensor]: The updated estimates in ``m``'s dtype (new
        tensors, not the buffers).

    Raises:
        ValueError: If the (global) batch is empty.
    """
    channels = m.size(1)
    dtype = m.dtype
    # the (C,)-sized update in float64: the buffers then carry only their
    # own rounding, step after step
    m, v = m.double(), v.double()
    mu_old = running_mean.double()
    total = m.sum(0) * hw
    sq_total = (v + (m - mu_old).square()).sum(0) * hw
    count = m.size(0) * hw
    if sync:
        sums = torch.cat(
            [total, sq_total,
             total.new_full((1, ), float(count))])
        all_reduce(sums, op='sum')  # in place; no-op for one process
        total, sq_total = sums[:channels], sums[channels:2 * channels]
        if count == 0:
            # every rank is here when the global batch is empty
            check_count('estimate', int(sums[-1].item()), size, True)
        count = sums[-1]
    else:
        check_count('estimate', count, size)
    new_mean = torch.lerp(mu_old, total / count, momentum)
    new_var = torch.lerp(running_var.double(), sq_total / count, momentum)
    # new tensors, rounded as the buffers: a later in-place update of the
    # buffers must not touch what the backward pass saved
    new_mean = new_mean.to(running_mean.dtype)
    new_var = new_var.to(running_var.dtype)
    running_mean.copy_(new_mean)
    running_var.copy_(new_var)
    return new_mean.to(dtype), new_var.to(dtype)


class Coefficients(NamedTuple):
    """The closed form's small tensors (see the module docstring).

    ``k = 1 / sqrt(var_c + eps)`` and ``s = gamma * k``: ``(C,)``; ``uc =
    u - mu``: ``(N, G, C // G)``; ``R`` and ``aR = a * R``: ``(N, G, 1)``;
    ``A = aR * s`` and ``D = aR * uc + b``: ``(N, C)``, so that ``out = A *
    (x - m) + D``.
    """
    k: Tensor
    s: Tensor
    uc: Tensor
    R: Tensor
    aR: Tensor
    A: Tensor
    D: Tensor


def group_coefficients(m: Tensor, v: Tensor, mean: Tensor, var: Tensor,
                       weight: Optional[Tensor], bias: Optional[Tensor],
                       batch_weight: Optional[Tensor],
                       batch_bias: Optional[Tensor], num_groups: int,
                       eps: float) -> Coefficients:
    """BCN as ``out = A * (x - m) + D`` per ``(sample, channel)``.

    The centred form has no cancellation: ``u - mu`` is computed from
    ``s * (m - mean) + beta`` and the output from ``x - m``, so a large
    common offset of ``x`` costs no precision. Pure and differentiable (the
    fused tier differentiates through it; the eager tier's backward is
    written out in :class:`BCNFunction`).

    Args:
        m (Tensor): Per-``(sample, channel)`` means of ``x``, ``(N, C)``.
        v (Tensor): Per-``(sample, channel)`` biased variances, ``(N, C)``.
        mean (Tensor): The batch step's mean, ``(C,)``.
        var (Tensor): The batch step's variance, ``(C,)``.
        weight (Tensor, optional): Group affine ``a``, ``(G,)``.
        bias (Tensor, optional): Group affine ``b``, ``(G,)``.
        batch_weight (Tensor, optional): Batch-step ``gamma``, ``(C,)``.
        batch_bias (Tensor, optional): Batch-step ``beta``, ``(C,)``.
        num_groups (int): ``G``.
        eps (float): Added to both variances.

    Returns:
        Coefficients: The tensors of the closed form, in ``m``'s dtype.
    """
    n, c = m.shape
    groups = num_groups
    k = torch.rsqrt(var + eps)
    s = k if batch_weight is None else k * batch_weight
    sg = s.view(1, groups, -1)
    u = (m - mean) * s
    if batch_bias is not None:
        u = u + batch_bias
    u = u.view(n, groups, -1)
    uc = u - u.mean(2, keepdim=True)
    w = torch.addcmul(uc.square(), v.view(n, groups, -1), sg.square())
    R = torch.rsqrt(w.mean(2, keepdim=True) + eps)
    aR = R if weight is None else R * weight.view(1, groups, 1)
    A = (aR * sg).view(n, c)
    D = aR * uc
    if bias is not None:
        D = D + bias.view(1, groups, 1)
    return Coefficients(k, s, uc, R, aR, A, D.view(n, c))


def _per_sample_channel(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``(N, C)`` -> ``(N, C, 1, 1)`` in ``dtype``."""
    return t.to(dtype).view(*t.shape, 1, 1)


def _output(xn: Tensor, co: Coefficients, rstd: Tensor,
            out_dtype: torch.dtype) -> Tensor:
    """``out = A (x - m) + D = (A / rstd) xn + D``, written over ``xn``
    (the moments kernel's normalized copy), in ``out_dtype``."""
    scale = _per_sample_channel(co.A / rstd, xn.dtype)
    return xn.mul_(scale).add_(_per_sample_channel(co.D,
                                                   xn.dtype)).to(out_dtype)


def bcn_inference(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                  batch_weight: Optional[Tensor], batch_bias: Optional[Tensor],
                  running_mean: Tensor, running_var: Tensor, num_groups: int,
                  eps: float) -> Tensor:
    """BCN in eval mode without autograd: the closed form's forward only.

    What :class:`BCNFunction` computes with ``mode='eval'``, for calls that
    need no gradient (``torch.no_grad()``, inference), without the autograd
    function's bookkeeping.

    Args:
        x (Tensor): Input, ``(N, C, H, W)``.
        weight, bias (Tensor, optional): Group affine, ``(G,)``.
        batch_weight, batch_bias (Tensor, optional): Batch-step affine,
            ``(C,)``.
        running_mean, running_var (Tensor): The batch step's statistics,
            ``(C,)``.
        num_groups (int): ``G``.
        eps (float): Added to both variances.

    Returns:
        Tensor: Shape and dtype of ``x``.
    """
    with _autocast_off(x.device.type):
        xn, m, v, rstd = channel_moments(x.contiguous(), eps)
        dtype = m.dtype
        co = group_coefficients(m, v, running_mean.to(dtype),
                                running_var.to(dtype),
                                cast_optional(weight, dtype),
                                cast_optional(bias, dtype),
                                cast_optional(batch_weight, dtype),
                                cast_optional(batch_bias, dtype), num_groups,
                                eps)
        return _output(xn, co, rstd, x.dtype)


class BCNFunction(Function):
    """BCN forward and backward in the closed form (eager tier).

    ``BCNFunction.apply(x, weight, bias, batch_weight, batch_bias,
    running_mean, running_var, num_groups, mode, momentum, eps, sync)``;
    ``mode`` is ``'eval'`` (running statistics), ``'estimate'`` (update the
    estimates, then use them; no gradient through them) or ``'batch'``
    (batch statistics with gradient; running statistics updated). ``sync``
    all-reduces the training statistics (and, for ``'batch'``, their
    gradients) over the default process group.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Optional[Tensor],
                bias: Optional[Tensor], batch_weight: Optional[Tensor],
                batch_bias: Optional[Tensor], running_mean: Tensor,
                running_var: Tensor, num_groups: int, mode: str,
                momentum: float, eps: float, sync: bool) -> Tensor:
        with _autocast_off(x.device.type):
            x = x.contiguous()
            size = x.size()
            hw = size[2] * size[3]
            xn, m, v, rstd = channel_moments(x, eps, mode != 'eval')
            dtype = m.dtype
            count = None
            if mode == 'batch':
                mean, var, count = batch_statistics(m, v, hw, sync, size)
                with torch.no_grad():
                    unbiased = var * (count / (count - 1))
                    running_mean.lerp_(mean.to(running_mean.dtype), momentum)
                    running_var.lerp_(unbiased.to(running_var.dtype), momentum)
            elif mode == 'estimate':
                mean, var = estimate_statistics(m, v, hw, running_mean,
                                                running_var, momentum, sync,
                                                size)
            else:
                # copies: the backward pass must not see later updates
                mean = running_mean.to(dtype, copy=True)
                var = running_var.to(dtype, copy=True)
            co = group_coefficients(m, v, mean, var,
                                    cast_optional(weight, dtype),
                                    cast_optional(bias, dtype),
                                    cast_optional(batch_weight, dtype),
                                    cast_optional(batch_bias, dtype),
                                    num_groups, eps)
            out = _output(xn, co, rstd, x.dtype)

        ctx.save_for_backward(x, m, v, mean, co.k, co.s, co.uc, co.R, co.aR,
                              co.A, weight, batch_weight)
        ctx.config = (num_groups, mode, sync, hw, count,
                      None if weight is None else weight.dtype,
                      None if bias is None else bias.dtype,
                      None if batch_weight is None else batch_weight.dtype,
                      None if batch_bias is None else batch_bias.dtype)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        (x, m, v, mean, k, s, uc, R, aR, A, weight,
         batch_weight) = ctx.saved_tensors
        (groups, mode, sync, hw, count, w_dtype, b_dtype, bw_dtype,
         bb_dtype) = ctx.config
        dtype = m.dtype
        n, c = m.shape
        cg = c // groups
        with _autocast_off(x.device.type):
            grad = grad.contiguous()
            # out = A (x - m) + D
            dA, dD = _affine_reductions(grad, x, m, dtype)
            sg = s.view(1, groups, -1)
            dAg, dDg = dA.view(n, groups, cg), dD.view(n, groups, cg)
            dm = -A * dD
            # A = aR s, D = aR uc + b
            d_aR = (dAg * sg + dDg * uc).sum(2, keepdim=True)
            ds = (dAg * aR).sum(0).view(c)
            duc = dDg * aR
            grad_bias = dDg.sum((0, 2)) if b_dtype is not None else None
            grad_weight = None
            dR = d_aR
            if w_dtype is not None:
                grad_weight = (d_aR * R).sum(0).view(groups)
                dR = d_aR * weight.to(dtype).view(1, groups, 1)
            # R = rsqrt(mean_c w + eps), w = s^2 v + uc^2
            dw = (-0.5 / cg) * R.pow(3) * dR
            dv = (dw * sg.square()).view(n, c)
            ds = ds + (2 * sg * v.view(n, groups, cg) * dw).sum(0).view(c)
            duc = duc + 2 * uc * dw
            # uc = u - mean_c u, u = s (m - mean) + beta
            du = duc - duc.mean(2, keepdim=True)
            dm = dm + (du * sg).view(n, c)
            du = du.view(n, c)
            dbeta = du.sum(0)
            ds = ds + (du * (m - mean)).sum(0)
            grad_batch_bias = dbeta if bb_dtype is not None else None
            # s = gamma k
            grad_batch_weight = ds * k if bw_dtype is not None else None
            if mode == 'batch':
                dk = ds if bw_dtype is None else ds * batch_weight.to(dtype)
                dvar = -0.5 * k.pow(3) * dk
                dmean = -s * dbeta
                # mean = sum / count, var = sum of squared deviations / count
                d_sums = torch.cat([dmean, dvar]) / count
                if sync:
                    all_reduce(d_sums, op='sum')
                dmean, dvar = d_sums[:c], d_sums[c:]
                dm = dm + hw * (dmean + 2 * (m - mean) * dvar)
                dv = dv + hw * dvar
            grad_x = None
            if ctx.needs_input_grad[0]:
                # m = mean x, v = mean (x - m)^2:
                # dx = A g + P x + Q, P = 2 dv / hw, Q = dm / hw - P m
                p = dv * (2.0 / hw)
                q = dm / hw - p * m
                grad_x = grad.to(dtype) * _per_sample_channel(A, dtype)
                grad_x.addcmul_(x, _per_sample_channel(p, dtype))
                grad_x.add_(_per_sample_channel(q, dtype))
                grad_x = grad_x.to(x.dtype)
        return (grad_x, cast_optional(grad_weight, w_dtype),
                cast_optional(grad_bias, b_dtype),
                cast_optional(grad_batch_weight, bw_dtype),
                cast_optional(grad_batch_bias, bb_dtype), None, None, None,
                None, None, None, None)
