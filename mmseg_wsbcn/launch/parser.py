# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The tools' argument parser."""
import argparse
from typing import NoReturn


class OneLineErrorParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line.

    ``argparse`` prints the whole usage block before the error; with many
    options that buries the one line that matters (e.g. ``argument
    --launcher: invalid choice: 'foo' (choose from 'none', 'pytorch',
    'slurm', 'mpi')``). ``--help`` still prints the full usage.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f'{self.prog}: error: {message}\n')
