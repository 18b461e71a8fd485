# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Run a function on several real CPU processes joined by a gloo process
group, the way the layer and hook tests check distributed statistics."""
import datetime
import os.path as osp
import socket
import time
from typing import Callable, List

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _rank_main(rank: int, body: Callable[[int, str], object], port: int,
               world_size: int, tmp_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        'gloo',
        init_method=f'tcp://127.0.0.1:{port}',
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=60))
    try:
        torch.save(body(rank, tmp_dir), osp.join(tmp_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


def run_gloo_ranks(body: Callable[[int, str], object], world_size: int,
                   tmp_dir: str, timeout_s: float) -> List[object]:
    """Start ``world_size`` processes in a gloo group, each returning
    ``body(rank, tmp_dir)`` (a module-level function, as ``mp.spawn``
    pickles it); fail the test after ``timeout_s``.

    Returns:
        list: What each rank's ``body`` returned, by rank.
    """
    context = mp.spawn(
        _rank_main,
        args=(body, free_port(), world_size, str(tmp_dir)),
        nprocs=world_size,
        join=False)
    deadline = time.monotonic() + timeout_s
    try:
        while not context.join(timeout=5):
            if time.monotonic() > deadline:
                pytest.fail(f'distributed workers exceeded {timeout_s}s')
    finally:
        for proc in context.processes:
            if proc.is_alive():
                proc.kill()
    return [
        torch.load(osp.join(str(tmp_dir), f'rank{r}.pt'), weights_only=False)
        for r in range(world_size)
    ]
