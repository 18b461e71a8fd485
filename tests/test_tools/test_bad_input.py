# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Bad input to the tools gives one line naming the bad path or value."""
import subprocess
import sys

import pytest

CONFIG = 'tests/data/configs/deeplabv3_r18-d8_bn_1xb2-tiny_cityscapes-mini-64x64.py'  # noqa: E501


def run_tool(repo_root, *args):
    return subprocess.run([sys.executable, *args],
                          cwd=repo_root,
                          capture_output=True,
                          text=True,
                          timeout=300)


def assert_one_line_error(proc, *needles):
    assert proc.returncode != 0
    assert 'Traceback' not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize('tool', ['tools/train.py', 'tools/test.py'])
def test_missing_config(repo_root, tool):
    args = [tool, 'configs/no_such_config.py']
    if tool == 'tools/test.py':
        args.append('ckpt.pth')
    proc = run_tool(repo_root, *args)
    assert_one_line_error(proc, "'configs/no_such_config.py'",
                          'does not exist')


def test_missing_data_directory(repo_root):
    proc = run_tool(repo_root, 'tools/train.py', CONFIG, '--cfg-options',
                    'train_dataloader.dataset.data_root=data/no_such_dir')
    assert_one_line_error(proc, "'data/no_such_dir'",
                          'train_dataloader.dataset.data_root')


def test_missing_checkpoint_for_test(repo_root):
    proc = run_tool(repo_root, 'tools/test.py', CONFIG, 'no_such_ckpt.pth')
    assert_one_line_error(proc, "'no_such_ckpt.pth'", 'does not exist')


@pytest.mark.parametrize('tool', ['tools/train.py', 'tools/test.py'])
def test_unknown_launcher(repo_root, tool):
    args = [tool, CONFIG] + (['ckpt.pth'] if tool == 'tools/test.py' else [])
    proc = run_tool(repo_root, *args, '--launcher', 'foo')
    assert_one_line_error(proc, "'foo'", 'pytorch', 'slurm')
