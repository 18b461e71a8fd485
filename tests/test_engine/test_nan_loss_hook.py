# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""StopOnNonFiniteLossHook in one process (the multi-process case is in
tests/test_distributed/test_faults.py) and how the configs switch it on."""
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS

from mmseg_wsbcn.engine.hooks import StopOnNonFiniteLossHook, non_finite_losses

NAN, INF = float('nan'), float('inf')


def fake_runner(last_ckpt=None):
    ckpt_hook = CheckpointHook(interval=2, by_epoch=False)
    ckpt_hook.last_ckpt = last_ckpt
    return SimpleNamespace(iter=3, max_iters=10, rank=0, hooks=[ckpt_hook])


def test_bad_argument():
    with pytest.raises(TypeError, match='enabled must be a bool'):
        StopOnNonFiniteLossHook(enabled='yes')
    with pytest.raises(TypeError, match='enabled must be a bool'):
        StopOnNonFiniteLossHook(enabled=None)


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
        'or check the data, then resume with --resume (to train on anyway, '
        'set enabled=False on StopOnNonFiniteLossHook in custom_hooks)')


@pytest.mark.parametrize('enabled,stops', [(True, True), (False, False)])
def test_switch(enabled, stops):
    hook = StopOnNonFiniteLossHook(enabled=enabled)
    runner = fake_runner()
    if stops:
        with pytest.raises(FloatingPointError, match='none yet'):
            hook.after_train_iter(runner, 3, outputs={'loss': INF})
    else:
        hook.after_train_iter(runner, 3, outputs={'loss': INF})


def test_on_by_default():
    assert StopOnNonFiniteLossHook().enabled is True


def test_first_custom_hook_of_the_toolkit_runtime(repo_root):
    """The runtime base is the one place that switches the hook on;
    ``custom_hooks.0.enabled=False`` (as ``--cfg-options``) switches it
    off."""
    cfg = Config.fromfile(
        osp.join(repo_root, 'configs/_base_/default_runtime.py'))
    assert cfg.custom_hooks == [dict(type='StopOnNonFiniteLossHook')]
    assert 'stop_on_nan' not in cfg
    cfg.merge_from_dict({'custom_hooks.0.enabled': False})
    assert HOOKS.build(cfg.custom_hooks[0]).enabled is False


def test_configs_that_add_hooks_keep_it(repo_root):
    """A config that adds a hook extends the base's list."""
    demo = ('configs/demo/'
            'deeplabv3_r18-d8_bcn-ws_1xb2-200iters_cityscapes-mini-128x128.py')
    cfg = Config.fromfile(osp.join(repo_root, demo))
    assert [h['type'] for h in cfg.custom_hooks] == \
        ['StopOnNonFiniteLossHook', 'LayerSummaryHook']
