# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
from .hooks import *  # noqa: F401,F403
from .runner import WSBCNRunner, trusted_local_checkpoints

__all__ = ['WSBCNRunner', 'trusted_local_checkpoints']
