# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Tests of ``convert_model`` on mmseg models and a torchvision-style
ResNet, checked against the original modules (kept as deep copies)."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks.conv_ws import ConvWS2d
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.models.backbones import ResNetV1c
from mmseg.registry import MODELS as MMSEG_MODELS
from mmseg.structures import SegDataSample
from torch.nn.modules.batchnorm import _BatchNorm

from mmseg_wsbcn.models import BCN, WSConv2d
from mmseg_wsbcn.models.utils import (DEFAULT_EXCLUDE, ConvertReport,
                                      convert_model)

GROUPS = 32


def convert(*args, **kwargs):
    kwargs.setdefault('logger', 'silent')
    return convert_model(*args, **kwargs)


def randomize_norms(model, seed=0):
    """Give every BatchNorm random affine and running statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                c = m.num_features
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                    m.bias.copy_(torch.randn(c, generator=gen))
                m.running_mean.copy_(torch.randn(c, generator=gen))
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                m.num_batches_tracked.fill_(
                    int(torch.randint(1, 1000, (1, ), generator=gen)))
    return model


def plain_convs(model):
    """Names of the ``nn.Conv2d`` modules that are not WS convs."""
    return [
        n for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and not isinstance(m, WSConv2d)
    ]


def batch_norms(model):
    """Names of the BatchNorms that are not BCN's batch step."""
    return [
        n for n, m in model.named_modules()
        if isinstance(m, _BatchNorm) and not n.endswith('.pbn')
    ]


