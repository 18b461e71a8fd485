# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""mmseg's ResNetV1c + ASPPHead built from conv_cfg/norm_cfg run at batch 1
(the ASPP image-pooling branch then sees a single 1x1 value per channel)."""
import pytest
import torch
import torch.nn as nn
from mmseg.models.backbones import ResNetV1c
from mmseg.models.decode_heads import ASPPHead

from mmseg_wsbcn.models.layers import BCN, WSConv2d


@pytest.mark.parametrize('estimate', [True, False])
def test_resnet_aspp_forward_backward_at_batch_one(estimate):
    torch.manual_seed(0)
    conv_cfg = dict(type='WSConv2d')
    norm_cfg = dict(type='BCN', num_groups=8, estimate=estimate)
    backbone = ResNetV1c(
        depth=18,
        strides=(1, 2, 1, 1),
        dilations=(1, 1, 2, 4),
        conv_cfg=conv_cfg,
        norm_cfg=norm_cfg)
    head = ASPPHead(
        in_channels=512,
        channels=32,
        dilations=(1, 12, 24, 36),
        num_classes=5,
        conv_cfg=conv_cfg,
        norm_cfg=norm_cfg)
    backbone.init_weights()
    assert isinstance(head.image_pool[1].bn, BCN)
    assert isinstance(head.image_pool[1].conv, WSConv2d)
    assert type(head.conv_seg) is nn.Conv2d
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    if not estimate:
        # batch statistics of one 1x1 value: BatchNorm's own error
        with pytest.raises(ValueError, match='more than 1 value per channel'):
            head(backbone(x))
        return
    out = head(backbone(x))
    assert out.shape == (1, 5, 8, 8)
    out.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in list(backbone.named_parameters()) + list(
            head.named_parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
