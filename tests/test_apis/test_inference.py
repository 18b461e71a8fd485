# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""``mmseg_wsbcn.apis.init_model``: a WS + BCN segmentor for inference,
from the demo config and a checkpoint that torch's default
``weights_only=True`` load refuses (as MMEngine's training checkpoints)."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmseg.apis import inference_model
from mmseg.datasets import CityscapesDataset

from mmseg_wsbcn.apis import init_model
from mmseg_wsbcn.models.layers import BCN, WSConv2d

CONFIG = ('configs/demo/'
          'deeplabv3_r18-d8_bcn-ws_1xb2-200iters_cityscapes-mini-128x128.py')
IMAGE = ('demo/data/cityscapes_mini/leftImg8bit/val/frankfurt/'
         'frankfurt_000000_000294_leftImg8bit.png')


@pytest.fixture(scope='module')
def checkpoint(repo_root, tmp_path_factory):
    """Random weights and BCN estimates (not the init values), with a numpy
    scalar in ``meta`` as MMEngine's checkpoints have."""
    model = init_model(osp.join(repo_root, CONFIG), device='cpu')
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
    path = str(tmp_path_factory.mktemp('ckpt') / 'iter_1.pth')
    torch.save(
        dict(
            state_dict=model.state_dict(),
            meta=dict(
                dataset_meta=dict(CityscapesDataset.METAINFO),
                seed=np.float64(0.0))), path)
    return path, model.state_dict()


def test_the_checkpoint_needs_trust(checkpoint):
    """Guards the next test: torch's safe default refuses this file."""
    with pytest.raises(Exception, match='Weights only load failed'):
        torch.load(checkpoint[0], weights_only=True)


def test_loads_the_named_checkpoint_in_eval_mode(repo_root, checkpoint):
    path, state = checkpoint
    model = init_model(osp.join(repo_root, CONFIG), path, 'cpu')
    assert not model.training
    assert model.dataset_meta['classes'][0] == 'road'
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, state[name], rtol=0, atol=0)
    assert any(isinstance(m, WSConv2d) for m in model.modules())
    assert any(isinstance(m, BCN) for m in model.modules())


def test_fold_keeps_the_logits(repo_root, checkpoint):
    path, _ = checkpoint
    plain = init_model(osp.join(repo_root, CONFIG), path, 'cpu')
    folded = init_model(osp.join(repo_root, CONFIG), path, 'cpu', fold=True)
    assert not folded.training
    assert not any(isinstance(m, WSConv2d) for m in folded.modules())
    assert type(folded.backbone.stem[0]) is torch.nn.Conv2d
    x = torch.randn(1, 3, 64, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = plain.encode_decode(x, [dict(img_shape=(64, 128))])
        actual = folded.encode_decode(x, [dict(img_shape=(64, 128))])
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_runs_with_mmseg_inference_model(repo_root, checkpoint):
    model = init_model(
        osp.join(repo_root, CONFIG), checkpoint[0], 'cpu', fold=True)
    result = inference_model(model, osp.join(repo_root, IMAGE))
    assert tuple(result.pred_sem_seg.data.shape) == (1, 128, 256)
    assert int(result.pred_sem_seg.data.max()) < 19