def count(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


# ------------------------------------------------ torchvision-style ResNet
class BasicBlock(nn.Module):
    """torchvision's ``BasicBlock``, written out (torchvision not needed)."""

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(
            inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class TinyTVResNet(nn.Module):
    """torchvision's ``ResNet`` layout (``conv1``, ``bn1``, ``layerN``,
    ``downsample.0/1``, ``fc``) with two narrow stages."""

    def __init__(self, widths=(32, 64), num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = widths[0]
        for i, planes in enumerate(widths):
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or inplanes != planes:
                downsample = nn.Sequential(
                    nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                    nn.BatchNorm2d(planes))
            layer = nn.Sequential(
                BasicBlock(inplanes, planes, stride, downsample),
                BasicBlock(planes, planes))
            self.add_module(f'layer{i + 1}', layer)
            inplanes = planes
        self.num_stages = len(widths)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f'layer{i + 1}')(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ------------------------------------------------------------ DeepLabv3
def tiny_deeplabv3_cfg():
    norm_cfg = dict(type='BN', requires_grad=True)
    return dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor'),
        backbone=dict(
            type='ResNetV1c',
            depth=18,
            out_indices=(0, 1, 2, 3),
            dilations=(1, 1, 2, 4),
            strides=(1, 2, 1, 1),
            norm_cfg=norm_cfg,
            contract_dilation=True),
        decode_head=dict(
            type='ASPPHead',
            in_channels=512,
            in_index=3,
            channels=16,
            dilations=(1, 12, 24, 36),
            num_classes=4,
            norm_cfg=norm_cfg,
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        auxiliary_head=dict(
            type='FCNHead',
            in_channels=256,
            in_index=2,
            channels=16,
            num_convs=1,
            concat_input=False,
            num_classes=4,
            norm_cfg=norm_cfg,
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4)),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))


@pytest.fixture
def deeplabv3():
    init_default_scope('mmseg')
    torch.manual_seed(0)
    return MMSEG_MODELS.build(tiny_deeplabv3_cfg())


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize('kwargs, exc, text', [
    (dict(conv=dict(type='NoSuchConv')), KeyError,
     r"conv type 'NoSuchConv' is not registered.*'WSConv2d' and 'BCN'.*"
     r'import mmseg_wsbcn'),
    (dict(norm=dict(type='NoSuchNorm')), KeyError,
     r"norm type 'NoSuchNorm' is not registered.*import mmseg_wsbcn"),
    (dict(norm=dict(num_groups=32)), KeyError, "has no 'type' key"),
    (dict(conv='WSConv2d'), TypeError, 'conv must be a dict'),
    (dict(exclude=[3]), TypeError, 'exclude must be a sequence of str'),
    (dict(model=None), TypeError, 'model must be an nn.Module'),
])
def test_bad_arguments_change_nothing(kwargs, exc, text):
    model = nn.Sequential(nn.Conv2d(3, 32, 3), nn.BatchNorm2d(32))
    kwargs.setdefault('model', model)
    with pytest.raises(exc, match=text):
        convert(**kwargs)
    assert [type(m) for m in model] == [nn.Conv2d, nn.BatchNorm2d]


def test_indivisible_channels_name_the_module_and_change_nothing():
    model = ResNetV1c(depth=18)
    with pytest.raises(ValueError) as info:
        convert(model, norm=dict(type='BCN', num_groups=3))
    # the stem's first norm (32 channels) is the first one met
    msg = str(info.value)
    assert 'stem.1' in msg and 'BatchNorm2d, 32 channels' in msg
    assert 'num_groups=3 must divide num_features=32' in msg
    assert count(model, BCN) == 0 and count(model, WSConv2d) == 0


# ------------------------------------------------------- mmseg ResNetV1c
def test_resnetv1c_weights_and_batch_step_carried_over():
    model = randomize_norms(ResNetV1c(depth=18))
    original = copy.deepcopy(model)
    n_conv = count(model, nn.Conv2d)
    n_bn = count(model, _BatchNorm)
    assert (n_conv, n_bn) == (22, 22)  # 3 stem, 16 block, 3 down

    model, report = convert(model, return_report=True)
    assert count(model, WSConv2d) == n_conv
    assert count(model, BCN) == n_bn
    assert plain_convs(model) == [] and batch_norms(model) == []
    assert report.counts() == {
        ('Conv2d', 'WSConv2d'): n_conv,
        ('BatchNorm2d', 'BCN'): n_bn
    }
    assert report.skipped == [] and report.notes == []
    assert str(report) == ('convert_model: 22 Conv2d -> WSConv2d, '
                           '22 BatchNorm2d -> BCN')

    new_modules = dict(model.named_modules())
    gen = torch.Generator().manual_seed(1)
    for name, old in original.named_modules():
        new = new_modules[name]
        if isinstance(old, nn.Conv2d):
            assert type(new) is WSConv2d
            for attr in ('in_channels', 'out_channels', 'kernel_size',
                         'stride', 'padding', 'dilation', 'groups',
                         'padding_mode'):
                assert getattr(new, attr) == getattr(old, attr), attr
            assert new.bias is None and old.bias is None
            assert torch.equal(new.weight, old.weight)
        elif isinstance(old, _BatchNorm):
            assert type(new) is BCN and new.estimate
            assert new.num_groups == GROUPS
            for attr in ('weight', 'bias', 'running_mean', 'running_var',
                         'num_batches_tracked'):
                assert torch.equal(getattr(new.pbn, attr), getattr(old,
                                                                   attr)), attr
            # eval: BCN = group norm (group affine 1, 0) of the old BN
            x = torch.randn(2, old.num_features, 3, 3, generator=gen)
            expected = F.group_norm(old.eval()(x), GROUPS, eps=1e-5)
            torch.testing.assert_close(new.eval()(x), expected)


def test_resnetv1c_batch_step_output_inside_the_network():
    """Hook the converted BCNs: in eval their batch step, evaluated with
    the ORIGINAL BN's tensors, is what ``pbn`` computes."""
    model = randomize_norms(ResNetV1c(depth=18))
    model.eval()
    original = dict(copy.deepcopy(model).named_modules())
    model = convert(model)
    model.eval()
    checked = []

    def hook(module, args, output, name):
        old = original[name]
        x = args[0]
        step = F.batch_norm(x, old.running_mean, old.running_var, old.weight,
                            old.bias, False, 0., old.eps)
        ref = (x - old.running_mean.view(1, -1, 1, 1)) / torch.sqrt(
            old.running_var.view(1, -1, 1, 1) + old.eps) * old.weight.view(
                1, -1, 1, 1) + old.bias.view(1, -1, 1, 1)
        torch.testing.assert_close(step, ref, rtol=1e-4, atol=1e-4)
        pbn = module.pbn
        mine = F.batch_norm(x, pbn.running_mean, pbn.running_var, pbn.weight,
                            pbn.bias, False, 0., module.eps)
        torch.testing.assert_close(mine, step, rtol=0, atol=0)
        torch.testing.assert_close(output,
                                   F.group_norm(step, GROUPS, eps=1e-5))
        checked.append(name)

    for name, m in model.named_modules():
        if isinstance(m, BCN):
            m.register_forward_hook(
                lambda mod, a, o, name=name: hook(mod, a, o, name))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert len(checked) == 22


def test_exclude_patterns():
    model = ResNetV1c(depth=18)
    model, report = convert(
        model,
        exclude=('stem.0', 'layer4', '*.downsample.1'),
        return_report=True)
    assert type(model.stem[0]) is nn.Conv2d
    assert type(model.stem[1]) is BCN
    assert plain_convs(model.layer4) == [
        n for n, m in model.layer4.named_modules() if isinstance(m, nn.Conv2d)
    ] != []
    assert count(model.layer4, BCN) == 0
    assert type(model.layer2[0].downsample[0]) is WSConv2d
    assert type(model.layer2[0].downsample[1]) is nn.BatchNorm2d
    assert report.skipped == [('stem.0', 'excluded'),
                              ('layer2.0.downsample.1', 'excluded'),
                              ('layer3.0.downsample.1', 'excluded'),
                              ('layer4', 'excluded')]
    assert 'skipped: stem.0, layer2.0.downsample.1' in str(report)


def test_norm_eval_frozen_stages_and_requires_grad():
    model = ResNetV1c(depth=18, frozen_stages=1, norm_eval=True)
    model.train()  # mmseg's ResNet.train returns None
    model = convert(model)
    assert not any(p.requires_grad for p in model.stem.parameters())
    assert not any(p.requires_grad for p in model.layer1.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    bcns = [m for m in model.modules() if isinstance(m, BCN)]
    assert bcns and not any(m.pbn.training for m in bcns)
    model.train()  # ResNet.train re-applies norm_eval to the pbn
    assert not any(m.pbn.training for m in bcns)
    # the frozen statistics do not move in a training forward
    before = [m.pbn.running_mean.clone() for m in bcns]
    model(torch.randn(1, 3, 32, 32))
    for m, b in zip(bcns, before):
        assert torch.equal(m.pbn.running_mean, b)


# ------------------------------------------------------ DeepLabv3 model
def test_deeplabv3_default_groups_do_not_divide_head_channels(deeplabv3):
    with pytest.raises(
            ValueError,
            match=r'decode_head\.image_pool\.1\.bn '
            r'\(BatchNorm2d, 16 channels\) to BCN'):
        convert(deeplabv3)
    assert count(deeplabv3, BCN) == 0


def test_deeplabv3_conv_seg_untouched_and_trains_at_batch_1(deeplabv3):
    model = deeplabv3
    n_conv = count(model, nn.Conv2d)
    n_bn = count(model, _BatchNorm)
    seg_weights = (model.decode_head.conv_seg.weight.clone(),
                   model.auxiliary_head.conv_seg.weight.clone())
    model, report = convert(
        model,
        norm=dict(type='BCN', num_groups=16, estimate=True),
        return_report=True)
    assert report.skipped == [('decode_head.conv_seg', 'excluded'),
                              ('auxiliary_head.conv_seg', 'excluded')]
    assert sorted(plain_convs(model)) == [
        'auxiliary_head.conv_seg', 'decode_head.conv_seg'
    ]
    assert type(model.decode_head.conv_seg) is nn.Conv2d
    assert torch.equal(model.decode_head.conv_seg.weight, seg_weights[0])
    assert torch.equal(model.auxiliary_head.conv_seg.weight, seg_weights[1])
    assert count(model, WSConv2d) == n_conv - 2
    assert count(model, BCN) == n_bn and batch_norms(model) == []
    # mmcv ConvModule still finds its norm under the old attribute name
    assert type(model.decode_head.bottleneck.norm) is BCN

    model.train()
    inputs = torch.randn(1, 3, 64, 64)
    sample = SegDataSample(
        gt_sem_seg=PixelData(data=torch.randint(0, 4, (1, 64, 64))))
    sample.set_metainfo(dict(img_shape=(64, 64), pad_shape=(64, 64)))
    losses = model.loss(inputs, [sample])
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    pool_norm = model.decode_head.image_pool[1].bn
    assert int(pool_norm.pbn.num_batches_tracked) == 1
    model.eval()
    with torch.no_grad():
        out = model(inputs, mode='tensor')
    assert out.shape == (1, 4, 8, 8)


# --------------------------------------------- torchvision-style ResNet
def test_torchvision_style_resnet():
    model = randomize_norms(TinyTVResNet())
    n_conv, n_bn = count(model, nn.Conv2d), count(model, _BatchNorm)
    fc = model.fc
    conv1_weight = model.conv1.weight.clone()
    model, report = convert(model, return_report=True)
    assert count(model, WSConv2d) == n_conv == 10
    assert count(model, BCN) == n_bn == 10
    assert model.fc is fc and report.skipped == []
    assert type(model.layer2[0].downsample[0]) is WSConv2d
    assert type(model.layer2[0].downsample[1]) is BCN
    assert torch.equal(model.conv1.weight, conv1_weight)
    out = model.train()(torch.randn(1, 3, 32, 32))  # batch 1, estimate
    out.sum().backward()
    assert out.shape == (1, 10)
    assert torch.isfinite(model.conv1.weight.grad).all()


# ----------------------------------------------------- per-module rules
def test_conv_hyper_parameters_device_dtype_and_bias():
    old = nn.Conv2d(
        4,
        6, (3, 5),
        stride=(2, 1),
        padding=(1, 2),
        dilation=(1, 2),
        groups=2,
        bias=True,
        padding_mode='reflect',
        dtype=torch.float64)
    expected_weight = old.weight.detach().clone()
    new = convert(old, conv=dict(type='WSConv2d', mode='std', eps=1e-4))
    assert type(new) is WSConv2d and new.mode == 'std' and new.eps == 1e-4
    for attr in ('in_channels', 'out_channels', 'kernel_size', 'stride',
                 'padding', 'dilation', 'groups', 'padding_mode'):
        assert getattr(new, attr) == getattr(old, attr), attr
    assert new.weight is old.weight and new.bias is old.bias
    assert new.weight.dtype == torch.float64
    assert torch.equal(new.weight, expected_weight)
    # std-form reference, written out
    w = expected_weight.flatten(1)
    w_hat = (w - w.mean(1, keepdim=True)) / (w.std(1, keepdim=True) + 1e-4)
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64)
    expected = F.conv2d(
        F.pad(x, (2, 2, 1, 1), mode='reflect'), w_hat.view_as(expected_weight),
        old.bias, (2, 1), 0, (1, 2), 2)
    torch.testing.assert_close(new(x), expected)


def test_conv_to_a_class_without_device_arguments():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1))
    model = convert(model, conv=dict(type='ConvWS'), norm=None)
    assert type(model[0]) is ConvWS2d and model[0].padding == (1, 1)


