# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Name the sample a run fails on.

A corrupt image or a label value outside the classes otherwise surfaces
deep inside a library: mmcv's ``LoadImageFromFile`` asserts ``failed to
load image``, and a label 40 in a 19-class set reaches ``cross_entropy`` as
``IndexError: Target 40 is out of bounds``, with no file named.

:class:`CheckedPipeline` is a registered wrapper transform (like mmcv's
``Compose``) around a dataset's pipeline; :func:`guard_dataset` wraps the
pipeline of a built dataset in it, and
:class:`~mmseg_wsbcn.engine.SafeCheckpointRunner` does so for every
dataloader it builds, before the loader starts its workers. A sample that
fails to load, or whose label holds values outside the classes, raises
:class:`~mmseg_wsbcn.utils.sample_checks.DataSampleError` naming the sample
index and the files; so does a label whose size differs from its image's
(compared as loaded, before any resize or crop; otherwise the batch fails
to collate with ``stack expects each tensor to be equal size``). Only the
cheap part runs: the pipeline's own decoding, the two sizes, and one
``max`` (then ``unique`` when it is too large) of each label map.
``tools/misc/check_dataset.py`` checks a whole dataset completely.
"""
from typing import Callable, List, Optional, Union

import torch
from mmcv.transforms import BaseTransform, Compose
from mmengine.registry import TRANSFORMS

from ...utils.dataset_wrappers import is_wrapper, iter_wrapped_datasets
from ...utils.errors import first_line
from ...utils.sample_checks import (DataSampleError, bad_label_values,
                                    size_mismatch)


@TRANSFORMS.register_module()
class CheckedPipeline(BaseTransform):
    """A dataset pipeline that names the sample it fails on.

    Args:
        transforms (callable or list[dict]): The pipeline: a built one
            (``Compose``) or the transform configs.
        num_classes (int): Number of classes.
        ignore_index (int): The ignored label value. Defaults to 255.

    Raises (when called):
        DataSampleError: The pipeline failed on the sample (e.g. an image
            that does not decode), the label as loaded differs in size from
            the decoded image, or the packed label holds a value that is
            neither a class nor the ignore index.
    """

    def __init__(self,
                 transforms: Union[Callable, List[dict]],
                 num_classes: int,
                 ignore_index: int = 255) -> None:
        self.pipeline = transforms if callable(transforms) else \
            Compose(transforms)
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def _where(self, results: dict) -> str:
        where = f"sample {results.get('sample_idx', '?')}: image " \
            f"'{results.get('img_path')}'"
        if results.get('seg_map_path'):
            where += f", label '{results['seg_map_path']}'"
        return where

    def _steps(self) -> List[Callable]:
        """The pipeline's transforms, to run one by one as ``Compose``
        does; the pipeline as one step when it is another callable."""
        steps = getattr(self.pipeline, 'transforms', None)
        return list(steps) if isinstance(steps, (list, tuple)) \
            else [self.pipeline]

    def _run(self, results: dict, where: str) -> Optional[dict]:
        """Run the pipeline; stop at the first step after which the loaded
        label and the decoded image differ in size.

        The label's size is taken when it appears (``gt_seg_map``, set by
        ``LoadAnnotations``), the image's is its decoded size
        (``ori_shape``, set by ``LoadImageFromFile``), so the sizes are
        compared before any resize or crop changes them, whatever the order
        of the steps.
        """
        label_hw = None
        checked = False
        for step in self._steps():
            try:
                results = step(results)
            except Exception as e:
                raise DataSampleError(
                    f'{where}: could not be loaded ({type(e).__name__}: '
                    f'{first_line(e)}); check the data with '
                    'tools/misc/check_dataset.py') from e
            if results is None:
                return None
            if checked or not isinstance(results, dict):
                continue
            label = results.get('gt_seg_map')
            if label_hw is None and label is not None:
                label_hw = label.shape[:2]
            image_hw = results.get('ori_shape')
            if label_hw is not None and image_hw is not None:
                checked = True
                mismatch = size_mismatch(image_hw, label_hw)
                if mismatch:
                    raise DataSampleError(
                        f"{where}: the label's size differs from the "
                        f"image's ({mismatch}, HxW); check the data with "
                        'tools/misc/check_dataset.py')
        return results

    def transform(self, results: dict) -> Optional[dict]:
        where = self._where(results)
        out = self._run(results, where)
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
