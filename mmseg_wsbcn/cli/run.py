# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Build MMEngine's ``Runner`` for the tools and run it to the end.

:func:`build_runner` builds exactly the config the tool loaded, with one
exception: on a machine without CUDA, a distributed launch needs three
changes that MMEngine 0.10.7 does not make by itself, and they are logged
once, in plain words:

- the process group is initialized with ``gloo``
  (:func:`~mmseg_wsbcn.cli.distributed.init_cpu_distributed`);
- the DDP wrapper gets ``device_ids=None`` (MMEngine passes
  ``[LOCAL_RANK]``, a CUDA device);
- ``SyncBN`` layers are built as ``BN`` (``SyncBatchNorm`` has no CPU
  kernel).

With CUDA, or in one process, the config is used as it is.
"""
import sys
from typing import Any, Callable, List, Optional

import torch
from mmengine.config import Config
from mmengine.dist import is_distributed
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..datasets import DataSampleError
from ..engine import WSBCNRunner
from ..engine.runner import (CheckpointLoadError, CheckpointSaveError,
                             ResumeError)
from ..utils.errors import first_line
from .distributed import (DEFAULT_DIST_TIMEOUT, configured_timeout,
                          distributed_failure_message, finish_distributed,
                          init_cpu_distributed)
from .parser import ToolError


def _replace_syncbn(cfg: Any) -> int:
    """Turn every ``norm_cfg=dict(type='SyncBN')`` into ``'BN'`` in place;
    return how many were changed."""
    count = 0
    if isinstance(cfg, dict):
        if cfg.get('type') == 'SyncBN':
            cfg['type'] = 'BN'
            count += 1
        for value in cfg.values():
            count += _replace_syncbn(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            count += _replace_syncbn(value)
    return count


def adapt_to_cpu_distributed(cfg: Config) -> List[str]:
    """Make a distributed config run without CUDA, in place.

    Sets up the ``gloo`` process group (unless one is running), asks for a
    DDP wrapper with ``device_ids=None`` and builds ``SyncBN`` as ``BN``.

    Args:
        cfg (Config): A config with ``launcher`` other than ``'none'``.

    Returns:
        list[str]: What was changed, in words, for the log.
    """
    changes = []
    if not is_distributed():
        timeout = configured_timeout(cfg)
        init_cpu_distributed(
            cfg.launcher, DEFAULT_DIST_TIMEOUT if timeout is None else timeout)
        changes.append('the process group uses the gloo backend')
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    changes.append('DDP wraps the model with device_ids=None')
    replaced = _replace_syncbn(cfg.model)
    if replaced:
        changes.append(f'{replaced} SyncBN norm_cfg entries are built as '
                       'per-process BN (SyncBatchNorm has no CPU kernel)')
    return changes


def build_runner(cfg: Config) -> Runner:
    """Build the runner for ``cfg`` the way mmseg's tools do
    (``RUNNERS.build`` when the config sets ``runner_type``, else
    :class:`~mmseg_wsbcn.engine.WSBCNRunner`).

    Without CUDA, a distributed launch is first adapted by
    :func:`adapt_to_cpu_distributed`, and what changed is logged once.

    Args:
        cfg (Config): A config prepared by
            :func:`~mmseg_wsbcn.cli.config.prepare_config`.

    Returns:
        Runner: The runner, not yet started.
    """
    if cfg.get('launcher', 'none') != 'none' \
            and not torch.cuda.is_available():
        changes = adapt_to_cpu_distributed(cfg)
        print_log(
            'No CUDA on this machine, so the distributed run is adapted: ' +
            '; '.join(changes) + '.',
            logger='current')
    try:
        if 'runner_type' not in cfg:
            return WSBCNRunner.from_cfg(cfg)
        return RUNNERS.build(cfg)
    except ValueError as e:
        message = model_config_error(e, cfg)
        if message is None:
            raise
        raise ToolError(message) from e


def _num_groups_keys(node: Any, where: str) -> List[str]:
    """``key=value`` for every ``num_groups`` set in a config subtree."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            path = f'{where}.{key}'
            if key == 'num_groups':
                found.append(f'{path}={value}')
            else:
                found += _num_groups_keys(value, path)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            found += _num_groups_keys(value, f'{where}.{i}')
    return found


def model_config_error(exc: ValueError, cfg: Config) -> Optional[str]:
    """One line for a model that cannot be built because a norm layer's
    ``num_groups`` does not divide its channels (``BCN`` and
    ``nn.GroupNorm`` raise ``ValueError``); ``None`` for other errors.

    The line keeps the layer's own message and names the config keys that
    set ``num_groups``, with their values.
    """
    text = str(exc).strip()
    if 'num_groups' not in text and 'divisible by num_groups' not in text:
        return None
    first = first_line(exc)
    keys = _num_groups_keys(cfg.get('model'), 'model')
    where = f" (set by {', '.join(keys[:4])}" + (
        ', ...)' if len(keys) > 4 else ')') if keys else ''
    return (f'cannot build the model: {first}{where}; num_groups must '
            'divide the channels of every normalized layer, e.g. 32 (or 16, '
            '8) for ResNet backbones and DeepLabv3 heads')


def _exception_line(exc: BaseException) -> str:
    """The exception's own message, also when a DataLoader worker re-raised
    it (PyTorch prefixes the worker's traceback)."""
    text = str(exc).strip()
    marker = f'{type(exc).__name__}: '
    if 'Original Traceback' in text and marker in text:
        return text.rsplit(marker, 1)[1].strip().splitlines()[0]
    return text


def run_and_finish(prog: str, stage: Callable[[], Any], cfg: Config,
                   where: Callable[[], str]) -> Any:
    """Run ``stage`` (``runner.train``/``runner.test``), then tear down the
    process group; report the expected failures in one line.

    A non-finite loss (``FloatingPointError`` from
    :class:`~mmseg_wsbcn.engine.hooks.StopOnNonFiniteLossHook`), a
    :class:`~mmseg_wsbcn.cli.parser.ToolError` raised while running (e.g. a
    checkpoint that does not match the model,
    :class:`~mmseg_wsbcn.cli.checkpoint.CheckpointMatchHook`), an unreadable
    checkpoint (:class:`~mmseg_wsbcn.engine.runner.CheckpointLoadError`) and
    a peer that died or hangs
    (:func:`~mmseg_wsbcn.cli.distributed.distributed_failure_message`) exit
    with ``<prog>: error: <message>``; anything else is re-raised.

    Args:
        prog (str): The tool's name for the message, e.g. ``'train.py'``.
        stage (callable): What to run.
        cfg (Config): The run's config.
        where (callable): Returns where the run stopped, e.g.
            ``'at iteration 3'`` (called only on failure).

    Returns:
        Whatever ``stage`` returns.
    """
    try:
        result = stage()
    except (FloatingPointError, ToolError, CheckpointLoadError,
            CheckpointSaveError, ResumeError, DataSampleError) as e:
        # the NaN hook stops every rank; a bad checkpoint or sample fails on
        # every rank that meets it
        finish_distributed(wait=False)
        sys.exit(f'{prog}: error: {_exception_line(e)}')
    except BaseException as e:
        msg = distributed_failure_message(e, cfg, where())
        finish_distributed(wait=False)
        if msg is None:
            raise
        sys.exit(f'{prog}: error: {msg}')
    finish_distributed()
    return result