def test_sync_batchnorm_batchnormxd_and_eps_momentum_from_the_config():
    """The new layers take ``eps`` and ``momentum`` from ``norm``, not from
    the old layer; the report notes each difference."""
    model = nn.Sequential(
        nn.SyncBatchNorm(32),
        # mmengine's _BatchNormXd, what revert_sync_batchnorm leaves
        revert_sync_batchnorm(nn.SyncBatchNorm(64)),
        nn.BatchNorm2d(32, 1e-3, momentum=0.3))
    randomize_norms(model)
    stats = [m.running_var.clone() for m in model]
    model, report = convert(model, return_report=True)
    assert [type(m) for m in model] == [BCN, BCN, BCN]
    for m, s in zip(model, stats):
        assert torch.equal(m.pbn.running_var, s)
        assert m.eps == 1e-5 and m.momentum == 0.1
    assert [(o, n)
            for _, o, n in report.converted] == [('SyncBatchNorm', 'BCN'),
                                                 ('_BatchNormXd', 'BCN'),
                                                 ('BatchNorm2d', 'BCN')]
    assert report.notes == [
        '2 (BatchNorm2d -> BCN): eps 0.001 -> 1e-05',
        '2 (BatchNorm2d -> BCN): momentum 0.3 -> 0.1'
    ]
    # the rate the new layer updates its statistics at (from 0): 0.2
    bn = nn.BatchNorm2d(8, momentum=0.3)
    new = convert(bn, norm=dict(type='BCN', num_groups=4, momentum=0.2))
    assert new.momentum == 0.2
    x = torch.randn(2, 8, 3, 3, dtype=torch.float64)
    new.double()(x)
    torch.testing.assert_close(new.pbn.running_mean, 0.2 * x.mean((0, 2, 3)))


