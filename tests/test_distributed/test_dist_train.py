# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""2 processes x 1 image equal 1 process x 2 images (DeepLabv3, WS + BCN
with estimated statistics), with real processes on CPU (gloo).

Both runs see the same global batches (same seed; the sampler deals the
same permutation out to the ranks in turn). What is compared:

- loss curve: MMEngine logs each rank's *own* loss (rank 0's in the log),
  so the test hook records every rank's loss entries per iteration and the
  2-process global loss is the mean over the ranks. With mmseg's
  ``CrossEntropyLoss`` (``avg_non_ignore=False``: the mean over all pixels,
  ignored ones counting as 0) and equal-size images, that mean equals the
  1-process loss over both images, for the decode and the auxiliary head;
- BCN statistics (``mu_hat``, ``var_hat``, step count): identical on both
  ranks after every iteration, and equal to the 1-process ones;
- final weights: every tensor of the saved state dicts.

Tolerance 1e-4: the two runs sum the same numbers in a different order in
float32, and 10 SGD steps amplify that rounding. Losses and weights are
compared in absolute terms. The statistics are compared in the units the
layer uses them in, ``(x - mu_hat) / sqrt(var_hat + eps)``: ``mu_hat`` to
1e-4 of ``sqrt(var_hat + eps)`` and ``var_hat`` to 1e-4 relative (the
variances reach a few hundred, the means of a few channels fed by 2 pooled
values per step move the most); the step counts exactly.

