# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
from .checked_pipeline import CheckedPipeline, guard_dataset

__all__ = ['CheckedPipeline', 'guard_dataset']
