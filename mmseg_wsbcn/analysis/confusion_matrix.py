# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The confusion matrix of saved predictions (``tools/test.py --out DIR``)
against a config's dataset, counted in int64, and its plot.

mmseg 1.2.2's ``tools/analysis_tools/confusion_matrix.py`` computes the bin
index ``n * gt + pred`` on ``uint8`` arrays: it wraps at 256, so with more
than 16 classes (Cityscapes' 19, VOC's 21) the pixels of the high classes
are counted in wrong cells (open-mmlab/mmsegmentation#3583). It also pairs
images with prediction files by sort order only. This module counts in
int64 and finds and checks each image's prediction exactly as
``tools/analysis/eval_predictions.py`` does (:mod:`mmseg_wsbcn.evaluation`).

The command line is ``tools/analysis/confusion_matrix.py``.
"""
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from .errors import AnalysisError


def confusion_matrix(gt: np.ndarray,
                     pred: np.ndarray,
                     num_classes: int,
                     ignore_index: int = 255) -> np.ndarray:
    """Count pixels by (ground-truth class, predicted class).

    Args:
        gt (ndarray): Ground-truth label map (any integer dtype).
        pred (ndarray): Predicted label map of the same shape.
        num_classes (int): Number of classes ``n``.
        ignore_index (int): Ground-truth value of unlabelled pixels.

    Returns:
        ndarray: ``(n, n)`` int64 counts; row = ground truth, column =
        prediction. Pixels labelled ``ignore_index``, and pixels whose
        label or prediction is outside ``[0, n)``, are not counted (as in
        mmseg's ``IoUMetric``).
    """
    gt = np.asarray(gt).astype(np.int64).ravel()
    pred = np.asarray(pred).astype(np.int64).ravel()
    if gt.shape != pred.shape:
        raise AnalysisError(
            f'label map has {gt.size} pixels, prediction {pred.size}')
    keep = (gt != ignore_index) & (gt >= 0) & (gt < num_classes) \
        & (pred >= 0) & (pred < num_classes)
    bins = num_classes * gt[keep] + pred[keep]
    return np.bincount(
        bins, minlength=num_classes**2).reshape(num_classes, num_classes)


def matrix_metrics(matrix: np.ndarray) -> Dict[str, object]:
    """aAcc, mIoU, mAcc (percent) and per-class IoU / Acc from a confusion
    matrix, as mmseg's ``IoUMetric`` computes them (classes absent from
    both label and prediction have IoU NaN and are left out of the mean;
    classes absent from the label have Acc NaN).

    Returns:
        dict: ``aAcc``, ``mIoU``, ``mAcc`` (floats, not rounded) and
        ``IoU``, ``Acc`` (per-class arrays, percent).
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    intersect = np.diag(matrix)
    area_label = matrix.sum(axis=1)
    area_pred = matrix.sum(axis=0)
    union = area_label + area_pred - intersect
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = intersect / union * 100
        acc = intersect / area_label * 100
        aacc = intersect.sum() / area_label.sum() * 100
    return dict(
        aAcc=float(aacc),
        mIoU=float(np.nanmean(iou)) if np.isfinite(iou).any() else np.nan,
        mAcc=float(np.nanmean(acc)) if np.isfinite(acc).any() else np.nan,
        IoU=iou,
        Acc=acc)


def dataset_confusion_matrix(dataset,
                             label_loader,
                             pred_dir: str,
                             pred_suffix: str = '.png'
                             ) -> Tuple[np.ndarray, int]:
    """The confusion matrix of a dataset against saved predictions.

    Predictions are found and checked exactly as
    ``tools/analysis/eval_predictions.py`` does
    (:func:`mmseg_wsbcn.evaluation.prediction_label_pairs`):
    ``pred_dir/<image path relative to the image folder, minus
    img_suffix><pred_suffix>`` (the layout of ``tools/test.py --out``) or a
    flat folder; a single-channel image of class indices at the label's
    size; labels read by the pipeline's ``LoadAnnotations`` at their own
    size.

    Args:
        dataset: The dataset, from :func:`build_dataset`.
        label_loader: Its ``LoadAnnotations``, from :func:`build_dataset`.
        pred_dir (str): The predictions' folder.
        pred_suffix (str): What follows the stem in a prediction's name.

    Returns:
        tuple: The ``(n, n)`` int64 matrix, and the number of labelled
        pixels predicted as ``ignore_index`` (not in the matrix; ``IoUMetric``
        counts them as wrong; a model never predicts it).

    Raises:
        AnalysisError: ``pred_dir`` is not a folder.
        EvaluationInputError: A prediction is missing, unreadable, of the
            wrong size or holds values outside the classes.
    """
    from mmseg_wsbcn.evaluation import prediction_label_pairs

    if not osp.isdir(pred_dir):
        raise AnalysisError(f"prediction folder '{pred_dir}' does not exist")
    n = len(dataset.metainfo['classes'])
    ignore = dataset.ignore_index
    matrix = np.zeros((n, n), dtype=np.int64)
    unscored = 0
    for pred, label in prediction_label_pairs(dataset, label_loader, pred_dir,
                                              pred_suffix):
        matrix += confusion_matrix(label, pred, n, ignore)
        unscored += int(np.count_nonzero((label != ignore) & (pred == ignore)))
    return matrix, unscored


def plot_confusion_matrix(matrix: np.ndarray,
                          class_names: Sequence[str],
                          title: Optional[str] = None):
    """Draw the matrix normalised per ground-truth class (each row: the
    percentage of that class's pixels predicted as each class).

    Classes without ground-truth pixels have an empty row; their tick label
    says so. Cell values are written for up to 30 classes.

    Returns:
        matplotlib.figure.Figure: The figure (not attached to pyplot).
    """
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix, dtype=np.float64)
    n = len(class_names)
    rows = matrix.sum(axis=1, keepdims=True)
    with np.errstate(invalid='ignore', divide='ignore'):
        percent = np.where(rows > 0, matrix / rows * 100, np.nan)
    side = 2.5 + 0.45 * n
    fig = Figure(figsize=(side + 1.5, side), layout='constrained')
    ax = fig.subplots()
    im = ax.imshow(
        np.ma.masked_invalid(percent), cmap='Blues', vmin=0, vmax=100)
    fig.colorbar(im, ax=ax, label='% of the ground-truth class', shrink=0.8)
    ax.set_xticks(np.arange(n))
    ax.set_yticks(np.arange(n))
    ax.set_xticklabels(class_names, rotation=60, ha='right', fontsize=8)
    ax.set_yticklabels([
        name if rows[i, 0] > 0 else f'{name} (absent)'
        for i, name in enumerate(class_names)
    ],
                       fontsize=8)
    ax.set_xlabel('prediction')
    ax.set_ylabel('ground truth')
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if np.isfinite(percent[i, j]) and matrix[i, j] > 0:
                    ax.text(
                        j,
                        i,
                        f'{percent[i, j]:.0f}',
                        ha='center',
                        va='center',
                        fontsize=6,
                        color='white' if percent[i, j] > 50 else 'black')
    ax.set_title(title or 'Confusion matrix (row-normalised, %)')
    return fig


def build_dataset(config: str,
                  split: str = 'test',
                  cfg_options: Optional[dict] = None):
    """The config's ``<split>_dataloader.dataset`` (without its pipeline:
    no image is loaded) and the ``LoadAnnotations`` of that pipeline.

    Returns:
        tuple: ``(dataset, label_loader)``.

    Raises:
        AnalysisError: The config is missing or does not load.
        EvaluationInputError: The dataloader or its data folder is missing,
            or the dataset cannot be built.
    """
    from mmseg_wsbcn.evaluation import (build_label_loader, build_seg_dataset,
                                        split_dataset_cfg)
    from mmseg_wsbcn.launch import prepare_config
    from mmseg_wsbcn.utils.errors import ToolError
    try:
        cfg = prepare_config(config, mode='test', cfg_options=cfg_options)
    except ToolError as e:
        raise AnalysisError(str(e)) from e
    dataset_cfg = split_dataset_cfg(cfg, split, config)
    return (build_seg_dataset(dataset_cfg),
            build_label_loader(dataset_cfg.get('pipeline')))
