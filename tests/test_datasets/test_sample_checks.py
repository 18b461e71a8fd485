# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The on-the-fly sample check: a sample that fails to load, whose label
is not the size of its image, or whose label leaves the classes, stops with
the sample index and its files named, also from a DataLoader worker
process."""
import cv2
import numpy as np
import pytest
import torch
from mmcv.transforms import Compose, LoadImageFromFile, Resize
from mmengine.structures import PixelData
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.structures import SegDataSample
from torch.utils.data import DataLoader, Dataset

from mmseg_wsbcn.datasets import CheckedPipeline
from mmseg_wsbcn.utils.sample_checks import DataSampleError


def packed(label):
    sample = SegDataSample()
    sample.gt_sem_seg = PixelData(data=torch.tensor(label)[None])
    return dict(inputs=torch.zeros(3, 2, 2), data_samples=sample)


def results(idx=7):
    return dict(
        sample_idx=idx, img_path='data/x/a.png', seg_map_path='data/x/a_l.png')


@pytest.mark.parametrize('label', [[[0, 18], [255, 3]], [[0, 0], [0, 0]]])
def test_labels_in_range_pass(label):
    out = CheckedPipeline(lambda r: packed(label), 19, 255)(results())
    assert out['data_samples'].gt_sem_seg.data.max() == max(map(max, label))


def test_label_out_of_range_names_the_sample():
    guard = CheckedPipeline(lambda r: packed([[0, 40], [19, 255]]), 19, 255)
    with pytest.raises(DataSampleError) as info:
        guard(results())
    assert str(info.value).startswith(
        "sample 7: image 'data/x/a.png', label 'data/x/a_l.png': label "
        'values [19, 40] are outside the 19 classes (allowed: 0..18 and the '
        'ignore index 255)')


def test_undecodable_image_names_the_sample(tmp_path):
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'\x89PNG not really')
    guard = CheckedPipeline(LoadImageFromFile(), 19, 255)
    with pytest.raises(DataSampleError) as info:
        guard(dict(sample_idx=3, img_path=str(broken)))
    assert str(info.value).startswith(
        f"sample 3: image '{broken}': could not be loaded (AssertionError: "
        'failed to load image')


class _Samples(Dataset):

    def __init__(self, guard):
        self.guard = guard

    def __len__(self):
        return 2

    def __getitem__(self, idx):
        return self.guard(results(idx))


def test_the_error_crosses_a_worker_process():
    guard = CheckedPipeline(lambda r: packed([[50]]), 19, 255)
    loader = DataLoader(_Samples(guard), num_workers=1, collate_fn=list)
    with pytest.raises(DataSampleError) as info:
        next(iter(loader))
    assert "sample 0: image 'data/x/a.png'" in str(info.value)
    assert 'label values [50]' in str(info.value)


def _write_pair(tmp_path, image_hw, label_hw):
    """An image and a label PNG of the given sizes; their paths."""
    img = tmp_path / 'a_leftImg8bit.png'
    seg = tmp_path / 'a_labelTrainIds.png'
    cv2.imwrite(str(img), np.zeros((*image_hw, 3), np.uint8))
    cv2.imwrite(str(seg), np.ones(label_hw, np.uint8))
    return str(img), str(seg)


def _loading(*middle):
    return [LoadImageFromFile(), *middle, LoadAnnotations()]


@pytest.mark.parametrize(
    'label_hw', [(40, 32), (24, 32), (32, 30)],
    ids=['taller', 'shorter', 'narrower'])
@pytest.mark.parametrize(
    'resize_first', [False, True],
    ids=['load then resize', 'resize then load'])
def test_label_of_another_size_names_both_files_and_sizes(
        tmp_path, label_hw, resize_first):
    """The sizes are compared as loaded, also when a Resize runs between
    loading the image and the label (mmseg's test pipeline)."""
    img, seg = _write_pair(tmp_path, (32, 32), label_hw)
    steps = _loading(Resize(scale=(64, 64))) if resize_first else \
        _loading() + [Resize(scale=(64, 64))]
    guard = CheckedPipeline(Compose(steps), 19, 255)
    with pytest.raises(DataSampleError) as info:
        guard(
            dict(
                sample_idx=5,
                img_path=img,
                seg_map_path=seg,
                seg_fields=[],
                reduce_zero_label=False))
    h, w = label_hw
    assert str(info.value) == (
        f"sample 5: image '{img}', label '{seg}': the label's size differs "
        f"from the image's (image 32x32, label {h}x{w}, HxW); check the "
        'data with tools/misc/check_dataset.py')


@pytest.mark.parametrize(
    'resize_first', [False, True],
    ids=['load then resize', 'resize then load'])
def test_matching_sizes_pass_whatever_resizes_later(tmp_path, resize_first):
    img, seg = _write_pair(tmp_path, (32, 48), (32, 48))
    resize = Resize(scale=(24, 16))
    steps = _loading(resize) if resize_first else _loading() + [resize]
    out = CheckedPipeline(Compose(steps), 19)(
        dict(
            sample_idx=0,
            img_path=img,
            seg_map_path=seg,
            seg_fields=[],
            reduce_zero_label=False))
    assert out['img'].shape[:2] == (16, 24)
    # mmseg's test pipeline keeps the label at its own size
    assert out['gt_seg_map'].shape == ((32, 48) if resize_first else (16, 24))
