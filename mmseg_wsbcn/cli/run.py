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
from typing import Any, Callable, List

import torch
from mmengine.config import Config
from mmengine.dist import is_distributed
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..engine import WSBCNRunner
from .distributed import (DEFAULT_DIST_TIMEOUT, configured_timeout,
                          distributed_failure_message, finish_distributed,
                          init_cpu_distributed)


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
    if 'runner_type' not in cfg:
        return WSBCNRunner.from_cfg(cfg)
    return RUNNERS.build(cfg)


def run_and_finish(prog: str, stage: Callable[[], Any], cfg: Config,
                   where: Callable[[], str]) -> Any:
    """Run ``stage`` (``runner.train``/``runner.test``), then tear down the
    process group; report the expected failures in one line.

    A non-finite loss (``FloatingPointError`` from
    :class:`~mmseg_wsbcn.engine.hooks.StopOnNonFiniteLossHook`) and a peer
    that died or hangs
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
    except FloatingPointError as e:  # the NaN hook stops every rank
        finish_distributed(wait=False)
        sys.exit(f'{prog}: error: {e}')
    except BaseException as e:
        msg = distributed_failure_message(e, cfg, where())
        finish_distributed(wait=False)
        if msg is None:
            raise
        sys.exit(f'{prog}: error: {msg}')
    finish_distributed()
    return result
