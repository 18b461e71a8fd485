# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The on-the-fly sample check: a sample that fails to load, or whose label
leaves the classes, stops with the sample index and its files named, also
from a DataLoader worker process."""
import pytest
import torch
from mmcv.transforms import LoadImageFromFile
from mmengine.structures import PixelData
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
