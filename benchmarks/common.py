# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""What ``benchmark_layers.py`` and ``benchmark_end2end.py`` share: their
timing options and how they apply them.

The scripts run as ``python benchmarks/<script>.py``, so this folder is on
``sys.path`` and they import this module as ``common``.
"""
import argparse

import torch


def add_timing_arguments(parser: argparse.ArgumentParser, repeats: int,
                         warmup: int, what: str) -> None:
    """Add ``--repeats``, ``--warmup``, ``--threads``, ``--batch`` and
    ``--device``.

    Args:
        parser (ArgumentParser): The script's parser.
        repeats (int): Default number of timed steps.
        warmup (int): Default number of untimed steps first.
        what (str): What is timed, for the help, e.g. ``'layer'``.
    """
    parser.add_argument(
        '--repeats', type=int, default=repeats, help=f'timed steps per {what}')
    parser.add_argument(
        '--warmup', type=int, default=warmup, help=f'untimed steps per {what}')
    parser.add_argument(
        '--threads',
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's own choice)")
    parser.add_argument('--batch', type=int, default=2, help='batch size')
    parser.add_argument(
        '--device', default='cpu', help="'cpu' (default) or e.g. 'cuda'")


def apply_timing_arguments(args: argparse.Namespace) -> torch.device:
    """Set torch's intra-op threads to ``--threads`` (when given); return
    the ``--device``."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return torch.device(args.device)
