# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Print the paper-style results table of several runs (norm x images per
GPU x dataset) as markdown, and draw it as a PNG.

Examples::

    python tools/analysis/results_grid.py work_dirs/bn work_dirs/gn-ws \
        work_dirs/bcn-ws --out grid.png
    python tools/analysis/results_grid.py work_dirs/* --metric mAcc \
        --json grid.json

Each work dir is one training run: its config is the one MMEngine dumped
there, its metric the newest ``metrics.json`` of ``tools/test.py``, else the
last validation of the training log. ``--json`` writes the runs (norm,
dataset, images per GPU, metrics, source) for
``tools/misc/update_metafile.py``. Bad input (a missing work dir, a run
without metrics, two runs in one cell) exits with one line. See
docs/norms.md.
"""
import argparse
import dataclasses
import json

from mmseg_wsbcn.analysis import save_figure
from mmseg_wsbcn.analysis.results_grid import (grid_markdown, plot_grid,
                                               results_grid)
from mmseg_wsbcn.launch import OneLineErrorParser, exit_on_error
from mmseg_wsbcn.utils.atomic import atomic_open

PROG = 'results_grid.py'


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineErrorParser(
        prog=PROG,
        description='The results table of several runs: norm x images per '
        'GPU x dataset')
    parser.add_argument(
        'work_dirs', nargs='+', metavar='WORK_DIR', help='training work dirs')
    parser.add_argument(
        '--metric', default='mIoU', help='the metric in the cells (mIoU)')
    parser.add_argument('--out', help='the plot to write (.png, .pdf, ...)')
    parser.add_argument('--json', help='write the runs as JSON here')
    return parser.parse_args(argv)


@exit_on_error(PROG)
def main(argv=None):
    """Run the tool; return the runs it read."""
    args = parse_args(argv)
    results = results_grid(args.work_dirs)
    print(grid_markdown(results, args.metric))
    if args.out:
        save_figure(plot_grid(results, args.metric), args.out)
        print(f'saved {args.out}')
    if args.json:
        with atomic_open(args.json) as f:
            json.dump([dataclasses.asdict(r) for r in results], f, indent=2)
            f.write('\n')
        print(f'saved {args.json}')
    return results


if __name__ == '__main__':
    main()
