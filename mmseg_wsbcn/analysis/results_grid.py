# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The paper-style results table of several runs: norm x images per GPU x
dataset.

Each work dir is one run of ``tools/train.py`` (and optionally
``tools/test.py``). From it:

- the config is the one MMEngine dumped into the work dir
  (:func:`~mmseg_wsbcn.analysis.config_name`), read without running its
  imports;
- the metric is the newest ``metrics.json`` that ``tools/test.py`` wrote
  (``<work_dir>/<timestamp>/metrics.json``), else the last validation line
  of the training log (``vis_data/scalars.json``, see
  :mod:`.curves`);
- the row is the norm the model uses (:func:`norm_label`: norm layer, the
  conv layer's WS/centring, frozen BN, PreciseBN), the column the dataset
  (:func:`dataset_label`) and the images per GPU
  (``train_dataloader.batch_size``).

:func:`results_grid` collects the runs, :func:`grid_markdown` prints the
table and :func:`plot_grid` draws it (one group of bars per dataset and
images per GPU, one bar per norm) without pyplot.
"""
import json
import os
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config

from .curves import TIMESTAMP_RE, config_name, load_run
from .errors import AnalysisError

#: The label of each norm layer type, as the paper's tables name them.
NORM_LABELS = {
    'BN': 'BN',
    'BN2d': 'BN',
    'SyncBN': 'SyncBN',
    'GN': 'GN',
    'BCN': 'BCN',
    'FRN': 'FRN',
    'EvoNormS0': 'EvoNorm-S0',
    'EvoNormB0': 'EvoNorm-B0',
    'MABN': 'MABN',
}
#: What a conv layer type adds to the label.
CONV_SUFFIXES = {'WSConv2d': '+WS', 'ConvWS': '+WS', 'CenConv2d': '+Cen'}
#: The label of each dataset type.
DATASET_LABELS = {
    'CityscapesDataset': 'Cityscapes',
    'PascalVOCDataset': 'VOC 2012',
    'ADE20KDataset': 'ADE20K',
}


@dataclass(frozen=True)
class RunResult:
    """One run's place in the grid and its metrics.

    Attributes:
        work_dir (str): The run.
        config (str): The config name.
        norm (str): The row, e.g. ``'BCN+WS'``.
        dataset (str): The dataset, e.g. ``'Cityscapes'``.
        images_per_gpu (int): ``train_dataloader.batch_size``.
        metrics (dict): The metrics, e.g. ``{'mIoU': 24.8, 'aAcc': ...}``.
        source (str): Where the metrics come from (a file and, for the
            training log, the iteration).
    """
    work_dir: str
    config: str
    norm: str
    dataset: str
    images_per_gpu: int
    metrics: Dict[str, float]
    source: str


def _type_name(value) -> Optional[str]:
    if isinstance(value, dict):
        value = value.get('type')
    return value if isinstance(value, str) or value is None \
        else getattr(value, '__name__', str(value))


def norm_label(cfg: Config) -> str:
    """The row of a run: its backbone's norm layer, ``+WS`` / ``+Cen`` for
    its conv layer, ``(batch)`` for BCN with batch statistics, ``FrozenBN``
    for a frozen BN backbone and ``+PreciseBN`` when the hook runs.

    Args:
        cfg (Config): The run's config.

    Returns:
        str: E.g. ``'BCN+WS'``, ``'GN+WS'``, ``'BN+PreciseBN'``.
    """
    model = cfg.model
    model = model.get('segmentor', model)  # FoldedSegmentor
    backbone = model.get('backbone', {})
    norm_cfg = backbone.get('norm_cfg') or {}
    norm = _type_name(norm_cfg) or 'BN'
    label = NORM_LABELS.get(norm, norm)
    if norm == 'BCN' and not norm_cfg.get('estimate', True):
        label = 'BCN(batch)'
    if label == 'BN' and backbone.get('norm_eval') \
            and norm_cfg.get('requires_grad', True) is False:
        label = 'FrozenBN'
    conv = _type_name(backbone.get('conv_cfg'))
    label += CONV_SUFFIXES.get(conv, '')
    hooks = [_type_name(h) for h in cfg.get('custom_hooks') or []]
    if 'PreciseBNHook' in hooks:
        label += '+PreciseBN'
    return label


def dataset_label(cfg: Config) -> str:
    """The dataset of a run's training set: mmseg's dataset type, through
    ``ConcatDataset`` / ``RepeatDataset`` wrappers (VOC + SBD aug is a
    ``ConcatDataset`` of two ``PascalVOCDataset``)."""
    dataset = cfg.train_dataloader.dataset
    while dataset.get('datasets') or dataset.get('dataset'):
        dataset = (dataset.get('datasets') or [dataset.get('dataset')])[0]
    kind = dataset.get('type', '?')
    return DATASET_LABELS.get(kind, kind.replace('Dataset', ''))


def _newest_metrics_json(work_dir: str) -> Optional[str]:
    runs = sorted(d for d in os.listdir(work_dir) if TIMESTAMP_RE.match(d))
    for run in reversed(runs):
        path = osp.join(work_dir, run, 'metrics.json')
        if osp.isfile(path):
            return path
    return None


def read_metrics(work_dir: str) -> Tuple[Dict[str, float], str]:
    """The run's final metrics and where they come from (see the module
    docstring).

    Raises:
        AnalysisError: The run has neither a ``metrics.json`` nor a
            validation line in its training log.
    """
    path = _newest_metrics_json(work_dir)
    if path is not None:
        with open(path) as f:
            record = json.load(f)
        metrics = record.get('metrics', record)
        return {k: float(v)
                for k, v in metrics.items()
                if isinstance(v, (int, float))}, path
    run = load_run(work_dir)
    validation = [p for p in run.points if not p.train and 'mIoU' in p.record]
    if not validation:
        raise AnalysisError(
            f"work dir '{work_dir}' has no metrics.json (tools/test.py) "
            'and no validation line in its training log; train it to a '
            'validation, or test it with tools/test.py CONFIG CHECKPOINT '
            f'--work-dir {work_dir}')
    last = validation[-1]
    return ({
        k: float(v)
        for k, v in last.record.items()
        if k not in ('step', 'iter', 'epoch') and isinstance(v, (int, float))
    }, f'{run.files[-1]} (validation at iteration {last.iteration})')


def read_run(work_dir: str) -> RunResult:
    """One work dir as a :class:`RunResult`.

    Raises:
        AnalysisError: The work dir, its dumped config or its metrics are
            missing.
    """
    if not osp.isdir(work_dir):
        raise AnalysisError(f"work dir '{work_dir}' does not exist")
    name = config_name(work_dir)
    config = osp.join(work_dir, f'{name}.py')
    if not osp.isfile(config):
        raise AnalysisError(
            f"work dir '{work_dir}' holds no config dumped by "
            'tools/train.py (<work_dir>/<config name>.py); is it a '
            'training work dir?')
    cfg = Config.fromfile(
        config, import_custom_modules=False, format_python_code=False)
    metrics, source = read_metrics(work_dir)
    return RunResult(work_dir, name, norm_label(cfg), dataset_label(cfg),
                     int(cfg.train_dataloader.batch_size), metrics, source)


def results_grid(work_dirs: Sequence[str]) -> List[RunResult]:
    """:func:`read_run` of each work dir, in the order given.

    Raises:
        AnalysisError: A work dir cannot be read, or two runs fall in the
            same cell.
    """
    results = [read_run(w) for w in work_dirs]
    seen: Dict[Tuple[str, str, int], str] = {}
    for r in results:
        cell = (r.norm, r.dataset, r.images_per_gpu)
        if cell in seen:
            raise AnalysisError(
                f"'{seen[cell]}' and '{r.work_dir}' are both {r.norm} on "
                f'{r.dataset} at {r.images_per_gpu} images per GPU; give '
                'one run per cell')
        seen[cell] = r.work_dir
    return results


def _columns(results: Sequence[RunResult]) -> List[Tuple[str, int]]:
    return sorted({(r.dataset, r.images_per_gpu)
                   for r in results},
                  key=lambda c: (c[0], -c[1]))


def _rows(results: Sequence[RunResult]) -> List[str]:
    rows: List[str] = []
    for r in results:
        if r.norm not in rows:
            rows.append(r.norm)
    return rows


def grid_markdown(results: Sequence[RunResult], metric: str = 'mIoU') -> str:
    """The grid as a markdown table: one row per norm (in the order of the
    runs), one column per dataset and images per GPU, ``metric`` in each
    cell (``-`` where no run is).

    Raises:
        AnalysisError: A run did not record ``metric``.
    """
    for r in results:
        if metric not in r.metrics:
            raise AnalysisError(
                f"'{r.work_dir}' has no {metric} ({r.source}); it has "
                f"{', '.join(sorted(r.metrics)) or 'no metrics'}")
    columns = _columns(results)
    cells = {(r.norm, r.dataset, r.images_per_gpu): r.metrics[metric]
             for r in results}
    head = ['norm'] + [f'{d}, {n} img/GPU' for d, n in columns]
    lines = ['| ' + ' | '.join(head) + ' |',
             '|' + '---|' * len(head)]
    for norm in _rows(results):
        values = [cells.get((norm, d, n)) for d, n in columns]
        lines.append('| ' + ' | '.join(
            [norm] + ['-' if v is None else f'{v:.2f}'
                      for v in values]) + ' |')
    return '\n'.join(lines)


def plot_grid(results: Sequence[RunResult], metric: str = 'mIoU'):
    """The grid as grouped bars: one group per dataset and images per GPU,
    one bar per norm, its value written on it.

    Returns:
        matplotlib.figure.Figure: The figure (Agg canvas, no pyplot).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns, rows = _columns(results), _rows(results)
    cells = {(r.norm, r.dataset, r.images_per_gpu): r.metrics[metric]
             for r in results}
    fig = Figure(figsize=(max(6, 2.8 + 0.55 * len(rows) * len(columns)),
                          4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(rows), 1)
    for i, norm in enumerate(rows):
        xs, ys = [], []
        for j, (dataset, n) in enumerate(columns):
            value = cells.get((norm, dataset, n))
            if value is not None:
                xs.append(j - 0.4 + width * (i + 0.5))
                ys.append(value)
        ax.bar(xs, ys, width, label=norm)
        for x, y in zip(xs, ys):
            ax.text(x, y, f'{y:.1f}', ha='center', va='bottom', fontsize=7)
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels([f'{d}\n{n} img/GPU' for d, n in columns])
    ax.set_ylabel(metric)
    ax.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    return fig
