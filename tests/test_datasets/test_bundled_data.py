# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The bundled mini sets load through mmseg's own dataset classes."""
import os.path as osp

import numpy as np
import pytest
from mmengine.registry import init_default_scope
from mmseg.datasets import CityscapesDataset, PascalVOCDataset

# Reference: cityscapesscripts' labels.py (trainId order, color).
CITYSCAPES = [('road', (128, 64, 128)), ('sidewalk', (244, 35, 232)),
              ('building', (70, 70, 70)), ('wall', (102, 102, 156)),
              ('fence', (190, 153, 153)), ('pole', (153, 153, 153)),
              ('traffic light', (250, 170, 30)),
              ('traffic sign', (220, 220, 0)), ('vegetation', (107, 142, 35)),
              ('terrain', (152, 251, 152)), ('sky', (70, 130, 180)),
              ('person', (220, 20, 60)), ('rider', (255, 0, 0)),
              ('car', (0, 0, 142)), ('truck', (0, 0, 70)),
              ('bus', (0, 60, 100)), ('train', (0, 80, 100)),
              ('motorcycle', (0, 0, 230)), ('bicycle', (119, 11, 32))]
# Reference: the PASCAL VOC devkit's class list and colour map.
VOC_CLASSES = ('background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle',
               'bus', 'car', 'cat', 'chair', 'cow', 'diningtable', 'dog',
               'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
               'train', 'tvmonitor')


def voc_colormap(n: int) -> list:
    """The devkit's bit-interleaving colour map (VOCcolormap.m)."""
    cmap = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap.append([r, g, b])
    return cmap


PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]


@pytest.fixture(autouse=True)
def _mmseg_scope():
    init_default_scope('mmseg')


def _dataset(cls, root, img_path, seg_map_path, ann_file=''):
    """``cls`` on ``root`` with the images and labels of the given
    folders (and the sample list ``ann_file``), loading both."""
    return cls(
        data_root=root,
        data_prefix=dict(img_path=img_path, seg_map_path=seg_map_path),
        ann_file=ann_file,
        pipeline=PIPELINE)


def _labels(ds, i):
    data = ds[i]
    return data['data_samples'].gt_sem_seg.data.numpy()[0]


def test_cityscapes_mini_loads_with_classes_and_palette(repo_root):
    root = osp.join(repo_root, 'demo/data/cityscapes_mini')
    train = _dataset(CityscapesDataset, root, 'leftImg8bit/train',
                     'gtFine/train')
    val = _dataset(CityscapesDataset, root, 'leftImg8bit/val', 'gtFine/val')
    assert list(train.metainfo['classes']) == [n for n, _ in CITYSCAPES]
    assert [tuple(c) for c in train.metainfo['palette']] == \
        [c for _, c in CITYSCAPES]
    assert len(train) == 6 and len(val) == 1
    labels = _labels(val, 0)
    assert labels.shape == (128, 256)
    assert set(np.unique(labels)) <= set(range(19)) | {255}
    # the frame has road, building and car pixels at least
    assert {0, 2, 13} <= set(np.unique(labels))
    # the mirrored training sample is the mirror of the frame's labels
    flip = [
        i for i in range(len(train)) if train.get_data_info(i)
        ['img_path'].endswith('000294flip_leftImg8bit.png')
    ]
    np.testing.assert_array_equal(_labels(train, flip[0]), labels[:, ::-1])


def test_voc_mini_loads_with_classes_palette_and_aug(repo_root):
    root = osp.join(repo_root, 'demo/data/voc_mini/VOC2012')
    split = 'ImageSets/Segmentation/{}.txt'
    val = _dataset(PascalVOCDataset, root, 'JPEGImages', 'SegmentationClass',
                   split.format('val'))
    aug = _dataset(PascalVOCDataset, root, 'JPEGImages',
                   'SegmentationClassAug', split.format('aug'))
    assert tuple(val.metainfo['classes']) == VOC_CLASSES
    assert [list(c) for c in val.metainfo['palette']] == voc_colormap(21)
    labels = _labels(val, 0)
    assert labels.shape == (375, 500)
    assert set(np.unique(labels)) == {0, 5, 9, 11, 15}
    np.testing.assert_array_equal(_labels(aug, 0), labels[:, ::-1])
