# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The confusion matrix of saved predictions against a config's dataset,
counted in int64 (mmseg 1.2.2's own tool wraps at 256 on uint8 arrays).

Example::

    python tools/test.py CONFIG CHECKPOINT --out preds
    python tools/analysis/confusion_matrix.py CONFIG preds \
        --out confusion_matrix.png

It also prints aAcc / mIoU / mAcc computed from the matrix: for the
predictions of ``tools/test.py --out`` they equal what ``tools/test.py``
reported.
"""
import argparse
import os.path as osp

import numpy as np

from mmseg_wsbcn.analysis.confusion_matrix import (build_dataset,
                                                   dataset_confusion_matrix,
                                                   matrix_metrics,
                                                   plot_confusion_matrix)
from mmseg_wsbcn.analysis.curves import save_figure
from mmseg_wsbcn.analysis.errors import AnalysisError
from mmseg_wsbcn.evaluation.arguments import (add_dataset_arguments,
                                              add_prediction_arguments)
from mmseg_wsbcn.launch import OneLineErrorParser, exit_on_error
from mmseg_wsbcn.utils.quiet import hide_known_warnings

PROG = 'confusion_matrix.py'


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineErrorParser(
        prog=PROG,
        description='Confusion matrix of saved predictions (tools/test.py '
        "--out) against a config's dataset")
    add_dataset_arguments(
        parser, 'the config the predictions were made with (its dataset '
        'gives the labels)')
    add_prediction_arguments(parser)
    parser.add_argument(
        '--out', required=True, help='the figure to write (e.g. cm.png)')
    parser.add_argument('--title', help='title of the figure')
    return parser.parse_args(argv)


@exit_on_error(PROG)
def main(argv=None) -> np.ndarray:
    """Run the command line; return the int64 confusion matrix."""
    hide_known_warnings()

    args = parse_args(argv)
    if not osp.isdir(args.pred_dir):
        raise AnalysisError(
            f"prediction folder '{args.pred_dir}' does not exist")
    dataset, loader = build_dataset(args.config, args.split, args.cfg_options)
    matrix, unscored = dataset_confusion_matrix(dataset, loader, args.pred_dir,
                                                args.pred_suffix)
    classes = list(dataset.metainfo['classes'])
    save_figure(plot_confusion_matrix(matrix, classes, args.title), args.out)
    m = matrix_metrics(matrix)
    images = f'{len(dataset)} image' + ('' if len(dataset) == 1 else 's')
    print(f'{images}, {int(matrix.sum())} labelled pixels; '
          f"from the matrix: aAcc {m['aAcc']:.2f}  mIoU {m['mIoU']:.2f}  "
          f"mAcc {m['mAcc']:.2f}")
    if unscored:
        print(f'note: {unscored} labelled pixels are predicted as the '
              f'ignore index {dataset.ignore_index}: not in the matrix '
              '(IoUMetric and eval_predictions.py count them as wrong)')
    print(f'saved {args.out}')
    return matrix


if __name__ == '__main__':
    main()
