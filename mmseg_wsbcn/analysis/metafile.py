# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Fill a metafile's ``Results`` and ``Weights`` from measured runs, in
mmseg's model-zoo format::

    - Name: deeplabv3_r50-d8_bcn-ws_8xb1-80k_cityscapes-512x1024
      ...
      Results:
      - Task: Semantic Segmentation
        Dataset: Cityscapes
        Metrics:
          mIoU: 78.1
      Weights: https://.../deeplabv3_r50-d8_bcn-ws_..._cityscapes-3f1c2a9b.pth

An entry is matched to a run by name: the config name MMEngine dumped into
the run's work dir. Entries without a run are left as they are.
"""
from typing import Dict, List, Optional, Sequence

from .errors import AnalysisError
from .results_grid import RunResult

#: The metrics a Results block carries, in mmseg's order.
METRIC_KEYS = ('mIoU', 'mIoU(ms+flip)', 'aAcc', 'mAcc')


def results_block(run: RunResult) -> List[dict]:
    """The ``Results`` list of one run."""
    metrics = {k: round(run.metrics[k], 2)
               for k in METRIC_KEYS if k in run.metrics}
    return [{
        'Task': 'Semantic Segmentation',
        'Dataset': run.dataset,
        'Metrics': metrics
    }]


def fill_metafile(meta: dict,
                  runs: Sequence[RunResult],
                  weights: Optional[Dict[str, str]] = None) -> List[str]:
    """Set ``Results`` (and ``Weights`` where ``weights`` names a URL) of
    the metafile entries the runs trained, in place.

    Args:
        meta (dict): The metafile, as ``yaml.safe_load`` returns it.
        runs (list[RunResult]): The runs
            (:func:`~mmseg_wsbcn.analysis.results_grid.results_grid`).
        weights (dict, optional): Config name -> URL of its release.

    Returns:
        list[str]: The names of the entries that were filled.

    Raises:
        AnalysisError: A run's config has no entry in the metafile.
    """
    entries = {m['Name']: m for m in meta.get('Models', [])}
    filled = []
    for run in runs:
        entry = entries.get(run.config)
        if entry is None:
            raise AnalysisError(
                f"the metafile has no entry named '{run.config}' (the config "
                f"of '{run.work_dir}'); add the config to it first")
        entry['Results'] = results_block(run)
        if weights and run.config in weights:
            entry['Weights'] = weights[run.config]
        filled.append(run.config)
    return filled
