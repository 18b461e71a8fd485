# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Check segmentation samples before a long run.

A corrupt image or a label value outside the classes otherwise surfaces
deep inside a library: mmcv's ``LoadImageFromFile`` asserts ``failed to
load image``, and a label 40 in a 19-class set reaches ``cross_entropy`` as
``IndexError: Target 40 is out of bounds``, with no file named.

- :func:`check_sample` checks one image/label pair completely: both files
  exist and decode, their sizes match, and the label values lie in
  ``[0, num_classes)`` or equal the ignore index (after
  ``reduce_zero_label``). ``tools/misc/check_dataset.py`` runs it over a
  whole dataset.
- :class:`~mmseg_wsbcn.datasets.CheckedPipeline` checks every
  sample a run loads, cheaply, and raises :class:`DataSampleError`.
"""
import os.path as osp
from typing import Callable, List, NamedTuple, Optional, Sequence

import mmcv
import numpy as np

from .errors import OneLineError


class DataSampleError(OneLineError, RuntimeError):
    """A training sample cannot be used; the message is one line naming the
    sample index and its files. Takes a single message argument, so that
    PyTorch's DataLoader can re-raise it from a worker process."""


class SampleProblem(NamedTuple):
    """One problem of one sample.

    Attributes:
        file (str): The file concerned.
        kind (str): ``'missing'``, ``'undecodable'``, ``'size mismatch'`` or
            ``'out-of-range labels'``.
        detail (str): The values, e.g. ``'image 128x256, label 64x128'``.
    """
    file: str
    kind: str
    detail: str


def bad_label_values(values: Sequence[int], num_classes: int,
                     ignore_index: int) -> List[int]:
    """The values that are neither a class (``[0, num_classes)``) nor the
    ignore index."""
    return sorted(
        int(v) for v in values
        if not (0 <= int(v) < num_classes or int(v) == ignore_index))


def size_mismatch(image_hw: Sequence[int],
                  label_hw: Sequence[int]) -> Optional[str]:
    """``'image 128x256, label 120x256'`` when an image and its label
    differ in size (height x width), else ``None``.

    Args:
        image_hw (Sequence[int]): The image's shape; its first two entries
            are the height and width.
        label_hw (Sequence[int]): The label's shape, likewise.

    Returns:
        str | None: Both sizes as ``HxW``, or ``None`` when they are equal.
    """
    image_hw, label_hw = tuple(image_hw[:2]), tuple(label_hw[:2])
    if image_hw == label_hw:
        return None
    return (f'image {image_hw[0]}x{image_hw[1]}, label '
            f'{label_hw[0]}x{label_hw[1]}')


def _decode(path: str) -> Optional[np.ndarray]:
    """The decoded image, or ``None`` when the bytes do not decode."""
    try:
        return mmcv.imread(path, flag='unchanged')
    except Exception:  # cv2 / pillow errors on damaged files
        return None


def check_sample(img_path: str,
                 seg_map_path: Optional[str],
                 load_label: Callable[[], np.ndarray],
                 num_classes: int,
                 ignore_index: int = 255) -> List[SampleProblem]:
    """Check one image/label pair.

    Args:
        img_path (str): The image file.
        seg_map_path (str, optional): The label file.
        load_label (callable): Returns the label map as the dataset's
            pipeline reads it (``reduce_zero_label`` applied), shape (H, W).
        num_classes (int): Number of classes.
        ignore_index (int): The label value that is ignored.

    Returns:
        list[SampleProblem]: Empty when the pair is usable.
    """
    problems = []
    image = None
    if not osp.isfile(img_path):
        problems.append(SampleProblem(img_path, 'missing', 'no such file'))
    else:
        image = _decode(img_path)
        if image is None:
            problems.append(
                SampleProblem(img_path, 'undecodable', 'not an image'))
    if not seg_map_path:
        return problems
    if not osp.isfile(seg_map_path):
        problems.append(SampleProblem(seg_map_path, 'missing', 'no such file'))
        return problems
    if _decode(seg_map_path) is None:
        problems.append(
            SampleProblem(seg_map_path, 'undecodable', 'not an image'))
        return problems
    label = load_label()
    mismatch = None if image is None else size_mismatch(
        image.shape, label.shape)
    if mismatch:
        problems.append(SampleProblem(seg_map_path, 'size mismatch', mismatch))
    bad = bad_label_values(np.unique(label), num_classes, ignore_index)
    if bad:
        problems.append(
            SampleProblem(
                seg_map_path, 'out-of-range labels',
                f'values {bad} (allowed: 0..{num_classes - 1} and the '
                f'ignore index {ignore_index})'))
    return problems
