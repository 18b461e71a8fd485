# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""``tools/misc/check_dataset.py`` on a copy of the bundled Cityscapes mini
set with three planted problems reports exactly those three."""
import os.path as osp

import cv2
import numpy as np
import pytest

CONFIG = ('configs/demo/'
          'deeplabv3_r18-d8_bn_1xb2-200iters_cityscapes-mini-128x128.py')
TRAIN = 'gtFine/train/frankfurt/frankfurt_000000_000294'
IMAGES = 'leftImg8bit/train/frankfurt/frankfurt_000000_000294'


@pytest.fixture
def broken_copy(data_copy):
    root = data_copy
    corrupt = root / f'{IMAGES}flip_leftImg8bit.png'
    corrupt.write_bytes(corrupt.read_bytes()[:100])  # truncated PNG
    out_of_range = root / f'{TRAIN}left_gtFine_labelTrainIds.png'
    label = cv2.imread(str(out_of_range), cv2.IMREAD_UNCHANGED)
    label[:2, :3] = 40
    cv2.imwrite(str(out_of_range), label)
    wrong_size = root / f'{TRAIN}right_gtFine_labelTrainIds.png'
    label = cv2.imread(str(wrong_size), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(wrong_size), label[:-8])
    return root, corrupt, out_of_range, wrong_size, label.shape


def test_reports_exactly_the_three_problems(broken_copy, run_tool):
    root, corrupt, out_of_range, wrong_size, shape = broken_copy
    proc = run_tool('misc/check_dataset.py', CONFIG, '--cfg-options',
                    f'train_dataloader.dataset.data_root={root}/')
    assert proc.returncode == 1, proc.stderr
    problems = [
        ln.strip() for ln in proc.stdout.splitlines() if ln.startswith('  ')
    ]
    h, w = shape
    assert sorted(problems) == sorted([
        f'{corrupt}: undecodable: not an image',
        f'{out_of_range}: out-of-range labels: values [40] (allowed: 0..18 '
        'and the ignore index 255)',
        f'{wrong_size}: size mismatch: image {h}x{w}, label {h - 8}x{w}',
    ])
    assert '3 problems:' in proc.stdout
    assert '|      road     |' in proc.stdout  # the per-class table


def test_labels_larger_and_smaller_than_their_images(data_copy, call_tool):
    sizes = {'left': (160, 128), 'right': (96, 128)}  # images: 128x128
    labels = {}
    for side, (h, w) in sizes.items():
        labels[side] = data_copy / f'{TRAIN}{side}_gtFine_labelTrainIds.png'
        label = cv2.imread(str(labels[side]), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(
            str(labels[side]),
            cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST))
    proc = call_tool('misc/check_dataset.py', CONFIG, '--cfg-options',
                     f'train_dataloader.dataset.data_root={data_copy}/')
    assert proc.returncode == 1, proc.stderr
    problems = [
        ln.strip() for ln in proc.stdout.splitlines() if ln.startswith('  ')
    ]
    assert sorted(problems) == [
        f"{labels['left']}: size mismatch: image 128x128, label 160x128",
        f"{labels['right']}: size mismatch: image 128x128, label 96x128",
    ]
    assert '2 problems:' in proc.stdout


def test_clean_data_passes_with_a_pixel_table(repo_root, run_tool):
    proc = run_tool('misc/check_dataset.py', CONFIG, '--split', 'val')
    assert proc.returncode == 0, proc.stderr
    assert 'val split: 1 image/label pairs, 19 classes' in proc.stdout
    assert 'No problems found.' in proc.stdout
    # the frame's road pixels, counted independently
    label = cv2.imread(
        osp.join(
            repo_root, 'demo/data/cityscapes_mini/gtFine/val/frankfurt/'
            'frankfurt_000000_000294_gtFine_labelTrainIds.png'),
        cv2.IMREAD_UNCHANGED)
    road = int(np.sum(label == 0))
    assert any(
        ln.split('|')[1].strip() == 'road' and int(ln.split('|')[2]) == road
        for ln in proc.stdout.splitlines() if ln.count('|') == 4)


def test_unknown_split_dataloader(run_tool, assert_one_line_error, tmp_path):
    cfg = tmp_path / 'no_test.py'
    cfg.write_text('train_dataloader = None\n')
    assert_one_line_error(
        run_tool('misc/check_dataset.py', str(cfg)), 'no train_dataloader')
