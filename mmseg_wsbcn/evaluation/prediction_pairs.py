# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Each image's saved prediction with its label, found, read and checked:
what ``tools/analysis/eval_predictions.py`` scores and
:func:`mmseg_wsbcn.analysis.confusion_matrix.dataset_confusion_matrix`
counts."""
from typing import Iterator, Optional, Tuple

import numpy as np
from mmseg.datasets import BaseSegDataset
from mmseg.datasets.transforms import LoadAnnotations

from .cityscapes_ids import label_ids_to_train_ids
from .ground_truth import data_infos, load_label
from .prediction_maps import check_prediction, read_prediction
from .prediction_paths import (find_prediction, flat_name_counts,
                               prediction_stem)


def prediction_label_pairs(dataset: BaseSegDataset,
                           label_loader: LoadAnnotations,
                           pred_dir: str,
                           pred_suffix: str = '.png',
                           lut: Optional[np.ndarray] = None
                           ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Yield each image's checked ``(prediction, label)``, both (H, W).

    Predictions are at ``pred_dir/<image path relative to the image
    folder, minus img_suffix><pred_suffix>`` (the layout of ``tools/test.py
    --out``) or directly in ``pred_dir``; labels are read by the pipeline's
    ``LoadAnnotations`` at their own size.

    Args:
        dataset (BaseSegDataset): The ground-truth dataset.
        label_loader (LoadAnnotations): Reads the labels.
        pred_dir (str): The predictions' folder.
        pred_suffix (str): What follows the stem in a prediction's name.
            Defaults to ``'.png'``.
        lut (np.ndarray, optional): labelId -> trainId table for
            predictions of Cityscapes labelIds, or None for trainId
            predictions. Defaults to None.

    Raises:
        EvaluationInputError: A prediction or label is missing or unusable.
    """
    infos = data_infos(dataset)
    img_prefix = dataset.data_prefix.get('img_path', '')
    stems = [
        prediction_stem(info['img_path'], img_prefix, dataset.img_suffix)
        for info in infos
    ]
    counts = flat_name_counts(stems, pred_suffix)
    num_classes = len(dataset.metainfo['classes'])
    for info, stem in zip(infos, stems):
        label = load_label(info, label_loader)
        path = find_prediction(pred_dir, stem, pred_suffix, counts)
        pred = read_prediction(path)
        if lut is not None:
            pred = label_ids_to_train_ids(pred, lut, path)
        check_prediction(pred, label.shape, num_classes, dataset.ignore_index,
                         path)
        yield pred, label
