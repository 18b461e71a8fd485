# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Tests of FRN (+ TLU) against a float64 reference written from the
paper's Algorithm 1, one (sample, channel) at a time."""
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

from mmseg_wsbcn.models.layers import FRN, layer_kind
from mmseg_wsbcn.models.layers.frn import filter_response_norm

F64 = torch.float64
C = 4


def ref_frn(x, gamma, beta, tau, eps):
    """``max(gamma * x / sqrt(mean(x^2) + eps) + beta, tau)`` per (n, c);
    ``tau=None``: no TLU; ``eps`` may be a tensor (the learned form)."""
    outs = []
    for n in range(x.shape[0]):
        chans = []
        for c in range(x.shape[1]):
            f = x[n, c]
            nu2 = (f * f).sum() / f.numel()
            y = gamma[c] * f / torch.sqrt(nu2 + eps) + beta[c]
            if tau is not None:
                y = torch.where(y > tau[c], y, tau[c])
            chans.append(y)
        outs.append(torch.stack(chans))
    return torch.stack(outs)


def make_layer(tlu=True, learnable_eps=False, eps=1e-6, seed=0):
    """A float64 FRN with random gamma, beta, tau (tau of both signs)."""
    layer = FRN(C, eps=eps, tlu=tlu, learnable_eps=learnable_eps, dtype=F64)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.copy_(torch.rand(C, generator=gen, dtype=F64) + 0.5)
        layer.bias.copy_(torch.randn(C, generator=gen, dtype=F64) * 0.5)
        if tlu:
            layer.tau.copy_(torch.randn(C, generator=gen, dtype=F64) * 0.5)
        if learnable_eps:
            layer.learned_eps.fill_(-0.3)  # |eps_l| is used
    return layer


def expected(layer, x):
    eps = layer.eps
    if layer.learned_eps is not None:
        eps = eps + layer.learned_eps.abs()
    return ref_frn(x, layer.weight, layer.bias, layer.tau, eps)


# ----------------------------------------------------------- errors first
@pytest.mark.parametrize('kwargs, exc, text', [
    (dict(num_features=0), ValueError, 'num_features must be a positive'),
    (dict(num_features=4.0), TypeError, 'num_features'),
    (dict(num_features=4, eps=0.), ValueError, 'eps must be'),
    (dict(num_features=4, eps=float('inf')), ValueError, 'eps must be'),
    (dict(num_features=4, tlu=1), TypeError, 'tlu must be a bool'),
    (dict(num_features=4, learnable_eps='y'), TypeError, 'learnable_eps'),
    (dict(num_features=4,
          learned_eps_init=float('nan')), ValueError, 'learned_eps_init'),
])
def test_bad_arguments(kwargs, exc, text):
    with pytest.raises(exc, match=re.escape(text)):
        FRN(**kwargs)


@pytest.mark.parametrize('shape, text', [((2, 4, 3), '3-D'),
                                         ((2, 6, 3, 3), '6 channels')])
def test_bad_input(shape, text):
    with pytest.raises(ValueError, match=text):
        FRN(4)(torch.randn(shape))


# ----------------------------------------------------------- forward
@pytest.mark.parametrize('learnable_eps', [False, True])
@pytest.mark.parametrize('tlu', [True, False])
@pytest.mark.parametrize('training', [True, False])
def test_forward_matches_reference(training, tlu, learnable_eps):
    torch.manual_seed(1)
    x = torch.randn(2, C, 3, 5, dtype=F64) * 3 + 0.5
    layer = make_layer(tlu, learnable_eps, eps=1e-3).train(training)
    out = layer(x)
    torch.testing.assert_close(out, expected(layer, x))
    if tlu:  # the TLU clips some values and leaves others
        tau = layer.tau.view(1, -1, 1, 1)
        assert (out == tau).any() and (out > tau).any()


def test_train_and_eval_are_the_same_function():
    x = torch.randn(2, C, 3, 3, dtype=F64)
    layer = make_layer()
    assert torch.equal(layer.train()(x), layer.eval()(x))
    assert not list(layer.buffers())


def test_initial_state_is_normalization_then_relu():
    """gamma 1, beta 0, tau 0: ``max(x / rms(x), 0)``."""
    x = torch.randn(2, C, 3, 3, dtype=F64)
    layer = FRN(C, dtype=F64)
    rms = x.square().mean(dim=(2, 3), keepdim=True).add(1e-6).sqrt()
    torch.testing.assert_close(layer(x), torch.relu(x / rms))
    assert layer.eps == 1e-6
    assert FRN(C, learnable_eps=True).learned_eps.item() == pytest.approx(1e-4)


