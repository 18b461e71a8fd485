# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Tests of EvoNorm-S0 against a float64 reference written from the
paper's pseudo-code, one (sample, group) at a time."""
import re

import pytest
import torch
import torch.nn as nn
from mmcv.cnn import ConvModule, build_norm_layer
from mmengine.registry import MODELS, DefaultScope
from mmseg.models.backbones import ResNetV1c
from mmseg.models.decode_heads import ASPPHead
from mmseg.registry import MODELS as MMSEG_MODELS
from torch.autograd import gradcheck

from mmseg_wsbcn.models.layers import EvoNormS0, layer_kind
from mmseg_wsbcn.models.layers.evonorm_s0 import evonorm_s0

F64 = torch.float64
C, G = 6, 2


def ref_s0(x, v, gamma, beta, groups, eps):
    """``x * sigmoid(v x) / sqrt(var_group(x) + eps) * gamma + beta``,
    with the biased variance over the ``C / G`` channels and ``H, W`` of
    each (sample, group)."""
    per_group = x.shape[1] // groups
    outs = []
    for n in range(x.shape[0]):
        chans = []
        for g in range(groups):
            block = x[n, g * per_group:(g + 1) * per_group]
            mean = block.sum() / block.numel()
            var = ((block - mean)**2).sum() / block.numel()
            std = torch.sqrt(var + eps)
            for c in range(g * per_group, (g + 1) * per_group):
                f = x[n, c]
                sig = 1 / (1 + torch.exp(-v[c] * f))
                chans.append(f * sig / std * gamma[c] + beta[c])
        outs.append(torch.stack(chans))
    return torch.stack(outs)


def make_layer(eps=1e-5, seed=0):
    """A float64 EvoNorm-S0 with random v (both signs), gamma, beta."""
    layer = EvoNormS0(C, num_groups=G, eps=eps, dtype=F64)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.copy_(torch.rand(C, generator=gen, dtype=F64) + 0.5)
        layer.bias.copy_(torch.randn(C, generator=gen, dtype=F64) * 0.5)
        layer.v.copy_(torch.randn(C, generator=gen, dtype=F64))
    return layer


def expected(layer, x):
    return ref_s0(x, layer.v, layer.weight, layer.bias, layer.num_groups,
                  layer.eps)


# ----------------------------------------------------------- errors first
@pytest.mark.parametrize('kwargs, exc, text', [
    (dict(num_features=6, num_groups=4), ValueError, 'num_groups=4 must'),
    (dict(num_features=6, num_groups=0), ValueError, 'got 0'),
    (dict(num_features=6, num_groups=2.0), TypeError, 'num_groups'),
    (dict(num_features=0, num_groups=1), ValueError, 'num_features'),
    (dict(num_features=6, num_groups=2, eps=0.), ValueError, 'eps must'),
    (dict(num_features=6, num_groups=2, eps='1'), TypeError, 'eps must'),
])
def test_bad_arguments(kwargs, exc, text):
    with pytest.raises(exc, match=re.escape(text)):
        EvoNormS0(**kwargs)


@pytest.mark.parametrize('shape', [(2, 6, 3), (2, 4, 3, 3)])
def test_bad_input(shape):
    with pytest.raises(ValueError, match=r'expects an input \(N, 6, H, W\)'):
        EvoNormS0(6, num_groups=2)(torch.randn(shape))


# ----------------------------------------------------------- forward
@pytest.mark.parametrize('training', [True, False])
def test_forward_matches_reference(training):
    torch.manual_seed(1)
    x = torch.randn(2, C, 3, 5, dtype=F64) * 2 + 0.5
    layer = make_layer(eps=1e-3).train(training)
    torch.testing.assert_close(layer(x), expected(layer, x))


def test_train_and_eval_are_the_same_function():
    x = torch.randn(2, C, 3, 3, dtype=F64)
    layer = make_layer()
    assert torch.equal(layer.train()(x), layer.eval()(x))
    assert not list(layer.buffers())


def test_one_group_per_channel_and_one_group():
    torch.manual_seed(2)
    x = torch.randn(2, C, 2, 3, dtype=F64)
    for groups in (1, C):
        layer = EvoNormS0(C, num_groups=groups, dtype=F64)
        want = ref_s0(x, layer.v, layer.weight, layer.bias, groups, 1e-5)
        torch.testing.assert_close(layer(x), want)


@pytest.mark.parametrize('shape', [(1, C, 1, 1), (1, C, 3, 2), (3, C, 1, 1)])
def test_batch_one_and_1x1_maps(shape):
    """Per-sample group statistics: batch 1 and 1x1 maps (the ASPP
    image-pooling branch; C / G values per group) need nothing special."""
    torch.manual_seed(3)
    x = torch.randn(shape, dtype=F64, requires_grad=True)
    layer = make_layer()
    out = layer(x)
    torch.testing.assert_close(out, expected(layer, x))
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())


def test_empty_batch():
    x = torch.randn(0, C, 3, 3, requires_grad=True)
    out = EvoNormS0(C, num_groups=G)(x)
    assert out.shape == x.shape
    out.sum().backward()
    assert x.grad.shape == x.shape


def test_channels_last_input():
    x = torch.randn(2, C, 3, 3, dtype=F64)
    layer = make_layer()
    out = layer(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, layer(x))


