# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Where the prediction of each image is.

A prediction mirrors its image's place under the dataset's image folder:
``PRED_DIR/<img_path relative to data_prefix.img_path, minus img_suffix>``
followed by a suffix (``.png`` by default), which is what
``tools/test.py --out DIR`` writes. Flat folders (every file directly in
``PRED_DIR``) are found too.
"""
import os.path as osp
from collections import Counter
from typing import Dict, Sequence

from .errors import EvaluationInputError


def prediction_stem(img_path: str, img_prefix: str, img_suffix: str) -> str:
    """An image's path relative to the image folder, minus ``img_suffix``.

    Args:
        img_path (str): The image's path (``data_list`` entry).
        img_prefix (str): The dataset's image folder
            (``data_prefix['img_path']``, joined with ``data_root``).
        img_suffix (str): The dataset's ``img_suffix``.

    Returns:
        str: E.g. ``'lindau/lindau_000001_000019'`` for
        ``'.../leftImg8bit/val/lindau/lindau_000001_000019_leftImg8bit.png'``
        (prefix ``'.../leftImg8bit/val'``, suffix ``'_leftImg8bit.png'``).
    """
    rel = osp.relpath(img_path, img_prefix) if img_prefix else img_path
    if img_suffix and rel.endswith(img_suffix):
        return rel[:-len(img_suffix)]
    return osp.splitext(rel)[0]


def find_prediction(pred_dir: str, stem: str, suffix: str,
                    stem_counts: Dict[str, int]) -> str:
    """The prediction file of one image.

    ``PRED_DIR/<stem><suffix>`` first, then ``PRED_DIR/<basename of
    stem><suffix>`` (a flat folder). The flat name is refused when two
    images of the dataset share it, as it could not tell them apart.

    Args:
        pred_dir (str): The predictions' folder.
        stem (str): See :func:`prediction_stem`.
        suffix (str): What follows the stem in a prediction's file name.
        stem_counts (dict[str, int]): How many images of the dataset have
            each flat name (see :func:`flat_name_counts`).

    Returns:
        str: The prediction's path.

    Raises:
        EvaluationInputError: Neither file exists, or only an ambiguous flat
            one does.
    """
    nested = osp.join(pred_dir, stem + suffix)
    if osp.isfile(nested):
        return nested
    flat_name = osp.basename(stem) + suffix
    flat = osp.join(pred_dir, flat_name)
    if flat != nested and osp.isfile(flat):
        if stem_counts.get(flat_name, 0) > 1:
            raise EvaluationInputError(
                f"prediction '{nested}' does not exist, and the flat file "
                f"'{flat}' is ambiguous ({stem_counts[flat_name]} images "
                'share its name); keep the sub-folders of the image folder')
        return flat
    also = f" (nor '{flat}')" if flat != nested else ''
    raise EvaluationInputError(f"prediction '{nested}'{also} does not exist")


def flat_name_counts(stems: Sequence[str], suffix: str) -> Dict[str, int]:
    """How many stems share each flat file name ``basename(stem) + suffix``.
    """
    return dict(Counter(osp.basename(s) + suffix for s in stems))