@pytest.mark.parametrize('shape', [(1, C, 1, 1), (1, C, 3, 2), (3, C, 1, 1)])
def test_batch_one_and_1x1_maps(shape):
    """Per-(sample, channel) statistics: batch 1 and 1x1 maps (the ASPP
    image-pooling branch) need nothing special; the learned eps keeps a
    1x1 map differentiable."""
    torch.manual_seed(2)
    x = torch.randn(shape, dtype=F64, requires_grad=True)
    layer = make_layer(learnable_eps=True)
    out = layer(x)
    torch.testing.assert_close(out, expected(layer, x))
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())


def test_empty_batch():
    x = torch.randn(0, C, 3, 3, requires_grad=True)
    layer = FRN(C)
    out = layer(x)
    assert out.shape == x.shape
    out.sum().backward()
    assert x.grad.shape == x.shape


def test_channels_last_input():
    x = torch.randn(2, C, 3, 3, dtype=F64)
    layer = make_layer()
    out = layer(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, layer(x))


# ----------------------------------------------------------- gradients
@pytest.mark.parametrize('learnable_eps', [False, True])
@pytest.mark.parametrize('tlu', [True, False])
def test_gradients_match_reference(tlu, learnable_eps):
    torch.manual_seed(3)
    x = (torch.randn(2, C, 2, 3, dtype=F64) * 2).requires_grad_()
    weight = torch.randn(2, C, 2, 3, dtype=F64)
    layer = make_layer(tlu, learnable_eps, eps=1e-2)
    params = [p for p in layer.parameters()]
    grads = torch.autograd.grad((layer(x) * weight).sum(), [x, *params])
    ref = torch.autograd.grad((expected(layer, x) * weight).sum(),
                              [x, *params])
    for got, want in zip(grads, ref):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize('shape', [(2, C, 2, 3), (1, C, 1, 1)])
@pytest.mark.parametrize('tlu', [True, False])
def test_gradcheck(tlu, shape):
    torch.manual_seed(4)
    x = torch.randn(shape, dtype=F64, requires_grad=True)
    gamma = (torch.rand(C, dtype=F64) + 0.5).requires_grad_()
    beta = (torch.randn(C, dtype=F64) * 0.5).requires_grad_()
    tau = (torch.randn(C, dtype=F64) * 0.5).requires_grad_() if tlu else None
    eps_l = torch.tensor(0.2, dtype=F64, requires_grad=True)

    def func(x, gamma, beta, eps_l, *tau):
        return filter_response_norm(x, gamma, beta, tau[0] if tau else None,
                                    1e-6, eps_l)

    inputs = (x, gamma, beta, eps_l) + ((tau, ) if tlu else ())
    assert gradcheck(func, inputs, eps=1e-6, atol=1e-5)


# ----------------------------------------------------------- precision
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_half_precision_input_under_autocast(dtype):
    """fp16/bf16 in, computed in float32 (autocast off inside), rounded
    once at the end: close to float32 on the same rounded input."""
    torch.manual_seed(5)
    x = (torch.randn(2, C, 4, 4) * 4 + 10).to(dtype)
    layer = make_layer(learnable_eps=True).float()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = layer(x)
        same = layer(x.float())  # a float32 input stays float32
    assert out.dtype == dtype and torch.isfinite(out).all()
    want = layer(x.float())
    tol = 2 * torch.finfo(dtype).eps
    torch.testing.assert_close(out.float(), want, atol=tol, rtol=tol)
    assert same.dtype == torch.float32 and torch.equal(same, want)


# ----------------------------------------------------------- builders
@pytest.mark.parametrize('scope', [None, 'mmseg'])
def test_build_norm_layer(scope):
    assert MODELS.get('FRN') is FRN and MMSEG_MODELS.get('FRN') is FRN
    cfg = dict(type='FRN', eps=1e-6, learnable_eps=True)
    with DefaultScope.overwrite_default_scope(scope):
        name, layer = build_norm_layer(cfg, 8, postfix=2)
        _, default = build_norm_layer(dict(type='FRN'), 8)
    assert name == 'frn2' and isinstance(layer, FRN)
    assert layer.num_features == 8 and layer.eps == 1e-6
    assert layer.learnable_eps and layer.tlu
    assert default.eps == 1e-5  # build_norm_layer's default eps
    assert layer(torch.randn(1, 8, 1, 1)).shape == (1, 8, 1, 1)
    _, frozen = build_norm_layer(dict(type='FRN', requires_grad=False), 8)
    assert not any(p.requires_grad for p in frozen.parameters())


