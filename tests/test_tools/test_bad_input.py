# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Bad input to the tools gives one line naming the bad path or value (the
tools' ``main`` in this process; test_bad_data.py also runs them as
scripts)."""
import pytest

CONFIG = 'tests/data/configs/deeplabv3_r18-d8_bn_1xb2-tiny_cityscapes-mini-64x64.py'  # noqa: E501


@pytest.mark.parametrize('tool', ['train.py', 'test.py'])
def test_missing_config(tool, call_tool, assert_one_line_error):
    args = [tool, 'configs/no_such_config.py']
    if tool == 'test.py':
        args.append('ckpt.pth')
    proc = call_tool(*args)
    assert_one_line_error(proc, "'configs/no_such_config.py'",
                          'does not exist')


def test_missing_data_directory(call_tool, assert_one_line_error):
    proc = call_tool('train.py', CONFIG, '--cfg-options',
                     'train_dataloader.dataset.data_root=data/no_such_dir')
    assert_one_line_error(proc, "'data/no_such_dir'",
                          'train_dataloader.dataset.data_root')


def test_missing_checkpoint_for_test(call_tool, assert_one_line_error):
    proc = call_tool('test.py', CONFIG, 'no_such_ckpt.pth')
    assert_one_line_error(proc, "'no_such_ckpt.pth'", 'does not exist')


@pytest.mark.parametrize('tool', ['train.py', 'test.py'])
def test_unknown_launcher(tool, call_tool, assert_one_line_error):
    args = [tool, CONFIG] + (['ckpt.pth'] if tool == 'test.py' else [])
    proc = call_tool(*args, '--launcher', 'foo')
    assert_one_line_error(proc, "'foo'", 'pytorch', 'slurm')


def test_amp_with_another_optimizer_wrapper(call_tool, assert_one_line_error):
    proc = call_tool('train.py', CONFIG, '--amp', '--cfg-options',
                     'optim_wrapper.type=ApexOptimWrapper')
    assert_one_line_error(proc, '--amp', "'ApexOptimWrapper'",
                          "'OptimWrapper'")
