# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Stop training at the first non-finite loss.

A NaN or infinite loss poisons the weights at the optimizer step that
follows it, and every checkpoint saved after that. MMEngine itself keeps
going; mmdet's ``CheckInvalidLossHook`` only looks every ``interval``
iterations and fails with a bare ``AssertionError``. This hook looks at
every iteration, on every rank, and stops the run with a message that names
the iteration and the loss values.

It runs before the ``CheckpointHook`` (higher priority), so the step that
produced the non-finite loss is never saved: the last checkpoint on disk is
the last good one.
"""
import math
from typing import Dict, Optional, Sequence, Union

import torch
from mmengine.dist import all_gather_object, all_reduce, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.registry import HOOKS

from ...utils.errors import OneLineError

DATA_BATCH = Optional[Union[dict, tuple, list]]


def _as_float(value) -> Optional[float]:
    """A loss entry as a float (the mean of a tensor); ``None`` for empty
    tensors and anything that is not a number."""
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().mean()) \
            if value.numel() else None
    if isinstance(value, (int, float)):
        return float(value)
    return None


def non_finite_losses(outputs: Optional[Dict]) -> Dict[str, float]:
    """The loss entries of a ``train_step`` output that are NaN or inf.

    Args:
        outputs (dict, optional): The ``log_vars`` a model's ``train_step``
            returns (``loss``, ``decode.loss_ce``, ...).

    Returns:
        dict[str, float]: The non-finite entries whose name contains
        ``'loss'``, by name; empty when all are finite.
    """
    bad = {}
    for name, value in (outputs or {}).items():
        if 'loss' not in name:
            continue
        value = _as_float(value)
        if value is not None and not math.isfinite(value):
            bad[name] = value
    return bad


class NonFiniteLossError(OneLineError, FloatingPointError):
    """A loss became NaN or infinite; the message names the iteration and
    the values."""


@HOOKS.register_module()
class StopOnNonFiniteLossHook(Hook):
    """Raise ``FloatingPointError`` as soon as a loss is NaN or infinite.

    After every training iteration it checks the loss entries of the
    iteration's output (``loss`` and each ``*.loss_*``). In a distributed
    run the ranks agree through one all-reduce of a flag per iteration, so
    all of them stop at the same iteration even if only one rank saw the bad
    value (the averaged gradient has already spread it to every rank's
    weights); only then are the values gathered for the message.

    The message names the iteration (counted from 1, as the training log
    does), the non-finite values and their ranks, and the last checkpoint::

        non-finite loss at iteration 3/10: rank 0: loss=nan,
        decode.loss_ce=nan; training stopped before this step was saved;
        last checkpoint: work_dirs/x/iter_2.pth. Lower the learning rate or
        check the data, then resume with --resume (to train on anyway,
        set enabled=False on StopOnNonFiniteLossHook in custom_hooks)

    ``configs/_base_/default_runtime.py`` lists it first in ``custom_hooks``
    (configs that add hooks extend that list), so ``--cfg-options
    custom_hooks.0.enabled=False`` switches it off for one run.

    Args:
        enabled (bool): Whether to check. Defaults to True.
    """

    # before LoggerHook (BELOW_NORMAL) and CheckpointHook (VERY_LOW)
    priority = 'ABOVE_NORMAL'

    def __init__(self, enabled: bool = True) -> None:
        if not isinstance(enabled, bool):
            raise TypeError('StopOnNonFiniteLossHook: enabled must be a bool, '
                            f'got {enabled!r}')
        self.enabled = enabled

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: DATA_BATCH = None,
                         outputs: Optional[dict] = None) -> None:
        if not self.enabled:
            return
        bad = non_finite_losses(outputs)
        if get_world_size() > 1:
            flag = torch.tensor([float(bool(bad))])
            all_reduce(flag, op='max')
            if not flag.item():
                return
            per_rank = all_gather_object(bad)
        elif bad:
            per_rank = [bad]
        else:
            return
        raise NonFiniteLossError(self._message(runner, per_rank))

    @staticmethod
    def _message(runner, per_rank: Sequence[Dict[str, float]]) -> str:
        values = '; '.join(f'rank {rank}: ' +
                           ', '.join(f'{k}={v}' for k, v in bad.items())
                           for rank, bad in enumerate(per_rank) if bad)
        last = None
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook):  # or a subclass
                last = getattr(hook, 'last_ckpt', None)
        return (f'non-finite loss at iteration {runner.iter + 1}/'
                f'{runner.max_iters}: {values}; training stopped before this '
                f'step was saved; last checkpoint: {last or "none yet"}. '
                'Lower the learning rate or check the data, then resume '
                'with --resume (to train on anyway, set enabled=False on '
                'StopOnNonFiniteLossHook in custom_hooks)')
