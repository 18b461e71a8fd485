# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Resume after a kill: a training run (checkpoints every 2 of 10
iterations) is killed with SIGKILL once ``iter_4.pth`` exists; ``--resume``
continues from the last checkpoint, and the final weights equal those of
the uninterrupted run with the same seed (``single_run``; deterministic
CPU ops, one thread). Checkpoints are written to ``<name>.tmp`` and
renamed, so the kill leaves no half-written checkpoint.

The runs are usually bit-identical. The tolerances (weights 1e-6, BCN
statistics 1e-5 in the units the layer uses them, see test_dist_train.py)
only absorb float32 rounding: rarely, two fresh processes with the same
seed already differ in the last bit of the first loss on this CPU build.
"""
import glob
import os.path as osp
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from dist_helpers import (BCN_CONFIG, MAX_ITERS, RUN_TIMEOUT, bcn_errors,
                          load_checkpoint, needs_gloo, rank_records)

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
    name = f'iter_{MAX_ITERS}.pth'
    ref = load_checkpoint(osp.join(single_run.work_dir, name))
    got = load_checkpoint(osp.join(work_dir, name))
    ref_sd, got_sd = ref['state_dict'], got['state_dict']
    assert ref_sd.keys() == got_sd.keys()
    identical = all(torch.equal(ref_sd[k], got_sd[k]) for k in ref_sd)
    stats = [k for k in ref_sd if '.pbn.running_' in k or 'num_batches' in k]
    params = [k for k in ref_sd if k not in stats]
    diff = max((ref_sd[k] - got_sd[k]).abs().max().item() for k in params)
    err = bcn_errors({k: got_sd[k]
                      for k in stats}, {k: ref_sd[k]
                                        for k in stats})
    print(f'\n[resume after kill] bit-identical: {identical}; max |weight '
          f'diff| {diff:.3g}; BCN statistics {err}')
    for key in params:
        torch.testing.assert_close(
            got_sd[key], ref_sd[key], rtol=0, atol=1e-6, msg=key)
    assert err['mean'] <= 1e-5 and err['var'] <= 1e-5 and err['count'] == 0
    # the optimizer state (SGD momentum) too
    for a, b in zip(ref['optimizer']['state'].values(),
                    got['optimizer']['state'].values()):
        torch.testing.assert_close(
            b['momentum_buffer'], a['momentum_buffer'], rtol=1e-4, atol=1e-6)
    # and the losses: the iterations after the resume repeat the curve
    step = int(re.search(r'iter_(\d+)\.pth$', last).group(1))
    ref_losses = rank_records(single_run.work_dir)
    got_losses = rank_records(work_dir)
    assert set(range(step + 1, MAX_ITERS + 1)) <= set(got_losses)
    for it in got_losses:
        assert got_losses[it]['losses']['loss'] == pytest.approx(
            ref_losses[it]['losses']['loss'], abs=1e-6), it
