# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
from .cli import OneLineErrorParser, ToolError
from .config import (check_checkpoint_paths, check_data_roots, check_paths,
                     prepare_config)
from .runner import (build_runner, distributed_failure_message,
                     finish_distributed, init_cpu_distributed,
                     run_and_finish)

__all__ = [
    'OneLineErrorParser', 'ToolError', 'check_checkpoint_paths',
    'check_data_roots', 'check_paths', 'prepare_config', 'build_runner',
    'distributed_failure_message', 'finish_distributed',
    'init_cpu_distributed', 'run_and_finish'
]
