# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Median wall times of several callables, timed in turn on the same input,
so that load from other processes hits each of them alike (the benchmarks
and ``tools/deployment/pytorch2onnx.py``)."""
import statistics
import time
from typing import Callable, Dict, List, Optional

import torch


def synchronize(device: Optional[torch.device]) -> None:
    """Wait for the queued kernels of a CUDA ``device``; no-op otherwise."""
    if device is not None and device.type == 'cuda':
        torch.cuda.synchronize(device)


def interleaved_medians(steps: Dict[str, Callable[[], object]],
                        warmup: int,
                        repeats: int,
                        device: Optional[torch.device] = None,
                        alternate: bool = True,
                        setup: Optional[Callable[[str], None]] = None
                        ) -> Dict[str, float]:
    """Median seconds per call of each step, the steps called in turn.

    Args:
        steps (dict[str, callable]): The callables to time, by name.
        warmup (int): Untimed calls of each step first.
        repeats (int): Timed calls of each step.
        device (torch.device, optional): Synchronized before and after
            each timed call when it is a CUDA device. Defaults to None.
        alternate (bool): Call the steps in reverse order on odd repeats,
            so that no step always follows the same one. Defaults to True.
        setup (callable, optional): Called with a step's name before each
            of its calls, outside the timed part. Defaults to None.

    Returns:
        dict[str, float]: Median seconds per step name.
    """
    prepare = setup or (lambda name: None)
    for _ in range(warmup):
        for name, step in steps.items():
            prepare(name)
            step()
    times: Dict[str, List[float]] = {name: [] for name in steps}
    order = list(steps.items())
    for i in range(repeats):
        for name, step in (order[::-1] if alternate and i % 2 else order):
            prepare(name)
            synchronize(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}
