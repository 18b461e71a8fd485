# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The mmpretrain config: an ImageNet ResNet-50 with WSConv2d + BCN takes a
training step and classifies, wherever ``mmpretrain.models`` imports (and
fails instead of skipping where ``EXTRAS`` names mmpretrain, as .ci/run's
torch 2.14 step does)."""
import math
import os
import os.path as osp
import re

import pytest
import torch

from mmseg_wsbcn.utils.optional import mmpretrain_unavailable

CONFIG = 'configs/resnet/resnet50_bcn-ws_8xb32_in1k.py'


@pytest.fixture(autouse=True)
def needs_mmpretrain():
    reason = mmpretrain_unavailable()
    if reason is None:
        return
    if 'mmpretrain' in re.split(r'[,\s]+', os.environ.get('EXTRAS', '')):
        pytest.fail(f'EXTRAS names mmpretrain, but {reason}')
    pytest.skip(reason)


def test_step_and_inference(repo_root):
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample

    from mmseg_wsbcn.models.layers import BCN, WSConv2d
    cfg = Config.fromfile(osp.join(repo_root, CONFIG))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
        model.init_weights()
        ws = [m for m in model.backbone.modules() if isinstance(m, WSConv2d)]
        bcn = [m for m in model.backbone.modules() if isinstance(m, BCN)]
        assert len(ws) == len(bcn) == 53  # stem + 16 blocks x 3 + 4
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
        images = torch.rand(2, 3, 64, 64) * 255
        samples = [DataSample().set_gt_label(i) for i in (3, 7)]
        data = model.data_preprocessor(
            dict(inputs=list(images), data_samples=samples), True)
        losses = model(**data, mode='loss')
        loss, _ = model.parse_losses(losses)
        assert math.isfinite(float(loss))
        optim.update_params(loss)
        model.eval()
        with torch.no_grad():
            out = model(
                **model.data_preprocessor(
                    dict(inputs=list(images), data_samples=None), False),
                mode='predict')
    assert len(out) == 2 and out[0].pred_score.shape == (1000, )
