# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Bad data and damaged checkpoints, each through the real tool in a
subprocess: a non-zero exit, one line on stderr naming the file, key or
value, and no half-written file left behind."""
import glob
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import cv2
import pytest

CONFIG = 'tests/data/configs/deeplabv3_r18-d8_bn_1xb2-tiny_cityscapes-mini-64x64.py'  # noqa: E501
TRAIN_IMAGES = 'leftImg8bit/train/frankfurt'
TRAIN_LABELS = 'gtFine/train/frankfurt'


def corrupt_images(root):
    for path in glob.glob(str(root / TRAIN_IMAGES / '*.png')):
        with open(path, 'rb') as f:
            head = f.read(64)
        with open(path, 'wb') as f:
            f.write(head)  # a truncated PNG: mmcv cannot decode it


def labels_out_of_range(root):
    for path in glob.glob(str(root / TRAIN_LABELS / '*_labelTrainIds.png')):
        label = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        label[:] = 40  # a 19-class set
        cv2.imwrite(path, label)


@pytest.mark.parametrize(
    'damage,needles', [
        (corrupt_images,
         ['sample ', TRAIN_IMAGES, 'could not be loaded', 'check_dataset.py']),
        (labels_out_of_range, [
            'sample ', TRAIN_LABELS, 'label values [40]',
            'outside the 19 classes'
        ]),
    ],
    ids=['corrupt image', 'label out of range'])
def test_bad_training_data(damage, needles, data_copy, tmp_path, run_tool,
                           assert_one_line_error):
    damage(data_copy)
    proc = run_tool('train.py', CONFIG, '--work-dir', str(tmp_path / 'w'),
                    '--cfg-options',
                    f'train_dataloader.dataset.data_root={data_copy}/')
    assert_one_line_error(proc, 'train.py: error: ', *needles)
    assert str(data_copy) in proc.stderr


LEFT = 'frankfurt_000000_000294left'  # a 128x128 image


def resize_label(root, hw):
    """Give one train label the size ``hw`` (its image stays 128x128)."""
    path = root / TRAIN_LABELS / f'{LEFT}_gtFine_labelTrainIds.png'
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(
        str(path),
        cv2.resize(label, hw[::-1], interpolation=cv2.INTER_NEAREST))
    return path


@pytest.mark.parametrize(
    'label_hw', [(160, 128), (96, 128)], ids=['larger', 'smaller'])
def test_label_of_another_size_than_its_image(label_hw, data_copy, tmp_path,
                                              run_tool, assert_one_line_error):
    """Instead of ``stack expects each tensor to be equal size`` from the
    loss, one line naming both files and both sizes."""
    label = resize_label(data_copy, label_hw)
    image = data_copy / TRAIN_IMAGES / f'{LEFT}_leftImg8bit.png'
    proc = run_tool('train.py', CONFIG, '--work-dir', str(tmp_path / 'w'),
                    '--cfg-options',
                    f'train_dataloader.dataset.data_root={data_copy}/',
                    'train_cfg.max_iters=3', 'train_cfg.val_interval=100')
    assert_one_line_error(proc)
    h, w = label_hw
    assert re.fullmatch(
        rf"train\.py: error: sample \d+: image '{re.escape(str(image))}', "
        rf"label '{re.escape(str(label))}': the label's size differs from "
        rf"the image's \(image 128x128, label {h}x{w}, HxW\); check the data "
        r'with tools/misc/check_dataset\.py', proc.stderr.strip()), \
        proc.stderr


def test_num_groups_that_does_not_divide(tmp_path, run_tool,
                                         assert_one_line_error):
    proc = run_tool('train.py', CONFIG, '--work-dir', str(tmp_path),
                    '--cfg-options', 'model.backbone.norm_cfg.type=GN',
                    'model.backbone.norm_cfg.num_groups=5')
    assert_one_line_error(proc, 'cannot build the model',
                          'model.backbone.norm_cfg.num_groups=5',
                          'must divide')


def _train_to(run_tool, work_dir, iters):
    proc = run_tool('train.py', CONFIG, '--work-dir', work_dir,
                    '--cfg-options', f'train_cfg.max_iters={iters}',
                    'train_cfg.val_interval=100',
                    'default_hooks.checkpoint.interval=2')
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope='module')
def trained(run_tool, tmp_path_factory):
    """A 4-iteration run with checkpoints at 2 and 4 (copied per test)."""
    work_dir = str(tmp_path_factory.mktemp('trained'))
    _train_to(run_tool, work_dir, 4)
    return work_dir


def test_resume_with_an_empty_last_checkpoint(trained, tmp_path, run_tool):
    work_dir = str(tmp_path / 'w')
    shutil.copytree(trained, work_dir)
    with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
        f.write('')  # killed while MMEngine wrote it
    proc = run_tool('train.py', CONFIG, '--work-dir', work_dir, '--resume',
                    '--cfg-options', 'train_cfg.max_iters=6',
                    'train_cfg.val_interval=100',
                    'default_hooks.checkpoint.interval=2')
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert f"--resume: '{work_dir}/last_checkpoint' (empty) cannot be used; " \
        f"resuming from '{work_dir}/iter_4.pth' instead" in out
    assert 'resumed epoch: 0, iter: 4' in out
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read() == osp.join(work_dir, 'iter_6.pth')


def test_resume_without_an_intact_checkpoint(trained, tmp_path, run_tool,
                                             assert_one_line_error):
    work_dir = str(tmp_path / 'w')
    shutil.copytree(trained, work_dir)
    for name in ('iter_2.pth', 'iter_4.pth'):
        with open(osp.join(work_dir, name), 'wb') as f:
            f.write(b'PK\x03\x04')
    with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(work_dir, 'iter_4.pth'))  # this copy's
    proc = run_tool('train.py', CONFIG, '--work-dir', work_dir, '--resume')
    assert_one_line_error(proc, '--resume: no intact checkpoint',
                          f"'{work_dir}/iter_4.pth'",
                          f"'{work_dir}/iter_2.pth'")


def test_test_tool_with_a_truncated_checkpoint(trained, tmp_path, run_tool,
                                               assert_one_line_error):
    ckpt = str(tmp_path / 'cut.pth')
    with open(osp.join(trained, 'iter_4.pth'), 'rb') as f, \
            open(ckpt, 'wb') as g:
        g.write(f.read()[:4096])
    proc = run_tool('test.py', CONFIG, ckpt, '--work-dir', str(tmp_path))
    assert_one_line_error(proc, f"'{ckpt}'", 'PytorchStreamReader')


@pytest.mark.slow  # a training run in a subprocess
def test_full_disk_while_saving(repo_root, tmp_path, assert_one_line_error):
    """The 4th iteration's checkpoint hits a full disk (simulated): one
    line naming it, no temporary file left, iteration 2's checkpoint and
    ``last_checkpoint`` intact."""
    config = tmp_path / 'disk_full.py'
    config.write_text(f"_base_ = ['{osp.join(repo_root, CONFIG)}']\n"
                      'custom_imports = dict(imports=[\'mmseg_wsbcn\', '
                      "'wsbcn_disk_full'], allow_failed_imports=False)\n"
                      'train_cfg = dict(max_iters=6, val_interval=100)\n'
                      "runner_type = 'DiskFullRunner'\n"
                      'default_hooks = dict(checkpoint=dict(interval=2))\n')
    work_dir = str(tmp_path / 'w')
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [osp.join(repo_root, 'tests/data/hooks')] +
            [p for p in [os.environ.get('PYTHONPATH')] if p]))
    proc = subprocess.run([
        sys.executable, 'tools/train.py',
        str(config), '--work-dir', work_dir
    ],
                          cwd=repo_root,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert_one_line_error(proc, 'could not save checkpoint',
                          f"'{work_dir}/iter_4.pth'",
                          'No space left on device', 'are intact')
    names = set(os.listdir(work_dir))
    assert 'iter_2.pth' in names and 'iter_4.pth' not in names
    assert not [n for n in names if '.tmp' in n]
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read() == osp.join(work_dir, 'iter_2.pth')
