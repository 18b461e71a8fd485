# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""StopOnNonFiniteLossHook in one process (the multi-process case is in
test_faults.py) and how the toolkit switches it on."""
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from dist_helpers import REPO_ROOT
from mmengine.config import Config
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS

from mmseg_wsbcn.apis.runner import _add_nan_loss_hook
from mmseg_wsbcn.engine.hooks import (StopOnNonFiniteLossHook,
                                      non_finite_losses)

NAN, INF = float('nan'), float('inf')


def fake_runner(cfg=None, last_ckpt=None):
    ckpt_hook = CheckpointHook(interval=2, by_epoch=False)
    ckpt_hook.last_ckpt = last_ckpt
    return SimpleNamespace(
        iter=3, max_iters=10, rank=0, hooks=[ckpt_hook], cfg=cfg or {})


def test_bad_argument():
    with pytest.raises(TypeError, match='enabled must be a bool'):
        StopOnNonFiniteLossHook(enabled='yes')


def test_registered_in_the_root_registry():
    assert HOOKS.get('StopOnNonFiniteLossHook') is StopOnNonFiniteLossHook
    assert StopOnNonFiniteLossHook.priority == 'ABOVE_NORMAL'  # < ckpt


def test_non_finite_losses():
    outputs = {
        'loss': torch.tensor(NAN),
        'decode.loss_ce': torch.tensor(1.5),
        'aux.loss_ce': INF,
        'decode.acc_seg': torch.tensor(NAN),  # not a loss
    }
    bad = non_finite_losses(outputs)
    assert list(bad) == ['loss', 'aux.loss_ce']
    assert non_finite_losses({'loss': torch.tensor(2.0)}) == {}
    assert non_finite_losses(None) == {}


def test_stops_with_the_iteration_and_the_values():
    hook = StopOnNonFiniteLossHook()
    runner = fake_runner(last_ckpt='work_dirs/x/iter_2.pth')
    hook.before_run(runner)
    hook.after_train_iter(runner, 3, outputs={'loss': torch.tensor(1.0)})
    with pytest.raises(FloatingPointError) as info:
        hook.after_train_iter(
            runner,
            3,
            outputs={
                'loss': torch.tensor(NAN),
                'decode.loss_ce': torch.tensor(NAN),
                'aux.loss_ce': torch.tensor(0.5)
            })
    assert str(info.value) == (
        'non-finite loss at iteration 4/10: rank 0: loss=nan, '
        'decode.loss_ce=nan; training stopped before this step was saved; '
        'last checkpoint: work_dirs/x/iter_2.pth. Lower the learning rate '
        'or check the data, then resume with --resume (set '
        'stop_on_nan=False to train on anyway)')


@pytest.mark.parametrize('hook_arg,cfg,stops', [
    (None, {}, True),
    (None, {
        'stop_on_nan': True
    }, True),
    (None, {
        'stop_on_nan': False
    }, False),
    (False, {
        'stop_on_nan': True
    }, False),
    (True, {
        'stop_on_nan': False
    }, True),
])
def test_switch(hook_arg, cfg, stops):
    hook = StopOnNonFiniteLossHook(enabled=hook_arg)
    runner = fake_runner(cfg=cfg)
    hook.before_run(runner)
    if stops:
        with pytest.raises(FloatingPointError, match='none yet'):
            hook.after_train_iter(runner, 3, outputs={'loss': INF})
    else:
        hook.after_train_iter(runner, 3, outputs={'loss': INF})


def test_on_by_default_in_the_toolkit_runtime():
    cfg = Config.fromfile(
        osp.join(REPO_ROOT, 'configs/_base_/default_runtime.py'))
    assert cfg.stop_on_nan is True
    assert dict(type='StopOnNonFiniteLossHook') in cfg.custom_hooks


def test_tools_add_it_back_when_a_config_replaces_custom_hooks():
    cfg = Config(dict(custom_hooks=[dict(type='LayerSummaryHook')]))
    _add_nan_loss_hook(cfg)
    assert [h['type'] for h in cfg.custom_hooks] == \
        ['LayerSummaryHook', 'StopOnNonFiniteLossHook']
    _add_nan_loss_hook(cfg)  # no duplicate
    assert len(cfg.custom_hooks) == 2
    off = Config(dict(stop_on_nan=False, custom_hooks=[]))
    _add_nan_loss_hook(off)
    assert off.custom_hooks == []
    plain = Config(dict())  # e.g. an mmseg config: on by default
    _add_nan_loss_hook(plain)
    assert plain.custom_hooks == [dict(type='StopOnNonFiniteLossHook')]
