# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Test-only hooks for the distributed tests (tests/test_distributed).

Import name ``wsbcn_test_hooks``: the tests put this folder on
``PYTHONPATH`` and the configs in ``tests/data/configs/distributed`` list it in
``custom_imports``.
"""
import os
import os.path as osp
import signal
import time
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from mmseg_wsbcn.models.layers import BCN


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


def bcn_state(model) -> dict:
    """Every BCN buffer (``pbn.running_mean``/``running_var``/
    ``num_batches_tracked``) of ``model``, cloned, by state-dict key."""
    state = {}
    for name, module in _unwrap(model).named_modules():
        if isinstance(module, BCN):
            for key, buf in module.pbn.named_buffers():
                state[f'{name}.pbn.{key}'] = buf.detach().clone()
    return state


@HOOKS.register_module()
class RankStateRecorderHook(Hook):
    """After every training iteration, save what this rank saw and holds to
    ``<work_dir>/<out_dir>/iter<NNN>_rank<R>.pth``: the iteration's loss
    entries (this rank's own, not averaged), the images of its batch, and
    all BCN buffers."""

    priority = 'LOWEST'

    def __init__(self, out_dir: str = 'rank_state') -> None:
        self.out_dir = out_dir

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        folder = osp.join(runner.work_dir, self.out_dir)
        os.makedirs(folder, exist_ok=True)
        iteration = runner.iter + 1
        record = dict(
            iter=iteration,
            rank=runner.rank,
            world_size=runner.world_size,
            losses={
                k: float(v.detach()) if hasattr(v, "detach") else float(v)
                for k, v in (outputs or {}).items()
            },
            images=[
                osp.basename(s.img_path) for s in data_batch['data_samples']
            ],
            bcn=bcn_state(runner.model))
        # write and rename, so a SIGKILL (test_resume_after_kill) never
        # leaves a truncated record behind
        path = osp.join(folder, f'iter{iteration:03d}_rank{runner.rank}.pth')
        torch.save(record, path + '.tmp')
        os.replace(path + '.tmp', path)


@HOOKS.register_module()
class FaultInjectionHook(Hook):
    """Make one rank fail at the start of one training iteration.

    Args:
        action (str, optional): ``'exit'`` (the process dies at once with
            exit code 1, as after a crash or an OOM kill), ``'hang'`` (it
            stops responding, sleeping forever), ``'nan_loss'`` (the decode
            head's classifier weights become NaN, so the loss is NaN),
            ``'sigterm'`` or ``'sigusr1'`` (the process sends itself that
            signal, as slurm does before it kills a job) or ``None`` (do
            nothing; the default).
        rank (int, optional): The rank that fails; ``None`` for all.
            Defaults to 1.
        iteration (int): The iteration, counted from 1. Defaults to 3.
    """

    priority = 'HIGHEST'

    def __init__(self,
                 action: Optional[str] = None,
                 rank: Optional[int] = 1,
                 iteration: int = 3) -> None:
        assert action in (None, 'exit', 'hang', 'nan_loss', 'sigterm',
                          'sigusr1'), action
        self.action = action
        self.rank = rank
        self.iteration = iteration

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch=None) -> None:
        if self.action is None or runner.iter + 1 != self.iteration:
            return
        if self.rank is not None and runner.rank != self.rank:
            return
        if self.action == 'exit':
            os._exit(1)
        elif self.action == 'hang':
            while True:
                time.sleep(60)
        elif self.action.startswith('sig'):
            os.kill(os.getpid(), getattr(signal, self.action.upper()))
        else:
            with torch.no_grad():
                _unwrap(runner.model).decode_head.conv_seg.weight.fill_(
                    float('nan'))