The two runs' wall times are measured by benchmarks/benchmark_dist_train.py.
"""
import os
import os.path as osp
import sys

import pytest
import torch
from dist_helpers import (BCN_CONFIG, FAKE_SRUN, MAX_ITERS, bcn_errors,
                          free_port, load_checkpoint, needs_gloo, rank_records,
                          read_scalars, read_test_metrics)

pytestmark = needs_gloo

LOSS_KEYS = ('loss', 'decode.loss_ce', 'aux.loss_ce')
TOL = 1e-4


@pytest.fixture(scope='module')
def records(single_run, dist_run):
    one = rank_records(single_run.work_dir)
    ranks = [rank_records(dist_run.work_dir, r) for r in (0, 1)]
    assert sorted(one) == list(range(1, MAX_ITERS + 1))
    assert sorted(ranks[0]) == sorted(ranks[1]) == sorted(one)
    return one, ranks


def test_both_runs_see_the_same_global_batches(records):
    one, ranks = records
    for it, record in one.items():
        assert len(record['images']) == 2
        assert [ranks[0][it]['images'][0], ranks[1][it]['images'][0]] == \
            record['images'], it
    # the data is shuffled (not always the same two images)
    assert len({tuple(r['images']) for r in one.values()}) > 3


def test_bcn_statistics_are_identical_on_both_ranks_every_iteration(records):
    _, ranks = records
    for it in ranks[0]:
        bcn0, bcn1 = ranks[0][it]['bcn'], ranks[1][it]['bcn']
        assert bcn0 and bcn0.keys() == bcn1.keys()
        for key in bcn0:
            assert torch.equal(bcn0[key], bcn1[key]), (it, key)


def test_loss_curve_equals_the_single_process_one(records, single_run,
                                                  dist_run):
    one, ranks = records
    for it in one:
        for key in LOSS_KEYS:
            global_loss = (ranks[0][it]['losses'][key] +
                           ranks[1][it]['losses'][key]) / 2
            assert abs(one[it]['losses'][key] - global_loss) <= TOL, \
                (it, key, one[it]['losses'][key], global_loss)
    # the records are the logged values (the log rounds to 4 digits)
    logged_one = [
        r['loss'] for r in read_scalars(single_run.work_dir) if 'loss' in r
    ]
    logged_rank0 = [
        r['loss'] for r in read_scalars(dist_run.work_dir) if 'loss' in r
    ]
    assert logged_one == pytest.approx(
        [one[i]['losses']['loss'] for i in sorted(one)], abs=1e-4)
    assert logged_rank0 == pytest.approx(
        [ranks[0][i]['losses']['loss'] for i in sorted(one)], abs=1e-4)


def test_bcn_statistics_equal_the_single_process_ones(records):
    one, ranks = records
    for it in one:
        assert ranks[0][it]['bcn'].keys() == one[it]['bcn'].keys()
        err = bcn_errors(ranks[0][it]['bcn'], one[it]['bcn'])
        assert err['mean'] <= TOL and err['var'] <= TOL, (it, err)
        assert err['count'] == 0, (it, err)


def test_final_weights_equal_the_single_process_ones(single_run, dist_run):
    ckpt = f'iter_{MAX_ITERS}.pth'
    one = load_checkpoint(osp.join(single_run.work_dir, ckpt))['state_dict']
    two = load_checkpoint(osp.join(dist_run.work_dir, ckpt))['state_dict']
    assert one.keys() == two.keys()
    stats = [k for k in one if '.pbn.running_' in k or 'num_batches' in k]
    for key in one.keys() - set(stats):
        torch.testing.assert_close(
            two[key], one[key], rtol=0, atol=TOL, msg=key)
    err = bcn_errors({k: two[k] for k in stats}, {k: one[k] for k in stats})
    assert err['mean'] <= TOL and err['var'] <= TOL and err['count'] == 0


def test_dist_test_gives_the_single_process_miou(single_run, run_cmd,
                                                 tmp_path):
    """dist_test.sh with 2 processes on the 1-process checkpoint: the
    metrics equal the 1-process validation of the same weights (5 images,
    so the ranks get 3 each and the padded duplicate is dropped)."""
    val = [r for r in read_scalars(single_run.work_dir) if 'mIoU' in r][-1]
    result = run_cmd([
        'tools/dist_test.sh', BCN_CONFIG,
        osp.join(single_run.work_dir, f'iter_{MAX_ITERS}.pth'), '2',
        '--work-dir',
        str(tmp_path)
    ],
                     PORT=free_port()).check()
    assert 'Distributed launcher: pytorch' in result.output
    test = read_test_metrics(str(tmp_path))
    for key in ('aAcc', 'mIoU', 'mAcc'):
        # the metrics are float32 numbers (metrics.json writes them as
        # their shortest repr): equal as float32
        assert (torch.tensor(test[key], dtype=torch.float32) ==
                torch.tensor(val[key], dtype=torch.float32)), key


def test_slurm_test_gives_the_single_process_miou(single_run, run_cmd,
                                                  repo_root, tmp_path):
    """slurm_test.sh through a stand-in srun that starts 2 tasks here with
    slurm's variables (``--launcher slurm`` on gloo)."""
    val = [r for r in read_scalars(single_run.work_dir) if 'mIoU' in r][-1]
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    fake = osp.join(repo_root, FAKE_SRUN)
    for tool in ('srun', 'scontrol'):
        path = bin_dir / tool
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{fake}" '
                        f'{tool} "$@"\n')
        path.chmod(0o755)
    result = run_cmd([
        'tools/slurm_test.sh', 'cpu', 'wsbcn-test', BCN_CONFIG,
        osp.join(single_run.work_dir, f'iter_{MAX_ITERS}.pth'), '--work-dir',
        str(tmp_path / 'work')
    ],
                     PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
                     FAKE_SRUN_RUN=1,
                     GPUS=2,
                     GPUS_PER_NODE=2,
                     GRES='',
                     PORT=free_port()).check()
    assert 'Distributed launcher: slurm' in result.output
    test = read_test_metrics(str(tmp_path / 'work'))
    for key in ('aAcc', 'mIoU', 'mAcc'):
        # the metrics are float32 numbers (metrics.json writes them as
        # their shortest repr): equal as float32
        assert (torch.tensor(test[key], dtype=torch.float32) ==
                torch.tensor(val[key], dtype=torch.float32)), key
