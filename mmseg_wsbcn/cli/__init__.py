# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""What ``tools/train.py`` and ``tools/test.py`` share: the one-line-error
argument parser, config loading and path checks, the CPU process group,
building and running MMEngine's ``Runner``, the checkpoint-to-model check
and what ``tools/test.py`` writes (metrics JSON, prediction PNGs)."""
from .checkpoint import (CheckpointMatchHook, CheckpointMismatchError,
                         StateDictMismatch, compare_checkpoint,
                         compare_state_dicts)
from .config import (check_checkpoint_paths, check_data_roots, check_paths,
                     check_slide_inference, prepare_config)
from .distributed import (distributed_failure_message, finish_distributed,
                          init_cpu_distributed)
from .outputs import (METRICS_FILE, SavePredictionsHook, image_prefixes,
                      prediction_relpath)
from .parser import OneLineErrorParser, ToolError
from .run import adapt_to_cpu_distributed, build_runner, run_and_finish

__all__ = [
    'OneLineErrorParser', 'ToolError', 'check_checkpoint_paths',
    'check_data_roots', 'check_paths', 'check_slide_inference',
    'prepare_config',
    'adapt_to_cpu_distributed', 'build_runner', 'distributed_failure_message',
    'finish_distributed', 'init_cpu_distributed', 'run_and_finish',
    'CheckpointMatchHook', 'CheckpointMismatchError', 'StateDictMismatch',
    'compare_checkpoint', 'compare_state_dicts', 'METRICS_FILE',
    'SavePredictionsHook', 'image_prefixes', 'prediction_relpath'
]
