# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""An unreadable checkpoint named for the run (load_from, resume) is one
line: load_checkpoint_file (which SafeCheckpointRunner.load_checkpoint
uses) raises CheckpointLoadError, and
run_and_finish turns it (and a ToolError raised while running) into
``<tool>: error: ...``."""
import pytest
import torch
from mmengine.config import Config

from mmseg_wsbcn.engine import CheckpointLoadError, load_checkpoint_file
from mmseg_wsbcn.launch import run_and_finish
from mmseg_wsbcn.utils.errors import ToolError


@pytest.fixture
def good(tmp_path):
    path = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}, 'meta': {'a': 1}}, path)
    return path


@pytest.mark.parametrize('cut, needle', [
    (1000, 'RuntimeError: PytorchStreamReader failed reading zip archive'),
    (0, '(empty file)'),
])
def test_truncated_file_is_one_line(good, tmp_path, cut, needle):
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(good.read_bytes()[:cut])
    with pytest.raises(CheckpointLoadError) as e:
        load_checkpoint_file(str(bad))
    msg = str(e.value)
    assert '\n' not in msg
    assert msg.startswith(f"cannot read checkpoint '{bad}' (")
    assert needle in msg
    assert isinstance(e.value, RuntimeError)  # as torch's own error was


def test_good_and_missing_files(good, tmp_path):
    assert load_checkpoint_file(str(good))['meta'] == {'a': 1}
    with pytest.raises(FileNotFoundError):
        load_checkpoint_file(str(tmp_path / 'none.pth'))


@pytest.mark.parametrize('error', [
    ToolError('checkpoint does not match'),
    CheckpointLoadError.for_file('x.pth', 'RuntimeError: truncated'),
])
def test_run_and_finish_reports_in_one_line(error):

    def stage():
        raise error

    with pytest.raises(SystemExit) as e:
        run_and_finish('test.py', stage, Config(), lambda: 'while testing')
    assert e.value.code == f'test.py: error: {error}'


def test_run_and_finish_reraises_anything_else():

    def stage():
        raise KeyError('bug')

    with pytest.raises(KeyError):
        run_and_finish('test.py', stage, Config(), lambda: 'while testing')
