# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Plot training loss and validation mIoU (or any logged keys) of one or
more work dirs on one figure, e.g. to compare BN, GN+WS and BCN+WS runs.

Examples::

    python tools/analysis/plot_curves.py work_dirs/RUN_A work_dirs/RUN_B \
        --out curves.png
    python tools/analysis/plot_curves.py work_dirs/RUN_A work_dirs/RUN_B \
        --keys loss decode.acc_seg mIoU --labels BN BCN+WS --out curves.png

It reads MMEngine's ``<work_dir>/<timestamp>/vis_data/scalars.json`` (the
runs of a resumed training are joined in timestamp order), draws one panel
per key against the iteration, one line per work dir labelled by its config
name, and writes the figure with matplotlib's Agg canvas (no display
needed). Bad input (a missing work dir, no scalars.json, a key no run
logged) exits with one line. See docs/analysis.md.
"""
import argparse

from mmseg_wsbcn.analysis import load_runs, plot_curves, save_figure
from mmseg_wsbcn.launch import OneLineErrorParser, exit_on_error

PROG = 'plot_curves.py'


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineErrorParser(
        prog=PROG,
        description='Plot the training curves of one or more work dirs on '
        'one figure')
    parser.add_argument(
        'work_dirs', nargs='+', metavar='WORK_DIR', help='training work dirs')
    parser.add_argument(
        '--out',
        required=True,
        help='the figure to write (.png, or .pdf/.svg/...)')
    parser.add_argument(
        '--keys',
        nargs='+',
        default=['loss', 'mIoU'],
        help='logged keys to plot, one panel each (default: loss mIoU)')
    parser.add_argument(
        '--labels',
        nargs='+',
        help='legend labels, one per work dir (default: the config names)')
    parser.add_argument('--title', help='title of the figure')
    return parser.parse_args(argv)


@exit_on_error(PROG)
def main(argv=None):
    """Run the tool; return the matplotlib ``Figure`` it wrote."""
    args = parse_args(argv)
    runs = load_runs(args.work_dirs, args.labels)
    fig = plot_curves(runs, args.keys, args.title)
    save_figure(fig, args.out)
    for run in runs:
        parts = []
        for key in args.keys:
            xs, _ = run.series(key)
            parts.append(f'{key}: {len(xs)} points' +
                         (f' (iter {xs[0]}-{xs[-1]})' if xs else ''))
        runs_note = f', {len(run.files)} runs joined' \
            if len(run.files) > 1 else ''
        print(f"{run.label}: '{run.work_dir}'{runs_note}; " + '; '.join(parts))
    print(f'saved {args.out}')
    return fig


if __name__ == '__main__':
    main()
