# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The converter of the authors' ImageNet WS backbones.

Synthetic checkpoints carry exactly the keys and shapes of the seven
released files (``tests/data/official_keys``, made from the authors' model
definitions) with random, plausible values: conv filters whose scales span
1e-4 to 1e-1 (so the two WS forms differ visibly), positive variances and
non-trivial affines (the ``official_state_dict`` fixture of tests/conftest.py).
The converted weights load strictly into mmseg's real
``ResNet`` / ``ResNeXt``, and its stage outputs match a float64 forward of
the authors' architecture written below from the method's formulas.
"""
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

from mmseg_wsbcn.models.utils.ckpt_convert import (ConversionError, Layout,
                                                   convert_wsbcn_state_dict,
                                                   detect_layout,
                                                   official_shapes,
                                                   unwrap_state_dict)

LAYOUTS = [
    Layout('gn-ws', 'resnet', 50),
    Layout('gn-ws', 'resnet', 101),
    Layout('gn-ws', 'resnext', 50),
    Layout('gn-ws', 'resnext', 101),
    Layout('bcn-ws', 'resnet', 50),
    Layout('bcn-ws', 'resnet', 101),
    Layout('bcn-ws', 'resnext', 50),
]
EPS = 1e-5
GROUPS = 32


# ------------------------------------------------- the float64 reference --
def ws(weight, form):
    """Weight Standardization of the authors' code, per output channel,
    unbiased variance: ``std``: (w - m) / (s + eps), ``var``:
    (w - m) / sqrt(v + eps)."""
    flat = weight.flatten(1)
    centred = flat - flat.mean(1, keepdim=True)
    var = flat.var(1, unbiased=True, keepdim=True)
    if form == 'std':
        flat = centred / (var.sqrt() + EPS)
    else:
        flat = centred / (var + EPS).sqrt()
    return flat.view_as(weight)


def norm(x, sd, name, family):
    if family == 'gn-ws':
        return F.group_norm(x, GROUPS, sd[f'{name}.weight'],
                            sd[f'{name}.bias'], EPS)
    # BCN: BatchNorm step with the running statistics (eval) ...
    shape = (1, -1, 1, 1)
    y = (x - sd[f'{name}.pbn.running_mean'].view(shape)) / (
        sd[f'{name}.pbn.running_var'].view(shape) + EPS).sqrt()
    y = y * sd[f'{name}.pbn.weight'].view(shape) + \
        sd[f'{name}.pbn.bias'].view(shape)
    # ... per-sample standardization over 32 channel groups ...
    n = y.shape[0]
    z = y.reshape(n, GROUPS, -1)
    z = (z - z.mean(-1, keepdim=True)) / (
        z.var(-1, unbiased=False, keepdim=True) + EPS).sqrt()
    # ... then the per-group affine, stored (1, 32, 1)
    z = z * sd[f'{name}.weight'].view(1, GROUPS, 1) + \
        sd[f'{name}.bias'].view(1, GROUPS, 1)
    return z.view_as(y)


def reference_stages(sd, layout, x, form):
    """The authors' ResNet / ResNeXt (v1, 7x7 stem, stride on the 3x3
    conv) in float64; returns the outputs of the four stages."""
    sd = {k: v.double() for k, v in sd.items()}
    fam = layout.family
    groups = GROUPS if layout.arch == 'resnext' else 1

    def conv(x, name, stride=1, padding=0, g=1):
        return F.conv2d(x, ws(sd[f'{name}.weight'], form), None, stride,
                        padding, 1, g)

    x = F.relu(norm(conv(x, 'conv1', 2, 3), sd, 'bn1', fam))
    x = F.max_pool2d(x, 3, 2, 1)
    outs = []
    for stage, blocks in enumerate({50: (3, 4, 6, 3),
                                    101: (3, 4, 23, 3)}[layout.depth]):
        for block in range(blocks):
            p = f'layer{stage + 1}.{block}'
            stride = 2 if stage > 0 and block == 0 else 1
            y = F.relu(norm(conv(x, f'{p}.conv1'), sd, f'{p}.bn1', fam))
            y = F.relu(
                norm(
                    conv(y, f'{p}.conv2', stride, 1, groups), sd,
                    f'{p}.bn2', fam))
            y = norm(conv(y, f'{p}.conv3'), sd, f'{p}.bn3', fam)
            if block == 0:
                x = norm(
                    conv(x, f'{p}.downsample.0', stride), sd,
                    f'{p}.downsample.1', fam)
            x = F.relu(x + y)
        outs.append(x)
    return outs


def build_backbone(layout, state_dict, mode=None):
    cfg = layout.backbone_cfg()
    if mode is not None:
        cfg['conv_cfg'] = dict(cfg['conv_cfg'], mode=mode)
    backbone = MODELS.build(cfg)
    backbone.load_state_dict(state_dict, strict=True)
    backbone.eval()  # mmseg's ResNet.train() returns None
    return backbone


def relative_error(actual, expected):
    return float((actual.double() - expected).norm() / expected.norm())


# ------------------------------------------------------------------ tests --
@pytest.mark.parametrize('layout', LAYOUTS, ids=lambda lay: lay.name)
def test_official_layout_matches_the_authors_models(layout,
                                                    official_key_shapes):
    expected = official_key_shapes(*layout)
    assert list(official_shapes(layout).items()) == list(expected.items())
    assert layout.official_file


@pytest.mark.parametrize('layout', LAYOUTS, ids=lambda lay: lay.name)
@pytest.mark.parametrize('form', [
    'flat',
    pytest.param('module', marks=pytest.mark.slow),
    pytest.param('wrapped', marks=pytest.mark.slow)
])
def test_converts_and_loads_strictly(layout, form, official_state_dict):
    source = official_state_dict(*layout)
    obj = source
    if form != 'flat':
        obj = OrderedDict(('module.' + k, v) for k, v in source.items())
    if form == 'wrapped':
        obj = dict(state_dict=obj, epoch=90)
    converted, detected = convert_wsbcn_state_dict(unwrap_state_dict(obj))
    assert detected == layout
    assert not any(k.startswith('fc.') for k in converted)
    backbone = build_backbone(layout, converted)  # strict: every key
    state = backbone.state_dict()
    # spot checks: a (grouped) 3x3 conv, a norm weight, a late block
    torch.testing.assert_close(state['layer1.0.conv2.weight'],
                               source['layer1.0.conv2.weight'])
    torch.testing.assert_close(state['layer3.5.conv3.weight'],
                               source['layer3.5.conv3.weight'])
    if layout.family == 'gn-ws':
        torch.testing.assert_close(state['layer2.1.gn2.weight'],
                                   source['layer2.1.bn2.weight'])
        torch.testing.assert_close(state['layer4.0.downsample.1.bias'],
                                   source['layer4.0.downsample.1.bias'])
    else:
        torch.testing.assert_close(
            state['layer2.0.bn1.pbn.running_mean'],
            source['layer2.0.bn1.pbn.running_mean'])
        torch.testing.assert_close(state['bn1.pbn.running_var'],
                                   source['bn1.pbn.running_var'])
        torch.testing.assert_close(state['layer3.2.bn3.weight'],
                                   source['layer3.2.bn3.weight'].flatten())
        assert state['layer1.0.bn1.pbn.num_batches_tracked'] == 1000


@pytest.mark.parametrize('layout', [
    Layout('gn-ws', 'resnet', 50),
    Layout('gn-ws', 'resnext', 50),
    Layout('bcn-ws', 'resnet', 50),
    Layout('bcn-ws', 'resnext', 50),
],
                         ids=lambda lay: lay.name)
def test_forward_parity_with_the_authors_architecture(layout,
                                                      official_state_dict):
    """Eval-mode stage outputs of the converted backbone equal a float64
    forward of the authors' model (to float32 rounding in float32, to 1e-10
    in float64); with the other WS form they do not."""
    source = official_state_dict(*layout, seed=1)
    converted, _ = convert_wsbcn_state_dict(source)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    form = layout.conv_cfg()['mode']
    expected = reference_stages(source, layout, x.double(), form)
    with torch.no_grad():
        actual = build_backbone(layout, converted)(x)
        other = 'var' if form == 'std' else 'std'
        wrong = build_backbone(layout, converted, mode=other)(x)
    errors = [relative_error(a, e) for a, e in zip(actual, expected)]
    assert max(errors) < 1e-4, errors
    wrong_errors = [relative_error(a, e) for a, e in zip(wrong, expected)]
    assert max(wrong_errors) > 100 * max(errors), (errors, wrong_errors)
    # in float64 the same model is exact: what is left above is float32
    with torch.no_grad():
        exact = build_backbone(layout, converted).double()(x.double())
    errors64 = [relative_error(a, e) for a, e in zip(exact, expected)]
    assert max(errors64) < 1e-10, errors64


def test_missing_num_batches_tracked_is_filled(official_state_dict):
    layout = Layout('bcn-ws', 'resnet', 50)
    source = official_state_dict(*layout)
    for key in [k for k in source if k.endswith('num_batches_tracked')]:
        del source[key]
    converted, _ = convert_wsbcn_state_dict(source)
    build_backbone(layout, converted)
    assert int(converted['bn1.pbn.num_batches_tracked']) == 0


@pytest.fixture(scope='module')
def gn50(official_state_dict):
    return official_state_dict('gn-ws', 'resnet', 50)


def test_missing_extra_and_wrong_shapes(gn50):
    broken = OrderedDict(gn50)
    del broken['layer1.0.bn1.weight'], broken['layer2.0.conv1.weight']
    broken['layer1.0.extra.weight'] = torch.zeros(1)
    broken['layer1.1.conv2.weight'] = torch.zeros(64, 64, 1, 1)
    with pytest.raises(ConversionError) as info:
        convert_wsbcn_state_dict(broken)
    assert str(info.value) == (
        'not the GN+WS ResNet-50 layout (161 keys): 2 missing: '
        'layer1.0.bn1.weight, layer2.0.conv1.weight; 1 unexpected: '
        'layer1.0.extra.weight; 1 with a wrong shape: layer1.1.conv2.weight '
        '(64, 64, 1, 1) (expected (64, 64, 3, 3))')


def test_unknown_layouts(gn50):
    torchvision_like = OrderedDict(gn50)
    torchvision_like['bn1.running_mean'] = torch.zeros(64)
    with pytest.raises(ConversionError, match='BatchNorm ResNet'):
        detect_layout(torchvision_like)
    with pytest.raises(ConversionError, match='no stem norm'):
        detect_layout({'conv.weight': torch.zeros(1)})
    shallow = {k: v for k, v in gn50.items() if not k.startswith('layer3.5')}
    with pytest.raises(ConversionError, match='stage 3 .* has 5 blocks'):
        detect_layout(shallow)


def test_not_a_state_dict():
    with pytest.raises(ConversionError, match='got list'):
        unwrap_state_dict([1, 2])
    with pytest.raises(ConversionError, match='an empty dict'):
        unwrap_state_dict({})
    with pytest.raises(ConversionError, match='1 entries are not tensors'):
        unwrap_state_dict({'a': torch.zeros(1), 'epoch': 3})
    with pytest.raises(ConversionError, match='1 keys carry the "module." '
                       'prefix and 1 do not: b'):
        unwrap_state_dict({'module.a': torch.zeros(1), 'b': torch.zeros(1)})
