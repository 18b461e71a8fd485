# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The FrozenBN base config (``deeplabv3_r50-d8_frozenbn.py``): after one
real training step (SGD with momentum and weight decay, as the schedules)
the backbone's BatchNorms hold the same weight, bias and running
statistics, while the heads (GroupNorm) and the backbone's convs moved."""
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from torch.nn.modules.batchnorm import _BatchNorm

from mmseg_wsbcn.models.layers import named_layers

BASE = 'configs/_base_/models/deeplabv3_r50-d8_frozenbn.py'


def _build(repo_root):
    """The base config's model at the demo's small size (ResNet-18, heads
    of 128 and 64 channels; 64x64 crops)."""
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    cfg = Config.fromfile(osp.join(repo_root, BASE))
    cfg.model.backbone.depth = 18
    cfg.model.data_preprocessor.size = (64, 64)
    cfg.model.decode_head.update(in_channels=512, channels=128)
    cfg.model.auxiliary_head.update(in_channels=256, channels=64)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def _batch(n=2, size=64, classes=19):
    from mmseg.structures import SegDataSample
    gen = torch.Generator().manual_seed(1)
    inputs = [
        torch.randint(
            0, 256, (3, size, size), generator=gen, dtype=torch.uint8)
        for _ in range(n)
    ]
    samples = []
    for _ in range(n):
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, classes, (1, size, size), generator=gen))
        sample.set_metainfo(
            dict(
                img_shape=(size, size),
                ori_shape=(size, size),
                pad_shape=(size, size)))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def test_one_training_step_keeps_the_frozen_batch_norms(repo_root):
    model = _build(repo_root)
    model.train()
    frozen = {
        name: m
        for name, m in model.backbone.named_modules()
        if isinstance(m, _BatchNorm)
    }
    assert len(frozen) == 22  # deep stem 3, ResNet-18 blocks 16 + 3
    for name, bn in frozen.items():
        assert not bn.training, name
        assert not bn.weight.requires_grad and not bn.bias.requires_grad
    for part in (model.decode_head, model.auxiliary_head):
        kinds = {
            kind.name
            for _, _, kind in named_layers(part) if kind.role == 'norm'
        }
        assert kinds == {'gn'}
        assert all(m.num_groups == 32 for m in part.modules()
                   if isinstance(m, torch.nn.GroupNorm))
    before = {k: v.clone() for k, v in model.state_dict().items()}

    optim_wrapper = build_optim_wrapper(
        model,
        dict(
            type='OptimWrapper',
            optimizer=dict(
                type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4)))
    log_vars = model.train_step(_batch(), optim_wrapper)
    assert torch.isfinite(log_vars['loss'])

    for name, bn in frozen.items():
        for key in ('weight', 'bias', 'running_mean', 'running_var'):
            full = f'backbone.{name}.{key}'
            assert torch.equal(getattr(bn, key), before[full]), full
    moved = {
        k
        for k, v in model.named_parameters()
        if not torch.equal(v.detach(), before[k])
    }
    heads = [
        k for k, _ in model.named_parameters()
        if k.startswith(('decode_head.', 'auxiliary_head.'))
    ]
    assert heads and set(heads) <= moved
    convs = [
        k for k, _ in model.named_parameters()
        if k.startswith('backbone.') and 'conv' in k
    ]
    assert convs and set(convs) <= moved
