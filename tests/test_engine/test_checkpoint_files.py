# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""``last_checkpoint`` written atomically, and the order ``--resume`` tries
checkpoints in."""
import errno
import os

import pytest
from mmengine.hooks import checkpoint_hook

from mmseg_wsbcn.engine.checkpoint_files import (atomic_last_checkpoint,
                                                 resume_candidates,
                                                 write_text_atomic)


def test_hook_writes_last_checkpoint_through_a_rename(tmp_path):
    record = tmp_path / 'last_checkpoint'
    record.write_text('work/iter_2.pth')
    with atomic_last_checkpoint():
        with checkpoint_hook.open(str(record), 'w') as f:  # as the hook
            f.write('work/iter_4.pth')
            # until the write completes, the old record stays whole
            assert record.read_text() == 'work/iter_2.pth'
    assert record.read_text() == 'work/iter_4.pth'
    assert not hasattr(checkpoint_hook, 'open')  # restored
    assert sorted(os.listdir(tmp_path)) == ['last_checkpoint']


def test_other_files_are_opened_as_usual(tmp_path):
    other = tmp_path / 'x.txt'
    with atomic_last_checkpoint():
        with checkpoint_hook.open(str(other), 'w') as f:
            f.write('a')
            assert isinstance(f.name, str)  # a real file object
    assert other.read_text() == 'a'


def test_a_failed_write_keeps_the_old_text(tmp_path, monkeypatch):
    record = tmp_path / 'last_checkpoint'
    record.write_text('work/iter_2.pth')

    def full_disk(*args):
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(os, 'replace', full_disk)
    with pytest.raises(OSError, match='No space left'):
        write_text_atomic(str(record), 'work/iter_4.pth')
    assert record.read_text() == 'work/iter_2.pth'
    assert sorted(os.listdir(tmp_path)) == ['last_checkpoint']


def test_resume_candidates_newest_first(tmp_path):
    for name in ('iter_2.pth', 'iter_10.pth', 'iter_4.pth', 'epoch_1.pth',
                 'iter_4.pth.tmp', 'best_mIoU_iter_4.pth'):
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
