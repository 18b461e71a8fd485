# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The tools' distributed plumbing without a cluster: the one-line message
for a failed peer and the changes made for a machine without CUDA (the
real multi-process runs are in tests/test_distributed)."""
import datetime

import pytest
import torch
import torch.distributed as dist
from mmengine.config import Config

from mmseg_wsbcn.engine import dist as distributed
from mmseg_wsbcn.engine.dist import (adapt_to_cpu_distributed,
                                     distributed_failure_message)


def test_failure_message(monkeypatch):
    """The one line for a collective that failed because of a peer; other
    errors are left to their traceback (``None``)."""
    # rank 2 of 4 (the module takes both from mmengine.dist)
    monkeypatch.setattr(distributed, 'get_world_size', lambda *a, **k: 4)
    monkeypatch.setattr(distributed, 'get_rank', lambda *a, **k: 2)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    closed = RuntimeError('[/x/gloo/transport/tcp/pair.cc:553] Connection '
                          'closed by peer [10.0.0.2]:41417. This is '
                          'typically caused by a remote worker crashing.')
    assert distributed_failure_message(closed, Config(), 'at iteration 7') \
        == ('rank 2 of 4 stopped at iteration 7: another process exited or '
            'stopped responding (a collective waits 1800 s for its peers, '
            "env_cfg.dist_cfg.timeout); see the first failing rank's log. "
            'RuntimeError: Connection closed by peer [10.0.0.2]:41417')
    timed_out = RuntimeError('Timed out waiting 600000ms for recv operation '
                             'to complete')
    msg = distributed_failure_message(
        timed_out, Config(dict(env_cfg=dict(dist_cfg=dict(timeout=600)))),
        'while testing')
    assert 'stopped while testing' in msg and 'waits 600 s' in msg
    assert msg.endswith('RuntimeError: Timed out waiting 600000ms for recv '
                        'operation to complete')
    assert distributed_failure_message(
        ValueError('bad value'), Config(), 'at iteration 1') is None


@pytest.fixture
def one_process_group(tmp_path):
    """A real one-process gloo group (``is_distributed()`` is True)."""
    dist.init_process_group(
        'gloo',
        init_method=f'file://{tmp_path}/store',
        rank=0,
        world_size=1,
        timeout=datetime.timedelta(seconds=30))
    yield
    dist.destroy_process_group()


def test_cpu_adaptation_is_what_it_reports(one_process_group):
    """Without CUDA: DDP gets ``device_ids=None`` (a wrapper the config
    names keeps its own settings) and every SyncBN is built as BN; the
    running group is reused, and each change is reported in words."""
    cfg = Config(
        dict(
            launcher='pytorch',
            model_wrapper_cfg=dict(
                type='MMDistributedDataParallel', find_unused_parameters=True),
            model=dict(
                backbone=dict(norm_cfg=dict(type='SyncBN')),
                decode_head=dict(
                    norm_cfg=dict(type='SyncBN', requires_grad=True)),
                auxiliary_head=[
                    dict(norm_cfg=dict(type='GN', num_groups=32)),
                    dict(norm_cfg=dict(type='SyncBN'))
                ])))
    changes = adapt_to_cpu_distributed(cfg)
    assert changes == [
        'DDP wraps the model with device_ids=None',
        '3 SyncBN norm_cfg entries are built as per-process BN '
        '(SyncBatchNorm has no CPU kernel)'
    ]
    assert cfg.model_wrapper_cfg == dict(
        type='MMDistributedDataParallel',
        find_unused_parameters=True,
        device_ids=None)
    assert cfg.model.backbone.norm_cfg.type == 'BN'
    assert cfg.model.decode_head.norm_cfg == dict(
        type='BN', requires_grad=True)
    assert [h.norm_cfg.type for h in cfg.model.auxiliary_head] == ['GN', 'BN']


def test_cpu_adaptation_without_syncbn(one_process_group):
    cfg = Config(
        dict(
            launcher='pytorch',
            find_unused_parameters=True,
            model=dict(backbone=dict(norm_cfg=dict(type='BCN')))))
    assert adapt_to_cpu_distributed(cfg) == [
        'DDP wraps the model with device_ids=None'
    ]
    assert cfg.model_wrapper_cfg == dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=True,
        device_ids=None)
    assert cfg.model.backbone.norm_cfg.type == 'BCN'
