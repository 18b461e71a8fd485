# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Where a prediction is looked for: nested like the image folder, then
flat; ambiguous flat names and missing files are errors."""
import os.path as osp

import pytest

from mmseg_wsbcn.evaluation import (EvaluationInputError, find_prediction,
                                    flat_name_counts, prediction_stem)


def test_stem_strips_the_image_folder_and_suffix():
    assert prediction_stem(
        'data/cityscapes/leftImg8bit/val/lindau/lindau_000001_000019'
        '_leftImg8bit.png', 'data/cityscapes/leftImg8bit/val',
        '_leftImg8bit.png') == 'lindau/lindau_000001_000019'
    # VOC: images listed by ann_file directly in JPEGImages
    assert prediction_stem('data/VOC2012/JPEGImages/2007_000033.jpg',
                           'data/VOC2012/JPEGImages', '.jpg') == '2007_000033'
    # a suffix the name does not end with: only the extension goes
    assert prediction_stem('imgs/a/x.jpeg', 'imgs', '.jpg') == 'a/x'
    assert prediction_stem('x.png', '', '.png') == 'x'


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'')
    return str(path)


def test_nested_first_then_flat(tmp_path):
    counts = flat_name_counts(['a/x', 'b/y'], '.png')
    flat = touch(tmp_path / 'x.png')
    assert find_prediction(str(tmp_path), 'a/x', '.png', counts) == flat
    nested = touch(tmp_path / 'a' / 'x.png')
    assert find_prediction(str(tmp_path), 'a/x', '.png', counts) == nested


def test_suffix_is_appended_to_the_stem(tmp_path):
    path = touch(tmp_path / 'x_leftImg8bit.png')
    counts = flat_name_counts(['a/x'], '_leftImg8bit.png')
    assert find_prediction(str(tmp_path), 'a/x', '_leftImg8bit.png',
                           counts) == path


def test_flat_name_shared_by_two_images_is_refused(tmp_path):
    touch(tmp_path / 'x.png')
    counts = flat_name_counts(['a/x', 'b/x'], '.png')
    assert counts == {'x.png': 2}
    with pytest.raises(EvaluationInputError, match='ambiguous'):
        find_prediction(str(tmp_path), 'a/x', '.png', counts)


def test_missing_prediction_names_both_places(tmp_path):
    with pytest.raises(EvaluationInputError) as e:
        find_prediction(str(tmp_path), 'a/x', '.png', {'x.png': 1})
    assert osp.join(str(tmp_path), 'a', 'x.png') in str(e.value)
    assert osp.join(str(tmp_path), 'x.png') in str(e.value)
    assert 'does not exist' in str(e.value)
