# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Check segmentation samples before and during a long run.

A corrupt image or a label value outside the classes otherwise surfaces
deep inside a library: mmcv's ``LoadImageFromFile`` asserts ``failed to
load image``, and a label 40 in a 19-class set reaches ``cross_entropy`` as
``IndexError: Target 40 is out of bounds``, with no file named.

- :func:`check_sample` checks one image/label pair completely: both files
  exist and decode, their sizes match, and the label values lie in
  ``[0, num_classes)`` or equal the ignore index (after
  ``reduce_zero_label``). ``tools/misc/check_dataset.py`` runs it over a
  whole dataset.
- :class:`CheckedPipeline` wraps a dataset's pipeline for training: a
  sample that fails to load, or whose label holds values outside the
  classes, raises :class:`DataSampleError` naming the sample index and the
  files. Only the cheap part runs: the pipeline's own decoding, and one
  ``max`` (then ``unique`` when it is too large) of each label map.
"""
import os.path as osp
from typing import Callable, List, NamedTuple, Optional, Sequence

import mmcv
import numpy as np
import torch

from ..utils.errors import first_line
from .wrappers import is_wrapper, iter_wrapped_datasets


class DataSampleError(RuntimeError):
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
        problems.append(
            SampleProblem(seg_map_path, 'missing', 'no such file'))
        return problems
    if _decode(seg_map_path) is None:
        problems.append(
            SampleProblem(seg_map_path, 'undecodable', 'not an image'))
        return problems
    label = load_label()
    if image is not None and image.shape[:2] != label.shape[:2]:
        problems.append(
            SampleProblem(
                seg_map_path, 'size mismatch',
                f'image {image.shape[0]}x{image.shape[1]}, label '
                f'{label.shape[0]}x{label.shape[1]}'))
    bad = bad_label_values(np.unique(label), num_classes, ignore_index)
    if bad:
        problems.append(
            SampleProblem(
                seg_map_path, 'out-of-range labels',
                f'values {bad} (allowed: 0..{num_classes - 1} and the '
                f'ignore index {ignore_index})'))
    return problems


class CheckedPipeline:
    """A dataset pipeline that names the sample it fails on.

    Args:
        pipeline (callable): The dataset's pipeline (``Compose``).
        num_classes (int): Number of classes.
        ignore_index (int): The ignored label value.

    Raises (when called):
        DataSampleError: The pipeline failed on the sample (e.g. an image
            that does not decode), or the packed label holds a value that
            is neither a class nor the ignore index.
    """

    def __init__(self, pipeline: Callable, num_classes: int,
                 ignore_index: int) -> None:
        self.pipeline = pipeline
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def _where(self, results: dict) -> str:
        where = f"sample {results.get('sample_idx', '?')}: image " \
            f"'{results.get('img_path')}'"
        if results.get('seg_map_path'):
            where += f", label '{results['seg_map_path']}'"
        return where

    def __call__(self, results: dict) -> Optional[dict]:
        where = self._where(results)
        try:
            out = self.pipeline(results)
        except Exception as e:
            raise DataSampleError(
                f'{where}: could not be loaded ({type(e).__name__}: '
                f'{first_line(e)}); check the data with '
                'tools/misc/check_dataset.py') from e
        sample = (out or {}).get('data_samples')
        label = getattr(getattr(sample, 'gt_sem_seg', None), 'data', None)
        if isinstance(label, torch.Tensor) and label.numel() and \
                int(label.max()) >= self.num_classes:
            bad = bad_label_values(
                torch.unique(label).tolist(), self.num_classes,
                self.ignore_index)
            if bad:
                raise DataSampleError(
                    f'{where}: label values {bad} are outside the '
                    f'{self.num_classes} classes (allowed: 0..'
                    f'{self.num_classes - 1} and the ignore index '
                    f'{self.ignore_index}); check the data with '
                    'tools/misc/check_dataset.py')
        return out

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.pipeline!r})'


def guard_dataset(dataset) -> bool:
    """Wrap the pipeline of an mmseg dataset (also inside
    ``ConcatDataset`` / ``RepeatDataset`` wrappers) in
    :class:`CheckedPipeline`, in place.

    Args:
        dataset: A dataset built by MMEngine.

    Returns:
        bool: Whether a segmentation dataset was found and guarded.
    """
    guarded = False
    for ds in iter_wrapped_datasets(dataset):
        classes = (getattr(ds, 'metainfo', None) or {}).get('classes')
        pipeline = getattr(ds, 'pipeline', None)
        if is_wrapper(ds) or not classes or pipeline is None or \
                isinstance(pipeline, CheckedPipeline):
            continue
        ds.pipeline = CheckedPipeline(pipeline, len(classes),
                                      getattr(ds, 'ignore_index', 255))
        guarded = True
    return guarded
