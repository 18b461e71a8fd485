# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Fixtures of the distributed tests, which run the tools as real
processes on CPU (``gloo``), one thread per process:

- ``tool_env(**extra)``: the environment for a tool process.
- ``run_cmd(args, timeout=RUN_TIMEOUT, **env)``: run a command in the
  repository and return the finished :class:`dist_helpers.Run`.
- ``single_run``, ``dist_run``: the training runs that several tests
  compare, run once per session. ``single_run``: 1 process x 2 images per
  step, 10 iterations, checkpoints every 2, validation on 5 images at the
  end. ``dist_run``: the same with 2 processes x 1 image per step, through
  ``tools/dist_train.sh CONFIG 2``.
"""
import os
import os.path as osp
import signal
import subprocess
import sys
import time
from typing import Callable, Dict, List

import pytest
from dist_helpers import BCN_CONFIG, RUN_TIMEOUT, Run, free_port


@pytest.fixture(scope='session')
def tool_env(repo_root) -> Callable[..., Dict[str, str]]:
    """``tool_env(**extra)``: this process's environment for a tool, with
    ``extra`` added (values turned into strings): CPU only, one thread per
    process (as torchrun sets for several processes; it also makes the
    runs bit-reproducible), the repository and the test hooks
    (``tests/data/hooks``) importable, no inherited rank variables (nor
    the slurm job's, which tools/slurm_train.sh acts on)."""

    def make(**extra) -> Dict[str, str]:
        env = dict(os.environ)
        for key in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR',
                    'MASTER_PORT', 'PORT', 'NNODES', 'NODE_RANK',
                    'SLURM_JOB_ID', 'SLURM_RESTART_COUNT'):
            env.pop(key, None)
        hooks = osp.join(repo_root, 'tests', 'data', 'hooks')
        env['PYTHONPATH'] = os.pathsep.join(
            p for p in (repo_root, hooks, env.get('PYTHONPATH')) if p)
        env.update(
            CUDA_VISIBLE_DEVICES='',
            OMP_NUM_THREADS='1',
            MKL_NUM_THREADS='1',
            PYTHON=sys.executable,
            PYTHONUNBUFFERED='1')
        env.update({k: str(v) for k, v in extra.items()})
        return env

    return make


@pytest.fixture(scope='session')
def run_cmd(repo_root, tool_env) -> Callable[..., Run]:
    """``run_cmd(args, timeout=RUN_TIMEOUT, **env)`` runs ``args``
    (``tools/...`` scripts, or Python files run with this interpreter) in
    the repository root with ``tool_env(**env)``.

    The command gets its own process group; past ``timeout`` the whole
    group (torchrun and its workers too) is killed and the test fails.
    """

    def run(args: List[str], timeout: float = RUN_TIMEOUT, **env) -> Run:
        if args[0].endswith('.py'):
            args = [sys.executable] + args
        start = time.perf_counter()
        proc = subprocess.Popen(
            args,
            cwd=repo_root,
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
            pytest.fail(
                f'{args} ran past {timeout} s:\n{stdout}{stderr}'[-4000:])
        finally:
            try:  # leftovers of a failed run (e.g. a hung rank)
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return Run(proc.returncode, stdout, stderr,
                   time.perf_counter() - start)

    return run


@pytest.fixture(scope='session')
def single_run(run_cmd, tmp_path_factory) -> Run:
    """1 process x 2 images per step."""
    work_dir = str(tmp_path_factory.mktemp('single'))
    result = run_cmd(['tools/train.py', BCN_CONFIG, '--work-dir',
                      work_dir]).check()
    result.work_dir = work_dir
    return result


@pytest.fixture(scope='session')
def dist_run(run_cmd, tmp_path_factory) -> Run:
    """2 processes x 1 image per step through ``tools/dist_train.sh``."""
    work_dir = str(tmp_path_factory.mktemp('dist'))
    result = run_cmd([
        'tools/dist_train.sh', BCN_CONFIG, '2', '--work-dir', work_dir,
        '--cfg-options', 'train_dataloader.batch_size=1'
    ],
                     PORT=free_port()).check()
    result.work_dir = work_dir
    return result
