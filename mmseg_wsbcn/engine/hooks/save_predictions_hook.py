# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""``tools/test.py --out``: one trainId PNG per test image.

``--out DIR`` layout (read by ``tools/analysis/eval_predictions.py``)::

    DIR/<image path relative to the dataset's img prefix, minus img_suffix>.png

e.g. ``leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png``
gives ``DIR/frankfurt/frankfurt_000000_000294.png``. Each file is a
single-channel ``uint8`` PNG of the model's class indices (Cityscapes:
trainIds 0-18) at the size of the original image and label. Nothing is
shifted: for a ``reduce_zero_label`` dataset (ADE20K) index ``i`` is the
dataset's label ``i + 1`` (its label 0, "other", is never predicted), so
score such files against labels reduced the way the dataset reduces them.
"""
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import numpy as np
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.utils import mkdir_or_exist
from PIL import Image

from ...utils.atomic import atomic_path
from ...utils.dataset_wrappers import iter_wrapped_datasets
from ...utils.errors import ToolError


def image_prefixes(dataset) -> List[Tuple[str, str]]:
    """``(img prefix, img_suffix)`` of a built dataset and of every dataset it
    wraps; the prefix is the dataset's ``data_prefix['img_path']`` (already
    joined with ``data_root``)."""
    found = []
    for ds in iter_wrapped_datasets(dataset):
        prefix = (getattr(ds, 'data_prefix', None) or {}).get('img_path')
        if prefix is not None:
            found.append((prefix, getattr(ds, 'img_suffix', '') or ''))
    return found


def prediction_relpath(img_path: str, prefixes: Sequence[Tuple[str,
                                                               str]]) -> str:
    """Where ``--out`` writes the prediction of ``img_path``, relative to the
    output folder: the image path relative to the longest matching img
    prefix, minus ``img_suffix`` (else minus its extension), plus ``.png``.

    An image outside every prefix gets its base name.

    Args:
        img_path (str): The data sample's ``img_path``.
        prefixes (list[tuple]): From :func:`image_prefixes`.

    Returns:
        str: E.g. ``frankfurt/frankfurt_000000_000294.png``.
    """
    path = osp.abspath(img_path)
    best = None
    for prefix, suffix in prefixes:
        root = osp.abspath(prefix) if prefix else os.getcwd()
        if path.startswith(root.rstrip(os.sep) + os.sep) and (
                best is None or len(root) > len(best[0])):
            best = (root, suffix)
    if best is None:
        rel, suffix = osp.basename(path), ''
    else:
        rel, suffix = osp.relpath(path, best[0]), best[1]
    if suffix and rel.endswith(suffix):
        rel = rel[:-len(suffix)]
    else:
        rel = osp.splitext(rel)[0]
    return rel + '.png'


def write_label_png(label: np.ndarray, filename: str) -> None:
    """Write a 2-D array of class indices as a single-channel ``uint8`` PNG
    (atomically: written next to it, then renamed)."""
    if label.ndim != 2:
        raise ValueError(f'expected a 2-D label map, got {label.shape}')
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError('class indices outside 0-255 do not fit a uint8 '
                         f'PNG: {label.min()}..{label.max()}')
    with atomic_path(filename) as tmp:
        Image.fromarray(label.astype(np.uint8), mode='L').save(tmp)


@HOOKS.register_module()
class SavePredictionsHook(Hook):
    """``--out``: write each test image's prediction as a trainId PNG at
    ``out_dir/<relative image path minus img_suffix>.png`` (see the module
    docstring). Every rank writes the images it predicted.

    Args:
        out_dir (str): The output folder.
    """
    priority = 'NORMAL'

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.prefixes: List[Tuple[str, str]] = []
        self.written = 0

    def before_test(self, runner) -> None:
        dataset = runner.test_dataloader.dataset
        self.prefixes = image_prefixes(dataset)
        classes = (getattr(dataset, 'metainfo', None) or {}).get('classes')
        if classes is not None and len(classes) > 256:
            raise ToolError(f'--out writes uint8 PNGs; the dataset has '
                            f'{len(classes)} classes')
        mkdir_or_exist(self.out_dir)

    def after_test_iter(self,
                        runner,
                        batch_idx: int,
                        data_batch=None,
                        outputs: Optional[Sequence] = None) -> None:
        for sample in outputs or []:
            pred = sample.pred_sem_seg.data.squeeze(0).cpu().numpy()
            rel = prediction_relpath(sample.img_path, self.prefixes)
            write_label_png(pred, osp.join(self.out_dir, rel))
            self.written += 1
