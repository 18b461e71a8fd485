# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Offline evaluation: score saved predictions against a config's dataset
with mmseg's ``IoUMetric`` (``tools/analysis/eval_predictions.py``)."""
from .cityscapes_ids import (check_cityscapes_classes, cityscapes_labels,
                             label_id_lut, label_ids_to_train_ids)
from .errors import EvaluationInputError
from .ground_truth import (build_label_loader, build_seg_dataset, data_infos,
                           load_label, split_dataset_cfg)
from .offline_iou import evaluate_iou, seg_data_sample
from .prediction_maps import check_prediction, read_prediction
from .prediction_pairs import prediction_label_pairs
from .prediction_paths import (find_prediction, flat_name_counts,
                               prediction_stem)

__all__ = [
    'EvaluationInputError', 'build_label_loader', 'build_seg_dataset',
    'check_cityscapes_classes', 'check_prediction', 'cityscapes_labels',
    'data_infos', 'evaluate_iou', 'find_prediction', 'flat_name_counts',
    'label_id_lut', 'label_ids_to_train_ids', 'load_label',
    'prediction_label_pairs', 'prediction_stem', 'read_prediction',
    'seg_data_sample', 'split_dataset_cfg'
]
