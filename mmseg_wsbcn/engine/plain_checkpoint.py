# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""MMEngine's training state as plain data, so that a checkpoint loads whole
with ``torch.load(weights_only=True)`` and no allow-list.

A checkpoint of MMEngine's ``Runner`` holds, besides tensors and numbers:

- in ``message_hub.log_scalars``, ``HistoryBuffer`` objects, which pickle
  their statistics methods through ``builtins.getattr`` and their history
  as numpy arrays;
- in ``param_schedulers``, each scheduler's ``__dict__``, where a scheduler
  may keep a bound method (``OneCycleParamScheduler.anneal_func``), again
  through ``builtins.getattr``;
- numpy scalars wherever a hook stored one.

:func:`to_plain` rewrites a checkpoint dict in place before it is saved: a
``HistoryBuffer`` becomes a tagged dict of its two histories (as tensors,
so the dtype survives) and length; a numpy array a tagged tensor; a numpy
scalar a Python number; a callable in a scheduler's state is dropped (the
scheduler built from the config has it already). :func:`from_plain` turns
the tagged dicts back after loading, so that ``Runner.resume`` gets what it
expects. The tag is one key, :data:`PLAIN_TAG`.
"""
from typing import Any, Dict

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

#: The key that marks a dict written by :func:`to_plain`.
PLAIN_TAG = '__plain__'
#: numpy dtype kinds that become tensors (bool, ints, floats, complex);
#: string arrays become lists, other arrays (objects, dates) stay as they
#: are (a safe load then leaves them out, with a warning).
NUMERIC_KINDS = 'biufc'


def _history_buffer_to_plain(buffer: HistoryBuffer) -> Dict[str, Any]:
    log_history, count_history = buffer.data
    return {
        PLAIN_TAG: 'HistoryBuffer',
        'log_history': torch.from_numpy(np.array(log_history)),
        'count_history': torch.from_numpy(np.array(count_history)),
        'max_length': int(buffer.max_length),
    }


def _value_to_plain(value: Any) -> Any:
    """``value`` with every HistoryBuffer, numpy array and numpy scalar in
    it made plain (containers are rebuilt, other values kept)."""
    if isinstance(value, HistoryBuffer):
        return _history_buffer_to_plain(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind in NUMERIC_KINDS:
            return {
                PLAIN_TAG: 'ndarray',
                'data': torch.from_numpy(value.copy())
            }
        return value.tolist() if value.dtype.kind in 'US' else value
    if isinstance(value, (np.number, np.bool_, np.str_, np.bytes_)):
        return value.item()
    if isinstance(value, dict):
        plain = type(value)() if type(value) is not dict else {}
        for key, item in value.items():
            plain[key] = _value_to_plain(item)
        return plain
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        return type(value)(_value_to_plain(v) for v in value)
    return value


def _scheduler_to_plain(state: Any) -> Any:
    """A scheduler's state without the callables MMEngine keeps in it."""
    if not isinstance(state, dict):
        return _value_to_plain(state)
    return {
        key: _value_to_plain(value)
        for key, value in state.items() if not callable(value)
    }


def _schedulers_to_plain(value: Any) -> Any:
    """``Runner.save_checkpoint``'s ``param_schedulers``: a list of states,
    or a dict of such lists (one per optimizer)."""
    if isinstance(value, list):
        return [_scheduler_to_plain(state) for state in value]
    if isinstance(value, dict):
        return {name: _schedulers_to_plain(v) for name, v in value.items()}
    return _value_to_plain(value)


def to_plain(checkpoint: Dict[str, Any]) -> Dict[str, Any]:
    """Make a checkpoint dict plain data, in place (see the module
    docstring); ``state_dict`` and ``optimizer`` are left as they are (they
    hold tensors and numbers only).

    Args:
        checkpoint (dict): What ``Runner.save_checkpoint`` is about to save.

    Returns:
        dict: ``checkpoint``.
    """
    for key, value in list(checkpoint.items()):
        if key in ('state_dict', 'optimizer'):
            continue
        if key == 'param_schedulers':
            checkpoint[key] = _schedulers_to_plain(value)
        else:
            checkpoint[key] = _value_to_plain(value)
    return checkpoint


def _is_history(value: dict) -> bool:
    """A well-formed tagged ``HistoryBuffer`` (anything else is left as
    the dict it is)."""
    log, count = value.get('log_history'), value.get('count_history')
    return isinstance(log, torch.Tensor) and isinstance(
        count, torch.Tensor) and log.dim() == count.dim() == 1 and len(
            log) == len(count) and isinstance(value.get('max_length'), int)


def _value_from_plain(value: Any) -> Any:
    if isinstance(value, dict):
        tag = value.get(PLAIN_TAG)
        if tag == 'HistoryBuffer' and _is_history(value):
            return HistoryBuffer(value['log_history'].numpy(),
                                 value['count_history'].numpy(),
                                 value['max_length'])
        if tag == 'ndarray' and isinstance(value.get('data'), torch.Tensor):
            return value['data'].numpy()
        for key, item in value.items():
            value[key] = _value_from_plain(item)
        return value
    if isinstance(value, list):
        return [_value_from_plain(v) for v in value]
    if type(value) is tuple:
        return tuple(_value_from_plain(v) for v in value)
    return value


def from_plain(checkpoint: Dict[str, Any]) -> Dict[str, Any]:
    """Undo :func:`to_plain` in place: tagged dicts become
    ``HistoryBuffer`` objects and numpy arrays again. A checkpoint without
    tags is returned unchanged.

    Args:
        checkpoint (dict): A loaded checkpoint.

    Returns:
        dict: ``checkpoint``.
    """
    for key, value in list(checkpoint.items()):
        if key not in ('state_dict', 'optimizer'):
            checkpoint[key] = _value_from_plain(value)
    return checkpoint
