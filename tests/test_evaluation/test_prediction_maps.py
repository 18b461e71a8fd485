# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Reading and checking a prediction file: single channel, integer class
indices, the label's size; everything else is an error naming the file."""
import numpy as np
import pytest
from PIL import Image

from mmseg_wsbcn.evaluation import (EvaluationInputError, check_prediction,
                                    read_prediction)

PRED = np.array([[0, 1, 2, 255], [3, 3, 0, 1]], dtype=np.uint8)


def save(tmp_path, image: Image.Image, name='p.png') -> str:
    path = str(tmp_path / name)
    image.save(path)
    return path


def test_reads_gray_palette_and_16_bit(tmp_path):
    assert np.array_equal(
        read_prediction(save(tmp_path, Image.fromarray(PRED))), PRED)
    palette = Image.fromarray(PRED).convert('P')  # mmseg's Cityscapes files
    assert np.array_equal(read_prediction(save(tmp_path, palette)), PRED)
    wide = np.array([[0, 300]], dtype=np.uint16)
    got = read_prediction(save(tmp_path, Image.fromarray(wide)))
    assert got.tolist() == [[0, 300]]


@pytest.mark.parametrize('mode, channels', [('RGB', 3), ('RGBA', 4),
                                            ('LA', 2)])
def test_multi_channel_is_refused(mode, channels, tmp_path):
    path = save(tmp_path, Image.fromarray(PRED).convert(mode))
    with pytest.raises(EvaluationInputError) as e:
        read_prediction(path)
    assert f"'{path}' has {channels} channels ({mode})" in str(e.value)


def test_float_and_non_image_are_refused(tmp_path):
    path = save(tmp_path, Image.fromarray(PRED.astype(np.float32)), 'f.tif')
    with pytest.raises(EvaluationInputError, match='float32'):
        read_prediction(path)
    text = tmp_path / 'notes.png'
    text.write_text('not an image')
    with pytest.raises(EvaluationInputError, match='cannot read prediction'):
        read_prediction(str(text))


def test_check_size():
    with pytest.raises(EvaluationInputError) as e:
        check_prediction(PRED, (2, 5), 19, 255, 'p.png')
    assert "'p.png' is 4x2 (WxH) but its label is 5x2" in str(e.value)


def test_check_values_allows_classes_and_the_ignore_index():
    check_prediction(PRED, (2, 4), 4, 255, 'p.png')
    with pytest.raises(EvaluationInputError) as e:
        check_prediction(PRED, (2, 4), 3, 255, 'p.png')
    assert "'p.png' holds value(s) 3 outside the 3 classes (0-2)" \
        in str(e.value)
    with pytest.raises(EvaluationInputError, match='255'):
        check_prediction(PRED, (2, 4), 4, 0, 'p.png')
    with pytest.raises(EvaluationInputError, match='value.s. -1'):
        check_prediction(np.array([[-1, 0]]), (1, 2), 4, 255, 'p.png')
