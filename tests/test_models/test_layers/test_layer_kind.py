# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Tests of the layer protocol (``mmseg_wsbcn.models.layers.layer_kind``).

Known answers for every layer type the toolkit meets; the eval forms are
checked against the float64 re-derivations of ``tests/helpers``
(``bcn_float64``, ``ws_float64``), never by calling the code under test.
"""

import bcn_float64 as bcn64
import pytest
import torch
import torch.nn as nn
import ws_float64 as ws64
from mmcv.cnn import ConvModule, build_norm_layer
from mmengine.model import revert_sync_batchnorm
from torch.testing import assert_close

import mmseg_wsbcn  # noqa: F401  (registers the layers)
from mmseg_wsbcn.deploy import count_layers, fold_bcn_ws
from mmseg_wsbcn.engine.hooks import summarize_layers
from mmseg_wsbcn.models.layers import (BCN, ChannelAffine, LayerKind, WSConv2d,
                                       inner_modules, layer_kind, named_layers)
from mmseg_wsbcn.models.layers.channel_affine import batch_norm_affine
from mmseg_wsbcn.models.layers.layer_kind import LayerProtocol
from mmseg_wsbcn.models.utils import convert_model, fold_ws_conv
from mmseg_wsbcn.utils.state_dict import layer_conversions


def _mmcv_ops_sync_bn():
    """mmcv's ``MMSyncBN`` without a process group (its ``__init__`` asks
    for the world size): only its type matters here."""
    ops = pytest.importorskip('mmcv.ops')
    layer = ops.SyncBatchNorm.__new__(ops.SyncBatchNorm)
    nn.Module.__init__(layer)
    return layer


def _xd_bn():
    """mmengine's ``_BatchNormXd`` (what ``revert_sync_batchnorm`` makes).
    """
    return revert_sync_batchnorm(nn.Sequential(nn.SyncBatchNorm(4)))[0]


KNOWN = [
    pytest.param(
        lambda: nn.Conv2d(3, 4, 3), ('conv', 'conv', 'Conv2d'), id='Conv2d'),
    pytest.param(
        lambda: WSConv2d(3, 4, 3), ('conv', 'ws_conv', 'WSConv2d(mode=var)'),
        id='WSConv2d'),
    pytest.param(
        lambda: WSConv2d(3, 4, 3, mode='std'),
        ('conv', 'ws_conv', 'WSConv2d(mode=std)'),
        id='WSConv2d-std'),
    pytest.param(
        lambda: nn.BatchNorm2d(4), ('norm', 'bn', 'BatchNorm2d'),
        id='BatchNorm2d'),
    pytest.param(
        lambda: nn.BatchNorm1d(4), ('norm', 'bn', 'BatchNorm1d'),
        id='BatchNorm1d'),
    pytest.param(_xd_bn, ('norm', 'bn', '_BatchNormXd'), id='_BatchNormXd'),
    pytest.param(
        lambda: nn.SyncBatchNorm(4), ('norm', 'syncbn', 'SyncBatchNorm'),
        id='SyncBatchNorm'),
    pytest.param(
        lambda: build_norm_layer(dict(type='SyncBN'), 4)[1],
        ('norm', 'syncbn', 'SyncBatchNorm'),
        id='mmcv-SyncBN'),
    pytest.param(
        _mmcv_ops_sync_bn, ('norm', 'syncbn', 'SyncBatchNorm'),
        id='mmcv-MMSyncBN'),
    pytest.param(
        lambda: nn.GroupNorm(2, 4), ('norm', 'gn', 'GroupNorm(G=2)'),
        id='GroupNorm'),
    pytest.param(
        lambda: build_norm_layer(dict(type='GN', num_groups=32), 64)[1],
        ('norm', 'gn', 'GroupNorm(G=32)'),
        id='mmcv-GN'),
    pytest.param(
        lambda: BCN(8, num_groups=4), ('norm', 'bcn', 'BCN(G=4, batch stats)'),
        id='BCN'),
    pytest.param(
        lambda: build_norm_layer(
            dict(type='BCN', num_groups=32, estimate=True), 64)[1],
        ('norm', 'bcn', 'BCN(G=32, estimated stats)'),
        id='BCN-estimate'),
    pytest.param(lambda: nn.ReLU(), None, id='ReLU'),
    pytest.param(lambda: nn.Linear(3, 4), None, id='Linear'),
    pytest.param(lambda: ConvModule(3, 4, 3), None, id='ConvModule'),
]


@pytest.mark.parametrize('make, expected', KNOWN)
def test_known_kinds(make, expected):
    kind = layer_kind(make())
    if expected is None:
        assert kind is None
    else:
        assert isinstance(kind, LayerKind)
        assert tuple(kind) == expected


def test_the_toolkit_layers_implement_the_protocol():
    assert isinstance(WSConv2d(3, 4, 3), LayerProtocol)
    assert isinstance(BCN(8, num_groups=4), LayerProtocol)
    assert not isinstance(nn.Conv2d(3, 4, 3), LayerProtocol)
    assert not isinstance(nn.GroupNorm(2, 4), LayerProtocol)
    # BCN is a GroupNorm holding a BatchNorm2d: its own answer wins
    bcn = BCN(8, num_groups=4)
    assert isinstance(bcn, nn.GroupNorm)
    assert layer_kind(bcn).name == 'bcn'
    assert layer_kind(bcn.pbn).name == 'bn'
    assert inner_modules(bcn) == (bcn.pbn, )
    assert inner_modules(nn.BatchNorm2d(4)) == ()


def test_bcn_batch_step_is_not_a_layer_of_its_own():
    bcn = BCN(8, num_groups=4, estimate=True)
    model = nn.Sequential(
        WSConv2d(3, 8, 3), bcn, nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8),
        nn.Sequential(bcn))  # shared: counted once
    layers = [(name, kind.name) for name, _, kind in named_layers(model)]
    assert layers == [('0', 'ws_conv'), ('1', 'bcn'), ('2', 'conv'),
                      ('3', 'bn')]
    counts = count_layers(model)
    assert counts == dict(
        WSConv2d=1, BCN=1, GroupNorm=0, BatchNorm=1, Conv2d=2)
    assert dict(summarize_layers(model)['other']) == {
        'WSConv2d(mode=var)': 1,
        'BCN(G=4, estimated stats)': 1,
        'Conv2d': 1,
        'BatchNorm2d': 1,
    }


@pytest.mark.parametrize('mode', ['var', 'std'])
def test_ws_conv_eval_form_is_the_standardized_conv(mode,
                                                    ws_conv_off_defaults):
    torch.manual_seed(0)
    conv = ws_conv_off_defaults(mode)
    with torch.no_grad():
        conv.weight.mul_(0.4)  # a weight variance near 0.01 (eps 0.1)
        conv.bias.normal_()
    plain = conv.eval_form()
    assert type(plain) is nn.Conv2d
    assert (plain.stride, plain.padding, plain.dilation, plain.groups,
            plain.padding_mode) == ((2, 2), (2, 2), (2, 2), 2, 'reflect')
    expected = ws64.standardized(conv.weight, 0.1, mode)
    assert_close(plain.weight.detach(), expected, rtol=1e-12, atol=1e-12)
    assert_close(plain.bias.detach(), conv.bias.detach(), rtol=0, atol=0)
    x = torch.randn(2, 4, 9, 7, dtype=torch.float64)
    assert_close(
        plain(x),
        ws64.conv2d_like(conv, x, expected, conv.bias.detach()),
        rtol=1e-12,
        atol=1e-12)


def test_fold_ws_conv_uses_the_eval_form_and_keeps_sharing():
    torch.manual_seed(0)
    conv = WSConv2d(3, 4, 3, eps=0.1, dtype=torch.float64)
    model = nn.Sequential(conv, nn.ReLU(), nn.Sequential(conv))
    model = fold_ws_conv(model)
    assert type(model[0]) is nn.Conv2d and model[2][0] is model[0]
    assert_close(
        model[0].weight.detach(),
        ws64.standardized(conv.weight, 0.1, 'var'),
        rtol=1e-12,
        atol=1e-12)


def _random_bcn(channels=8, groups=4):
    torch.manual_seed(1)
    bcn = BCN(channels, num_groups=groups, dtype=torch.float64).eval()
    with torch.no_grad():
        bcn.pbn.running_mean.normal_()
        bcn.pbn.running_var.uniform_(0.5, 2.0)
        bcn.pbn.weight.uniform_(0.5, 1.5)
        bcn.pbn.bias.normal_()
        bcn.weight.uniform_(0.5, 1.5)
        bcn.bias.normal_()
    return bcn


def _ref_bcn_eval(bcn, x):
    """BCN in eval, float64: the shared reference (tests/helpers/
    bcn_float64.py) with the layer's running statistics."""
    p = bcn.pbn
    params = [
        t.detach().double() for t in (bcn.weight, bcn.bias, p.weight, p.bias)
    ]
    return bcn64.bcn(
        x, params, 'eval', p.running_mean, p.running_var, eps=bcn.eps)


