# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Tests of EvoNorm-B0 against a float64 reference written from the
paper's pseudo-code, one (sample, channel) at a time; and with 2 gloo
processes against one process on the whole batch."""
import os
import re

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
from mmcv.cnn import ConvModule, build_norm_layer
from mmengine.registry import MODELS, DefaultScope
from mmseg.models.backbones import ResNetV1c
from mmseg.models.decode_heads import ASPPHead
from mmseg.registry import MODELS as MMSEG_MODELS
from torch.autograd import gradcheck

from gloo_ranks import run_gloo_ranks
from mmseg_wsbcn.models.layers import EvoNormB0, layer_kind
from mmseg_wsbcn.models.layers.evonorm_b0 import evonorm_b0

F64 = torch.float64
C = 4
MOMENTUM = 0.1


def ref_batch_var(x):
    """Per channel: the biased and unbiased variance over (N, H, W)."""
    biased, unbiased = [], []
    for c in range(x.shape[1]):
        vals = x[:, c].reshape(-1)
        mean = vals.sum() / vals.numel()
        ss = ((vals - mean)**2).sum()
        biased.append(ss / vals.numel())
        unbiased.append(ss / max(vals.numel() - 1, 1))
    return torch.stack(biased), torch.stack(unbiased)


def ref_b0(x, var, v, gamma, beta, eps):
    """``x / max(sqrt(var[c] + eps), v x + sqrt(var_hw(x) + eps)) * gamma
    + beta`` with the per-channel variance ``var`` (batch or running)."""
    outs = []
    for n in range(x.shape[0]):
        chans = []
        for c in range(x.shape[1]):
            f = x[n, c]
            mean = f.sum() / f.numel()
            inst_std = torch.sqrt(((f - mean)**2).sum() / f.numel() + eps)
            left = torch.sqrt(var[c] + eps)
            right = v[c] * f + inst_std
            den = torch.where(left > right, left, right)
            chans.append(f / den * gamma[c] + beta[c])
        outs.append(torch.stack(chans))
    return torch.stack(outs)


def make_layer(eps=1e-5, seed=0, sync=True):
    """A float64 EvoNorm-B0 with random parameters and running var."""
    layer = EvoNormB0(C, eps=eps, momentum=MOMENTUM, sync=sync, dtype=F64)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.copy_(torch.rand(C, generator=gen, dtype=F64) + 0.5)
        layer.bias.copy_(torch.randn(C, generator=gen, dtype=F64) * 0.5)
        layer.v.copy_(torch.randn(C, generator=gen, dtype=F64))
        layer.running_var.copy_(torch.rand(C, generator=gen, dtype=F64) + 0.5)
    return layer


def expected_train(layer, x, running_var0):
    """The training output and the updated running variance."""
    biased, unbiased = ref_batch_var(x)
    out = ref_b0(x, biased, layer.v, layer.weight, layer.bias, layer.eps)
    return out, (1 - MOMENTUM) * running_var0 + MOMENTUM * unbiased


# ----------------------------------------------------------- errors first
@pytest.mark.parametrize('kwargs, exc, text', [
    (dict(num_features=0), ValueError, 'num_features must be a positive'),
    (dict(num_features=True), TypeError, 'num_features'),
    (dict(num_features=4, eps=-1.), ValueError, 'eps must'),
    (dict(num_features=4, momentum=1.5), ValueError, 'momentum must'),
    (dict(num_features=4, momentum=None), TypeError, 'momentum must'),
    (dict(num_features=4, sync=1), TypeError, 'sync must be a bool'),
])
def test_bad_arguments(kwargs, exc, text):
    with pytest.raises(exc, match=re.escape(text)):
        EvoNormB0(**kwargs)


@pytest.mark.parametrize('shape', [(2, 4, 3), (2, 6, 3, 3)])
def test_bad_input(shape):
    with pytest.raises(ValueError, match=r'expects an input \(N, 4, H, W\)'):
        EvoNormB0(4)(torch.randn(shape))


# ----------------------------------------------------------- forward
def test_training_matches_reference_and_updates_running_var():
    torch.manual_seed(1)
    layer = make_layer(eps=1e-3).train()
    for _ in range(2):
        x = torch.randn(2, C, 3, 5, dtype=F64) * 2 + 0.5
        running_var0 = layer.running_var.clone()
        out = layer(x)
        want, want_var = expected_train(layer, x, running_var0)
        torch.testing.assert_close(out, want)
        torch.testing.assert_close(layer.running_var, want_var)
    assert not torch.allclose(layer.running_var, running_var0)


def test_eval_uses_running_var():
    torch.manual_seed(2)
    layer = make_layer().eval()
    x = torch.randn(2, C, 3, 3, dtype=F64) * 3
    before = layer.running_var.clone()
    out = layer(x)
    want = ref_b0(x, before, layer.v, layer.weight, layer.bias, layer.eps)
    torch.testing.assert_close(out, want)
    assert torch.equal(layer.running_var, before)
    # a batch-statistics layer: the one-sample output depends on the batch
    # in training, not in eval
    assert torch.equal(layer(x[:1]), out[:1])
    assert not torch.allclose(layer.train()(x)[:1], layer(x[:1]))


def test_both_sides_of_the_max_are_used():
    torch.manual_seed(3)
    layer = make_layer().eval()
    x = torch.randn(2, C, 4, 4, dtype=F64) * 2
    inst = x.var(dim=(2, 3), unbiased=False, keepdim=True).add(1e-5).sqrt()
    right = layer.v.view(1, -1, 1, 1) * x + inst
    left = layer.running_var.add(1e-5).sqrt().view(1, -1, 1, 1)
    assert (left > right).any() and (right > left).any()


@pytest.mark.parametrize('shape', [(1, C, 1, 1), (1, C, 3, 2), (3, C, 1, 1)])
@pytest.mark.parametrize('training', [True, False])
def test_batch_one_and_1x1_maps(shape, training):
    """Batch 1 and 1x1 maps (the ASPP image-pooling branch) work; with a
    single value per channel the batch variance is 0 and the running
    variance moves towards 0 (it has no unbiased form)."""
    torch.manual_seed(4)
    x = torch.randn(shape, dtype=F64, requires_grad=True)
    layer = make_layer().train(training)
    running_var0 = layer.running_var.clone()
    out = layer(x)
    if training:
        want, want_var = expected_train(layer, x, running_var0)
    else:
        want, want_var = ref_b0(x, running_var0, layer.v, layer.weight,
                                layer.bias, layer.eps), running_var0
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(layer.running_var, want_var)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())
    if training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
        torch.testing.assert_close(layer.running_var,
                                   (1 - MOMENTUM) * running_var0)


@pytest.mark.parametrize('training', [True, False])
def test_empty_batch(training):
    x = torch.randn(0, C, 3, 3, requires_grad=True)
    layer = EvoNormB0(C).train(training)
    out = layer(x)
    assert out.shape == x.shape
    out.sum().backward()
    assert x.grad.shape == x.shape
    assert torch.equal(layer.running_var, torch.ones(C))


def test_channels_last_input():
    x = torch.randn(2, C, 3, 3, dtype=F64)
    layer, twin = make_layer(), make_layer()
    out = layer(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, twin(x))
    torch.testing.assert_close(layer.running_var, twin.running_var)


# ----------------------------------------------------------- gradients
@pytest.mark.parametrize('training', [True, False])
def test_gradients_match_reference(training):
    """In training the gradient flows through the batch variance."""
    torch.manual_seed(5)
    x = torch.randn(2, C, 2, 3, dtype=F64, requires_grad=True)
    weight = torch.randn(2, C, 2, 3, dtype=F64)
    layer = make_layer(eps=1e-2).train(training)
    params = list(layer.parameters())
    var = ref_batch_var(x)[0] if training else layer.running_var.clone()
    grads = torch.autograd.grad((layer(x) * weight).sum(), [x, *params])
    want = ref_b0(x, var, layer.v, layer.weight, layer.bias, layer.eps)
    ref = torch.autograd.grad((want * weight).sum(), [x, *params])
    for got, exp in zip(grads, ref):
        torch.testing.assert_close(got, exp)


@pytest.mark.parametrize('shape', [(2, C, 2, 3), (2, C, 1, 1)])
@pytest.mark.parametrize('training', [True, False])
def test_gradcheck(training, shape):
    torch.manual_seed(6)
    x = torch.randn(shape, dtype=F64, requires_grad=True)
    v = torch.randn(C, dtype=F64, requires_grad=True)
    gamma = (torch.rand(C, dtype=F64) + 0.5).requires_grad_()
    beta = torch.randn(C, dtype=F64, requires_grad=True)
    running_var0 = torch.rand(C, dtype=F64) + 0.5

    def func(x, v, gamma, beta):
        # a fresh buffer per call: the update must not change the function
        return evonorm_b0(x, running_var0.clone(), v, gamma, beta, training,
                          0.3, 1e-3)

    assert gradcheck(func, (x, v, gamma, beta), eps=1e-6, atol=1e-5)


# ----------------------------------------------------------- precision
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
@pytest.mark.parametrize('training', [True, False])
def test_half_precision_input_under_autocast(dtype, training):
    """fp16/bf16 in, computed in float32 (autocast off inside), rounded
    once at the end; the running variance stays float32."""
    torch.manual_seed(7)
    x = (torch.randn(2, C, 4, 4) * 4 + 10).to(dtype)
    layer = make_layer().float().train(training)
    twin = make_layer().float().train(training)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == dtype and torch.isfinite(out).all()
    want = twin(x.float())
    tol = 2 * torch.finfo(dtype).eps
    torch.testing.assert_close(out.float(), want, atol=tol, rtol=tol)
    assert layer.running_var.dtype == torch.float32
    torch.testing.assert_close(layer.running_var, twin.running_var)


# ----------------------------------------------------------- builders
@pytest.mark.parametrize('scope', [None, 'mmseg'])
def test_build_norm_layer(scope):
    assert MODELS.get('EvoNormB0') is EvoNormB0
    assert MMSEG_MODELS.get('EvoNormB0') is EvoNormB0
    with DefaultScope.overwrite_default_scope(scope):
        name, layer = build_norm_layer(
            dict(type='EvoNormB0', momentum=0.2, sync=False), 8, postfix=3)
    assert name == 'evonorm3' and isinstance(layer, EvoNormB0)
    assert layer.num_features == 8 and layer.eps == 1e-5
    assert layer.momentum == 0.2 and not layer.sync
    assert layer(torch.randn(1, 8, 1, 1)).shape == (1, 8, 1, 1)


def test_layer_kind_and_state_dict():
    assert layer_kind(EvoNormB0(8)) == ('norm', 'evonorm-b0',
                                        'EvoNorm-B0(batch var)')
    shapes = {k: tuple(t.shape) for k, t in EvoNormB0(8).state_dict().items()}
    assert shapes == {
        'weight': (8, ),
        'bias': (8, ),
        'v': (8, ),
        'running_var': (8, )
    }
    assert not hasattr(EvoNormB0, 'split_eval_affine')
    assert not hasattr(EvoNormB0, 'eval_form')


# ----------------------------------------------------------- in mmseg
def test_conv_module_without_act_is_exactly_evonorm_b0():
    torch.manual_seed(8)
    conv = ConvModule(
        3, C, 3, padding=1, norm_cfg=dict(type='EvoNormB0'),
        act_cfg=None).double()
    assert conv.norm_name == 'evonorm' and not conv.with_activation
    x = torch.randn(2, 3, 5, 5, dtype=F64)
    norm = conv.norm
    y = conv.conv(x)
    want = ref_b0(y,
                  ref_batch_var(y)[0], norm.v, norm.weight, norm.bias,
                  norm.eps)
    torch.testing.assert_close(conv(x), want)


def test_tiny_deeplabv3_forward_backward():
    """ResNetV1c-18 (narrow) + ASPPHead with EvoNorm-B0 at every norm,
    heads without a separate activation, at batch 1 (one value per channel
    in the image-pooling branch), then one eval forward."""
    torch.manual_seed(9)
    norm_cfg = dict(type='EvoNormB0', requires_grad=True)
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
    x = torch.randn(1, 3, 32, 32)
    out = head(backbone(x))
    assert out.shape == (1, 3, 4, 4) and torch.isfinite(out).all()
    out.square().mean().backward()
    layers = [
        m for m in [*backbone.modules(), *head.modules()]
        if isinstance(m, EvoNormB0)
    ]
    # stem 3, blocks 16, downsample 4 (8 -> 4 channels in layer1), head 4
    assert len(layers) == 3 + 16 + 4 + 4
    assert not any(isinstance(m, nn.ReLU) for m in head.modules())
    for p in [*backbone.parameters(), *head.parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert all(torch.isfinite(m.running_var).all() for m in layers)
    backbone.eval(), head.eval()
    with torch.no_grad():
        assert torch.isfinite(head(backbone(x))).all()


# ----------------------------------------------------------- timm
def test_matches_timm(require_extra):
    evo_norm = require_extra('timm', 'timm.layers.evo_norm')
    torch.manual_seed(10)
    ours = make_layer()
    theirs = evo_norm.EvoNorm2dB0(C, momentum=MOMENTUM, eps=1e-5).double()
    theirs.load_state_dict(ours.state_dict())
    close = dict(atol=1e-5, rtol=1e-5)  # timm reduces in float32
    x = torch.randn(2, C, 4, 3, dtype=F64)
    torch.testing.assert_close(ours.train()(x), theirs.train()(x), **close)
    torch.testing.assert_close(ours.running_var, theirs.running_var, **close)
    x = torch.randn(2, C, 4, 3, dtype=F64)
    torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), **close)


# ----------------------------------------------------------- 2 processes
WORLD_SIZE, STEPS, TIMEOUT_S = 2, 2, 180
# case -> (sync, spatial size, per-rank slices of a batch of 4)
DIST_CASES = {
    'sync': (True, (3, 2), [slice(0, 1), slice(1, 4)]),
    'sync_1x1': (True, (1, 1), [slice(0, 1), slice(1, 4)]),
    'sync_empty': (True, (3, 2), [slice(0, 0), slice(0, 4)]),
    'nosync': (False, (3, 2), [slice(0, 1), slice(1, 4)]),
}


def _dist_inputs():
    gen = torch.Generator().manual_seed(11)
    return {
        case:
        dict(
            x=[
                torch.randn((4, C, *hw), generator=gen, dtype=F64) * 2 + 1
                for _ in range(STEPS)
            ],
            w=[
                torch.randn((4, C, *hw), generator=gen, dtype=F64)
                for _ in range(STEPS)
            ])
        for case, (_, hw, _) in DIST_CASES.items()
    }


def _run_steps(case, data, index):
    """Train a layer for STEPS steps on ``x[index]``; what it saw."""
    layer = make_layer(sync=DIST_CASES[case][0])
    outs, grads = [], []
    for step in range(STEPS):
        x = data[case]['x'][step][index].clone().requires_grad_()
        out = layer(x)
        (out * data[case]['w'][step][index]).sum().backward()
        outs.append(out.detach())
        grads.append(x.grad)
    return dict(
        out=outs,
        grad=grads,
        param_grad=[p.grad.clone() for p in layer.parameters()],
        running_var=layer.running_var.clone())


def _rank_body(rank, tmp_dir):
    """What each gloo rank computes (run by ``run_gloo_ranks``)."""
    data = torch.load(os.path.join(tmp_dir, 'inputs.pt'))
    results = {
        case: _run_steps(case, data, slices[rank])
        for case, (_, _, slices) in DIST_CASES.items()
    }
    return results


@pytest.fixture(scope='module')
def dist_results(tmp_path_factory):
    """Spawn the two gloo ranks once; return (inputs, rank results)."""
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip('needs torch.distributed with the gloo backend')
    tmp_dir = tmp_path_factory.mktemp('evonorm_b0_dist')
    data = _dist_inputs()
    torch.save(data, tmp_dir / 'inputs.pt')
    ranks = run_gloo_ranks(_rank_body, WORLD_SIZE, tmp_dir, TIMEOUT_S)
    return data, ranks


@pytest.mark.slow
@pytest.mark.parametrize('case', ['sync', 'sync_1x1', 'sync_empty'])
def test_two_ranks_equal_one_process(dist_results, case):
    """Unequal per-rank batches (one rank may hold 1 sample or none): the
    outputs, input gradients and running variance equal one process on
    the whole batch; the parameter gradients sum to its gradients."""
    data, ranks = dist_results
    ref = _run_steps(case, data, slice(0, 4))
    for step in range(STEPS):
        for key in ('out', 'grad'):
            torch.testing.assert_close(
                torch.cat([r[case][key][step] for r in ranks]), ref[key][step])
    for i, want in enumerate(ref['param_grad']):
        torch.testing.assert_close(
            ranks[0][case]['param_grad'][i] + ranks[1][case]['param_grad'][i],
            want)
    for rank in ranks:
        torch.testing.assert_close(rank[case]['running_var'],
                                   ref['running_var'])


@pytest.mark.slow
def test_sync_false_uses_per_rank_statistics(dist_results):
    data, ranks = dist_results
    for rank, index in enumerate(DIST_CASES['nosync'][2]):
        ref = _run_steps('nosync', data, index)
        torch.testing.assert_close(ranks[rank]['nosync']['out'], ref['out'])
        torch.testing.assert_close(ranks[rank]['nosync']['running_var'],
                                   ref['running_var'])
