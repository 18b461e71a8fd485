# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""What ``tools/test.py`` writes besides the log and the ``--out`` PNGs
(:class:`~mmseg_wsbcn.engine.hooks.SavePredictionsHook`): the metrics as
JSON, and the Cityscapes server's labelId PNGs (``--format-cityscapes``).
"""
import json
import os
import os.path as osp
from typing import Optional

import numpy as np
from mmengine.config import Config

from ..utils.atomic import atomic_open
from ..utils.errors import ToolError

#: The stable name of the metrics file, in the run's timestamp folder.
METRICS_FILE = 'metrics.json'


def add_metric(cfg: Config, metric: dict) -> None:
    """Append ``metric`` to ``cfg.test_evaluator`` (a metric or a list)."""
    evaluator = cfg.test_evaluator
    if isinstance(evaluator, dict) and 'metrics' in evaluator:
        metrics = evaluator['metrics']
        evaluator['metrics'] = (list(metrics) if isinstance(
            metrics, (list, tuple)) else [metrics]) + [metric]
    elif isinstance(evaluator, (list, tuple)):
        cfg.test_evaluator = list(evaluator) + [metric]
    else:
        cfg.test_evaluator = [evaluator, metric]


def _dataset_classes(dataset_cfg: dict) -> Optional[tuple]:
    """The classes a dataset config will have, or ``None`` if unknown."""
    metainfo = dataset_cfg.get('metainfo') or {}
    if metainfo.get('classes') is not None:
        return tuple(metainfo['classes'])
    from mmseg.registry import DATASETS
    try:
        cls = DATASETS.get(dataset_cfg.get('type'))
    except Exception:  # a type from another scope; not ours to judge
        return None
    classes = getattr(cls, 'METAINFO', {}).get('classes')
    return None if classes is None else tuple(classes)


def cityscapes_format_metric(cfg: Config, out_dir: str) -> dict:
    """``--format-cityscapes DIR``: the metric config that writes the
    Cityscapes server's labelId PNGs (mmseg's ``CityscapesMetric`` with
    ``format_only=True``; files ``DIR/<city>_<seq>_<frame>_leftImg8bit.png``,
    which cityscapesScripts' ``getPrediction`` finds by
    ``<city>_<seq>_<frame>*.png``).

    Raises:
        ToolError: cityscapesScripts is not installed, or the test set does
            not have the 19 Cityscapes classes.
    """
    try:
        import cityscapesscripts.helpers.labels  # noqa: F401
    except ImportError as e:
        raise ToolError(
            '--format-cityscapes needs cityscapesScripts, an optional extra: '
            "pip install -c requirements/constraints.txt -e '.[cityscapes]' "
            f'(or EXTRAS=cityscapes bash tools/setup_env.sh); {e}') from e
    from mmseg.datasets import CityscapesDataset
    dataset_cfg = cfg.test_dataloader.dataset
    classes = _dataset_classes(dataset_cfg)
    expected = tuple(CityscapesDataset.METAINFO['classes'])
    if classes is not None and classes != expected:
        raise ToolError(
            '--format-cityscapes writes Cityscapes labelIds and needs a test '
            f'set with the {len(expected)} Cityscapes classes; '
            f"'{dataset_cfg.get('type')}' has {len(classes)} classes")
    return dict(
        type='CityscapesMetric',
        output_dir=out_dir,
        format_only=True,
        keep_results=True)


def check_output_dirs(dirs: dict) -> None:
    """Refuse two output options that name the same folder or one inside
    the other (cityscapesScripts would find two predictions per frame).

    Args:
        dirs (dict): ``{'--out': path or None, ...}``.
    """
    given = [(opt, osp.realpath(d)) for opt, d in dirs.items() if d]
    for i, (opt_a, a) in enumerate(given):
        for opt_b, b in given[i + 1:]:
            if a == b or a.startswith(b + os.sep) or b.startswith(a + os.sep):
                raise ToolError(
                    f'{opt_a} and {opt_b} must be separate folders, not '
                    f"'{a}' and '{b}'")


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.floating) and value.dtype.itemsize < 8:
        return float(str(value))  # float32 2.28, not 2.2799999713897705
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, 'tolist'):  # torch tensors
        return value.tolist()
    return value


def write_metrics_json(filename: str, metrics: dict, **info) -> str:
    """Write ``{"metrics": {...}, **info}`` as JSON (atomically) and return
    the file name."""
    record = dict(metrics=_jsonable(dict(metrics)), **_jsonable(info))
    with atomic_open(filename) as f:
        json.dump(record, f, indent=2)
        f.write('\n')
    return filename