def test_bcn_eval_forms_compute_the_layer():
    bcn = _random_bcn()
    x = torch.randn(3, 8, 5, 4, dtype=torch.float64)
    expected = _ref_bcn_eval(bcn, x)
    form = bcn.eval_form()
    assert [type(m) for m in form] == [ChannelAffine, nn.GroupNorm]
    assert_close(form(x), expected, rtol=1e-10, atol=1e-10)
    scale, shift, rest = bcn.split_eval_affine()
    assert scale.dtype == torch.float64 and scale.shape == (8, )
    assert type(rest) is nn.GroupNorm and not rest.training
    assert_close(
        rest(x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)),
        expected,
        rtol=1e-10,
        atol=1e-10)


@pytest.mark.parametrize(
    'name, ckpt, model, ok',
    [
        ('weight', (1, 4, 1), (4, ), True),
        ('bias', (1, 4, 1), (4, ), True),
        ('weight', (4, ), (4, ), False),  # the same shape: nothing to convert
        ('weight', (1, 2, 1), (4, ), False),  # another G
        ('weight', (1, 4, 1), (2, ), False),
        ('weight', (4, 1), (4, ), False),
        ('weight', (1, 1, 4), (4, ), False),
        ('pbn.weight', (1, 4, 1), (4, ), False),
        ('running_mean', (1, 4, 1), (4, ), False),
    ])
