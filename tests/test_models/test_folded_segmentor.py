# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""``FoldedSegmentor``: the same segmentor, folded at its first inference.

The reference is the unfolded model itself, evaluated before the fold on
the same input in float64: the folded network must give the same logits
(the fold is exact up to rounding), and must hold no WS conv or BCN.
"""
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmseg_wsbcn.models.layers import BCN, WSConv2d

DEMO = ('configs/demo/deeplabv3_r18-d8_bcn-ws_1xb2-200iters_'
        'cityscapes-mini-128x128.py')


def _build(repo_root, folded):
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    model = Config.fromfile(osp.join(repo_root, DEMO)).model
    if folded:
        model = dict(type='FoldedSegmentor', segmentor=model)
    model['pretrained'] = None  # as mmseg's benchmark.py sets it
    return MODELS.build(model).double()


def _kinds(model):
    return {type(m) for m in model.modules()}


def test_folds_at_the_first_inference_and_keeps_the_logits(repo_root):
    model = _build(repo_root, folded=True)
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    model.train()
    with torch.no_grad():
        model(x, mode='tensor')  # training mode: no fold, BCN stats move
    assert {WSConv2d, BCN} <= _kinds(model)
    # the reference: the demo's unfolded model with the same weights and
    # running statistics (the same keys: checkpoints load unchanged)
    reference = _build(repo_root, folded=False)
    reference.load_state_dict(model.state_dict())
    reference.eval()
    with torch.no_grad():
        expected = reference(x, mode='tensor')
    model.eval()
    with torch.no_grad():
        got = model(x, mode='tensor')
    assert not {WSConv2d, BCN} & _kinds(model)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    assert type(model).__name__ == 'EncoderDecoder'
