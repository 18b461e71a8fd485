# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
from .checkpoint_files import (CheckpointLoadError, UntrustedCheckpointError,
                               load_checkpoint_file)
from .hooks import *  # noqa: F401,F403
from .runner import ResumeError, SafeCheckpointRunner, WSBCNRunner

__all__ = [
    'CheckpointLoadError', 'ResumeError', 'SafeCheckpointRunner',
    'WSBCNRunner', 'load_checkpoint_file', 'UntrustedCheckpointError'
]
