# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Dataset utilities: sample checks before and during training."""
from .sample_checks import (CheckedPipeline, DataSampleError, SampleProblem,
                            check_sample, guard_dataset)

__all__ = [
    'CheckedPipeline', 'DataSampleError', 'SampleProblem', 'check_sample',
    'guard_dataset'
]
