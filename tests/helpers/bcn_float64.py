# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""BCN in float64, written out from the paper's formulas, independently of
the package: the one reference the BCN tests hold the layer to.

BCN (Qiao et al., arXiv 1903.10520) normalizes ``x`` (N, C, H, W) in two
steps and then applies the group affine:

1. batch step, per channel with statistics ``mean``/``var`` (the batch's,
   the estimated ones, or the running ones in eval):
   ``y = gamma * (x - mean) / sqrt(var + eps) + beta``;
2. channel step, per sample and group of ``C / G`` channels:
   ``z = (y - mu_g) / sqrt(sigma2_g + eps)``;
3. group affine: ``out = a_g * z + b_g``.

The micro-batch form estimates the statistics at rate ``r``: the batch mean
of ``x``, and the second moment of ``x`` about the *old* estimated mean.
"""
import torch

EPS = 1e-5


def per_channel(x):
    """The values of each channel over (N, H, W), as a float64 (C, -1)."""
    return x.detach().double().transpose(0, 1).reshape(x.size(1), -1)


def batch_moments(x):
    """Mean, biased and unbiased variance per channel over (N, H, W)."""
    xc = per_channel(x)
    mean = xc.mean(1)
    dev = ((xc - mean[:, None])**2).sum(1)
    return mean, dev / xc.size(1), dev / (xc.size(1) - 1)


def second_moment(x, about):
    """Per channel, the mean of ``(x - about) ** 2`` over (N, H, W)."""
    return ((per_channel(x) - about.double()[:, None])**2).mean(1)


def estimates(x, mu_hat, var_hat, r):
    """One training update of the estimated statistics at rate ``r``: the
    batch mean and the second moment about the OLD ``mu_hat``."""
    m = per_channel(x).mean(1)
    s = second_moment(x, mu_hat)
    return (1 - r) * mu_hat + r * m, (1 - r) * var_hat + r * s


def batch_step(x, mean, var, gamma, beta, eps=EPS):
    """Per-channel affine normalization with given statistics."""
    shape = (1, -1, 1, 1)
    return (gamma.view(shape) *
            (x - mean.view(shape)) / torch.sqrt(var.view(shape) + eps) +
            beta.view(shape))


def channel_step(y, groups, a, b, eps=EPS):
    """Per-sample, per-group standardization, then the group affine."""
    n, c, h, w = y.shape
    yg = y.reshape(n, groups, -1)
    mu = yg.mean(-1, keepdim=True)
    var = ((yg - mu)**2).mean(-1, keepdim=True)
    z = (yg - mu) / torch.sqrt(var + eps)
    return (a.view(1, -1, 1) * z + b.view(1, -1, 1)).reshape(n, c, h, w)


def bcn(x, params, mode, mu0, var0, r=0.1, eps=EPS):
    """The whole layer in float64 (differentiable in ``x`` and ``params``).

    Args:
        x (Tensor): Input, shape (N, C, H, W).
        params (sequence[Tensor]): ``(a, b, gamma, beta)``: the group affine,
            shape (G,), and the batch step's affine, shape (C,).
        mode (str): ``'batch'`` (the batch's statistics), ``'estimate'``
            (the estimates after this step's update from ``mu0``/``var0``)
            or ``'eval'`` (``mu0``/``var0`` as they are).
        mu0 (Tensor): Running / estimated mean, shape (C,).
        var0 (Tensor): Running / estimated variance, shape (C,).
        r (float): Update rate of the estimates.
        eps (float): Added to every variance.

    Returns:
        Tensor: float64, shape (N, C, H, W).
    """
    a, b, gamma, beta = params
    x = x.double()
    if mode == 'batch':
        xc = x.transpose(0, 1).reshape(x.size(1), -1)
        mean, var = xc.mean(1), xc.var(1, unbiased=False)
    elif mode == 'estimate':
        mean, var = estimates(x, mu0.double(), var0.double(), r)
    else:
        mean, var = mu0.double(), var0.double()
    return channel_step(
        batch_step(x, mean, var, gamma, beta, eps), a.numel(), a, b, eps)
