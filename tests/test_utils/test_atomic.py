# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""atomic_path / atomic_open: the target holds the old content or the new,
never a part, and no temporary file is left."""
import errno
import os

import pytest

from mmseg_wsbcn.utils.atomic import atomic_open, atomic_path


def test_the_old_text_stays_until_the_write_completes(tmp_path):
    record = tmp_path / 'last_checkpoint'
    record.write_text('work/iter_2.pth')
    with atomic_open(str(record)) as f:
        f.write('work/iter_4.pth')
        assert record.read_text() == 'work/iter_2.pth'
    assert record.read_text() == 'work/iter_4.pth'
    assert os.listdir(tmp_path) == ['last_checkpoint']


def test_the_temporary_file_keeps_the_extension(tmp_path):
    with atomic_path(str(tmp_path / 'sub' / 'x.png')) as tmp:
        assert tmp.endswith('x.tmp.png')
        open(tmp, 'w').write('a')
    assert (tmp_path / 'sub' / 'x.png').read_text() == 'a'


def test_a_failed_write_keeps_the_old_text(tmp_path, monkeypatch):
    record = tmp_path / 'last_checkpoint'
    record.write_text('work/iter_2.pth')

    def full_disk(*args):
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(os, 'replace', full_disk)
    with pytest.raises(OSError, match='No space left'):
        with atomic_open(str(record)) as f:
            f.write('work/iter_4.pth')
    assert record.read_text() == 'work/iter_2.pth'
    assert os.listdir(tmp_path) == ['last_checkpoint']


def test_an_error_in_the_writer_leaves_no_file(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with atomic_path(str(tmp_path / 'x.pth')) as tmp:
            open(tmp, 'w').write('part')
            1 / 0
    assert os.listdir(tmp_path) == []
