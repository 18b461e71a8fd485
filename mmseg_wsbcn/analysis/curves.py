# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Training curves (loss, mIoU, ...) of one or more MMEngine work dirs on
one figure.

MMEngine's ``LocalVisBackend`` writes, for every run of ``tools/train.py``,
``<work_dir>/<timestamp>/vis_data/scalars.json``: one JSON object a line,
training lines (``loss``, ``lr``, ``decode.loss_ce``, ..., ``iter``,
``step``) every ``logger.interval`` iterations and a validation line
(``aAcc``, ``mIoU``, ``mAcc``, ..., ``step``) after each validation.

The functions here are pure (no global matplotlib state: figures are
``matplotlib.figure.Figure`` objects rendered by the Agg canvas, so no
display is needed):

- :func:`scalars_files`, :func:`read_scalars`: the files and their records;
- :func:`load_run`: one work dir as a :class:`RunLog` (several timestamp
  runs of a resumed training joined, see :func:`merge_runs`);
- :func:`load_runs`: several work dirs, labelled by config name;
- :func:`plot_curves`: one panel per key, one line per run;
- :func:`save_figure`: write the figure (PNG, or any format matplotlib's
  Agg canvas knows from the file extension).
"""
import json
import os
import os.path as osp
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from .errors import AnalysisError

#: MMEngine names each run's log folder ``time.strftime('%Y%m%d_%H%M%S')``.
TIMESTAMP_RE = re.compile(r'^\d{8}_\d{6}$')

#: Record keys that locate a line rather than measure anything.
POSITION_KEYS = ('step', 'iter', 'epoch')


@dataclass(frozen=True)
class Point:
    """One record of ``scalars.json`` placed on the iteration axis.

    Attributes:
        iteration (int): The training iteration the record belongs to
            (see :func:`place_records`).
        record (dict): The JSON object as written by MMEngine.
        train (bool): A training line (it carries ``iter``) rather than a
            validation line.
    """
    iteration: int
    record: dict
    train: bool


@dataclass
class RunLog:
    """The records of one work dir.

    Attributes:
        work_dir (str): The work dir as given.
        label (str): Its legend label (by default the config name).
        files (list[str]): Its ``scalars.json`` files, oldest run first.
        points (list[Point]): The records of all its runs, joined by
            :func:`merge_runs`, in iteration order.
    """
    work_dir: str
    label: str
    files: List[str]
    points: List[Point]

    def keys(self) -> List[str]:
        """The numeric keys that occur in the run, sorted."""
        return sorted({
            k
            for p in self.points
            for k, v in p.record.items()
            if k not in POSITION_KEYS and _is_number(v)
        })

    def series(self, key: str) -> Tuple[List[int], List[float]]:
        """``(iterations, values)`` of ``key``.

        A key logged in training lines (``loss``, ``lr``, ...) is taken from
        those only; a key only in validation lines (``mIoU``, ``aAcc``, ...)
        from those. Both lists are empty if the run never logged ``key``.
        """
        with_key = [p for p in self.points if _is_number(p.record.get(key))]
        if any(p.train for p in with_key):
            with_key = [p for p in with_key if p.train]
        return ([p.iteration
                 for p in with_key], [float(p.record[key]) for p in with_key])

    def is_validation_key(self, key: str) -> bool:
        """Whether ``key`` comes from validation lines only."""
        with_key = [p for p in self.points if _is_number(p.record.get(key))]
        return bool(with_key) and not any(p.train for p in with_key)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def scalars_files(work_dir: str) -> List[str]:
    """The ``<timestamp>/vis_data/scalars.json`` files of ``work_dir``,
    oldest first (timestamps sort chronologically).

    Timestamp folders without the file (a ``tools/test.py`` run, a training
    that stopped before its first log line) are skipped.

    Raises:
        AnalysisError: ``work_dir`` is not a folder or has no such file.
    """
    if not osp.isdir(work_dir):
        raise AnalysisError(f"work dir '{work_dir}' does not exist")
    files = [
        osp.join(work_dir, name, 'vis_data', 'scalars.json')
        for name in sorted(os.listdir(work_dir)) if TIMESTAMP_RE.match(name)
    ]
    files = [f for f in files if osp.isfile(f)]
    if not files:
        raise AnalysisError(
            f"work dir '{work_dir}' has no <timestamp>/vis_data/scalars.json "
            '(tools/train.py writes one per training run; pass the work dir '
            'itself, not a timestamp folder)')
    return files


def read_scalars(path: str) -> List[dict]:
    """The JSON records of one ``scalars.json``, in file order.

    A last line that is not valid JSON (a run killed while writing it) is
    dropped; an invalid line before it is an error.

    Raises:
        AnalysisError: A line before the last is not a JSON object.
    """
    with open(path) as f:
        lines = [(i, ln) for i, ln in enumerate(f, 1) if ln.strip()]
    records = []
    for n, (lineno, line) in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if n == len(lines) - 1:  # truncated by a kill: drop it
                break
            raise AnalysisError(
                f"'{path}' line {lineno} is not JSON ({e.msg})") from e
        if not isinstance(record, dict):
            raise AnalysisError(f"'{path}' line {lineno} is not a JSON object")
        records.append(record)
    return records


def place_records(records: Sequence[dict]) -> List[Point]:
    """Put the records of one run on the iteration axis.

    A training line is placed at its ``step`` (MMEngine writes the global
    iteration, ``iter``, there). A validation line is placed at its
    ``step``, which is the iteration when the logger hook has
    ``log_metric_by_epoch=False`` (mmseg's and this toolkit's schedules);
    when validation is logged by epoch instead (``log_metric_by_epoch=True``
    or an epoch-based loop), ``step`` is an epoch number behind the
    iterations already logged, and the line is placed at the last training
    iteration logged before it. Records without a numeric ``step`` are
    skipped.
    """
    points = []
    last_train = None
    for record in records:
        step = record.get('step')
        if not _is_number(step):
            continue
        step = int(step)
        train = 'iter' in record
        if train:
            last_train = step
        elif last_train is not None and step < last_train:
            step = last_train
        points.append(Point(step, record, train))
    return points


def merge_runs(runs: Sequence[Sequence[Point]]) -> List[Point]:
    """Join the runs of one work dir, oldest first.

    A resumed run continues the iteration count, so the runs are
    concatenated in timestamp order; where a later run starts at or before
    an iteration an earlier run already logged (resumed from an older
    checkpoint than the last logged iteration, or trained again from
    scratch into the same work dir), the later run's points replace the
    earlier ones from its first iteration on: every iteration shows the
    newest run that logged it.
    """
    merged: List[Point] = []
    for points in runs:
        if not points:
            continue
        first = min(p.iteration for p in points)
        merged = [p for p in merged if p.iteration < first]
        merged.extend(points)
    return merged


def config_name(work_dir: str) -> str:
    """The name of the config trained in ``work_dir``.

    MMEngine dumps the config into the work dir as ``<config name>.py``;
    with several (different configs trained into one work dir) the most
    recently written wins. Without one, the work dir's own name.
    """
    dumped = [
        osp.join(work_dir, f) for f in os.listdir(work_dir)
        if f.endswith('.py') and osp.isfile(osp.join(work_dir, f))
    ]
    if not dumped:
        return osp.basename(osp.normpath(osp.abspath(work_dir)))
    newest = max(dumped, key=lambda f: (osp.getmtime(f), f))
    return osp.splitext(osp.basename(newest))[0]


def load_run(work_dir: str, label: Optional[str] = None) -> RunLog:
    """Read all training runs of ``work_dir`` (see :func:`merge_runs`).

    Args:
        work_dir (str): An MMEngine work dir.
        label (str, optional): The legend label; the config name
            (:func:`config_name`) by default.

    Raises:
        AnalysisError: See :func:`scalars_files` and :func:`read_scalars`.
    """
    files = scalars_files(work_dir)
    points = merge_runs([place_records(read_scalars(f)) for f in files])
    return RunLog(work_dir,
                  config_name(work_dir) if label is None else label, files,
                  points)


def load_runs(work_dirs: Sequence[str],
              labels: Optional[Sequence[str]] = None) -> List[RunLog]:
    """:func:`load_run` for each work dir.

    Default labels are the config names; where two work dirs trained the
    same config, each label gets the work dir's name appended
    (``name (dir)``), or its path if the names collide too.

    Raises:
        AnalysisError: A work dir is bad, or ``labels`` does not give one
            label per work dir.
    """
    if labels is not None and len(labels) != len(work_dirs):
        raise AnalysisError(
            f'got {len(labels)} label(s) for {len(work_dirs)} work dir(s); '
            'give one label per work dir')
    runs = [
        load_run(w, None if labels is None else labels[i])
        for i, w in enumerate(work_dirs)
    ]
    if labels is None:
        _disambiguate(runs)
    return runs


def _disambiguate(runs: List[RunLog]) -> None:
    names = [r.label for r in runs]
    clashing = [names.count(n) > 1 for n in names]
    for where in (lambda r: osp.basename(osp.normpath(r.work_dir)),
                  lambda r: osp.normpath(r.work_dir)):
        labels = [
            f'{n} ({where(r)})' if c else n
            for n, c, r in zip(names, clashing, runs)
        ]
        if len(set(labels)) == len(labels):
            break
    for r, label in zip(runs, labels):
        r.label = label


def check_keys(runs: Sequence[RunLog], keys: Sequence[str]) -> None:
    """Raise :class:`AnalysisError` for a key that no run logged, naming it
    and the keys the runs do have."""
    if not keys:
        raise AnalysisError('no keys to plot')
    for key in keys:
        if not any(r.series(key)[0] for r in runs):
            known = sorted({k for r in runs for k in r.keys()})
            where = ', '.join(f"'{r.work_dir}'" for r in runs)
            raise AnalysisError(
                f"key '{key}' is in none of the runs ({where}); their keys: "
                f"{', '.join(known) or 'none'}")


def plot_curves(runs: Sequence[RunLog],
                keys: Sequence[str] = ('loss', 'mIoU'),
                title: Optional[str] = None):
    """One panel per key (side by side), one line per run that logged it,
    against the training iteration.

    Each run keeps one colour across panels; validation keys (``mIoU``,
    ...) are drawn with markers. The lines carry the runs' labels
    (``line.get_label()``) and exactly the logged values
    (``line.get_xdata()``, ``line.get_ydata()``).

    Returns:
        matplotlib.figure.Figure: The figure (not attached to pyplot).

    Raises:
        AnalysisError: A key is in none of the runs (:func:`check_keys`).
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    check_keys(runs, keys)
    fig = Figure(figsize=(5.5 * len(keys), 4.2), layout='constrained')
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    handles = {}  # run index -> its first line, for the legend
    for ax, key in zip(axes, keys):
        for i, run in enumerate(runs):
            xs, ys = run.series(key)
            if not xs:
                continue
            marker = 'o' if run.is_validation_key(key) or len(xs) == 1 \
                else None
            (line, ) = ax.plot(
                xs,
                ys,
                label=run.label,
                color=f'C{i % 10}',
                marker=marker,
                markersize=4,
                linewidth=1.2)
            handles.setdefault(i, line)
        ax.set_title(key)
        ax.set_xlabel('iteration')
        ax.set_ylabel(key)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    lines = [handles[i] for i in sorted(handles)]
    try:  # one legend under the panels (matplotlib >= 3.7)
        fig.legend(
            lines, [ln.get_label() for ln in lines],
            loc='outside lower center',
            fontsize='small')
    except ValueError:  # older matplotlib: a legend in each panel
        for ax in axes:
            ax.legend(fontsize='small')
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig, out: str, dpi: int = 120) -> None:
    """Write ``fig`` to ``out`` (format from the extension), creating the
    folder.

    Raises:
        AnalysisError: The extension is not a format matplotlib writes.
    """
    ext = osp.splitext(out)[1].lstrip('.').lower()
    supported = fig.canvas.get_supported_filetypes()
    if ext not in supported:
        raise AnalysisError(
            f"cannot write '{out}': the extension must be one of "
            f"{', '.join('.' + e for e in sorted(supported))} (e.g. .png)")
    folder = osp.dirname(osp.abspath(out))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(out, dpi=dpi)
