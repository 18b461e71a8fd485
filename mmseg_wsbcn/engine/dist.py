# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Process groups for the tools on machines without CUDA, and one-line
messages for a peer that died or hangs.

MMEngine 0.10.7 assumes CUDA when launched with ``--launcher``: its
``init_dist`` calls ``torch.cuda.set_device``, which fails on a CPU build
of PyTorch. Without CUDA, :func:`init_cpu_distributed` initializes the
process group itself with the ``gloo`` backend from the launcher's
environment variables (MMEngine then skips its own ``init_dist``).

Every collective waits at most ``env_cfg.dist_cfg.timeout`` seconds for its
peers, so a rank that dies or hangs makes the others fail instead of
blocking forever; :func:`distributed_failure_message` turns that failure
into one line for the tools.
"""
import datetime
import os
import socket
import subprocess
from typing import Any, List, Optional

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.dist import barrier, get_rank, get_world_size, is_distributed

from ..utils.errors import ToolError, first_line

#: Seconds a collective may wait for a peer before failing (a dead rank
#: must not hang the others forever). Override with
#: ``env_cfg.dist_cfg.timeout`` in the config.
DEFAULT_DIST_TIMEOUT = 1800


def _launcher_env(launcher: str) -> dict:
    """Rank, world size and rendezvous address from the launcher's
    environment variables (as MMEngine's ``init_dist`` reads them)."""
    env = os.environ
    if launcher == 'pytorch':
        missing = [
            k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
            if k not in env
        ]
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
    # under torchrun the agent already serves the store on that port
    agent_store = os.environ.get('TORCHELASTIC_USE_AGENT_STORE') == 'True'
    if info['rank'] == 0 and not agent_store and \
            not _port_is_free(info['addr'], info['port']):
        raise ToolError(
            f"port {info['port']} on {info['addr']} is already in use; pick "
            'a free one with PORT=... (dist_train.sh) or --master_port')
    try:
        dist.init_process_group(
            backend='gloo',
            init_method='env://',
            rank=info['rank'],
            world_size=info['world_size'],
            timeout=datetime.timedelta(seconds=timeout))
    except (RuntimeError, ValueError) as e:  # DistError is a RuntimeError
        raise ToolError(
            f'could not initialize the gloo process group at '
            f"{info['addr']}:{info['port']} (rank {info['rank']} of "
            f"{info['world_size']}): {first_line(e)}") from e


def _port_is_free(addr: str, port) -> bool:
    """Whether rank 0 can listen on ``addr:port`` (the rendezvous store's
    port), checked by binding it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(('' if addr in ('localhost', '127.0.0.1') else addr,
                       int(port)))
        except OSError:
            return False
    return True


#: Lower-case fragments of gloo's errors for a peer process that died
#: (closed connection) or stopped responding (timeout). The one place the
#: toolkit reads a library's message text: gloo raises a bare
#: ``RuntimeError`` for these (torch 2.13), so no type tells them apart;
#: NCCL's and the store's errors are ``torch.distributed.DistError``.
_PEER_FAILURE_SIGNS = ('connection closed by peer', 'connection reset',
                       'broken pipe', 'timed out', 'timeout',
                       'connection refused')


def configured_timeout(cfg: Config) -> Optional[float]:
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
    if get_world_size() < 2:
        return None
    text = str(exc).strip()
    dist_error = getattr(dist, 'DistError', ())
    if not (isinstance(exc, dist_error)
            or any(sign in text.lower() for sign in _PEER_FAILURE_SIGNS)):
        return None
    first = first_line(exc)
    if first.startswith('['):  # gloo's [file.cc:line] prefix
        first = first.partition('] ')[2] or first
    first = first.split('. ')[0].rstrip('.')
    timeout = configured_timeout(cfg)
    if timeout is None:  # the tools' default without CUDA, else torch's
        timeout = 'the default' if torch.cuda.is_available() else \
            f'{DEFAULT_DIST_TIMEOUT} s'
    else:
        timeout = f'{timeout} s'
    return (f'rank {get_rank()} of {get_world_size()} stopped '
            f'{stage}: another process exited or stopped responding (a '
            f'collective waits {timeout} for its peers, '
            f'env_cfg.dist_cfg.timeout); see the first failing rank\'s log. '
            f'{type(exc).__name__}: {first}')


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


def finish_distributed(wait: bool = True) -> None:
    """Destroy the process group (if any), after a barrier when ``wait``.

    Args:
        wait (bool): Wait for every rank first. Pass ``False`` when leaving
            on an error: a peer that died would make the barrier block
            until the timeout.
    """
    if is_distributed():
        try:
            if wait:
                barrier()
        finally:
            dist.destroy_process_group()
