# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Tests of CenConv2d (weight centralization) against a float64 reference.
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_conv_layer
from mmengine.registry import MODELS, DefaultScope
from mmseg.registry import MODELS as MMSEG_MODELS
from torch.autograd import gradcheck

from mmseg_wsbcn.models.layers import CenConv2d, LayerKind, layer_kind
from mmseg_wsbcn.models.layers.cen_conv import centre_weight
from mmseg_wsbcn.models.utils import fold_ws_conv

F64 = torch.float64


def reference_weight(w):
    """``W - mean(W)`` per output channel, in float64 (the paper's
    formula, written out here)."""
    w = w.detach().double()
    flat = w.reshape(w.size(0), -1)
    return (flat - flat.sum(1, keepdim=True) / flat.size(1)).view(w.shape)


def off_defaults(**kwargs):
    """A float64 CenConv2d with every hyper-parameter off its default."""
    cfg = dict(
        stride=2,
        padding=2,
        dilation=2,
        groups=2,
        padding_mode='reflect',
        dtype=F64)
    cfg.update(kwargs)
    conv = CenConv2d(4, 6, 3, **cfg)
    with torch.no_grad():  # a weight mean far from 0
        conv.weight.add_(0.5)
    return conv


def reference_conv(conv, x, weight=None):
    weight = reference_weight(conv.weight) if weight is None else weight
    x = F.pad(
        x, [conv.padding[1]] * 2 + [conv.padding[0]] * 2,
        mode=conv.padding_mode)
    bias = None if conv.bias is None else conv.bias.double()
    return F.conv2d(x, weight, bias, conv.stride, 0, conv.dilation,
                    conv.groups)


def test_forward_matches_reference():
    conv = off_defaults()
    x = torch.randn(2, 4, 9, 8, dtype=F64)
    torch.testing.assert_close(conv(x), reference_conv(conv, x))
    w_hat = centre_weight(conv.weight)
    torch.testing.assert_close(w_hat, reference_weight(conv.weight))
    # rows sum to 0; no scaling: the centred rows keep their spread
    assert w_hat.flatten(1).sum(1).abs().max() < 1e-12
    torch.testing.assert_close(
        w_hat.flatten(1).std(1),
        conv.weight.detach().flatten(1).std(1))


def test_backward_matches_reference():
    """``dW = G - mean(G)`` per row, ``G`` the conv's weight gradient at
    ``W_hat``; ``dx`` and the bias gradient are the plain conv's."""
    conv = off_defaults()
    x = torch.randn(2, 4, 9, 8, dtype=F64, requires_grad=True)
    dy = torch.randn_like(conv(x))
    (conv(x) * dy).sum().backward()
    w_hat = reference_weight(conv.weight).requires_grad_()
    bias = conv.bias.detach().clone().requires_grad_()
    xr = x.detach().clone().requires_grad_()
    ref = nn.Conv2d(4, 6, 3, 2, 2, 2, 2, True, 'reflect', dtype=F64)
    out = ref._conv_forward(xr, w_hat, bias)
    (out * dy).sum().backward()
    G = w_hat.grad.flatten(1)
    dW = (G - G.mean(1, keepdim=True)).view(w_hat.shape)
    torch.testing.assert_close(conv.weight.grad, dW)
    torch.testing.assert_close(x.grad, xr.grad)
    torch.testing.assert_close(conv.bias.grad, bias.grad)


def test_gradcheck():
    conv = CenConv2d(2, 3, 3, padding=1, dtype=F64)
    x = torch.randn(1, 2, 4, 4, dtype=F64, requires_grad=True)
    assert gradcheck(
        lambda x, w, b: conv._conv_forward(x, centre_weight(w), b),
        (x, conv.weight, conv.bias))


def test_eval_form():
    conv = off_defaults(bias=False)
    conv.weight.requires_grad_(False)
    plain = conv.eval_form()
    assert type(plain) is nn.Conv2d and plain.bias is None
    assert not plain.weight.requires_grad
    assert plain.padding_mode == 'reflect' and plain.groups == 2
    x = torch.randn(1, 4, 9, 8, dtype=F64)
    torch.testing.assert_close(plain(x), conv(x))
    # self unchanged (the raw weight stays)
    assert conv.weight.mean().item() > 0.3


def test_fold_ws_conv_replaces_it():
    model = nn.Sequential(off_defaults(), nn.ReLU())
    x = torch.randn(1, 4, 9, 8, dtype=F64)
    want = model(x)
    fold_ws_conv(model)
    assert type(model[0]) is nn.Conv2d
    torch.testing.assert_close(model(x), want)


def test_state_dict_is_conv2d():
    conv = CenConv2d(4, 6, 3)
    plain = nn.Conv2d(4, 6, 3)
    assert conv.state_dict().keys() == plain.state_dict().keys()
    conv.load_state_dict(plain.state_dict())
    assert torch.equal(conv.weight, plain.weight)


def test_build_and_kind():
    assert MODELS.get('CenConv2d') is CenConv2d
    conv = build_conv_layer(dict(type='CenConv2d'), 4, 6, 3, padding=1)
    assert isinstance(conv, CenConv2d)
    assert conv(torch.randn(1, 4, 5, 5)).shape == (1, 6, 5, 5)
    assert MMSEG_MODELS.get('CenConv2d') is CenConv2d
    with DefaultScope.overwrite_default_scope('mmseg'):
        conv = build_conv_layer(dict(type='CenConv2d'), 4, 6, 1, bias=False)
    assert isinstance(conv, CenConv2d) and conv.bias is None
    assert layer_kind(conv) == LayerKind('conv', 'cen_conv', 'CenConv2d')


def test_errors():
    with pytest.raises(ValueError, match='fan-in'):
        CenConv2d(4, 4, 1, groups=4)  # depthwise 1x1: W_hat would be 0
    with pytest.raises(ValueError, match='4-D'):
        CenConv2d(4, 4, 3)(torch.randn(4, 5, 5))


def test_autocast_cpu_bf16():
    conv = CenConv2d(4, 6, 3, padding=1)
    with torch.no_grad():
        conv.weight.add_(0.3)
    x = torch.randn(2, 4, 6, 6)
    want = conv(x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = conv(x)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert torch.isfinite(conv.weight.grad).all()
    # the weight was centred in float32, then cast: bf16 conv rounding only
    torch.testing.assert_close(out.float(), want, atol=5e-2, rtol=2e-2)
