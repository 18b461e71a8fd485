# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Walk a built dataset and the datasets wrapped in it."""
from typing import Iterator


def iter_wrapped_datasets(dataset) -> Iterator:
    """Yield ``dataset`` and every dataset wrapped in it, depth first
    (``ConcatDataset.datasets``, ``RepeatDataset.dataset``, ...)."""
    yield dataset
    inner = getattr(dataset, 'dataset', None)
    if inner is not None and inner is not dataset:
        yield from iter_wrapped_datasets(inner)
    for sub in getattr(dataset, 'datasets', None) or []:
        yield from iter_wrapped_datasets(sub)


def is_wrapper(dataset) -> bool:
    """Whether ``dataset`` wraps others rather than holding samples."""
    return bool(getattr(dataset, 'datasets', None)) or \
        hasattr(dataset, 'dataset')
