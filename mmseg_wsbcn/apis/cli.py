# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Command-line plumbing shared by ``tools/train.py`` and ``tools/test.py``."""
import argparse
import warnings
from typing import NoReturn

# MMEngine 0.10.7 imports ``pkg_resources`` lazily when it resolves
# ``mmseg::`` config paths; setuptools (pinned < 81 for the mmcv build) then
# warns on every use, burying the tools' own messages. Harmless: hide it.
warnings.filterwarnings(
    'ignore', message='pkg_resources is deprecated', category=UserWarning)


class ToolError(Exception):
    """A user-facing problem (bad path, bad value) that the tools report in
    one line instead of a traceback."""


class OneLineErrorParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line.

    ``argparse`` prints the whole usage block before the error; with many
    options that buries the one line that matters (e.g. ``argument
    --launcher: invalid choice: 'foo' (choose from 'none', 'pytorch',
    'slurm', 'mpi')``). ``--help`` still prints the full usage.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f'{self.prog}: error: {message}\n')

