# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Launch a run from a tool's arguments: what ``tools/train.py`` and
``tools/test.py`` share. The one-line-error argument parser, config loading
and path checks, building MMEngine's ``Runner`` and running it to the end
(with the one place that turns a
:class:`~mmseg_wsbcn.utils.errors.OneLineError` into ``<tool>: error:``)."""
from .config import (check_checkpoint_paths, check_data_roots, check_paths,
                     check_slide_inference, prepare_config)
from .parser import OneLineErrorParser, add_run_arguments, parse_run_args
from .run import build_runner, exit_on_error, run_and_finish

__all__ = [
    'OneLineErrorParser', 'add_run_arguments', 'parse_run_args',
    'check_checkpoint_paths', 'check_data_roots', 'check_paths',
    'check_slide_inference', 'prepare_config', 'build_runner', 'exit_on_error',
    'run_and_finish'
]
