# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The fused tier compiles a bounded number of graphs per model.

A DeepLabv3-R50-D8 BCN+WS (mmseg's real model, 65 BCN layers of 7 channel
counts, the 1x1 image-pooling branch included) takes a training step and
then eval forwards at three image sizes, all with ``impl='compile'``. The
graphs are counted with dynamo's own counters; reaching dynamo's recompile
limit is made an error, and the fused tier must never have fallen back.
"""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import mmseg_wsbcn  # noqa: F401  (registers the layers)
from mmseg_wsbcn.models.layers import BCN
from mmseg_wsbcn.models.layers.bcn_compiled import FUSED

# compiles a whole DeepLabv3 in three sizes
pytestmark = pytest.mark.slow

# Four stages; sizes 1 are specialized, so a stage may need a graph for
# batch 1 (eval here) beside batch 2, and for C == G (the ResNetV1c stem's
# 32 channels in 32 groups) beside C > G: 4 graphs at most per stage for the
# forward stages, fewer for the backward ones (seen: 9). Eval at new image
# sizes adds none.
MAX_GRAPHS = 12


def _batch(h, w, n):
    gen = torch.Generator().manual_seed(h * w + n)
    samples = []
    for _ in range(n):
        sample = SegDataSample(
            metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                          pad_shape=(h, w)))
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, 19, (1, h, w), generator=gen))
        samples.append(sample)
    inputs = [
        torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8)
        for _ in range(n)
    ]
    return dict(inputs=inputs, data_samples=samples)


@pytest.fixture
def model(repo_root):
    init_default_scope('mmseg')
    cfg = Config.fromfile(
        f'{repo_root}/configs/_base_/models/deeplabv3_r50-d8_bcn-ws.py')
    cfg.model.data_preprocessor.size = (64, 96)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    for module in model.modules():
        if isinstance(module, BCN):
            module.impl = 'compile'
    return model


def test_graphs_per_model_are_bounded(model):
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    layers = [m for m in model.modules() if isinstance(m, BCN)]
    assert len({m.num_channels for m in layers}) >= 7
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        model.train()
        losses = model(**model.data_preprocessor(_batch(64, 96, 2), True),
                       mode='loss')
        sum(v for k, v in losses.items() if 'loss' in k).backward()
        optimizer.step()
        model.eval()
        for h, w in ((64, 96), (48, 80), (96, 56)):
            with torch.no_grad():
                data = model.data_preprocessor(_batch(h, w, 1), False)
                model(**data, mode='predict')
    graphs = counters['stats']['unique_graphs']
    assert FUSED.state['failed'] is None, FUSED.state['failed']
    assert 0 < graphs <= MAX_GRAPHS, dict(counters['stats'])
