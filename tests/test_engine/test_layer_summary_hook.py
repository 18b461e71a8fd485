# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS as SEG_MODELS

from mmseg_wsbcn.engine.hooks import format_layer_summary, summarize_layers
from mmseg_wsbcn.models.layers import BCN, WSConv2d


def test_summarize_layers_counts_each_kind_once():
    model = nn.Module()
    model.backbone = nn.Sequential(
        WSConv2d(3, 8, 3), BCN(8, num_groups=4, estimate=True),
        WSConv2d(8, 8, 1, mode='std'), nn.GroupNorm(2, 8), nn.ReLU())
    model.decode_head = nn.Sequential(
        nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.Conv2d(8, 3, 1))
    summary = summarize_layers(model)
    assert dict(summary['backbone']) == {
        'WSConv2d(mode=var)': 1,
        'WSConv2d(mode=std)': 1,
        'BCN(G=4, estimated stats)': 1,  # its pbn is not counted again
        'GroupNorm(G=2)': 1,
    }
    assert dict(summary['decode_head']) == {'Conv2d': 2, 'BatchNorm2d': 1}
    text = format_layer_summary(model)
    assert 'plain convs in heads: decode_head.0, decode_head.2' in text


def test_demo_config_builds_ws_bcn_with_plain_classifiers(repo_root):
    cfg = Config.fromfile(
        f'{repo_root}/configs/demo/'
        'deeplabv3_r18-d8_bcn-ws_1xb2-200iters_cityscapes-mini-128x128.py')
    init_default_scope('mmseg')
    model = SEG_MODELS.build(cfg.model)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    plain = [n for n, m in model.named_modules() if type(m) is nn.Conv2d]
    assert sorted(plain) == ['auxiliary_head.conv_seg', 'decode_head.conv_seg']
    assert sum(isinstance(m, WSConv2d) for m in convs) == len(convs) - 2
    bcns = [m for m in model.modules() if isinstance(m, BCN)]
    assert len(bcns) == 29 and all(m.estimate for m in bcns)
    assert not any(
        type(m) in (nn.BatchNorm2d, nn.GroupNorm) for m in model.modules())
    assert {'type': 'LayerSummaryHook'} in cfg.custom_hooks