def test_layer_kind_and_state_dict():
    assert layer_kind(FRN(8)) == ('norm', 'frn', 'FRN+TLU(eps=1e-06)')
    assert layer_kind(FRN(8, tlu=False, learnable_eps=True,
                          eps=1e-5)) == ('norm', 'frn',
                                         'FRN(eps=1e-05, learned eps)')
    shapes = {
        k: tuple(v.shape)
        for k, v in FRN(8, learnable_eps=True).state_dict().items()
    }
    assert shapes == {
        'weight': (8, ),
        'bias': (8, ),
        'tau': (8, ),
        'learned_eps': ()
    }
    assert list(FRN(8, tlu=False).state_dict()) == ['weight', 'bias']
    assert not hasattr(FRN, 'split_eval_affine')
    assert not hasattr(FRN, 'eval_form')


# ----------------------------------------------------------- in mmseg
def test_resnet_relu_after_tlu_floors_tau_at_zero():
    """The documented composition: mmseg's BasicBlock applies its ReLU to
    ``norm1``'s output, so the pair computes ``max(y, max(tau, 0))``."""
    torch.manual_seed(6)
    model = ResNetV1c(
        depth=18,
        stem_channels=8,
        base_channels=C,
        norm_cfg=dict(type='FRN', eps=1e-6)).double()
    block = model.layer1[0]
    assert block.norm1_name == 'frn1' and isinstance(block.norm1, FRN)
    with torch.no_grad():
        block.norm1.tau.copy_(torch.tensor([-0.5, -0.1, 0.2, 0.7]))
    x = torch.randn(2, C, 3, 3, dtype=F64)
    y = ref_frn(x, block.norm1.weight, block.norm1.bias, None, 1e-6)
    floor = block.norm1.tau.clamp(min=0).view(1, -1, 1, 1)
    want = torch.where(y > floor, y, floor)
    torch.testing.assert_close(block.relu(block.norm1(x)), want)
    # where tau >= 0 that is FRN+TLU itself
    tlu = ref_frn(x, block.norm1.weight, block.norm1.bias, block.norm1.tau,
                  1e-6)
    torch.testing.assert_close(want[:, 2:], tlu[:, 2:])


def test_conv_module_without_act_is_exactly_frn_tlu():
    torch.manual_seed(7)
    conv = ConvModule(
        3, C, 3, padding=1, norm_cfg=dict(type='FRN'), act_cfg=None).double()
    assert conv.norm_name == 'frn' and not conv.with_activation
    assert conv.conv.bias is None  # bias='auto' drops it before a norm
    with torch.no_grad():
        conv.norm.tau.fill_(-0.2)
    x = torch.randn(1, 3, 5, 5, dtype=F64)
    norm = conv.norm
    want = ref_frn(conv.conv(x), norm.weight, norm.bias, norm.tau, norm.eps)
    torch.testing.assert_close(conv(x), want)


def test_tiny_deeplabv3_forward_backward():
    """ResNetV1c-18 (narrow) + ASPPHead with FRN at every norm, heads
    without a separate activation, at batch 1 (the image-pooling branch
    normalizes 1x1 maps)."""
    torch.manual_seed(8)
    norm_cfg = dict(type='FRN', eps=1e-6, requires_grad=True)
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
        norm_cfg=dict(norm_cfg, learnable_eps=True),
        act_cfg=None)
    backbone.init_weights()
    head.init_weights()
    x = torch.randn(1, 3, 32, 32)
    out = head(backbone(x))
    assert out.shape == (1, 3, 4, 4) and torch.isfinite(out).all()
    out.square().mean().backward()
    frns = [
        m for m in [*backbone.modules(), *head.modules()]
        if isinstance(m, FRN)
    ]
    # stem 3, blocks 16, downsample 4 (8 -> 4 channels in layer1), head 4
    assert len(frns) == 3 + 16 + 4 + 4
    assert not any(isinstance(m, nn.ReLU) for m in head.modules())
    for p in [*backbone.parameters(), *head.parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all()


# ----------------------------------------------------------- timm
@pytest.mark.parametrize('tlu', [True, False])
def test_matches_timm(tlu, require_extra):
    timm_frn = require_extra('timm', 'timm.layers.filter_response_norm')
    torch.manual_seed(9)
    ours = make_layer(tlu, eps=1e-5)
    theirs = timm_frn.FilterResponseNormTlu2d(
        C, apply_act=tlu, eps=1e-5).double()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, C, 4, 3, dtype=F64)
    # timm reduces in float32
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
