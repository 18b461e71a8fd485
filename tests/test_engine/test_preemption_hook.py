# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""PreemptionHook in one process, with a real MMEngine runner that sends
itself the signal (the multi-process runs, a signal from outside and the
slurm script are in tests/test_distributed/test_preemption.py)."""
import errno
import os
import signal

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import HOOKS

from mmseg_wsbcn.engine import SafeCheckpointRunner
from mmseg_wsbcn.engine.hooks import (PREEMPTED_EXIT_STATUS,
                                      CheckpointSaveError, PreemptionHook,
                                      TrainingPreempted)
from mmseg_wsbcn.engine.hooks.preemption_hook import as_signal
from mmseg_wsbcn.launch import run_and_finish


class TinyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(inputs)
        return dict(loss=out.square().mean()) if mode == 'loss' else out


class SendSignal(Hook):
    """Send this process ``sig`` at the start of ``iteration`` (from 1);
    refuse if nothing catches it (it would end the test process)."""

    priority = 'HIGHEST'

    def __init__(self, sig, iteration):
        self.sig = sig
        self.iteration = iteration

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == self.iteration:
            assert signal.getsignal(self.sig) not in (signal.SIG_DFL, None)
            os.kill(os.getpid(), self.sig)


class Fail(Hook):

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        raise RuntimeError('boom')


def tiny_runner(work_dir, custom_hooks=(), max_iters=6):
    data = [dict(inputs=torch.ones(2)) for _ in range(4)]
    return SafeCheckpointRunner(
        model=TinyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=data,
            sampler=dict(type='InfiniteSampler', shuffle=False),
            collate_fn=dict(type='default_collate'),
            batch_size=2),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(by_epoch=False, interval=2)),
        custom_hooks=list(custom_hooks),
        default_scope='mmengine')


@pytest.fixture
def handlers():
    """The handlers of SIGTERM and SIGUSR1 before the test; checks that
    they are the same after it."""
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    yield before
    assert {s: signal.getsignal(s) for s in before} == before


def saved(work_dir):
    return sorted(n for n in os.listdir(work_dir) if n.endswith('.pth'))


def test_arguments():
    assert as_signal('SIGTERM') is signal.SIGTERM
    assert as_signal('usr1') is signal.SIGUSR1
    assert as_signal(15) is signal.SIGTERM
    with pytest.raises(ValueError, match="unknown signal 'SIGFOO'"):
        as_signal('SIGFOO')
    with pytest.raises(ValueError, match='SIGKILL cannot be caught'):
        PreemptionHook(signals=['KILL'])
    with pytest.raises(TypeError, match='enabled must be a bool'):
        PreemptionHook(enabled='no')
    assert PreemptionHook(signals='USR1').signals == [signal.SIGUSR1]
    assert HOOKS.get('PreemptionHook') is PreemptionHook
    assert PreemptionHook.priority == 'LOWEST'  # after the CheckpointHook


def test_the_runner_adds_it_once(tmp_path):
    hooks = [type(h) for h in tiny_runner(tmp_path).hooks]
    assert hooks.count(PreemptionHook) == 1 and hooks[-1] is PreemptionHook
    runner = tiny_runner(tmp_path,
                         [dict(type='PreemptionHook', enabled=False)])
    mine = [h for h in runner.hooks if isinstance(h, PreemptionHook)]
    assert len(mine) == 1 and not mine[0].enabled


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGUSR1])
def test_saves_after_the_iteration_and_stops(tmp_path, handlers, sig):
    runner = tiny_runner(tmp_path, [SendSignal(sig, 3)])
    with pytest.raises(TrainingPreempted) as e:
        runner.train()
    path = str(tmp_path / 'iter_3.pth')
    assert str(e.value) == (
        f'stopped by {sig.name} after iteration 3/6; checkpoint saved: '
        f'{path}; to continue, run the same command with --resume (exit '
        'status 75)')
    assert e.value.exit_status == PREEMPTED_EXIT_STATUS == 75
    assert saved(tmp_path) == ['iter_2.pth', 'iter_3.pth']
    assert (tmp_path / 'last_checkpoint').read_text() == path
    ckpt = torch.load(path, weights_only=False)
    assert ckpt['meta']['iter'] == 3
    # what an interval checkpoint holds
    interval = torch.load(tmp_path / 'iter_2.pth', weights_only=False)
    assert ckpt.keys() == interval.keys()
    assert ckpt['meta'].keys() == interval['meta'].keys()


def test_at_an_interval_iteration_it_saves_once(tmp_path, handlers):
    runner = tiny_runner(tmp_path, [SendSignal(signal.SIGTERM, 4)])
    names = []
    save = runner.save_checkpoint

    def spy(out_dir, filename, *args, **kwargs):
        names.append(filename)
        return save(out_dir, filename, *args, **kwargs)

    runner.save_checkpoint = spy
    with pytest.raises(TrainingPreempted, match='iter_4.pth'):
        runner.train()
    assert names == ['iter_2.tmp.pth', 'iter_4.tmp.pth']


def test_a_failed_save_is_its_own_one_line_error(tmp_path, handlers):
    runner = tiny_runner(tmp_path, [SendSignal(signal.SIGTERM, 3)])
    save = runner.save_checkpoint

    def full_disk(out_dir, filename, *args, **kwargs):
        if filename.startswith('iter_3'):
            raise OSError(errno.ENOSPC, 'No space left on device')
        return save(out_dir, filename, *args, **kwargs)

    runner.save_checkpoint = full_disk
    with pytest.raises(CheckpointSaveError, match='No space left on device'):
        runner.train()
    assert saved(tmp_path) == ['iter_2.pth']
    assert (tmp_path / 'last_checkpoint').read_text().endswith('iter_2.pth')


def test_in_the_last_iteration_training_just_ends(tmp_path, handlers):
    tiny_runner(tmp_path, [SendSignal(signal.SIGTERM, 6)]).train()
    assert saved(tmp_path) == ['iter_2.pth', 'iter_4.pth', 'iter_6.pth']


def test_the_handlers_are_restored_when_training_fails(tmp_path, handlers):
    with pytest.raises(RuntimeError, match='boom'):
        tiny_runner(tmp_path, [Fail()]).train()


def test_disabled_it_catches_nothing(handlers):
    hook = PreemptionHook(enabled=False)
    hook.install()
    assert {s: signal.getsignal(s) for s in handlers} == handlers


def test_the_tool_exits_with_75_and_one_line(capsys):

    def stage():
        raise TrainingPreempted('stopped by SIGTERM after iteration 3/6')

    with pytest.raises(SystemExit) as e:
        run_and_finish('train.py', stage, Config(), lambda: '')
    assert e.value.code == 75
    assert capsys.readouterr().err == (
        'train.py: error: stopped by SIGTERM after iteration 3/6\n')