# ----------------------------------------------------------- gradients
def test_gradients_match_reference():
    torch.manual_seed(4)
    x = torch.randn(2, C, 2, 3, dtype=F64, requires_grad=True)
    weight = torch.randn(2, C, 2, 3, dtype=F64)
    layer = make_layer(eps=1e-2)
    params = list(layer.parameters())
    grads = torch.autograd.grad((layer(x) * weight).sum(), [x, *params])
    ref = torch.autograd.grad((expected(layer, x) * weight).sum(),
                              [x, *params])
    for got, want in zip(grads, ref):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize('shape', [(2, C, 2, 3), (1, C, 1, 1)])
def test_gradcheck(shape):
    torch.manual_seed(5)
    x = torch.randn(shape, dtype=F64, requires_grad=True)
    v = torch.randn(C, dtype=F64, requires_grad=True)
    gamma = (torch.rand(C, dtype=F64) + 0.5).requires_grad_()
    beta = torch.randn(C, dtype=F64, requires_grad=True)

    def func(x, v, gamma, beta):
        return evonorm_s0(x, G, v, gamma, beta, 1e-3)

    assert gradcheck(func, (x, v, gamma, beta), eps=1e-6, atol=1e-5)


# ----------------------------------------------------------- precision
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_half_precision_input_under_autocast(dtype):
    """fp16/bf16 in, computed in float32 (autocast off inside), rounded
    once at the end: close to float32 on the same rounded input."""
    torch.manual_seed(6)
    x = (torch.randn(2, C, 4, 4) * 4 + 10).to(dtype)
    layer = make_layer().float()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = layer(x)
        same = layer(x.float())
    assert out.dtype == dtype and torch.isfinite(out).all()
    want = layer(x.float())
    tol = 2 * torch.finfo(dtype).eps
    torch.testing.assert_close(out.float(), want, atol=tol, rtol=tol)
    assert same.dtype == torch.float32 and torch.equal(same, want)


# ----------------------------------------------------------- builders
@pytest.mark.parametrize('scope', [None, 'mmseg'])
def test_build_norm_layer(scope):
    assert MODELS.get('EvoNormS0') is EvoNormS0
    assert MMSEG_MODELS.get('EvoNormS0') is EvoNormS0
    with DefaultScope.overwrite_default_scope(scope):
        name, layer = build_norm_layer(
            dict(type='EvoNormS0', num_groups=2), 8, postfix=1)
        _, default = build_norm_layer(dict(type='EvoNormS0'), 64)
    assert name == 'evonorm1' and isinstance(layer, EvoNormS0)
    assert layer.num_features == 8 and layer.num_groups == 2
    assert layer.eps == 1e-5 and default.num_groups == 32
    assert layer(torch.randn(1, 8, 1, 1)).shape == (1, 8, 1, 1)
    with pytest.raises(ValueError, match='num_groups=32 must divide'):
        build_norm_layer(dict(type='EvoNormS0'), 8)


def test_layer_kind_and_state_dict():
    assert layer_kind(EvoNormS0(64)) == ('norm', 'evonorm-s0',
                                         'EvoNorm-S0(G=32)')
    shapes = {
        k: tuple(t.shape)
        for k, t in EvoNormS0(8, num_groups=2).state_dict().items()
    }
    assert shapes == {'weight': (8, ), 'bias': (8, ), 'v': (8, )}
    assert not hasattr(EvoNormS0, 'split_eval_affine')
    assert not hasattr(EvoNormS0, 'eval_form')


# ----------------------------------------------------------- in mmseg
def test_conv_module_without_act_is_exactly_evonorm_s0():
    torch.manual_seed(7)
    conv = ConvModule(
        3,
        C,
        3,
        padding=1,
        norm_cfg=dict(type='EvoNormS0', num_groups=G),
        act_cfg=None).double()
    assert conv.norm_name == 'evonorm' and not conv.with_activation
    x = torch.randn(1, 3, 5, 5, dtype=F64)
    torch.testing.assert_close(conv(x), expected(conv.norm, conv.conv(x)))


def test_tiny_deeplabv3_forward_backward():
    """ResNetV1c-18 (narrow) + ASPPHead with EvoNorm-S0 at every norm,
    heads without a separate activation, at batch 1."""
    torch.manual_seed(8)
    norm_cfg = dict(type='EvoNormS0', num_groups=2, requires_grad=True)
    backbone = ResNetV1c(
        depth=18,
        stem_channels=8,
        base_channels=4,
        dilations=(1, 1, 2, 4),
        strides=(1, 2, 1, 1),
        norm_cfg=norm_cfg)
    head = ASPPHead(
        dilations=(1, 2),
        in_channels=32,
        channels=8,
        num_classes=3,
        norm_cfg=norm_cfg,
        act_cfg=None)
    backbone.init_weights()
    head.init_weights()
    out = head(backbone(torch.randn(1, 3, 32, 32)))
    assert out.shape == (1, 3, 4, 4) and torch.isfinite(out).all()
    out.square().mean().backward()
    layers = [
        m for m in [*backbone.modules(), *head.modules()]
        if isinstance(m, EvoNormS0)
    ]
    # stem 3, blocks 16, downsample 4 (8 -> 4 channels in layer1), head 4
    assert len(layers) == 3 + 16 + 4 + 4
    assert not any(isinstance(m, nn.ReLU) for m in head.modules())
    for p in [*backbone.parameters(), *head.parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all()


# ----------------------------------------------------------- timm
def test_matches_timm(require_extra):
    evo_norm = require_extra('timm', 'timm.layers.evo_norm')
    torch.manual_seed(9)
    ours = make_layer()
    theirs = evo_norm.EvoNorm2dS0(C, groups=G, eps=1e-5).double()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, C, 4, 3, dtype=F64)
    # timm reduces in float32
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
