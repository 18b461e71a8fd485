# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""What ``tools/test.py`` writes besides the log: the metrics as JSON, one
trainId PNG per image (``--out``) and the Cityscapes server's labelId PNGs
(``--format-cityscapes``).

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
import json
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import numpy as np
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.utils import mkdir_or_exist
from PIL import Image

from ..datasets.wrappers import iter_wrapped_datasets
from .parser import ToolError

#: The stable name of the metrics file, in the run's timestamp folder.
METRICS_FILE = 'metrics.json'


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


def prediction_relpath(img_path: str,
                       prefixes: Sequence[Tuple[str, str]]) -> str:
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
    mkdir_or_exist(osp.dirname(osp.abspath(filename)))
    tmp = f'{filename}.tmp.png'
    Image.fromarray(label.astype(np.uint8), mode='L').save(tmp)
    os.replace(tmp, filename)


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
    mkdir_or_exist(osp.dirname(osp.abspath(filename)))
    record = dict(metrics=_jsonable(dict(metrics)), **_jsonable(info))
    tmp = f'{filename}.tmp'
    with open(tmp, 'w') as f:
        json.dump(record, f, indent=2)
        f.write('\n')
    os.replace(tmp, filename)
    return filename
