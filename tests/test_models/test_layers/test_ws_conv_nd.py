# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Tests of ``WSConv1d`` and ``WSConv3d`` (``ws_conv_nd.py``).

The expected values are re-derived in float64 from the formulas of Qiao
et al. (arXiv:1903.10520) by ``tests/helpers/ws_float64.py``, never by
calling the code under test.
"""
import pytest
import torch
import torch.nn as nn
import ws_float64 as ws64
from mmcv.cnn import ConvModule, build_conv_layer
from mmengine.registry import MODELS, DefaultScope
from torch.testing import assert_close

import mmseg_wsbcn  # noqa: F401  (registers the layers)
from mmseg_wsbcn.deploy import fold_bcn_ws
from mmseg_wsbcn.models import fold_ws_conv
from mmseg_wsbcn.models.layers import (WSConv1d, WSConv3d, layer_kind,
                                       weight_standardize)

CLASSES = {1: (WSConv1d, nn.Conv1d), 3: (WSConv3d, nn.Conv3d)}
SPATIAL = {1: (9, ), 3: (5, 4, 6)}

CASES = {
    1: [
        dict(in_channels=4, out_channels=6, kernel_size=3, padding=1),
        dict(in_channels=4, out_channels=6, kernel_size=1, bias=False),
        dict(in_channels=6, out_channels=4, kernel_size=3, groups=2),
        dict(
            in_channels=4,
            out_channels=6,
            kernel_size=3,
            dilation=2,
            padding=2,
            stride=2),
        dict(
            in_channels=4,
            out_channels=5,
            kernel_size=3,
            padding=1,
            padding_mode='reflect'),
        dict(
            in_channels=3,
            out_channels=4,
            kernel_size=2,
            padding=1,
            padding_mode='circular'),
        dict(in_channels=4, out_channels=6, kernel_size=3, padding='same'),
    ],
    3: [
        dict(in_channels=4, out_channels=6, kernel_size=3, padding=1),
        dict(
            in_channels=4,
            out_channels=6,
            kernel_size=(1, 3, 1),
            stride=(1, 2, 1),
            bias=False),
        dict(in_channels=6, out_channels=4, kernel_size=2, groups=2),
        dict(
            in_channels=4,
            out_channels=5,
            kernel_size=3,
            padding=(1, 1, 0),
            padding_mode='replicate',
            dilation=(1, 2, 1)),
    ],
}
ALL_CASES = [
    pytest.param(d, cfg, id=f'{d}d-{i}') for d, cfgs in CASES.items()
    for i, cfg in enumerate(cfgs)
]


def make(dims, cfg, mode, dtype=torch.float32):
    torch.manual_seed(len(cfg) + dims)
    conv = CLASSES[dims][0](**cfg, mode=mode, dtype=dtype)
    if conv.bias is not None:
        nn.init.normal_(conv.bias)
    x = torch.randn(2, cfg['in_channels'], *SPATIAL[dims], dtype=dtype)
    return conv, x


def reference(conv, x):
    """Float64 WS conv of detached copies, differentiable in all three."""
    x64 = x.detach().double().requires_grad_()
    w64 = conv.weight.detach().double().requires_grad_()
    b64 = (None if conv.bias is None else
           conv.bias.detach().double().requires_grad_())
    out = ws64.conv_like(conv, x64, ws64.standardize(w64, conv.eps, conv.mode),
                         b64)
    return out, (x64, w64, b64)


# ---------------------------------------------------- against float64
@pytest.mark.parametrize('mode', ['var', 'std'])
@pytest.mark.parametrize('dims, cfg', ALL_CASES)
def test_forward_and_gradients_vs_float64(dims, cfg, mode):
    conv, x = make(dims, cfg, mode)
    x.requires_grad_()
    out = conv(x)
    expected, (x64, w64, b64) = reference(conv, x)
    assert out.dtype == torch.float32 and out.shape == expected.shape
    assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    (expected * g.double()).sum().backward()
    assert_close(x.grad.double(), x64.grad, rtol=1e-5, atol=1e-5)
    assert_close(conv.weight.grad.double(), w64.grad, rtol=1e-4, atol=1e-5)
    if b64 is not None:
        assert_close(conv.bias.grad.double(), b64.grad, rtol=1e-5, atol=1e-5)
    # float64 layer: to float64 precision
    conv64 = conv.double()
    assert_close(
        conv64(x.detach().double()), expected.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('mode', ['var', 'std'])
@pytest.mark.parametrize('dims', [1, 3])
def test_gradcheck(dims, mode):
    torch.manual_seed(5)
    cls = CLASSES[dims][0]
    conv = cls(
        4, 2, 2, padding=1, groups=2, eps=0.1, mode=mode, dtype=torch.float64)
    x = torch.randn(
        1, 4, *(3, ) * dims, dtype=torch.float64, requires_grad=True)

    def call(inp, weight, bias):
        return torch.func.functional_call(conv, {
            'weight': weight,
            'bias': bias
        }, (inp, ))

    weight = conv.weight.detach().clone().requires_grad_()
    bias = conv.bias.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(call, (x, weight, bias))


def test_the_two_forms_differ():
    # eps 0.1 against a weight variance near 0.01 separates the forms
    torch.manual_seed(6)
    for dims in (1, 3):
        a = CLASSES[dims][0](4, 4, 3, eps=0.1, mode='var')
        b = CLASSES[dims][0](4, 4, 3, eps=0.1, mode='std')
        b.load_state_dict(a.state_dict())
        x = torch.randn(1, 4, *(5, ) * dims)
        assert not torch.allclose(a(x), b(x), atol=1e-2)
        for conv in (a, b):
            assert_close(
                conv(x).double(),
                ws64.conv_like(conv, x.double(),
                               ws64.standardized(conv.weight, 0.1, conv.mode),
                               conv.bias.detach().double()),
                rtol=1e-5,
                atol=1e-5)


# -------------------------------------------------------- mixed precision
@pytest.mark.parametrize('mode', ['var', 'std'])
@pytest.mark.parametrize('dims', [1, 3])
def test_autocast_cpu_bf16(dims, mode):
    """Standardized in float32 (the W_hat of float32 training), convolved
    in bfloat16."""
    torch.manual_seed(7)
    conv = CLASSES[dims][0](4, 6, 3, padding=1, mode=mode)
    with torch.no_grad():
        conv.weight.mul_(1e-3)  # small weights: bf16 statistics would fail
    x = torch.randn(2, 4, *(4, ) * dims)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        w_amp = weight_standardize(conv.weight, conv.eps, mode)
        out = conv(x)
    assert w_amp.dtype == torch.float32
    assert_close(
        w_amp.double(),
        ws64.standardized(conv.weight, 1e-5, mode),
        rtol=0,
        atol=2e-6)
    assert out.dtype == torch.bfloat16
    expected = ws64.conv_like(conv, x.double(),
                              ws64.standardized(conv.weight, 1e-5, mode),
                              conv.bias.detach().double())
    assert_close(out.double(), expected, rtol=2e-2, atol=5e-2)
    out.float().square().mean().backward()
    assert torch.isfinite(conv.weight.grad).all()
    assert conv.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------- errors
def test_bad_arguments_and_inputs():
    for cls in (WSConv1d, WSConv3d):
        with pytest.raises(ValueError, match="mode='foo'"):
            cls(4, 4, 3, mode='foo')
        with pytest.raises(ValueError, match='eps=0'):
            cls(4, 4, 3, eps=0)
        # depthwise with a kernel of 1: n = 1
        with pytest.raises(ValueError, match='n - 1 = 0') as err:
            cls(4, 4, 1, groups=4)
        assert CLASSES[cls._dims][1].__name__ in str(err.value)
        conv = cls(4, 4, 2, groups=4)  # n = 2 (1-D) or 8 (3-D): allowed
        with pytest.raises(ValueError, match='in_channels=4'):
            conv(torch.randn(1, 3, *(4, ) * cls._dims))
    with pytest.raises(ValueError, match=r'\(N, C, L\)'):
        WSConv1d(4, 4, 3)(torch.randn(4, 9))
    with pytest.raises(ValueError, match=r'\(N, C, D, H, W\)'):
        WSConv3d(4, 4, 3)(torch.randn(1, 4, 5, 5))


# ----------------------------------------- registry, protocol, eval form
@pytest.mark.parametrize('scope', [None, 'mmseg'])
@pytest.mark.parametrize('dims', [1, 3])
def test_build_conv_layer(dims, scope):
    cls, plain = CLASSES[dims]
    name = cls.__name__
    assert MODELS.get(name) is cls
    with DefaultScope.overwrite_default_scope(scope):
        conv = build_conv_layer(dict(type=name), 4, 8, 3)
        assert type(conv) is cls and isinstance(conv, plain)
        assert conv.mode == 'var' and conv.eps == 1e-5
        conv = build_conv_layer(
            dict(type=name, mode='std', eps=1e-4),
            4,
            8,
            3,
            padding=1,
            bias=False)
        assert conv.mode == 'std' and conv.eps == 1e-4 and conv.bias is None
        out = conv(torch.randn(1, 4, *(5, ) * dims))
        assert out.shape == (1, 8, *(5, ) * dims)
    assert "mode='std'" in repr(conv) and 'eps=0.0001' in repr(conv)


@pytest.mark.parametrize('mode', ['var', 'std'])
@pytest.mark.parametrize('dims, cfg', ALL_CASES)
def test_eval_form(dims, cfg, mode):
    conv, x = make(dims, cfg, mode)
    conv.eval()
    kind = layer_kind(conv)
    assert kind == ('conv', 'ws_conv', f'{type(conv).__name__}(mode={mode})')
    plain = conv.eval_form()
    assert type(plain) is CLASSES[dims][1]
    assert not plain.training
    for attr in ('in_channels', 'out_channels', 'kernel_size', 'stride',
                 'padding', 'dilation', 'groups', 'padding_mode'):
        assert getattr(plain, attr) == getattr(conv, attr), attr
    assert (plain.bias is None) == (conv.bias is None)
    assert_close(
        plain.weight.double(),
        ws64.standardized(conv.weight, conv.eps, mode),
        rtol=0,
        atol=2e-6)
    with torch.no_grad():
        assert_close(plain(x), conv(x), rtol=0, atol=1e-6)


def test_fold_ws_conv_and_fold_bcn_ws():
    """fold_ws_conv turns them into plain convs; fold_bcn_ws, whose BN
    folding is for 2-D convs, leaves a 1-D/3-D conv's BatchNorm as it is
    (exact in eval)."""
    torch.manual_seed(8)
    model = nn.Sequential(
        ConvModule(
            4,
            8,
            3,
            padding=1,
            conv_cfg=dict(type='WSConv1d'),
            norm_cfg=dict(type='BN1d')),
        ConvModule(
            8,
            4,
            3,
            padding=1,
            conv_cfg=dict(type='WSConv1d'),
            norm_cfg=dict(type='BN1d')))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
    model.eval()
    x = torch.randn(2, 4, 7)
    with torch.no_grad():
        expected = model(x)
    report = fold_bcn_ws(model)
    assert not report.bn_folded and len(report.left) == 2
    assert not any(isinstance(m, WSConv1d) for m in model.modules())
    with torch.no_grad():
        assert_close(model(x), expected, rtol=0, atol=1e-5)

    conv = WSConv3d(2, 4, 3).eval()
    x = torch.randn(1, 2, 4, 4, 4)
    plain = fold_ws_conv(conv)
    assert type(plain) is nn.Conv3d
    with torch.no_grad():
        assert_close(plain(x), conv(x), rtol=0, atol=1e-6)
