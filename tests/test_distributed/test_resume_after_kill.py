# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Resume after a kill: a training run (checkpoints every 2 of 10
iterations) is killed with SIGKILL once ``iter_4.pth`` exists; ``--resume``
continues from the last checkpoint, and the final weights equal those of
the uninterrupted run with the same seed (``single_run``; deterministic
CPU ops, one thread). Checkpoints are written to ``<name>.tmp`` and
renamed, so the kill leaves no half-written checkpoint.

The runs are usually bit-identical. The tolerances (weights 1e-6, BCN
statistics 1e-5 in the units the layer uses them, see test_dist_train.py;
:func:`dist_helpers.assert_resumed_run_equals`, which
test_preemption.py shares) only absorb float32 rounding: rarely, two fresh
processes with the same seed already differ in the last bit of the first
loss on this CPU build.
"""
import glob
import os.path as osp
import re
import signal
import subprocess
import sys
import time

import pytest
from dist_helpers import (BCN_CONFIG, MAX_ITERS, RUN_TIMEOUT,
                          assert_resumed_run_equals, load_checkpoint,
                          needs_gloo)

pytestmark = needs_gloo


@pytest.fixture(scope='module')
def killed(repo_root, tool_env, tmp_path_factory):
    """The work_dir of a run killed with SIGKILL right after it saved
    ``iter_4.pth``, and what ``last_checkpoint`` named at that point."""
    work_dir = str(tmp_path_factory.mktemp('killed'))
    proc = subprocess.Popen(
        [sys.executable, 'tools/train.py', BCN_CONFIG, '--work-dir', work_dir],
        cwd=repo_root,
        env=tool_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + RUN_TIMEOUT
    try:
        while not osp.exists(osp.join(work_dir, 'iter_4.pth')):
            assert proc.poll() is None, 'training ended before iter_4.pth'
            assert time.monotonic() < deadline, 'no iter_4.pth in time'
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        last = f.read().strip()
    return work_dir, last


def test_the_kill_left_only_complete_checkpoints(killed):
    work_dir, last = killed
    # killed mid-run: the last iteration was never reached
    assert not osp.exists(osp.join(work_dir, f'iter_{MAX_ITERS}.pth'))
    saved = glob.glob(osp.join(work_dir, 'iter_*.pth'))
    assert osp.join(work_dir, 'iter_4.pth') in saved
    assert last in saved
    for path in saved:  # every file under a checkpoint name loads
        step = int(re.search(r'iter_(\d+)\.pth$', path).group(1))
        ckpt = load_checkpoint(path)
        assert ckpt['meta']['iter'] == step
        assert ckpt['state_dict']


@pytest.fixture(scope='module')
def resumed(killed, run_cmd):
    work_dir, last = killed
    result = run_cmd(
        ['tools/train.py', BCN_CONFIG, '--work-dir', work_dir,
         '--resume']).check()
    return work_dir, last, result


def test_resume_continues_from_the_last_checkpoint(resumed):
    work_dir, last, result = resumed
    step = int(re.search(r'iter_(\d+)\.pth$', last).group(1))
    assert f'resumed epoch: 0, iter: {step}' in result.output
    assert osp.isfile(osp.join(work_dir, f'iter_{MAX_ITERS}.pth'))
    assert not glob.glob(osp.join(work_dir, '*.tmp'))
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read().strip().endswith(f'iter_{MAX_ITERS}.pth')


def test_resumed_run_equals_the_uninterrupted_run(resumed, single_run):
    work_dir, last, _ = resumed
    step = int(re.search(r'iter_(\d+)\.pth$', last).group(1))
    measured = assert_resumed_run_equals(single_run.work_dir, work_dir, step)
    print(f'\n[resume after kill] {measured}')
