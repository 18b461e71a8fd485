# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""End-to-end: tools/train.py trains a real DeepLabv3 on the bundled data,
tools/test.py re-evaluates its checkpoint, --resume continues it."""
import glob
import json
import math
import os.path as osp

import pytest

CONFIG = 'tests/data/configs/deeplabv3_r18-d8_bn_1xb2-tiny_cityscapes-mini-64x64.py'  # noqa: E501


def read_scalars(work_dir):
    """All records of the newest run's ``vis_data/scalars.json``."""
    runs = sorted(
        glob.glob(osp.join(work_dir, '2*', 'vis_data', 'scalars.json')))
    with open(runs[-1]) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope='module')
def trained(run_tool, tmp_path_factory):
    work_dir = str(tmp_path_factory.mktemp('train'))
    proc = run_tool('train.py', CONFIG, '--work-dir', work_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work_dir


def test_training_loss_is_finite_and_decreases(trained):
    losses = [r['loss'] for r in read_scalars(trained) if 'loss' in r]
    assert len(losses) == 10
    assert all(math.isfinite(x) for x in losses)
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first, losses


def test_checkpoints_are_saved_without_temporaries(trained):
    assert osp.isfile(osp.join(trained, 'iter_5.pth'))
    assert osp.isfile(osp.join(trained, 'iter_10.pth'))
    assert not glob.glob(osp.join(trained, '*.tmp'))
    with open(osp.join(trained, 'last_checkpoint')) as f:
        assert f.read().strip().endswith('iter_10.pth')


def test_test_tool_reproduces_the_final_validation_miou(
        run_tool, trained, tmp_path):
    val = [r for r in read_scalars(trained) if 'mIoU' in r][-1]
    proc = run_tool('test.py', CONFIG, osp.join(trained, 'iter_10.pth'),
                    '--work-dir', str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the tool's documented metrics file, in the run's timestamp folder
    [metrics] = glob.glob(osp.join(str(tmp_path), '2*', 'metrics.json'))
    with open(metrics) as f:
        test = json.load(f)['metrics']
    assert round(test['mIoU'], 2) == round(val['mIoU'], 2)
    assert 'mIoU' in proc.stdout + proc.stderr


def test_resume_continues_the_iteration_counter(run_tool, trained):
    proc = run_tool('train.py', CONFIG, '--work-dir', trained, '--resume',
                    '--cfg-options', 'train_cfg.max_iters=12',
                    'train_cfg.val_interval=12')
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert 'resumed epoch: 0, iter: 10' in out
    iters = [r['iter'] for r in read_scalars(trained) if 'loss' in r]
    assert iters == [11, 12]
    assert osp.isfile(osp.join(trained, 'iter_12.pth'))
