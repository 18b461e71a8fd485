# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Build MMEngine's ``Runner`` for the tools, including distributed runs on
machines without CUDA.

MMEngine 0.10.7 assumes CUDA when launched with ``--launcher``: its
``init_dist`` calls ``torch.cuda.set_device`` and its DDP wrapper passes
``device_ids=[LOCAL_RANK]``, both of which fail on a CPU build of PyTorch.
When CUDA is not available, :func:`build_runner` therefore initializes the
process group itself with the ``gloo`` backend from the launcher's
environment variables (MMEngine then skips its own ``init_dist``), and asks
for a DDP wrapper with ``device_ids=None``. With CUDA nothing changes.

Every collective waits at most ``env_cfg.dist_cfg.timeout`` seconds for its
peers, so a rank that dies or hangs makes the others fail instead of
blocking forever; :func:`distributed_failure_message` turns that failure
into one line for the tools. :func:`build_runner` also makes sure
:class:`~mmseg_wsbcn.engine.hooks.StopOnNonFiniteLossHook` is registered
unless the config sets ``stop_on_nan=False``.
"""
import datetime
import os
import re
import subprocess
import sys
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..engine import WSBCNRunner
from .cli import ToolError

#: Seconds a collective may wait for a peer before failing (a dead rank
#: must not hang the others forever). Override with
#: ``env_cfg.dist_cfg.timeout`` in the config.
DEFAULT_DIST_TIMEOUT = 1800


def _launcher_env(launcher: str) -> dict:
    """Rank, world size and rendezvous address from the launcher's
    environment variables (as MMEngine's ``init_dist`` reads them)."""
    env = os.environ
    if launcher == 'pytorch':
        missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR',
                               'MASTER_PORT') if k not in env]
        if missing:
            raise ToolError(
                f'--launcher pytorch needs the environment variables '
                f'{missing} (set by torchrun); start the tool with '
                '`torchrun --nproc_per_node=N tools/...` or '
                'tools/dist_train.sh')
        return dict(
            rank=int(env['RANK']),
            world_size=int(env['WORLD_SIZE']),
            local_rank=int(env.get('LOCAL_RANK', 0)),
            addr=env['MASTER_ADDR'],
            port=env['MASTER_PORT'])
    if launcher == 'slurm':
        node_list = env['SLURM_NODELIST']
        addr = env.get('MASTER_ADDR') or subprocess.getoutput(
            f'scontrol show hostname {node_list} | head -n1')
        return dict(
            rank=int(env['SLURM_PROCID']),
            world_size=int(env['SLURM_NTASKS']),
            local_rank=int(env.get('SLURM_LOCALID', 0)),
            addr=addr,
            port=env.get('MASTER_PORT', '29500'))
    if launcher == 'mpi':
        return dict(
            rank=int(env['OMPI_COMM_WORLD_RANK']),
            world_size=int(env['OMPI_COMM_WORLD_SIZE']),
            local_rank=int(env['OMPI_COMM_WORLD_LOCAL_RANK']),
            addr=env.get('MASTER_ADDR', '127.0.0.1'),
            port=env.get('MASTER_PORT', '29500'))
    raise ToolError(f"unknown launcher '{launcher}'; choose from "
                    "'none', 'pytorch', 'slurm', 'mpi'")


def init_cpu_distributed(launcher: str, timeout: float) -> None:
    """Initialize a ``gloo`` process group for ``launcher``.

    Args:
        launcher (str): ``'pytorch'``, ``'slurm'`` or ``'mpi'``.
        timeout (float): Seconds a collective waits for a peer.

    Raises:
        ToolError: The launcher's variables are missing or the rendezvous
            port is taken.
    """
    info = _launcher_env(launcher)
    os.environ.update(
        RANK=str(info['rank']),
        WORLD_SIZE=str(info['world_size']),
        LOCAL_RANK=str(info['local_rank']),
        MASTER_ADDR=str(info['addr']),
        MASTER_PORT=str(info['port']))
    try:
        dist.init_process_group(
            backend='gloo',
            init_method='env://',
            rank=info['rank'],
            world_size=info['world_size'],
            timeout=datetime.timedelta(seconds=timeout))
    except Exception as e:  # the store raises RuntimeError/DistNetworkError
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if 'address already in use' in str(e).lower() or \
                'EADDRINUSE' in str(e):
            raise ToolError(
                f"port {info['port']} on {info['addr']} is already in use; "
                'pick a free one with PORT=... (dist_train.sh) or '
                '--master_port') from e
        raise ToolError(
            f'could not initialize the gloo process group at '
            f"{info['addr']}:{info['port']} (rank {info['rank']} of "
            f"{info['world_size']}): {msg}") from e


def _replace_syncbn(cfg: Any) -> int:
    """Turn every ``norm_cfg=dict(type='SyncBN')`` into ``'BN'`` in place;
    return how many were changed. (``SyncBatchNorm`` has no CPU kernel.)"""
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


