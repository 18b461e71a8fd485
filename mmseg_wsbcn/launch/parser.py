# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The tools' argument parser, and the arguments of the tools that start a
run (named as in mmseg's ``tools/train.py`` and ``tools/test.py``)."""
import argparse
import os
from typing import List, NoReturn, Optional

from mmengine.config import DictAction


class OneLineErrorParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line.

    ``argparse`` prints the whole usage block before the error; with many
    options that buries the one line that matters (e.g. ``argument
    --launcher: invalid choice: 'foo' (choose from 'none', 'pytorch',
    'slurm', 'mpi')``). ``--help`` still prints the full usage.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f'{self.prog}: error: {message}\n')


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Add mmseg's ``--cfg-options``, ``--launcher`` and ``--local_rank``
    (with mmseg's help texts), and ``--trust-checkpoint``."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file. If the value to '
        'be overwritten is a list, it should be like key="[a,b]" or key=a,b '
        'It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]" '
        'Note that the quotation marks are necessary and that no white space '
        'is allowed.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    add_trust_argument(parser)
    # torch.distributed.launch passes --local-rank (torch >= 2.0)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def add_trust_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--trust-checkpoint``, the opt-in to unpickle the checkpoint the
    user names fully."""
    parser.add_argument(
        '--trust-checkpoint',
        action='store_true',
        help='unpickle the checkpoint fully (weights_only=False), which runs '
        'any code it holds: only for a file you trust. By default it is '
        'read with weights_only=True')


def parse_run_args(parser: argparse.ArgumentParser,
                   argv: Optional[List[str]] = None) -> argparse.Namespace:
    """``parser.parse_args(argv)``; sets ``LOCAL_RANK`` from
    ``--local_rank`` unless the launcher did (as mmseg's tools do)."""
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args
