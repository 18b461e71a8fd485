# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Cityscapes labelIds (0-33) to trainIds, with cityscapesScripts' table.

Predictions formatted for the Cityscapes benchmark (e.g. by mmseg's
``CityscapesMetric`` with ``format_only=True``) hold labelIds; mmseg's
labels hold trainIds. The mapping is ``cityscapesscripts.helpers.labels``'
table: each labelId goes to its ``trainId``, and the ids whose trainId is
255 or -1 (``unlabeled``, ``parking``, ``guard rail`` ...) go to the ignore
index. cityscapesScripts is an optional dependency, imported only here.
"""
from typing import Sequence

import numpy as np

from .errors import EvaluationInputError

#: How to get cityscapesScripts (the project's ``cityscapes`` extra; the
#: constraints keep numpy below 2.4, as cityscapesScripts uses ``np.in1d``).
INSTALL_HINT = (
    "pip install -c requirements/constraints.txt -e '.[cityscapes]'"
    ' (or: pip install -c requirements/constraints.txt '
    'cityscapesscripts)')


def cityscapes_labels() -> list:
    """cityscapesScripts' label table (``labels``: name, id, trainId ...).

    Raises:
        EvaluationInputError: cityscapesScripts is not installed.
    """
    try:
        from cityscapesscripts.helpers.labels import labels
    except ImportError as e:
        raise EvaluationInputError(
            '--label-ids needs cityscapesScripts, an optional extra: '
            f'{INSTALL_HINT}; {e}') from e
    return list(labels)


def check_cityscapes_classes(classes: Sequence[str], labels: list) -> None:
    """Check that a dataset's classes are Cityscapes' 19 trainId classes in
    trainId order, so that trainIds are its class indices.

    Args:
        classes (Sequence[str]): The dataset's ``metainfo['classes']``.
        labels (list): See :func:`cityscapes_labels`.

    Raises:
        EvaluationInputError: The classes differ.
    """
    train = sorted(
        (lb.trainId, lb.name) for lb in labels if 0 <= lb.trainId < 255)
    names = tuple(name for _, name in train)
    if tuple(classes) != names:
        raise EvaluationInputError(
            f'--label-ids maps to Cityscapes trainIds {names[:3]}... but '
            f'the dataset has classes {tuple(classes)[:3]}... '
            f'({len(classes)} classes)')


def label_id_lut(labels: list, ignore_index: int) -> np.ndarray:
    """A lookup table from labelId to trainId.

    Args:
        labels (list): See :func:`cityscapes_labels`.
        ignore_index (int): Where ids without a trainId (trainId 255 or -1)
            go.

    Returns:
        np.ndarray: Shape (256,), int64: ``lut[id]`` is the trainId,
        ``ignore_index``, or -1 for a value that is not a labelId.
    """
    lut = np.full(256, -1, dtype=np.int64)
    for lb in labels:
        if 0 <= lb.id < 256:
            lut[lb.id] = lb.trainId if 0 <= lb.trainId < 255 \
                else ignore_index
    return lut


def label_ids_to_train_ids(pred: np.ndarray, lut: np.ndarray,
                           path: str) -> np.ndarray:
    """Map a labelId prediction to trainIds.

    Args:
        pred (np.ndarray): LabelIds, shape (H, W).
        lut (np.ndarray): See :func:`label_id_lut`.
        path (str): The prediction file, for the message.

    Returns:
        np.ndarray: TrainIds (and the ignore index), shape (H, W), int64.

    Raises:
        EvaluationInputError: A value is not a Cityscapes labelId.
    """
    values = np.unique(pred)
    valid = np.flatnonzero(lut >= 0)
    bad = values[~np.isin(values, valid)]
    if bad.size:
        shown = ', '.join(str(v) for v in bad[:5])
        raise EvaluationInputError(
            f"prediction '{path}' holds value(s) {shown} that are not "
            f'Cityscapes labelIds ({valid.min()}-{valid.max()}); '
            '--label-ids reads labelIds')
    return lut[pred]
