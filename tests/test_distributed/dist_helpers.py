# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Helpers for the distributed tests: run the tools as real processes on
CPU (``gloo``), one thread per process, and read what they wrote."""
import glob
import json
import os
import os.path as osp
import signal
import socket
import subprocess
import sys
import time
from typing import Dict, List

import pytest
import torch
import torch.distributed as dist

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = 'tests/data/configs/distributed'
BCN_CONFIG = f'{CONFIG_DIR}/deeplabv3_r18-d8_bcn-ws_1xb2-10iters_cityscapes-mini-64x64.py'  # noqa: E501
GN_CONFIG = f'{CONFIG_DIR}/deeplabv3_r18-d8_gn-ws_1xb2-5iters_cityscapes-mini-64x64.py'  # noqa: E501
MAX_ITERS = 10
#: Mark for modules that start processes: they need gloo.
needs_gloo = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason='needs torch.distributed with the gloo backend')
#: Hard limit for one run; a run that needs it is a hang.
RUN_TIMEOUT = 300


def tool_env(**extra) -> Dict[str, str]:
    """Environment for the tools: CPU only, one thread per process (as
    torchrun sets for several processes; it also makes the runs
    bit-reproducible), the test hooks importable."""
    env = dict(os.environ)
    for key in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR',
                'MASTER_PORT', 'PORT', 'NNODES', 'NODE_RANK'):
        env.pop(key, None)
    hooks = osp.join(REPO_ROOT, 'tests', 'data', 'hooks')
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (REPO_ROOT, hooks, env.get('PYTHONPATH')) if p)
    env.update(
        CUDA_VISIBLE_DEVICES='',
        OMP_NUM_THREADS='1',
        MKL_NUM_THREADS='1',
        PYTHON=sys.executable,
        PYTHONUNBUFFERED='1')
    env.update({k: str(v) for k, v in extra.items()})
    return env


def free_port() -> int:
    """A TCP port that is free right now."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Run:
    """A finished command: return code, output and wall time."""

    def __init__(self, returncode: int, stdout: str, stderr: str,
                 seconds: float):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.output = stdout + stderr
        self.seconds = seconds

    def check(self) -> 'Run':
        assert self.returncode == 0, self.output[-4000:]
        return self


def run(args: List[str], timeout: float = RUN_TIMEOUT, **env) -> Run:
    """Run ``args`` (``tools/...`` scripts or Python files) in the repo.

    The command gets its own process group; past ``timeout`` the whole
    group (torchrun and its workers too) is killed and the test fails.
    """
    if args[0].endswith('.py'):
        args = [sys.executable] + args
    start = time.perf_counter()
    proc = subprocess.Popen(
        args,
        cwd=REPO_ROOT,
        env=tool_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f'{args} ran past {timeout} s:\n{stdout}{stderr}'[-4000:])
    finally:
        try:  # leftovers of a failed run (e.g. a hung rank)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return Run(proc.returncode, stdout, stderr, time.perf_counter() - start)


def load_checkpoint(path: str) -> dict:
    # our own training checkpoints: they hold more than tensors
    return torch.load(path, map_location='cpu', weights_only=False)


def rank_records(work_dir: str, rank: int = 0) -> Dict[int, dict]:
    """What RankStateRecorderHook saved for ``rank``, by iteration."""
    records = {}
    for path in glob.glob(
            osp.join(work_dir, 'rank_state', f'iter*_rank{rank}.pth')):
        record = torch.load(path, weights_only=False)
        records[record['iter']] = record
    return records


def read_scalars(work_dir: str) -> List[dict]:
    """The records of the newest run's ``vis_data/scalars.json``."""
    runs = sorted(
        glob.glob(osp.join(work_dir, '2*', 'vis_data', 'scalars.json')))
    with open(runs[-1]) as f:
        return [json.loads(line) for line in f]


def read_test_metrics(work_dir: str) -> dict:
    """The metrics ``tools/test.py`` dumped to ``<work_dir>/<time>/``."""
    files = sorted(glob.glob(osp.join(work_dir, '2*', '2*.json')))
    with open(files[-1]) as f:
        return json.load(f)


def bcn_errors(a: dict, b: dict, eps: float = 1e-5) -> dict:
    """Largest differences between two sets of BCN buffers: absolute,
    ``mu_hat``'s in units of ``sqrt(var_hat + eps)``, ``var_hat``'s
    relative, and of the step counts."""
    err = dict(abs=0.0, mean=0.0, var=0.0, count=0.0)
    for key in a:
        x, y = a[key].double(), b[key].double()
        diff = (x - y).abs()
        err['abs'] = max(err['abs'], diff.max().item())
        if key.endswith('running_mean'):
            std = (b[key[:-len('mean')] + 'var'].double() + eps).sqrt()
            err['mean'] = max(err['mean'], (diff / std).max().item())
        elif key.endswith('running_var'):
            err['var'] = max(err['var'], (diff / y).max().item())
        else:
            err['count'] = max(err['count'], diff.max().item())
    return err
