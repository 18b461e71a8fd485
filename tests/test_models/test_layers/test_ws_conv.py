# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Tests of ``mmseg_wsbcn.models.layers.ws_conv``.

The expected values are re-derived in float64 from the formulas of Qiao
et al. (arXiv:1903.10520) by ``tests/helpers/ws_float64.py``, never by
calling the code under test.
"""
import math
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import ws_float64 as ws64
from mmcv.cnn import build_conv_layer
from mmcv.cnn.bricks.conv_ws import ConvWS2d
from mmengine.registry import MODELS, DefaultScope, Registry
from torch.testing import assert_close

import mmseg_wsbcn  # noqa: F401  (registers the layers)
from mmseg_wsbcn.models import fold_ws_conv
from mmseg_wsbcn.models.layers import WSConv2d, weight_standardize


def ref_conv(x, conv, weight):
    """Float64 ``F.conv2d`` of a detached ``x`` with ``weight``, ``conv``'s
    bias and hyper-parameters."""
    bias = None if conv.bias is None else conv.bias.detach().double()
    return ws64.conv2d_like(conv, x.detach().double(), weight, bias)


# --------------------------------------------------------------- errors
BAD_ARGS = [
    pytest.param(dict(mode=mode), "('std', 'var')", id=f'mode={mode!r}')
    for mode in ('foo', 'STD', None)
] + [
    pytest.param(dict(eps=eps), '> 0', id=f'eps={eps!r}')
    for eps in (0, 0.0, -1e-5, float('nan'), float('inf'))
]


@pytest.mark.parametrize('kwargs, hint', BAD_ARGS)
def test_bad_mode_or_eps(kwargs, hint):
    """The function and the module both refuse it, naming the value."""
    (name, value), = kwargs.items()
    text = re.escape(f'{name}={value!r}')
    with pytest.raises(ValueError, match=text) as err:
        weight_standardize(torch.randn(4, 3, 3, 3), **kwargs)
    assert hint in str(err.value)
    with pytest.raises(ValueError, match=text):
        WSConv2d(3, 4, 3, **kwargs)


@pytest.mark.parametrize('shape', [(3, 8, 8), (2, 3, 8), (1, 2, 3, 8, 8)])
def test_non_4d_input(shape):
    conv = WSConv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r'\(N, C, H, W\)') as err:
        conv(torch.randn(shape))
    assert str(tuple(shape)) in str(err.value)


def test_wrong_channels():
    conv = WSConv2d(3, 4, 3)
    with pytest.raises(ValueError, match='in_channels=3') as err:
        conv(torch.randn(2, 5, 8, 8))
    assert '5 channels' in str(err.value)


def test_fan_in_one():
    # depthwise 1x1: n = (4 / 4) * 1 * 1 = 1
    with pytest.raises(ValueError, match=r'\(4, 1, 1, 1\)') as err:
        WSConv2d(4, 4, 1, groups=4)
    assert 'n - 1' in str(err.value)
    with pytest.raises(ValueError, match=r'\(8, 1, 1, 1\)'):
        WSConv2d(1, 8, 1)
    with pytest.raises(ValueError, match=r'\(5, 1, 1, 1\)'):
        weight_standardize(torch.randn(5, 1, 1, 1))
    # the smallest valid fan-in, n = 2
    WSConv2d(2, 4, 1)
    WSConv2d(4, 4, (1, 2), groups=4)


# ---------------------------------------------------- against float64

CONV_CASES = [
    dict(in_channels=4, out_channels=8, kernel_size=3, padding=1),
    dict(in_channels=4, out_channels=8, kernel_size=1, bias=False),
    dict(in_channels=8, out_channels=6, kernel_size=3, groups=2),
    dict(in_channels=8, out_channels=8, kernel_size=3, groups=8, padding=1),
    dict(in_channels=4, out_channels=8, kernel_size=3, dilation=2, padding=2),
    dict(
        in_channels=4,
        out_channels=8,
        kernel_size=3,
        stride=2,
        padding=1,
        bias=False),
    dict(
        in_channels=4,
        out_channels=5,
        kernel_size=(3, 1),
        padding=(1, 0),
        padding_mode='reflect'),
    dict(
        in_channels=3,
        out_channels=4,
        kernel_size=3,
        padding=1,
        padding_mode='circular',
        stride=(2, 1)),
    dict(
        in_channels=4,
        out_channels=8,
        kernel_size=3,
        padding='same',
        dilation=3),
]


@pytest.mark.parametrize('mode', ['std', 'var'])
@pytest.mark.parametrize('scale', [1e-3, 1.0, 30.0])
def test_weight_standardize_vs_float64(mode, scale):
    torch.manual_seed(0)
    for shape in [(8, 4, 3, 3), (16, 1, 3, 3), (32, 64, 1, 1), (3, 2, 1, 1),
                  (6, 5, 3, 1), (4, 3, 5)]:
        w = torch.randn(shape) * scale + 0.5 * scale
        expected = ws64.standardized(w, 1e-5, mode)
        out = weight_standardize(w, 1e-5, mode)
        assert out.dtype == torch.float32 and out.shape == w.shape
        assert_close(out.double(), expected, rtol=0, atol=2e-6)
        # float64 in, float64 out, to float64 precision
        out64 = weight_standardize(w.double(), 1e-5, mode)
        assert out64.dtype == torch.float64
        assert_close(out64, expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize('eps', [1e-5, 0.1, 3.0])
def test_eps_placement(eps):
    # a large eps separates the two forms clearly
    torch.manual_seed(1)
    w = torch.randn(6, 3, 3, 3) * 0.2
    for mode in ('std', 'var'):
        assert_close(
            weight_standardize(w, eps, mode).double(),
            ws64.standardized(w, eps, mode),
            rtol=0,
            atol=2e-6)
    if eps > 1e-3:
        assert not torch.allclose(
            weight_standardize(w, eps, 'std'),
            weight_standardize(w, eps, 'var'),
            atol=1e-3)


def test_standardized_statistics():
    torch.manual_seed(2)
    w = torch.randn(8, 4, 3, 3) * 0.05 + 0.1
    out = weight_standardize(w, eps=1e-12, mode='var').double()
    flat = out.reshape(8, -1)
    assert_close(
        flat.mean(1), torch.zeros(8, dtype=torch.float64), rtol=0, atol=1e-6)
    assert_close(
        flat.std(1, unbiased=True),
        torch.ones(8, dtype=torch.float64),
        rtol=0,
        atol=1e-5)


@pytest.mark.parametrize('mode', ['std', 'var'])
@pytest.mark.parametrize('cfg', CONV_CASES)
def test_conv_vs_float64(cfg, mode):
    torch.manual_seed(3)
    conv = WSConv2d(**cfg, mode=mode)
    if conv.bias is not None:
        nn.init.normal_(conv.bias)
    x = torch.randn(2, cfg['in_channels'], 9, 8)
    expected = ref_conv(x, conv, ws64.standardized(conv.weight, 1e-5, mode))

    out = conv(x)
    assert out.dtype == torch.float32
    assert out.shape == expected.shape
    assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)

    conv64 = conv.double()
    assert_close(conv64(x.double()), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('mode', ['std', 'var'])
def test_channels_last(mode):
    torch.manual_seed(4)
    conv = WSConv2d(6, 8, 3, padding=1, mode=mode)
    w = conv.weight.detach().clone()
    w_cl = w.to(memory_format=torch.channels_last)
    assert not w_cl.is_contiguous()
    expected = ws64.standardized(w, 1e-5, mode)
    assert_close(
        weight_standardize(w_cl, mode=mode).double(),
        expected,
        rtol=0,
        atol=2e-6)

    x = torch.randn(2, 6, 7, 7)
    expected_out = ref_conv(x, conv, expected)
    conv = conv.to(memory_format=torch.channels_last)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    out = conv(x.to(memory_format=torch.channels_last))
    assert_close(out.double(), expected_out, rtol=1e-5, atol=1e-5)
    out.sum().backward()
    assert conv.weight.grad.shape == conv.weight.shape


@pytest.mark.parametrize('mode', ['std', 'var'])
def test_gradcheck(mode):
    torch.manual_seed(5)
    w = torch.randn(3, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t: weight_standardize(t, 1e-5, mode), (w, ))
    # the conv with a bias and a non-trivial geometry
    conv = WSConv2d(4, 2, 2, stride=2, padding=1, groups=2, mode=mode).double()
    x = torch.randn(1, 4, 4, 4, dtype=torch.float64, requires_grad=True)

    def ws_conv(inp, weight, bias):
        w_hat = weight_standardize(weight, conv.eps, conv.mode)
        return F.conv2d(inp, w_hat, bias, conv.stride, conv.padding,
                        conv.dilation, conv.groups)

    assert torch.autograd.gradcheck(ws_conv, (x, conv.weight, conv.bias))
    assert torch.autograd.gradcheck(conv, (x, ))


# ------------------------------------------------------------ mmcv parity


def test_equals_mmcv_conv_ws():
    torch.manual_seed(6)
    for cfg in CONV_CASES[:6]:
        ours = WSConv2d(**cfg, mode='std', eps=1e-5)
        theirs = ConvWS2d(**cfg, eps=1e-5)
        theirs.load_state_dict(ours.state_dict())
        x = torch.randn(2, cfg['in_channels'], 8, 8)
        assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-6)
    # the default ``var`` form is a different function
    ours.mode = 'var'
    theirs.weight.data.mul_(1e-3)
    ours.weight.data.mul_(1e-3)
    assert not torch.allclose(ours(x), theirs(x), atol=1e-3)


# -------------------------------------------------------- mixed precision


@pytest.mark.parametrize('mode', ['std', 'var'])
def test_autocast_cpu_bf16(mode):
    torch.manual_seed(7)
    conv = WSConv2d(4, 8, 3, padding=1, mode=mode)
    x = torch.randn(2, 4, 6, 6)
    w_fp32 = weight_standardize(conv.weight, mode=mode)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        w_amp = weight_standardize(conv.weight, mode=mode)
        out = conv(x)
    assert w_amp.dtype == torch.float32
    assert_close(w_amp, w_fp32, rtol=0, atol=0)
    assert out.dtype == torch.bfloat16
    assert torch.isfinite(out).all()
    out.float().square().mean().backward()
    assert torch.isfinite(conv.weight.grad).all()
    assert torch.isfinite(conv.bias.grad).all()
    assert conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_low_precision_weight(dtype):
    torch.manual_seed(8)
    w = torch.randn(8, 4, 3, 3) * 0.01
    out = weight_standardize(w.to(dtype))
    assert out.dtype == dtype
    # computed in float32 from the rounded weight, rounded once at the end
    assert_close(out, ws64.standardized(w.to(dtype)).to(dtype))
    if dtype == torch.bfloat16:
        conv = WSConv2d(4, 8, 3).to(dtype)
        y = conv(torch.randn(1, 4, 5, 5, dtype=dtype))
        assert y.dtype == dtype and torch.isfinite(y).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('mode', ['std', 'var'])
def test_autocast_cuda_fp16(mode):
    torch.manual_seed(9)
    conv = WSConv2d(4, 8, 3, padding=1, mode=mode).cuda()
    with torch.no_grad():
        conv.weight[0] = 0.25  # a constant filter
    x = torch.randn(2, 4, 6, 6, device='cuda')
    w_fp32 = weight_standardize(conv.weight, mode=mode)
    with torch.autocast('cuda', dtype=torch.float16):
        w_amp = weight_standardize(conv.weight, mode=mode)
        out = conv(x)
    assert w_amp.dtype == torch.float32
    assert_close(w_amp, w_fp32)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    out.float().square().mean().backward()
    assert torch.isfinite(conv.weight.grad).all()


@pytest.mark.parametrize('mode', ['var', 'std'])
@pytest.mark.parametrize('amp', [False, True])
def test_constant_filter(mode, amp):
    # zero variance: W_hat = 0 and d W_hat / d W = (I - 1/n) / denom,
    # denom = sqrt(eps) ('var') or eps ('std')
    torch.manual_seed(13)
    eps = 1e-5
    conv = WSConv2d(4, 3, 3, padding=1, mode=mode, eps=eps)
    with torch.no_grad():
        conv.weight[1] = 0.25
        conv.weight[2] = -3.0
    x = torch.randn(2, 4, 5, 5)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp):
        out = conv(x)
    assert torch.isfinite(out).all()
    out.float().sum().backward()
    grad = conv.weight.grad
    assert torch.isfinite(grad).all()

    w = conv.weight.detach().clone().requires_grad_(True)
    g = torch.randn_like(w)
    (weight_standardize(w, eps, mode) * g).sum().backward()
    assert torch.isfinite(w.grad).all()
    denom = math.sqrt(eps) if mode == 'var' else eps
    for o in (1, 2):
        assert_close(
            weight_standardize(w, eps, mode)[o],
            torch.zeros_like(w[o]),
            rtol=0,
            atol=0)
        expected = (g[o] - g[o].mean()) / denom
        assert_close(w.grad[o], expected, rtol=1e-4, atol=1e-3)


# ----------------------------------------------------------------- deploy


@pytest.mark.parametrize('cfg', CONV_CASES)
def test_to_conv2d(cfg):
    torch.manual_seed(10)
    conv = WSConv2d(**cfg, mode='std', eps=1e-4)
    conv.eval()
    plain = conv.to_conv2d()
    assert type(plain) is nn.Conv2d
    for attr in ('in_channels', 'out_channels', 'kernel_size', 'stride',
                 'padding', 'dilation', 'groups', 'padding_mode'):
        assert getattr(plain, attr) == getattr(conv, attr), attr
    assert (plain.bias is None) == (conv.bias is None)
    assert not plain.training
    assert plain.weight.dtype == conv.weight.dtype
    assert plain.weight.device == conv.weight.device
    assert_close(
        plain.weight.double(),
        ws64.standardized(conv.weight, 1e-4, 'std'),
        rtol=0,
        atol=2e-6)
    x = torch.randn(2, cfg['in_channels'], 8, 9)
    assert_close(plain(x), conv(x), rtol=0, atol=1e-6)

    conv64 = WSConv2d(**cfg).double()
    plain64 = conv64.to_conv2d()
    assert plain64.weight.dtype == torch.float64
    assert_close(plain64(x.double()), conv64(x.double()), rtol=0, atol=1e-6)


class _Block(nn.Module):

    def __init__(self):
        super().__init__()
        self.conv = WSConv2d(8, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.branches = nn.ModuleList(
            [WSConv2d(8, 8, 1, mode='std'),
             nn.Conv2d(8, 8, 1)])
        self.heads = nn.ModuleDict(dict(a=WSConv2d(8, 4, 3, padding=1)))

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = self.branches[0](x) + self.branches[1](x)
        return self.heads['a'](x)


def _count_ws(model):
    return sum(isinstance(m, WSConv2d) for m in model.modules())


def test_fold_ws_conv():
    torch.manual_seed(11)
    shared = WSConv2d(4, 4, 3, padding=1)
    model = nn.Sequential(
        WSConv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        _Block(),
        nn.Conv2d(4, 4, 1),
        shared,
        nn.Sequential(nn.ReLU(), shared),
    )
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
    model.eval()
    x = torch.randn(2, 3, 10, 10)
    expected = model(x)
    assert _count_ws(model) == 5

    folded = fold_ws_conv(model)
    assert folded is model
    assert _count_ws(model) == 0
    assert type(model[0]) is nn.Conv2d
    assert type(model[3].branches[0]) is nn.Conv2d
    assert type(model[3].heads['a']) is nn.Conv2d
    # one shared WS conv becomes one shared plain conv
    assert model[5] is model[6][1]
    assert type(model[5]) is nn.Conv2d
    assert_close(model(x), expected, rtol=0, atol=1e-6)
    # idempotent, and a model without WS convs is untouched
    assert fold_ws_conv(model) is model
    assert_close(model(x), expected, rtol=0, atol=1e-6)


def test_fold_ws_conv_on_a_ws_conv():
    torch.manual_seed(12)
    conv = WSConv2d(3, 5, 3, stride=2).eval()
    x = torch.randn(1, 3, 9, 9)
    plain = fold_ws_conv(conv)
    assert type(plain) is nn.Conv2d and plain is not conv
    assert_close(plain(x), conv(x), rtol=0, atol=1e-6)


# --------------------------------------------------------------- registry


def test_extra_repr():
    text = repr(WSConv2d(4, 8, 3, eps=1e-3, mode='std'))
    assert text.startswith('WSConv2d(4, 8, kernel_size=(3, 3)')
    assert "eps=0.001, mode='std'" in text
    assert "mode='var'" in repr(WSConv2d(4, 8, 3))


def _build_and_check():
    conv = build_conv_layer(dict(type='WSConv2d', mode='std'), 4, 8, 3)
    assert type(conv) is WSConv2d
    assert conv.mode == 'std' and conv.eps == 1e-5
    assert (conv.in_channels, conv.out_channels) == (4, 8)
    assert conv.kernel_size == (3, 3)
    conv = build_conv_layer(
        dict(type='WSConv2d', eps=1e-4), 4, 8, 3, padding=1, bias=False)
    assert conv.mode == 'var' and conv.eps == 1e-4 and conv.bias is None
    assert conv(torch.randn(1, 4, 5, 5)).shape == (1, 8, 5, 5)


def test_registry_root():
    assert MODELS.get('WSConv2d') is WSConv2d
    # mmcv's own WS convs are untouched
    assert MODELS.get('ConvWS') is ConvWS2d
    _build_and_check()


def test_registry_mmseg_scope():
    with DefaultScope.overwrite_default_scope('mmseg'):
        _build_and_check()


def test_registry_child_scope():
    scope = 'wsbcn_test_xproj'
    child = MODELS.children.get(scope) or Registry(
        'x', parent=MODELS, scope=scope)
    assert child.get('WSConv2d') is WSConv2d
    conv = child.build(
        dict(type='WSConv2d', in_channels=4, out_channels=8, kernel_size=3))
    assert type(conv) is WSConv2d
    with DefaultScope.overwrite_default_scope(scope):
        assert DefaultScope.get_current_instance().scope_name == scope
        _build_and_check()


# ----------------------------------------------------------- eval
def _expected(conv, x):
    """The conv with the float64 reference standardization of its weight
    as it is now."""
    return F.conv2d(x.double(),
                    ws64.standardized(conv.weight, conv.eps, conv.mode), None,
                    conv.stride, conv.padding)


def test_eval_follows_every_weight_change():
    """Eval standardizes at every call: in-place edits, ``weight.data``
    edits, ``load_state_dict`` and a replaced parameter are all seen."""
    torch.manual_seed(11)
    conv = WSConv2d(4, 6, 3, padding=1, bias=False).eval()
    x = torch.randn(2, 4, 5, 5)
    edits = [
        lambda: conv.weight[0].mul_(-3).add_(1),
        lambda: conv.weight.data.mul_(-2).add_(0.5),
        lambda: conv.load_state_dict(
            WSConv2d(4, 6, 3, padding=1, bias=False).state_dict()),
        lambda: setattr(conv, 'weight',
                        nn.Parameter(torch.randn_like(conv.weight))),
    ]
    for edit in [lambda: None] + edits:
        with torch.no_grad():
            edit()
            out = conv(x)
        assert_close(out.double(), _expected(conv, x), rtol=1e-5, atol=1e-6)


# ------------------------------------------------- training path (fused)
def _ref_ws_conv64(x, weight, bias, conv):
    """Float64 WS conv, differentiable in all three inputs."""
    return ws64.conv2d_like(conv, x,
                            ws64.standardize(weight, conv.eps, conv.mode),
                            bias)


@pytest.mark.parametrize('mode', ['std', 'var'])
@pytest.mark.parametrize('cfg', CONV_CASES)
def test_training_gradients_vs_float64(cfg, mode):
    """The training forward (standardize, convolve, recompute W_hat in the
    backward pass) against float64 autograd: input, weight and bias
    gradients."""
    torch.manual_seed(21)
    conv = WSConv2d(**cfg, mode=mode)
    if conv.bias is not None:
        nn.init.normal_(conv.bias)
    x = torch.randn(2, cfg['in_channels'], 9, 8, requires_grad=True)
    out = conv(x)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    x64 = x.detach().double().requires_grad_()
    w64 = conv.weight.detach().double().requires_grad_()
    b64 = (None if conv.bias is None else
           conv.bias.detach().double().requires_grad_())
    expected = _ref_ws_conv64(x64, w64, b64, conv)
    (expected * g.double()).sum().backward()
    assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    assert_close(x.grad.double(), x64.grad, rtol=1e-5, atol=1e-5)
    assert_close(conv.weight.grad.double(), w64.grad, rtol=1e-4, atol=1e-5)
    if b64 is not None:
        assert_close(conv.bias.grad.double(), b64.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('mode', ['std', 'var'])
def test_training_gradcheck_module(mode, ws_conv_off_defaults):
    """gradcheck through the module's own training forward (reflect
    padding, groups, stride, dilation, bias)."""
    torch.manual_seed(22)
    conv = ws_conv_off_defaults(mode)
    x = torch.randn(1, 4, 6, 5, dtype=torch.float64, requires_grad=True)

    def call(inp, weight, bias):
        return torch.func.functional_call(conv, {
            'weight': weight,
            'bias': bias
        }, (inp, ))

    weight = conv.weight.detach().clone().requires_grad_()
    bias = conv.bias.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(call, (x, weight, bias))


def test_training_keeps_no_standardized_copy(saved_tensors):
    """The backward pass saves the input, the raw weight (the parameter
    itself) and per-row statistics, not a second weight-sized tensor."""
    conv = WSConv2d(16, 32, 3, padding=1)
    x = torch.randn(1, 16, 6, 6, requires_grad=True)
    out, saved = saved_tensors(lambda: conv(x * 1))
    weight_sized = [t for t in saved if t.numel() == conv.weight.numel()]
    assert len(weight_sized) == 1
    assert weight_sized[0].data_ptr() == conv.weight.data_ptr()
    assert sum(t.numel() for t in saved if t.numel() < x.numel()) <= 3 * 32
    out.sum().backward()
    assert conv.weight.grad is not None
