# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""evaluate_iou (mmseg's IoUMetric) against values worked out by hand."""
import numpy as np
import pytest

from mmseg_wsbcn.evaluation import evaluate_iou, seg_data_sample

META = dict(classes=('a', 'b', 'c'))
I = 255  # noqa: E741  (ignore index)

# image 1: label a a / b I, prediction a b / b a
#   a: intersection 1, label 1+1, prediction 1 -> union 2
#   b: intersection 1, label 1, prediction 2   -> union 2
# image 2: label b b / b b, prediction b b / b I (I predicted: a miss)
#   b: intersection 3, label 4, prediction 3   -> union 4
# dataset: a IoU 1/2, Acc 1/2; b IoU (1+3)/(2+4) = 2/3, Acc 4/5;
#   c in neither -> NaN; aAcc 5/7; mIoU (50 + 66.67) / 2 = 58.33,
#   mAcc (50 + 80) / 2 = 65. Per image: 50 and 75 -> mean 62.5.
PAIRS = [
    (np.array([[0, 1], [1, 0]]), np.array([[0, 0], [1, I]])),
    (np.array([[1, 1], [1, I]]), np.array([[1, 1], [1, 1]])),
]


def test_dataset_level_values():
    m = evaluate_iou(PAIRS, META, ignore_index=I)
    assert m['aAcc'] == pytest.approx(71.43)
    assert m['mIoU'] == pytest.approx(58.33)
    assert m['mAcc'] == pytest.approx(65.0)
    assert m['IoU'] == {'a': 50.0, 'b': 66.67, 'c': None}
    assert m['Acc'] == {'a': 50.0, 'b': 80.0, 'c': None}


def test_not_the_mean_of_per_image_mious():
    per_image = [evaluate_iou([p], META, I)['mIoU'] for p in PAIRS]
    assert per_image == [50.0, 75.0]
    assert evaluate_iou(PAIRS, META, I)['mIoU'] != np.mean(per_image)


def test_class_only_predicted_counts_as_zero_iou():
    pred = np.array([[0, 2]])
    label = np.array([[0, 0]])
    m = evaluate_iou([(pred, label)], META, I)
    assert m['IoU'] == {'a': 50.0, 'b': None, 'c': 0.0}
    assert m['Acc'] == {'a': 50.0, 'b': None, 'c': None}
    assert m['mIoU'] == 25.0


def test_data_sample_layout():
    s = seg_data_sample(np.zeros((3, 4), np.uint8), np.ones((3, 4)))
    assert s['pred_sem_seg']['data'].shape == (1, 3, 4)
    assert s['gt_sem_seg']['data'].shape == (1, 3, 4)
