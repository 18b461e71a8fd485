# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Weight Standardization in float64, written out from the formulas of
Qiao et al. (arXiv 1903.10520), independently of the package: the one
reference the WS tests hold the layer to.

Per output channel of a weight ``W`` (O, I, kh, kw), or of any conv
dimension (O, I, *kernel), over its ``n = I * kh * kw`` (``I *
prod(kernel)``) values: ``mu = sum(W) / n`` and the unbiased
``var = sum((W - mu) ** 2) / (n - 1)``; the ``var`` form is
``(W - mu) / sqrt(var + eps)``, the ``std`` form (mmcv's ``ConvWS2d``)
``(W - mu) / (sqrt(var) + eps)``.
"""
import torch.nn.functional as F

EPS = 1e-5


def standardize(weight, eps=EPS, mode='var'):
    """The standardized ``weight``, in its dtype and differentiable in it
    (pass a float64 tensor)."""
    flat = weight.reshape(weight.shape[0], -1)
    mu = flat.mean(1, keepdim=True)
    var = flat.var(1, unbiased=True, keepdim=True)
    denom = var.sqrt() + eps if mode == 'std' else (var + eps).sqrt()
    return ((flat - mu) / denom).reshape(weight.shape)


def standardized(weight, eps=EPS, mode='var'):
    """:func:`standardize` of a detached float64 copy of ``weight``."""
    return standardize(weight.detach().double(), eps, mode)


def conv2d_like(conv, x, weight, bias=None):
    """``F.conv2d`` of ``x`` with ``weight`` and ``bias`` and the
    hyper-parameters of ``conv`` (stride, padding and its mode, dilation,
    groups); differentiable in the three tensors."""
    padding = conv.padding
    if conv.padding_mode != 'zeros':
        ph, pw = conv.padding
        x = F.pad(x, (pw, pw, ph, ph), mode=conv.padding_mode)
        padding = 0
    return F.conv2d(x, weight, bias, conv.stride, padding, conv.dilation,
                    conv.groups)


def conv_like(conv, x, weight, bias=None):
    """:func:`conv2d_like` for a conv of any dimension (``F.conv1d``,
    ``F.conv2d`` or ``F.conv3d`` after the weight's shape); ``padding_mode``
    other than ``'zeros'`` pads every spatial side by ``conv.padding``."""
    dims = weight.dim() - 2
    op = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[dims]
    padding = conv.padding
    if conv.padding_mode != 'zeros':
        pads = []
        for p in reversed(conv.padding):  # F.pad: last dimension first
            pads += [p, p]
        x = F.pad(x, pads, mode=conv.padding_mode)
        padding = 0
    return op(x, weight, bias, conv.stride, padding, conv.dilation,
              conv.groups)