def _add_nan_loss_hook(cfg: Config) -> None:
    """Register ``StopOnNonFiniteLossHook`` unless ``stop_on_nan=False``.

    ``configs/_base_/default_runtime.py`` lists it in ``custom_hooks``; a
    config that sets its own ``custom_hooks`` replaces that list, so the
    hook is added back here.
    """
    if not cfg.get('stop_on_nan', True):
        return
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(
            isinstance(h, dict) and h.get('type') == 'StopOnNonFiniteLossHook'
            for h in hooks):
        hooks.append(dict(type='StopOnNonFiniteLossHook'))
        cfg.custom_hooks = hooks


#: Lower-case fragments of the errors a collective raises when a peer
#: process died (closed connection) or stopped responding (timeout).
_PEER_FAILURE_SIGNS = ('connection closed by peer', 'connection reset',
                       'broken pipe', 'timed out', 'timeout',
                       'connection refused')


def _configured_timeout(cfg: Config) -> Optional[float]:
    """``env_cfg.dist_cfg.timeout`` (seconds), or ``None`` if unset."""
    return ((cfg.get('env_cfg') or {}).get('dist_cfg') or {}).get('timeout')


def distributed_failure_message(exc: BaseException, cfg: Config,
                                stage: str) -> Optional[str]:
    """One line for an error caused by another rank failing, else ``None``.

    With a process group running, ``torch.distributed`` errors (and gloo's
    ``RuntimeError`` for a closed connection or a timeout) mean that a peer
    exited or hangs; the message says so, names this rank, ``stage`` and the
    timeout, and keeps the first sentence of the original error.

    Args:
        exc (BaseException): The error ``runner.train()``/``test()`` raised.
        cfg (Config): The run's config (for the timeout).
        stage (str): Where it happened, e.g. ``'at iteration 3'``.

    Returns:
        str, optional: The message, or ``None`` when ``exc`` is not a
        distributed failure (the caller re-raises it).
    """
    if not (dist.is_available() and dist.is_initialized()) \
            or dist.get_world_size() < 2:
        return None
    text = str(exc).strip()
    dist_error = getattr(dist, 'DistError', ())
    if not (isinstance(exc, dist_error) or any(
            sign in text.lower() for sign in _PEER_FAILURE_SIGNS)):
        return None
    first = text.splitlines()[0] if text else type(exc).__name__
    first = re.sub(r'^\[[^\]]*\]\s*', '', first)  # gloo's [file.cc:line]
    first = first.split('. ')[0].rstrip('.')
    timeout = _configured_timeout(cfg)
    if timeout is None:  # the tools' default without CUDA, else torch's
        timeout = 'the default' if torch.cuda.is_available() else \
            f'{DEFAULT_DIST_TIMEOUT} s'
    else:
        timeout = f'{timeout} s'
    return (f'rank {dist.get_rank()} of {dist.get_world_size()} stopped '
            f'{stage}: another process exited or stopped responding (a '
            f'collective waits {timeout} for its peers, '
            f'env_cfg.dist_cfg.timeout); see the first failing rank\'s log. '
            f'{type(exc).__name__}: {first}')


def build_runner(cfg: Config) -> Runner:
    """Build the runner for ``cfg`` the way mmseg's tools do
    (``RUNNERS.build`` when the config sets ``runner_type``, else
    :class:`~mmseg_wsbcn.engine.WSBCNRunner`), after setting up a CPU
    process group when needed.

    Args:
        cfg (Config): A config prepared by :func:`prepare_config`.

    Returns:
        Runner: The runner, not yet started.
    """
    _add_nan_loss_hook(cfg)
    launcher = cfg.get('launcher', 'none')
    if launcher != 'none' and not torch.cuda.is_available():
        timeout = _configured_timeout(cfg)
        if timeout is None:
            timeout = DEFAULT_DIST_TIMEOUT
        if not (dist.is_available() and dist.is_initialized()):
            init_cpu_distributed(launcher, timeout)
        wrapper = cfg.get('model_wrapper_cfg') or dict(
            type='MMDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
        wrapper['device_ids'] = None
        cfg.model_wrapper_cfg = wrapper
        if _replace_syncbn(cfg.model):
            print_log(
                'No CUDA: SyncBN layers are built as per-process BN '
                '(SyncBatchNorm has no CPU kernel).',
                logger='current')
    if 'runner_type' not in cfg:
        return WSBCNRunner.from_cfg(cfg)
    return RUNNERS.build(cfg)


def finish_distributed(wait: bool = True) -> None:
    """Destroy the process group (if any), after a barrier when ``wait``.

    Args:
        wait (bool): Wait for every rank first. Pass ``False`` when leaving
            on an error: a peer that died would make the barrier block
            until the timeout.
    """
    if dist.is_available() and dist.is_initialized():
        try:
            if wait:
                dist.barrier()
        finally:
            dist.destroy_process_group()


def run_and_finish(prog: str, stage: Callable[[], Any], cfg: Config,
                   where: Callable[[], str]) -> Any:
    """Run ``stage`` (``runner.train``/``runner.test``), then tear down the
    process group; report the expected failures in one line.

    A non-finite loss (``FloatingPointError`` from
    :class:`~mmseg_wsbcn.engine.hooks.StopOnNonFiniteLossHook`) and a peer
    that died or hangs (:func:`distributed_failure_message`) exit with
    ``<prog>: error: <message>``; anything else is re-raised.

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
