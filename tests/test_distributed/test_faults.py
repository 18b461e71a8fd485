# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Faults in multi-process runs end in bounded time with a clear message.

- A rank that dies: under torchrun (``dist_train.sh``) the launcher stops
  the other ranks and names the rank that failed first; without a
  supervising launcher (processes started by hand, as slurm or mpirun
  start them) the survivor's next collective fails at once and it exits
  with one line naming itself and the iteration.
- A rank that hangs: the survivor's collective times out after
  ``env_cfg.dist_cfg.timeout`` (10 s here) and it exits with that line;
  torchrun then stops the hung rank.
- A port already in use: one line naming the port.
- A NaN loss (on one rank): every rank stops at that iteration with a
  message naming it and the values; the step is not checkpointed.

Faults are injected by the test-only ``FaultInjectionHook``
(tests/data/hooks) at the start of iteration 3 (4 for the NaN).
"""
import os.path as osp
import re
import socket
import subprocess
import sys
import time

import pytest
import torch
from dist_helpers import BCN_CONFIG, free_port, load_checkpoint, needs_gloo

pytestmark = needs_gloo
#: Whole-run limit for a failing run: start-up, 2-3 iterations, and the
#: 10 s collective timeout of the hang case, on busy CI cores.
BOUND_S = 120
ONE_IMAGE = 'train_dataloader.batch_size=1'


def fault(action, rank=1, iteration=3):
    return [
        f'custom_hooks.2.action={action}', f'custom_hooks.2.rank={rank}',
        f'custom_hooks.2.iteration={iteration}'
    ]


@pytest.fixture
def dist_train(run_cmd):
    """``dist_train(work_dir, *cfg_options, **env)``: a 2-process run of
    ``tools/dist_train.sh`` with 1 image per process, bounded by
    ``BOUND_S``."""

    def train(work_dir, *options, **env):
        return run_cmd([
            'tools/dist_train.sh', BCN_CONFIG, '2', '--work-dir',
            str(work_dir), '--cfg-options', ONE_IMAGE, *options
        ],
                       timeout=BOUND_S,
                       PORT=free_port(),
                       **env)

    return train


def error_lines(output, tool='train.py'):
    return [
        ln for ln in output.splitlines() if ln.startswith(f'{tool}: error:')
    ]


def test_dead_rank_under_torchrun(dist_train, tmp_path):
    result = dist_train(tmp_path, *fault('exit'))
    assert result.returncode != 0
    assert result.seconds < BOUND_S
    # torchrun's summary names the rank that failed first and its code
    assert 'train.py FAILED' in result.output
    root = result.output.split('Root Cause')[-1]
    assert re.search(r'rank\s*:\s*1 \(local_rank: 1\)', root), root
    assert re.search(r'exitcode\s*:\s*1 ', root), root


def test_dead_rank_without_a_launcher(repo_root, tool_env, tmp_path):
    """Ranks started by hand (RANK/WORLD_SIZE/MASTER_* set, as a cluster
    scheduler does): the survivor notices the closed connection itself."""
    port = free_port()
    args = [
        sys.executable, 'tools/train.py', BCN_CONFIG, '--launcher', 'pytorch',
        '--work-dir',
        str(tmp_path), '--cfg-options', ONE_IMAGE, *fault('exit')
    ]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            args,
            cwd=repo_root,
            env=tool_env(
                RANK=rank,
                LOCAL_RANK=rank,
                WORLD_SIZE=2,
                MASTER_ADDR='127.0.0.1',
                MASTER_PORT=port),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True) for rank in (0, 1)
    ]
    try:
        outs = [p.communicate(timeout=BOUND_S) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert time.perf_counter() - start < BOUND_S
    assert [p.returncode for p in procs] == [1, 1]
    assert 'Traceback' not in outs[0][1], outs[0][1][-3000:]
    lines = error_lines(outs[0][1])
    assert len(lines) == 1, outs[0][1][-3000:]
    assert 'rank 0 of 2 stopped at iteration 3' in lines[0]
    assert 'another process exited or stopped responding' in lines[0]


def test_hung_rank_times_out(dist_train, tmp_path):
    result = dist_train(tmp_path, *fault('hang'),
                        'env_cfg.dist_cfg.timeout=10')
    assert result.returncode != 0
    assert result.seconds < BOUND_S
    lines = error_lines(result.output)
    assert len(lines) == 1, result.output[-4000:]
    assert 'rank 0 of 2 stopped at iteration 3' in lines[0]
    assert 'waits 10 s' in lines[0] and 'env_cfg.dist_cfg.timeout' in lines[0]
    assert 'Timed out' in lines[0]


@pytest.fixture
def busy_port():
    """A port held by a listening socket for the test's duration."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        s.listen(1)
        yield s.getsockname()[1]


@pytest.mark.parametrize('script', ['dist_train.sh', 'dist_test.sh'])
def test_port_in_use_with_the_scripts(run_cmd, busy_port, script):
    args = ['tools/' + script, BCN_CONFIG] + \
        (['ckpt.pth'] if script == 'dist_test.sh' else []) + ['2']
    result = run_cmd(args, timeout=60, PORT=busy_port)
    assert result.returncode == 1
    assert result.stdout == ''
    assert result.stderr.strip() == (
        f'{script}: error: port {busy_port} is already in use on this '
        f'machine (Address already in use); choose a free one, e.g. '
        f'PORT={busy_port + 1} {script} ...')


def test_port_in_use_with_the_tool(run_cmd, busy_port, tmp_path):
    """``--launcher pytorch`` without the scripts (torchrun, slurm, by
    hand): rank 0 cannot host the rendezvous."""
    result = run_cmd([
        'tools/train.py', BCN_CONFIG, '--launcher', 'pytorch', '--work-dir',
        str(tmp_path)
    ],
                     timeout=BOUND_S,
                     RANK=0,
                     LOCAL_RANK=0,
                     WORLD_SIZE=2,
                     MASTER_ADDR='127.0.0.1',
                     MASTER_PORT=busy_port)
    assert result.returncode == 1
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert lines == [
        f'train.py: error: port {busy_port} on 127.0.0.1 is already in '
        'use; pick a free one with PORT=... (dist_train.sh) or '
        '--master_port'
    ], result.stderr[-3000:]


def test_nan_loss_on_one_rank_stops_every_rank(dist_train, tmp_path):
    """NaN weights on rank 1 at iteration 4, a checkpoint iteration: both
    ranks stop there (the hook all-reduces a flag), the message names the
    iteration, the rank and the values, and the last checkpoint is
    iteration 2's, finite."""
    result = dist_train(tmp_path, *fault('nan_loss', rank=1, iteration=4))
    assert result.returncode != 0
    assert result.seconds < BOUND_S
    lines = error_lines(result.output)
    assert lines, result.output[-4000:]
    for line in lines:
        assert line.startswith('train.py: error: non-finite loss at '
                               'iteration 4/10: rank 1: loss=nan, '
                               'decode.loss_ce=nan;'), line
        assert 'last checkpoint: ' in line and 'iter_2.pth' in line
        assert 'enabled=False on StopOnNonFiniteLossHook' in line
    # no worker traceback (torchrun prefixes worker output with [rankN]:)
    assert not re.search(r'\[rank\d\]: Traceback', result.output)
    assert not osp.exists(osp.join(tmp_path, 'iter_4.pth'))
    with open(osp.join(tmp_path, 'last_checkpoint')) as f:
        assert f.read().strip().endswith('iter_2.pth')
    state = load_checkpoint(osp.join(tmp_path, 'iter_2.pth'))['state_dict']
    assert all(torch.isfinite(v).all() for v in state.values())