def test_bn_without_affine_or_statistics():
    model = nn.Sequential(
        nn.BatchNorm2d(32, affine=False),
        nn.BatchNorm2d(32, track_running_stats=False))
    randomize_norms(model[0:1])
    mean = model[0].running_mean.clone()
    model, report = convert(model, return_report=True)
    assert torch.equal(model[0].pbn.running_mean, mean)
    assert torch.equal(model[0].pbn.weight, torch.ones(32))
    assert torch.equal(model[1].pbn.running_var, torch.ones(32))
    assert report.notes == [
        '1 (BatchNorm2d -> BCN): no running statistics to carry over'
    ]


def test_group_norm_becomes_bcn_with_defaults_and_bcn_is_kept():
    bcn = BCN(64, num_groups=32)
    ws = WSConv2d(64, 64, 3)
    gn = nn.GroupNorm(32, 64)
    with torch.no_grad():
        gn.weight.uniform_(0.5, 1.5)
    model = nn.Sequential(gn, bcn, ws)
    model, report = convert(model, return_report=True)
    assert type(model[0]) is BCN and model[0] is not gn
    assert torch.equal(model[0].weight, torch.ones(32))
    assert torch.equal(model[0].pbn.weight, torch.ones(64))
    assert model[1] is bcn and model[2] is ws
    assert report.notes == ['0 (GroupNorm -> BCN): no weights carried over']


