# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""``WSConv2d(mode='std')`` computes what mmcv's ``ConvWS2d`` (``ConvWS``,
used by mmdet's own gn+ws configs) computes, so those configs can switch
to it without changing their outputs or their checkpoints."""
import pytest
import torch
from mmcv.cnn.bricks.conv_ws import ConvWS2d

from mmseg_wsbcn.models.layers import WSConv2d


@pytest.mark.parametrize('kwargs', [
    dict(kernel_size=3, padding=1),
    dict(kernel_size=3, stride=2, padding=2, dilation=2, groups=4),
    dict(kernel_size=1, bias=False),
])
def test_std_form_equals_mmcv_conv_ws(kwargs):
    gen = torch.Generator().manual_seed(0)
    ours = WSConv2d(8, 16, mode='std', **kwargs).double()
    theirs = ConvWS2d(8, 16, eps=1e-5, **kwargs).double()
    with torch.no_grad():
        # filters of very different scales, so that eps matters
        scale = 10**(-3 + 3 * torch.rand(16, 1, 1, 1, generator=gen,
                                         dtype=torch.float64))
        ours.weight.copy_(
            torch.randn(ours.weight.shape, generator=gen,
                        dtype=torch.float64) * scale)
        if ours.bias is not None:
            ours.bias.normal_(generator=gen)
    theirs.load_state_dict(ours.state_dict())  # same keys, same weights
    x = torch.randn(2, 8, 9, 9, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-10)
