# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""PreemptionHook in one process, with a real MMEngine runner that sends
itself the signal (the multi-process runs, a signal from outside and the
slurm script are in tests/test_distributed/test_preemption.py)."""
import errno
import functools
import gc
import glob
import os
import pickle
import signal
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import HOOKS
from mmengine.runner import Runner
from torch.utils.data import Dataset, get_worker_info

from mmseg_wsbcn.engine import SafeCheckpointRunner
from mmseg_wsbcn.engine.hooks import (PREEMPTED_EXIT_STATUS,
                                      AtomicCheckpointHook,
                                      CheckpointSaveError, PreemptionHook,
                                      TrainingPreempted)
from mmseg_wsbcn.engine.hooks.preemption_hook import (IgnoreSignalsInWorker,
                                                      as_signal)
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


class SignallingData(Dataset):
    """Four samples of ``TinyModel``; in a DataLoader worker, each sends
    the worker SIGTERM and SIGUSR1, as slurm signals every process of the
    job (PyTorch's own SIGTERM handler in a worker ends it)."""

    def __len__(self):
        return 4

    def __getitem__(self, index):
        if get_worker_info() is not None:
            for sig in (signal.SIGTERM, signal.SIGUSR1):
                os.kill(os.getpid(), sig)
        return dict(inputs=torch.ones(2))


def tiny_runner(work_dir,
                custom_hooks=(),
                max_iters=6,
                runner_type=SafeCheckpointRunner,
                **loader):
    """A runner of ``TinyModel``; ``loader`` updates its train_dataloader
    config."""
    data = [dict(inputs=torch.ones(2)) for _ in range(4)]
    return runner_type(
        model=TinyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dict(
                dataset=data,
                sampler=dict(type='InfiniteSampler', shuffle=False),
                collate_fn=dict(type='default_collate'),
                batch_size=2), **loader),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', by_epoch=False,
                            interval=2)),
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


@pytest.mark.parametrize(
    'context', ['fork', pytest.param('spawn', marks=pytest.mark.slow)])
def test_dataloader_workers_ignore_the_signals(tmp_path, handlers, monkeypatch,
                                               context):
    # the worker sends itself both signals with every sample; the main
    # process gets SIGTERM at iteration 3 and stops after it as ever. A
    # spawned worker imports NumPy afresh: one OpenBLAS thread, whose
    # SIGTERM PyTorch's handler would take (IgnoreSignalsInWorker)
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    runner = tiny_runner(
        tmp_path, [SendSignal(signal.SIGTERM, 3)],
        dataset=SignallingData(),
        num_workers=1,
        multiprocessing_context=context)
    with pytest.raises(TrainingPreempted, match='checkpoint saved: .*iter_3'):
        runner.train()
    assert saved(tmp_path) == ['iter_2.pth', 'iter_3.pth']
    del runner  # the traceback keeps it: shut the worker down now
    gc.collect()


def test_the_worker_init_fn_wrapper(tmp_path, handlers):
    loader = SafeCheckpointRunner.build_dataloader(
        dict(
            dataset=SignallingData(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            num_workers=1),
        seed=0)
    wrapper = loader.worker_init_fn
    # around MMEngine's seeding worker_init_fn, once
    assert isinstance(wrapper, IgnoreSignalsInWorker)
    assert isinstance(wrapper.worker_init_fn, functools.partial)
    assert SafeCheckpointRunner.build_dataloader(loader).worker_init_fn \
        is wrapper
    # without workers there is nothing to wrap
    assert SafeCheckpointRunner.build_dataloader(
        dict(
            dataset=SignallingData(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            num_workers=0)).worker_init_fn is None
    # it pickles, for spawn (calling it is for the worker processes of
    # test_dataloader_workers_ignore_the_signals)
    copy = pickle.loads(pickle.dumps(wrapper))
    assert isinstance(copy, IgnoreSignalsInWorker)
    assert copy.worker_init_fn.func is wrapper.worker_init_fn.func
    assert copy.worker_init_fn.keywords == wrapper.worker_init_fn.keywords


EXIT_WITH_A_LIVE_LOADER = """
import gc, sys
from mmseg_wsbcn.engine import SafeCheckpointRunner
loader = SafeCheckpointRunner.build_dataloader(dict(
    dataset=list(range(8)), num_workers=2, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=False),
    multiprocessing_context=sys.argv[1]), seed=0)
it = iter(loader)
next(it)
cycle = [it]  # freed by no one before multiprocessing's atexit function,
cycle.append(cycle)  # which terminates and joins the workers
del it
print('exiting', flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize('context', ['fork', 'spawn'])
def test_exit_with_a_live_loader_does_not_hang(repo_root, context):
    # the workers still end on their main process's SIGTERM (plain
    # SIG_IGN in the workers would hang here)
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=repo_root)
    proc = subprocess.run(
        [sys.executable, '-c', EXIT_WITH_A_LIVE_LOADER, context],
        env=env,
        capture_output=True,
        text=True,
        timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout == 'exiting\n'
    assert 'Traceback' not in proc.stderr, proc.stderr[-4000:]


def test_with_a_plain_checkpoint_hook_it_stops_without_saving(
        tmp_path, handlers):
    # MMEngine's own runner: its CheckpointHook has no public save
    runner = tiny_runner(
        tmp_path,
        [PreemptionHook(), SendSignal(signal.SIGTERM, 3)],
        runner_type=Runner)
    with pytest.raises(TrainingPreempted) as e:
        runner.train()
    why = ("the run's checkpoint hook is a CheckpointHook, not an "
           "AtomicCheckpointHook (set type='AtomicCheckpointHook' in "
           "default_hooks.checkpoint, or runner_type='SafeCheckpointRunner')")
    assert str(e.value) == (
        f'stopped by SIGTERM after iteration 3/6; nothing saved: {why}; '
        f'last checkpoint: {tmp_path / "iter_2.pth"}; to continue, run the '
        'same command with --resume (exit status 75)')
    assert saved(tmp_path) == ['iter_2.pth']
    # and it said so when training started
    log, = glob.glob(str(tmp_path / '*' / '*.log'))
    with open(log) as f:
        assert f'PreemptionHook: {why}; a signal stops training without ' \
            'saving a checkpoint' in f.read()


class SaveNow(Hook):
    """Call ``AtomicCheckpointHook.save_now`` after ``iteration``."""

    priority = 'LOWEST'

    def __init__(self, iteration):
        self.iteration = iteration
        self.path = None

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.iteration:
            hook = next(
                h for h in runner.hooks if isinstance(h, AtomicCheckpointHook))
            self.path = hook.save_now(runner)


def test_save_now_saves_as_an_interval_save(tmp_path):
    save_now = SaveNow(3)
    runner = tiny_runner(tmp_path, [save_now], max_iters=4)
    next(h for h in runner.hooks
         if isinstance(h, AtomicCheckpointHook)).max_keep_ckpts = 2
    runner.train()
    path = str(tmp_path / 'iter_3.pth')
    assert save_now.path == path
    # it counted in max_keep_ckpts: iter_4 removed iter_2
    assert saved(tmp_path) == ['iter_3.pth', 'iter_4.pth']
    ckpt = torch.load(path, weights_only=True)  # plain data
    interval = torch.load(tmp_path / 'iter_4.pth', weights_only=True)
    assert ckpt['meta']['iter'] == 3
    assert ckpt.keys() == interval.keys()


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
