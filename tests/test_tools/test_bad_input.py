# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Bad input to the tools gives one line naming the bad path or value."""
import pytest

CONFIG = 'tests/data/configs/deeplabv3_r18-d8_bn_1xb2-tiny_cityscapes-mini-64x64.py'  # noqa: E501


@pytest.mark.parametrize('tool', ['train.py', 'test.py'])
def test_missing_config(tool, run_tool, assert_one_line_error):
    args = [tool, 'configs/no_such_config.py']
    if tool == 'test.py':
        args.append('ckpt.pth')
    proc = run_tool(*args)
    assert_one_line_error(proc, "'configs/no_such_config.py'",
                          'does not exist')


def test_missing_data_directory(run_tool, assert_one_line_error):
    proc = run_tool('train.py', CONFIG, '--cfg-options',
                    'train_dataloader.dataset.data_root=data/no_such_dir')
    assert_one_line_error(proc, "'data/no_such_dir'",
                          'train_dataloader.dataset.data_root')


def test_missing_checkpoint_for_test(run_tool, assert_one_line_error):
    proc = run_tool('test.py', CONFIG, 'no_such_ckpt.pth')
    assert_one_line_error(proc, "'no_such_ckpt.pth'", 'does not exist')


@pytest.mark.parametrize('tool', ['train.py', 'test.py'])
def test_unknown_launcher(tool, run_tool, assert_one_line_error):
    args = [tool, CONFIG] + (['ckpt.pth'] if tool == 'test.py' else [])
    proc = run_tool(*args, '--launcher', 'foo')
    assert_one_line_error(proc, "'foo'", 'pytorch', 'slurm')


def test_amp_with_another_optimizer_wrapper(run_tool, assert_one_line_error):
    proc = run_tool('train.py', CONFIG, '--amp', '--cfg-options',
                    'optim_wrapper.type=ApexOptimWrapper')
    assert_one_line_error(proc, '--amp', "'ApexOptimWrapper'",
                          "'OptimWrapper'")
