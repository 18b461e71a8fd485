# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Score (prediction, label) pairs with mmseg's ``IoUMetric``.

The metric is mmseg's own: each pair goes through ``IoUMetric.process`` as
one data sample (its per-class intersection, union, prediction and label
areas), and ``evaluate`` sums those areas over the whole dataset before
dividing (Cityscapes' and VOC's benchmark definition, not the mean of
per-image IoUs); a class absent from both predictions and labels has a NaN
IoU and is left out of the mean. ``IoUMetric`` logs its per-class table
through MMEngine's current logger.
"""
import math
from typing import Dict, Iterable, Optional, Tuple

import numpy as np
import torch
from mmseg.evaluation import IoUMetric


def seg_data_sample(pred: np.ndarray, label: np.ndarray) -> dict:
    """One data sample as ``IoUMetric.process`` reads it (what MMEngine's
    ``Evaluator`` passes after ``SegDataSample.to_dict()``).

    Args:
        pred (np.ndarray): Class indices, shape (H, W).
        label (np.ndarray): The label, shape (H, W).

    Returns:
        dict: ``pred_sem_seg.data`` and ``gt_sem_seg.data``, shape
        (1, H, W), int64 tensors.
    """
    return dict(
        pred_sem_seg=dict(
            data=torch.from_numpy(np.ascontiguousarray(pred, dtype=np.int64))
            [None]),
        gt_sem_seg=dict(
            data=torch.from_numpy(np.ascontiguousarray(label, dtype=np.int64))
            [None]))


def _printed(value) -> Optional[float]:
    """A value mmseg rounded (in float32) as the Python float it prints
    (``66.67``, not ``66.66999816894531``); NaN -> None."""
    value = float(value)
    return None if math.isnan(value) else round(value, 2)


def evaluate_iou(pairs: Iterable[Tuple[np.ndarray, np.ndarray]],
                 metainfo: dict,
                 ignore_index: int = 255) -> Dict[str, object]:
    """Dataset-level aAcc, mIoU, mAcc and per-class IoU/Acc.

    Args:
        pairs (Iterable[tuple[np.ndarray, np.ndarray]]): ``(prediction,
            label)`` per image, both shape (H, W), the prediction already
            checked (class indices or ``ignore_index``).
        metainfo (dict): The dataset's ``metainfo`` (``classes``).
        ignore_index (int): Label value left out of the scores.

    Returns:
        dict: ``aAcc``, ``mIoU``, ``mAcc`` (float, percent, as mmseg
        prints them), ``IoU`` and ``Acc`` (``{class: percent or None}``;
        None where mmseg's value is NaN: IoU of a class in neither
        predictions nor labels, Acc of a class in no label).

    Raises:
        ValueError: ``pairs`` is empty.
    """
    metric = IoUMetric(ignore_index=ignore_index, iou_metrics=['mIoU'])
    metric.dataset_meta = metainfo
    num_images = 0
    for pred, label in pairs:
        metric.process({}, [seg_data_sample(pred, label)])
        num_images += 1
    if not num_images:
        raise ValueError('evaluate_iou got no (prediction, label) pair')
    # per-class values from the same areas, before evaluate() clears them
    areas = [sum(a) for a in zip(*metric.results)]
    per_class = IoUMetric.total_area_to_metrics(*areas, metrics=['mIoU'])
    summary = metric.evaluate(num_images)
    classes = metainfo['classes']
    result = {key: _printed(summary[key]) for key in ('aAcc', 'mIoU', 'mAcc')}
    for key in ('IoU', 'Acc'):
        # as in IoUMetric.compute_metrics' per-class table
        result[key] = {
            name: _printed(v)
            for name, v in zip(classes, np.round(per_class[key] * 100, 2))
        }
    return result
