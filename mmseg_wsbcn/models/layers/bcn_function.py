# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
r"""BCN's arithmetic: the reference formula and the closed form.

:func:`bcn_reference` is the paper's three steps in plain tensor ops,
differentiated by autograd: the definition the faster path is tested
against. :class:`BCNFunction` computes the same function in closed form:
the batch step is a per-channel affine map ``y = s * x + t`` (``s = gamma
/ sqrt(var + eps)``), so the group statistics of ``y`` follow from the
per-``(sample, channel)`` mean ``m`` and biased variance ``v`` of ``x``::

    u  = s (m - mean) + beta,        uc = u - mean_{c in g} u
    R  = 1 / sqrt(mean_{c in g} (s^2 v + uc^2) + eps)       per (n, g)
    out = A (x - m) + D,   A = a R s,   D = a R uc + b      per (n, c)

That is GroupNorm's cost: one reduction and one elementwise pass over
``x`` forward, one fused reduction (``sum g``, ``sum g (x - m)``) and one
elementwise pass backward (the *stages*); the rest works on ``(N, C)``
tensors, with its backward written out in :func:`coefficients_backward`.
Only ``x`` and ``(N, C)`` statistics are saved. The batch statistics and
their all-reduce sit between the stages. The fused tier compiles the
stages (:mod:`.bcn_compiled`); the eager tier runs them as they are, with
GroupNorm's native kernels (one group per channel) for the reductions.
Half-precision inputs are reduced in float32 (the compiled stages read
them directly, the eager tier casts); the output has the input's dtype
and memory format.
"""
from typing import Callable, NamedTuple, Optional, Tuple

import torch
from mmengine.dist import all_reduce
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from .ws_conv import _autocast_off

OptTensor = Optional[Tensor]


def stat_dtype(x: Tensor) -> torch.dtype:
    """Statistics dtype: float32 for half-precision inputs, else x's."""
    return torch.float32 if x.dtype in (torch.float16,
                                        torch.bfloat16) else x.dtype


def _bc(t: Tensor, dims: int = 4) -> Tensor:
    """``(N, C)`` or ``(C,)`` -> broadcastable against a ``dims``-D input
    ``(N, C, ...)``."""
    return t.reshape(*t.shape, *([1] * (dims - 2)))


def _spatial(x: Tensor) -> Tuple[int, ...]:
    """The dims of ``x`` after ``(N, C)``."""
    return tuple(range(2, x.dim()))


