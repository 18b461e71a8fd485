# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""AtomicCheckpointHook writes checkpoints and ``last_checkpoint`` through
a rename (with a real MMEngine Runner), and the order ``--resume`` tries
checkpoints in."""
import errno
import os

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner

from mmseg_wsbcn.engine import SafeCheckpointRunner
from mmseg_wsbcn.engine.checkpoint_files import resume_candidates
from mmseg_wsbcn.engine.hooks import AtomicCheckpointHook, CheckpointSaveError


class TinyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(inputs)
        return dict(loss=out.square().mean()) if mode == 'loss' else out


def tiny_runner(work_dir, runner_cls=Runner, **checkpoint):
    data = [dict(inputs=torch.ones(2)) for _ in range(4)]
    return runner_cls(
        model=TinyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=data,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate'),
            batch_size=2),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=False, max_iters=4),
        default_hooks=dict(
            checkpoint=dict(by_epoch=False, interval=2, **checkpoint)),
        default_scope='mmengine')


def test_hook_saves_whole_files_and_the_record(tmp_path):
    runner = tiny_runner(
        tmp_path, type='AtomicCheckpointHook', max_keep_ckpts=1)
    seen = []
    save = runner.save_checkpoint

    def spy(out_dir, filename, *args, **kwargs):
        # the checkpoint is written under a temporary name...
        seen.append(filename)
        return save(out_dir, filename, *args, **kwargs)

    runner.save_checkpoint = spy
    runner.train()
    assert seen == ['iter_2.tmp.pth', 'iter_4.tmp.pth']
    # ... and renamed; max_keep_ckpts removed the older one
    files = [n for n in os.listdir(tmp_path) if not n[:1].isdigit()]
    assert sorted(files) == ['iter_4.pth', 'last_checkpoint']
    assert (tmp_path / 'last_checkpoint').read_text() == \
        str(tmp_path / 'iter_4.pth')
    assert torch.load(
        tmp_path / 'iter_4.pth', weights_only=False)['meta']['iter'] == 4


def test_safe_runner_uses_the_atomic_hook(tmp_path):
    runner = tiny_runner(tmp_path, SafeCheckpointRunner)
    hooks = [type(h) for h in runner.hooks]
    assert AtomicCheckpointHook in hooks


def test_a_full_disk_is_one_line_and_keeps_the_old_files(tmp_path):
    runner = tiny_runner(tmp_path, type='AtomicCheckpointHook')
    save = runner.save_checkpoint

    def full_disk(out_dir, filename, *args, **kwargs):
        if filename.startswith('iter_4'):
            save(out_dir, filename, *args, **kwargs)  # a part is written
            raise OSError(errno.ENOSPC, 'No space left on device')
        return save(out_dir, filename, *args, **kwargs)

    runner.save_checkpoint = full_disk
    with pytest.raises(CheckpointSaveError) as e:
        runner.train()
    assert 'No space left on device' in str(e.value)
    assert '\n' not in str(e.value)
    names = os.listdir(tmp_path)
    assert 'iter_2.pth' in names and 'iter_4.pth' not in names
    assert not [n for n in names if '.tmp' in n]
    assert (tmp_path / 'last_checkpoint').read_text() == \
        str(tmp_path / 'iter_2.pth')


def test_resume_candidates_newest_first(tmp_path):
    for name in ('iter_2.pth', 'iter_10.pth', 'iter_4.pth', 'epoch_1.pth',
                 'iter_4.tmp.pth', 'best_mIoU_iter_4.pth'):
        (tmp_path / name).write_bytes(b'x')
    work = str(tmp_path)
    assert resume_candidates(work) == [
        f'{work}/iter_10.pth', f'{work}/iter_4.pth', f'{work}/iter_2.pth',
        f'{work}/epoch_1.pth'
    ]
    (tmp_path / 'last_checkpoint').write_text(f'{work}/iter_4.pth\n')
    assert resume_candidates(work)[:2] == [
        f'{work}/iter_4.pth', f'{work}/iter_10.pth'
    ]
    (tmp_path / 'last_checkpoint').write_text('')  # killed mid-write
    assert resume_candidates(work)[0] == f'{work}/iter_10.pth'


def test_the_old_runner_name_still_builds_with_a_warning(tmp_path):
    from mmseg_wsbcn.engine import WSBCNRunner
    with pytest.warns(DeprecationWarning, match='SafeCheckpointRunner'):
        runner = tiny_runner(tmp_path, WSBCNRunner)
    assert isinstance(runner, SafeCheckpointRunner)
