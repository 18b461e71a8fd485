# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The ground truth of a config's dataset, as mmseg's own pipeline sees it.

The dataset is mmseg's real one, built from the config through
``mmseg.registry.DATASETS``: its ``data_list`` gives each image's
``img_path``, ``seg_map_path``, ``reduce_zero_label``, ``label_map`` and
``seg_fields``, its ``metainfo`` the classes. Labels are read by mmseg's
``LoadAnnotations`` transform (the one of the dataset's pipeline, so its
decoding backend and ``backend_args`` apply) at their original size: no
``Resize`` or any other transform of the pipeline runs.
"""
import copy
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope
from mmseg.datasets import BaseSegDataset
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.registry import DATASETS, TRANSFORMS

from .errors import EvaluationInputError


def split_dataset_cfg(cfg: Config, split: str, config: str) -> ConfigDict:
    """A loaded config's ``<split>_dataloader.dataset``, with its local
    ``data_root`` checked.

    Args:
        cfg (Config): The config.
        split (str): ``'test'``, ``'val'`` or ``'train'``.
        config (str): The config's file, for the messages.

    Returns:
        ConfigDict: The dataset config.

    Raises:
        EvaluationInputError: The config has no such dataloader, or its
            ``data_root`` is a local folder that does not exist.
    """
    where = f'{split}_dataloader.dataset'
    dataset_cfg = (cfg.get(f'{split}_dataloader') or {}).get('dataset')
    if dataset_cfg is None:
        raise EvaluationInputError(f"config '{config}' has no {where}")
    root = dataset_cfg.get('data_root')
    if root and '://' not in str(root) and not osp.isdir(root):
        raise EvaluationInputError(
            f"data folder '{root}' ({where}.data_root) does not exist; "
            f'point the config at it, e.g. --cfg-options {where}.data_root='
            'PATH')
    return dataset_cfg


def build_seg_dataset(dataset_cfg: dict) -> BaseSegDataset:
    """Build the segmentation dataset of a config, without its pipeline.

    Args:
        dataset_cfg (dict): A dataloader's ``dataset`` config (e.g.
            ``cfg.test_dataloader.dataset``).

    Returns:
        BaseSegDataset: The dataset with its data list loaded.

    Raises:
        EvaluationInputError: The dataset cannot be built (missing folder
            or ``ann_file``, unknown type), is not a ``BaseSegDataset``
            (e.g. a ``ConcatDataset`` wrapper) or lists no image.
    """
    init_default_scope('mmseg')
    cfg = copy.deepcopy(dataset_cfg)
    ds_type = cfg.get('type')
    cls = DATASETS.get(ds_type) if isinstance(ds_type, str) else ds_type
    if not (isinstance(cls, type) and issubclass(cls, BaseSegDataset)):
        what = 'is not registered' if cls is None else 'is not an mmseg ' \
            'BaseSegDataset (wrapped datasets are not supported)'
        raise EvaluationInputError(
            f"the dataset type '{ds_type}' {what}; point the config at a "
            'segmentation dataset')
    cfg['pipeline'] = []  # images are never loaded; labels as below
    cfg['lazy_init'] = False
    cfg['serialize_data'] = False  # MMEngine cannot serialize an empty list
    try:
        dataset = DATASETS.build(cfg)
    except OSError as e:  # missing folder or ann_file
        raise EvaluationInputError(
            f"cannot build the dataset '{ds_type}': {e}") from e
    if len(dataset) == 0:
        raise EvaluationInputError(
            f"the dataset '{cfg.get('type')}' lists no image under "
            f"'{dataset.data_prefix.get('img_path')}'")
    return dataset


def data_infos(dataset: BaseSegDataset) -> List[dict]:
    """The dataset's ``data_list`` entries (``img_path``, ``seg_map_path``,
    ``reduce_zero_label``, ``label_map``, ``seg_fields``).

    ``dataset.data_list`` itself is emptied when MMEngine serializes it;
    ``get_data_info`` reads the entries back either way.
    """
    return [dataset.get_data_info(i) for i in range(len(dataset))]


def build_label_loader(pipeline: Optional[Sequence[dict]]) -> LoadAnnotations:
    """The ``LoadAnnotations`` transform of a dataset pipeline.

    Args:
        pipeline (Sequence[dict], optional): The dataset's pipeline config.

    Returns:
        LoadAnnotations: Built from the pipeline's ``LoadAnnotations`` entry
        (keeping ``imdecode_backend`` and ``backend_args``), or mmseg's
        default one if the pipeline has none.
    """
    init_default_scope('mmseg')
    for step in pipeline or []:
        if isinstance(step, dict) and step.get('type') in (
                'LoadAnnotations', 'mmseg.LoadAnnotations', LoadAnnotations):
            return TRANSFORMS.build(ConfigDict(step))
    return LoadAnnotations()


def load_label(data_info: dict, loader: LoadAnnotations) -> np.ndarray:
    """Load one image's label as mmseg's pipeline does, at its own size.

    Args:
        data_info (dict): One ``data_list`` entry.
        loader (LoadAnnotations): See :func:`build_label_loader`.

    Returns:
        np.ndarray: The label map, shape (H, W), uint8, with
        ``reduce_zero_label`` and ``label_map`` applied.

    Raises:
        EvaluationInputError: The image has no label file or the file cannot
            be read.
    """
    path = data_info.get('seg_map_path')
    if not path:
        raise EvaluationInputError(
            f"image '{data_info.get('img_path')}' has no label file "
            '(seg_map_path); a split without ground truth cannot be scored')
    results = copy.deepcopy(data_info)
    results['seg_fields'] = []
    try:
        results = loader(results)
    except (OSError, ValueError, AttributeError) as e:
        raise EvaluationInputError(
            f"cannot read label file '{path}': {e}") from e
    return results['gt_seg_map']
