# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The command-line arguments of the tools that read a config's dataset
(``tools/misc/check_dataset.py``) and score saved predictions against it
(``tools/analysis/eval_predictions.py``,
``tools/analysis/confusion_matrix.py``), defined once."""
import argparse
from typing import Sequence

from mmengine.config import DictAction


def add_dataset_arguments(parser: argparse.ArgumentParser,
                          config_help: str,
                          splits: Sequence[str] = ('test', 'val'),
                          what: str = 'read') -> None:
    """Add ``config``, ``--split`` (default: the first of ``splits``) and
    ``--cfg-options``.

    Args:
        parser (ArgumentParser): The tool's parser.
        config_help (str): The help of the ``config`` argument.
        splits (Sequence[str]): The dataloaders ``--split`` can choose.
            Defaults to ``('test', 'val')``.
        what (str): What the tool does with the dataset, for the help of
            ``--split``. Defaults to ``'read'``.
    """
    parser.add_argument('config', help=config_help)
    parser.add_argument(
        '--split',
        choices=list(splits),
        default=splits[0],
        help=f"which dataloader's dataset to {what} (default: {splits[0]})")
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs (as in '
        'tools/test.py)')


def add_prediction_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``pred_dir`` and ``--pred-suffix`` (after the ``config`` of
    :func:`add_dataset_arguments`).

    Args:
        parser (ArgumentParser): The tool's parser.
    """
    parser.add_argument(
        'pred_dir',
        help='folder of predictions, laid out like the image folder '
        '(tools/test.py --out) or flat')
    parser.add_argument(
        '--pred-suffix',
        default='.png',
        metavar='SUFFIX',
        help='what follows the image name (minus img_suffix) in a '
        "prediction's file name (default: .png)")