def test_bcn_accepts_the_authors_affine_shape_only(name, ckpt, model, ok):
    bcn = BCN(8, num_groups=4)
    assert bcn.accepts_checkpoint_shape(name, ckpt, model) is ok
    assert bcn.accepts_checkpoint_shape(name, torch.Size(ckpt),
                                        torch.Size(model)) is ok


def test_bcn_loads_and_checks_the_authors_affine_shape():
    bcn = _random_bcn()
    state = {k: v.clone() for k, v in bcn.state_dict().items()}
    state['weight'] = state['weight'].reshape(1, 4, 1)
    state['bias'] = state['bias'].reshape(1, 4, 1)
    other = BCN(8, num_groups=4, dtype=torch.float64)
    other.load_state_dict(state)
    assert_close(other.weight, bcn.weight, rtol=0, atol=0)
    assert_close(other.bias, bcn.bias, rtol=0, atol=0)
    model = nn.Sequential(nn.Conv2d(3, 8, 1), BCN(8, num_groups=4))
    shape_ok = layer_conversions(model)
    assert shape_ok('1.weight', (1, 4, 1), (4, ))
    assert not shape_ok('0.bias', (1, 8, 1), (8, ))


class ScaledBN(nn.Module):
    """A toy norm layer of the toolkit's kind: a BatchNorm2d, then a
    learnable per-channel gain; implements the whole layer protocol."""

    def __init__(self, num_features, eps=1e-5):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, eps=eps)
        self.gain = nn.Parameter(torch.full((num_features, ), 2.0))

    def forward(self, x):
        return self.bn(x) * self.gain.view(1, -1, 1, 1)

    def layer_kind(self):
        return LayerKind('norm', 'scaled_bn', 'ScaledBN')

    def inner_modules(self):
        return (self.bn, )

    def split_eval_affine(self):
        scale, shift = batch_norm_affine(self.bn)
        gain = self.gain.detach().double()
        return scale * gain, shift * gain, nn.Identity()

    def eval_form(self):
        scale, shift, _ = self.split_eval_affine()
        dtype = self.gain.dtype
        return ChannelAffine(scale.to(dtype), shift.to(dtype))


def test_a_new_norm_is_picked_up_through_the_protocol():
    """Summary, counts, convert's carry-over and fold know a new layer
    from its protocol alone."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), ScaledBN(8))
    assert [n for n, _, _ in named_layers(model)] == ['0', '1']
    assert dict(summarize_layers(model)['other']) == {
        'Conv2d': 1,
        'ScaledBN': 1
    }
    assert count_layers(model) == dict(
        WSConv2d=0, BCN=0, GroupNorm=0, BatchNorm=0, Conv2d=1, ScaledBN=1)

    # convert: a BatchNorm's weights go to the new layer's inner BatchNorm
    torch.manual_seed(0)
    old = nn.BatchNorm2d(8)
    with torch.no_grad():
        old.running_mean.normal_()
    converted = convert_model(
        nn.Sequential(nn.Conv2d(3, 8, 3), old),
        conv=None,
        norm=dict(type=ScaledBN),
        logger='silent')
    assert type(converted[1]) is ScaledBN
    assert converted[1].bn.weight is old.weight
    assert converted[1].bn.running_mean is old.running_mean

    # fold: into the conv in front, or its eval form where there is none
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 8, 3), ScaledBN(8)),
        nn.Sequential(nn.ReLU(), ScaledBN(8))).double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    model.eval()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    expected = model(x)
    report = fold_bcn_ws(model)
    assert_close(model(x), expected, rtol=1e-10, atol=1e-10)
    assert type(model[0][1]) is nn.Identity
    assert type(model[1][1]) is ChannelAffine
    assert report.bcn_folded == [('0.0', '0.1')]
    assert [name for name, _ in report.left] == ['1.1']
