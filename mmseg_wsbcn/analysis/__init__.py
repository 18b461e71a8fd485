# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Analysis plots: training curves of several work dirs on one figure
(:mod:`.curves`, used by ``tools/analysis/plot_curves.py``) and the
confusion matrix of ``tools/test.py --out`` predictions
(:mod:`.confusion_matrix`, ``python -m
mmseg_wsbcn.analysis.confusion_matrix``; import it from that module).

Plots are ``matplotlib.figure.Figure`` objects drawn without pyplot, so no
display and no global backend switch are involved.
"""
from .curves import (Point, RunLog, check_keys, config_name, load_run,
                     load_runs, merge_runs, place_records, plot_curves,
                     read_scalars, save_figure, scalars_files)
from .errors import AnalysisError

__all__ = [
    'AnalysisError', 'Point', 'RunLog', 'check_keys', 'config_name',
    'load_run', 'load_runs', 'merge_runs', 'place_records', 'plot_curves',
    'read_scalars', 'save_figure', 'scalars_files'
]