def test_skipped_kinds_and_none():
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3), nn.BatchNorm2d(32), ConvWS2d(32, 32, 3),
        nn.BatchNorm1d(32), nn.Conv1d(3, 3, 3))
    out, report = convert(model, conv=None, return_report=True)
    assert [type(m)
            for m in out][:4] == [nn.Conv2d, BCN, ConvWS2d, nn.BatchNorm1d]
    assert report.skipped == [('3', 'BatchNorm1d is not 2-D')]
    out, report = convert(model, norm=None, return_report=True)
    assert type(out[0]) is WSConv2d and type(out[3]) is nn.BatchNorm1d
    assert report.skipped == [('2', 'already weight-standardized ConvWS2d')]
    assert type(out[4]) is nn.Conv1d


def test_leaf_model_and_return_value():
    bn = randomize_norms(nn.BatchNorm2d(32))
    new = convert(bn)
    assert type(new) is BCN and new.pbn.weight is bn.weight
    conv = nn.Conv2d(3, 8, 3)
    assert convert(conv, exclude='*') is conv


def test_shared_module_and_tied_weights_stay_shared():
    shared = nn.Conv2d(8, 8, 3, padding=1)
    a, b = nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 1)
    b.weight = a.weight
    model = nn.Sequential(shared, nn.ReLU(), shared, a, b)
    model, report = convert(model, norm=None, return_report=True)
    assert type(model[0]) is WSConv2d and model[0] is model[2]
    assert model[3].weight is model[4].weight
    assert len(report.converted) == 3


def test_summary_is_logged(capsys):
    convert_model(
        nn.Sequential(nn.Conv2d(3, 32, 3), nn.BatchNorm2d(32)), logger=None)
    assert capsys.readouterr().out.strip() == (
        'convert_model: 1 Conv2d -> WSConv2d, 1 BatchNorm2d -> BCN')
    assert DEFAULT_EXCLUDE == ('conv_seg', '*.conv_seg')
    assert str(ConvertReport()) == 'convert_model: nothing converted'