def bcn_reference(x: Tensor, weight: OptTensor, bias: OptTensor,
                  batch_weight: OptTensor, batch_bias: OptTensor, mean: Tensor,
                  var: Tensor, num_groups: int, mode: str, momentum: float,
                  eps: float) -> Tuple[Tensor, Tensor, Tensor]:
    """BCN as the paper writes it: batch step, channel step, group affine.

    Plain tensor ops, differentiated by autograd; one process, no buffer
    updated; half-precision inputs are computed in float32. Arguments as
    :func:`.bcn.batch_channel_norm`, with ``mean, var`` the running
    statistics (for ``'estimate'`` the estimates before this step) and
    ``mode`` one of ``'eval'``, ``'batch'`` (batch statistics, with
    gradient), ``'estimate'`` (update without gradient, then normalize).

    Returns:
        tuple[Tensor, Tensor, Tensor]: The output (dtype of ``x``) and the
        batch step's mean and biased variance as used, detached.
    """
    dtype = stat_dtype(x)
    xs = x.to(dtype)
    n, c, h, w = x.shape
    mean, var = mean.to(dtype), var.to(dtype)
    if mode == 'batch':
        var, mean = torch.var_mean(xs, dim=(0, 2, 3), correction=0)
    elif mode == 'estimate':
        xd = xs.detach()
        second = (xd - _bc(mean)).square().mean((0, 2, 3))
        mean = torch.lerp(mean, xd.mean((0, 2, 3)), momentum)
        var = torch.lerp(var, second, momentum)
    y = (xs - _bc(mean)) * torch.rsqrt(_bc(var) + eps)
    if batch_weight is not None:
        y = y * _bc(batch_weight.to(dtype))
    if batch_bias is not None:
        y = y + _bc(batch_bias.to(dtype))
    yg = y.reshape(n, num_groups, (c // num_groups) * h * w)
    gvar, gmean = torch.var_mean(yg, dim=2, keepdim=True, correction=0)
    z = (yg - gmean) * torch.rsqrt(gvar + eps)
    if weight is not None:
        z = z * weight.to(dtype).view(1, -1, 1)
    if bias is not None:
        z = z + bias.to(dtype).view(1, -1, 1)
    return z.reshape(x.shape).to(x.dtype), mean.detach(), var.detach()


class Coefficients(NamedTuple):
    """The closed form's small tensors: ``k = rsqrt(var + eps)``, ``s =
    gamma k`` ``(C,)``; ``uc`` ``(N, G, C // G)``; ``R``, ``aR = a R``
    ``(N, G, 1)``; ``A``, ``D`` ``(N, C)``."""
    k: Tensor
    s: Tensor
    uc: Tensor
    R: Tensor
    aR: Tensor
    A: Tensor
    D: Tensor


def group_coefficients(m: Tensor, v: Tensor, mean: Tensor, var: Tensor,
                       weight: OptTensor, bias: OptTensor,
                       batch_weight: OptTensor, batch_bias: OptTensor,
                       num_groups: int, eps: float) -> Coefficients:
    """BCN as ``out = A * (x - m) + D`` per ``(sample, channel)``, from
    the per-``(sample, channel)`` mean ``m`` and biased variance ``v`` of
    ``x`` ``(N, C)``, the batch step's ``mean, var`` ``(C,)`` and the
    parameters (in ``m``'s dtype). No cancellation: ``uc`` comes from ``m -
    mean`` and the output from ``x - m``."""
    n, c = m.shape
    shape = (n, num_groups, c // num_groups)
    k = torch.rsqrt(var + eps)
    s = k if batch_weight is None else k * batch_weight
    sg = s.view(1, *shape[1:])
    u = (m - mean) * s
    if batch_bias is not None:
        u = u + batch_bias
    u = u.view(shape)
    uc = u - u.mean(2, keepdim=True)
    second = torch.addcmul(uc.square(), v.view(shape), sg * sg)
    R = torch.rsqrt(second.mean(2, keepdim=True) + eps)
    aR = R if weight is None else R * weight.view(1, num_groups, 1)
    D = aR * uc
    if bias is not None:
        D = D + bias.view(1, num_groups, 1)
    return Coefficients(k, s, uc, R, aR, (aR * sg).view(n, c), D.view(n, c))


def coefficients_backward(dA: Tensor, dD: Tensor, m: Tensor, v: Tensor,
                          mean: Tensor, co: Coefficients, weight: OptTensor,
                          batch_weight: OptTensor, num_groups: int) -> tuple:
    """Gradients through :func:`group_coefficients` and ``out = A (x - m)
    + D``, given ``dA = sum g (x - m)`` and ``dD = sum g`` over ``(H, W)``.

    Returns:
        tuple: ``dm, dv`` ``(N, C)``; ``dmean, dvar`` ``(C,)`` (used when
        the statistics are the batch's); the gradients of ``weight, bias,
        batch_weight, batch_bias``.
    """
    n, c = m.shape
    groups = num_groups
    shape = (n, groups, c // groups)
    sg = co.s.view(1, *shape[1:])
    dAg, dDg = dA.view(shape), dD.view(shape)
    d_aR = (dAg * sg + dDg * co.uc).sum(2, keepdim=True)
    ds = (dAg * co.aR).sum(0).view(c)
    duc = dDg * co.aR
    grad_bias = dDg.sum((0, 2))
    grad_weight = (d_aR * co.R).sum(0).view(groups)
    dR = d_aR if weight is None else d_aR * weight.view(1, groups, 1)
    dw = (-0.5 * groups / c) * co.R.pow(3) * dR
    dv = (dw * sg.square()).view(n, c)
    ds = ds + (2 * sg * v.view(shape) * dw).sum(0).view(c)
    du = duc + 2 * co.uc * dw
    du = (du - du.mean(2, keepdim=True)).view(n, c)
    dm = du * co.s - co.A * dD
    grad_batch_bias = du.sum(0)
    ds = ds + (du * (m - mean)).sum(0)
    grad_batch_weight = ds * co.k
    dk = ds if batch_weight is None else ds * batch_weight
    dvar = -0.5 * co.k.pow(3) * dk
    dmean = -co.s * grad_batch_bias
    return (dm, dv, dmean, dvar, grad_weight, grad_bias, grad_batch_weight,
            grad_batch_bias)


# ------------------------------------------------- stages (full-size passes)
# Each takes ``(N, C, ...)`` tensors; the fused tier passes ``(N, C, H *
# W)`` views (views for contiguous and channels-last tensors alike), which
# keep the image size out of the compiler's shape relations with ``C``.
def moments_stage(x: Tensor) -> Tuple[Tensor, Tensor]:
    """Per-``(sample, channel)`` mean and biased variance, ``(N, C)``."""
    v, m = torch.var_mean(x.to(stat_dtype(x)), dim=_spatial(x), correction=0)
    return m, v


def normalize_stage(x: Tensor, m: Tensor, v: Tensor, mean: Tensor, var: Tensor,
                    weight: OptTensor, bias: OptTensor,
                    batch_weight: OptTensor, batch_bias: OptTensor,
                    num_groups: int, eps: float) -> Tensor:
    """The output ``A * (x - m) + D``, dtype and memory format of ``x``."""
    co = group_coefficients(m, v, mean, var, weight, bias, batch_weight,
                            batch_bias, num_groups, eps)
    d = x.dim()
    out = (x.to(m.dtype) - _bc(m, d)) * _bc(co.A, d) + _bc(co.D, d)
    return out.to(x.dtype)


def grad_stats_stage(grad: Tensor, x: Tensor, m: Tensor, v: Tensor,
                     mean: Tensor, var: Tensor, weight: OptTensor,
                     bias: OptTensor, batch_weight: OptTensor,
                     batch_bias: OptTensor, num_groups: int,
                     eps: float) -> tuple:
    """The backward reductions ``dA = sum g (x - m)``, ``dD = sum g`` and
    :func:`coefficients_backward`; returns its tuple with ``A`` appended.
    """
    co = group_coefficients(m, v, mean, var, weight, bias, batch_weight,
                            batch_bias, num_groups, eps)
    n, c = m.shape
    if (not torch.compiler.is_compiling() and x.numel() > 0
            and x.dtype == grad.dtype == m.dtype and x.is_contiguous()
            and grad.is_contiguous()):
        # one native pass: GroupNorm's backward with a group per (sample,
        # channel), mean m and unit scale gives exactly these two sums
        ones = x.new_ones(n * c)
        _, dA, dD = torch.ops.aten.native_group_norm_backward(
            grad.view(1, n * c, -1), x.view(1, n * c, -1), m.reshape(1, -1),
            ones.view(1, -1), ones, 1, n * c, x.shape[2:].numel(), n * c,
            [False, True, True])
        dA, dD = dA.view(n, c), dD.view(n, c)
    else:
        g = grad.to(m.dtype)
        dA = (g * (x.to(m.dtype) - _bc(m, x.dim()))).sum(_spatial(x))
        dD = g.sum(_spatial(x))
    return (*coefficients_backward(dA, dD, m, v, mean, co, weight,
                                   batch_weight, num_groups), co.A)


def grad_input_stage(grad: Tensor, x: Tensor, m: Tensor, A: Tensor, dm: Tensor,
                     dv: Tensor) -> Tensor:
    """``dx = A g + P (x - m) + dm / hw`` with ``P = 2 dv / hw`` (from ``m =
    mean x``, ``v = mean (x - m)^2``); centred, so a large ``|m|`` costs no
    precision."""
    hw = x.shape[2:].numel()
    d = x.dim()
    dx = x.to(m.dtype) - _bc(m, d)
    dx.mul_(_bc(dv * (2.0 / hw), d)).addcmul_(grad.to(m.dtype), _bc(A, d))
    return dx.add_(_bc(dm / hw, d)).to(x.dtype)


def _native_moments(x: Tensor, eps: float) -> Tuple[Tensor, ...]:
    """:func:`moments_stage` through GroupNorm's kernel with one group per
    channel (several times faster than ``var_mean`` on the CPU); also
    returns ``xn = (x - m) * rstd`` (a fresh tensor) and ``rstd``."""
    n, c, h, w = x.shape
    if x.numel() == 0:
        zeros = x.new_zeros((n, c), dtype=stat_dtype(x))
        return zeros, zeros, x.new_empty(x.shape, dtype=zeros.dtype), zeros
    xs = x.to(stat_dtype(x))
    # the CPU kernel also takes channels-last inputs (and keeps them so)
    if not (x.is_cpu and xs.is_contiguous(memory_format=torch.channels_last)):
        xs = xs.contiguous()
    xn, m, rstd = torch.native_group_norm(xs, None, None, n, c, h * w, c, eps)
    rstd = rstd.view(n, c)
    return m.view(n, c), rstd.pow(-2).sub_(eps).clamp_min_(0), xn, rstd


def _call(stage: Callable, *args):
    """The eager tier's way to run a stage."""
    return stage(*args)


def _strided_like(t: Tensor, like: Tensor) -> Tensor:
    """``t`` with the strides of ``like`` (a copy only if they differ)."""
    if t.stride() == like.stride():
        return t
    return torch.empty_strided(
        like.shape, like.stride(), dtype=t.dtype, device=t.device).copy_(t)


def _statistics(m: Tensor, v: Tensor, hw: int, running_mean: Tensor,
                running_var: Tensor, mode: str, momentum: float, sync: bool,
                size: torch.Size) -> Tuple[Tensor, Tensor, Tensor]:
    """The batch step's ``mean, var`` for ``mode``; updates the buffers.

    Per-channel sums ``S1 = sum x``, ``S2 = sum (x - shift)^2`` and the
    count, one all-reduce when ``sync``; ``shift`` is ``running_mean`` (the
    same on every rank), or for unsynchronized batch statistics the batch
    mean itself (an exact two-pass variance). ``'batch'``: ``mean = S1 /
    n``, ``var = S2 / n - (mean - shift)^2``; ``'estimate'``: the paper's
    update, ``S2 / n`` being the second moment about the old ``mu_hat``. A
    global batch with no values leaves the buffers alone.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``mean``, ``var`` (biased), ``(C,)``
        in ``m``'s dtype, and the global count (0-d).
    """
    dtype = m.dtype
    shift = running_mean.to(dtype)
    if mode == 'batch' and not sync and m.size(0) > 0:
        shift = m.mean(0)
    local = m.size(0) * hw
    sums = torch.cat([
        m.sum(0) * hw, (v + (m - shift).square()).sum(0) * hw,
        m.new_full((1, ), float(local))
    ])
    if sync:
        all_reduce(sums, op='sum')  # in place; a no-op for one process
    c = m.size(1)
    count = sums[2 * c]
    if local <= 1:  # only then can the global count be 0 or 1: look
        total = int(count.item())
        if mode == 'batch' and total == 1:
            raise ValueError('Expected more than 1 value per channel when '
                             f'training, got input size {size}')
        if total == 0:
            return running_mean.to(dtype), running_var.to(dtype), count
    first, second = sums[:c] / count, sums[c:2 * c] / count
    with torch.no_grad():
        if mode == 'batch':
            mean = first
            var = (second - (mean - shift).square()).clamp_min(0)
            running_mean.lerp_(mean.to(running_mean.dtype), momentum)
            running_var.lerp_(
                (var * count / (count - 1)).to(running_var.dtype), momentum)
        else:
            running_mean.lerp_(first.to(running_mean.dtype), momentum)
            running_var.lerp_(second.to(running_var.dtype), momentum)
            # copies: the backward pass must not see later updates
            mean = running_mean.to(dtype, copy=True)
            var = running_var.to(dtype, copy=True)
    return mean, var, count


class BCNFunction(Function):
    """BCN forward and backward in closed form (both tiers).

    ``BCNFunction.apply(x, weight, bias, batch_weight, batch_bias,
    running_mean, running_var, num_groups, mode, momentum, eps, sync,
    run)``. ``mode`` is ``'eval'``, ``'estimate'`` or ``'batch'`` (see
    :func:`bcn_reference`); ``sync`` all-reduces the training statistics
    (and, for ``'batch'``, their gradients) over the default process group;
    ``run(stage, *args)`` runs a stage: compiled (the fused tier,
    :mod:`.bcn_compiled`) or None for the eager tier.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: OptTensor, bias: OptTensor,
                batch_weight: OptTensor, batch_bias: OptTensor,
                running_mean: Tensor, running_var: Tensor, num_groups: int,
                mode: str, momentum: float, eps: float, sync: bool,
                run: Optional[Callable]) -> Tensor:
        dtype = stat_dtype(x)
        # plain tensors: the compiler keeps a Parameter's shape static
        params = tuple(None if p is None else p.detach().to(dtype)
                       for p in (weight, bias, batch_weight, batch_bias))
        hw = x.shape[2:].numel()
        with _autocast_off(x.device.type):
            if run is None:
                m, v, xn, rstd = _native_moments(x, eps)
            else:
                # detached: neither its view base nor requires_grad (train
                # against eval) enters the compiler's guards
                xd = x.detach()
                m, v = run(moments_stage, xd)
            count = None
            if mode == 'eval':
                mean = running_mean.to(dtype, copy=True)
                var = running_var.to(dtype, copy=True)
            else:
                mean, var, count = _statistics(m, v, hw, running_mean,
                                               running_var, mode, momentum,
                                               sync, x.size())
            if run is None:
                co = group_coefficients(m, v, mean, var, *params, num_groups,
                                        eps)
                out = xn.mul_(_bc(co.A / rstd)).add_(_bc(co.D)).to(x.dtype)
            else:
                out = run(normalize_stage, xd, m, v, mean, var, *params,
                          num_groups, eps)
        ctx.save_for_backward(x, m, v, mean, var, *params)
        ctx.config = (num_groups, mode, sync, eps, hw, count, run,
                      tuple(None if p is None else p.dtype
                            for p in (weight, bias, batch_weight, batch_bias)))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, m, v, mean, var, *params = ctx.saved_tensors
        groups, mode, sync, eps, hw, count, run, dtypes = ctx.config
        x = x.detach()
        # the layout of x (not, e.g., the expanded gradient of a sum)
        grad = _strided_like(grad, x)
        with _autocast_off(x.device.type):
            run = run or _call
            dm, dv, dmean, dvar, *grads, A = run(grad_stats_stage, grad, x, m,
                                                 v, mean, var, *params, groups,
                                                 eps)
            if mode == 'batch':
                # mean = S1 / n and var = S2 / n - (mean - shift)^2 depend on
                # every rank's x: all-reduce their gradients, then chain
                d_stats = torch.cat([dmean, dvar]) / count
                if sync:
                    all_reduce(d_stats, op='sum')
                dmean, dvar = d_stats.chunk(2)
                dm = dm + hw * (dmean + 2 * (m - mean) * dvar)
                dv = dv + hw * dvar
            grad_x = None
            if ctx.needs_input_grad[0]:
                grad_x = run(grad_input_stage, grad, x, m, A, dm, dv)
        grads = [
            None if dt is None else g.to(dt) for g, dt in zip(grads, dtypes)
        ]
        return (grad_x, *grads, None, None, None, None, None, None, None, None)
