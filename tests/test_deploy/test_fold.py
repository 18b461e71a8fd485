# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""fold_bcn_ws: equivalence for every norm variant, the report, errors."""
import pytest
import torch
import torch.nn as nn
from deploy_helpers import VARIANTS, build_model, randomize_norms

from mmseg_wsbcn.deploy import ChannelAffine, count_layers, fold_bcn_ws
from mmseg_wsbcn.models.layers import BCN


def _logits(model, x):
    meta = [dict(img_shape=tuple(x.shape[2:]), ori_shape=tuple(x.shape[2:]),
                 pad_shape=tuple(x.shape[2:]))]
    with torch.no_grad():
        return model.encode_decode(x, meta)


def _assert_close(got, expected, rtol=1e-5):
    scale = expected.abs().max()
    assert (got - expected).abs().max() <= rtol * scale, (
        (got - expected).abs().max() / scale)


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_fold_equivalence(repo_root, variant):
    model = build_model(repo_root, variant)
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    expected = _logits(model, x)
    before = count_layers(model)
    report = fold_bcn_ws(model)
    after = count_layers(model)
    _assert_close(_logits(model, x), expected)
    assert after['WSConv2d'] == 0 and after['BCN'] == 0
    assert after['GroupNorm'] == before['GroupNorm'] + before['BCN']
    assert report.group_norms == before['BCN']
    assert report.left == []
    if variant.startswith('bcn'):
        assert len(report.bcn_folded) == before['BCN'] > 0
        assert after['BatchNorm'] == 0
    if variant == 'bn':
        assert len(report.bn_folded) == before['BatchNorm'] > 0
        assert after['BatchNorm'] == 0
    if variant.endswith('ws'):
        assert report.ws_convs == before['WSConv2d'] > 0


def test_fold_needs_eval(repo_root):
    model = build_model(repo_root, 'bcn-ws').train()
    with pytest.raises(RuntimeError, match='eval mode'):
        fold_bcn_ws(model)
    model.eval()
    model.backbone.layer1[0].bn1.pbn.train()  # one frozen-stat switch off
    with pytest.raises(RuntimeError, match='1 modules are in training mode'):
        fold_bcn_ws(model)


def test_unpaired_and_shared_left_exact():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, padding=1)
    model = nn.Sequential(
        nn.Sequential(nn.ReLU(), BCN(8, num_groups=4)),  # no conv in front
        nn.Sequential(conv, BCN(8, num_groups=2)),
        nn.Sequential(conv, nn.BatchNorm2d(8)))  # conv shared: feeds both
    randomize_norms(model)
    model.eval()
    x = torch.randn(2, 8, 5, 7)
    expected = model(x)
    report = fold_bcn_ws(model)
    _assert_close(model(x), expected)
    assert isinstance(model[0][1], nn.Sequential)
    assert isinstance(model[0][1][0], ChannelAffine)
    assert isinstance(model[0][1][1], nn.GroupNorm)
    assert report.bcn_folded == [] and report.bn_folded == []
    left = dict(report.left)
    assert set(left) == {'0.1', '1.1', '2.1'}
    assert 'shared' in left['1.1'] and 'shared' in left['2.1']
    assert report.group_norms == 2
    assert isinstance(model[2][1], nn.BatchNorm2d)
    assert 'fold_bcn_ws:' in str(report)


def test_fold_mmdet_mask_rcnn(repo_root, require_extra):
    require_extra('mmdet', 'mmdet')
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(
        f'{repo_root}/configs/mask_rcnn/'
        'mask-rcnn_r50_fpn_bcn-ws-all_4xb1-2x_coco.py')
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    randomize_norms(model)
    # float64: the fold is exact algebra, so the R-50 + FPN (deep, random
    # weights; float32 rounding alone reaches ~3e-5 relative) must agree to
    # float64 rounding
    model.double().eval()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        expected = model.neck(model.backbone(x))
    before = count_layers(model)
    report = fold_bcn_ws(model)
    after = count_layers(model)
    with torch.no_grad():
        got = model.neck(model.backbone(x))
    for g, e in zip(got, expected):
        _assert_close(g, e, rtol=1e-9)
    assert after['WSConv2d'] == 0 and after['BCN'] == 0
    assert report.group_norms == before['BCN'] == after['GroupNorm']
    assert report.left == []  # backbone, FPN, RoI heads: all ConvModules
    assert len(report.bcn_folded) == before['BCN']
