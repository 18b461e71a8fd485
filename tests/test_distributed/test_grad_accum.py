# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Gradient accumulation: 1 image per step with
``optim_wrapper.accumulative_counts=2`` equals 2 images per step, for a
model without batch-dependent layers (GN + WS), to 1e-5.

MMEngine divides each micro-batch loss by 2 and steps the optimizer every
second iteration; the CE loss is a mean over the pixels of equal-size
images, so the accumulated gradient is the 2-image gradient. The two runs
(5 iterations x 2 images, 10 iterations x 1 image) run side by side."""
import os.path as osp
import subprocess
import sys

import pytest
import torch
from dist_helpers import (GN_CONFIG, RUN_TIMEOUT, load_checkpoint, needs_gloo,
                          rank_records)

pytestmark = needs_gloo
TOL = 1e-5


@pytest.fixture(scope='module')
def runs(repo_root, tool_env, tmp_path_factory):
    work_dirs = {
        'batch2': str(tmp_path_factory.mktemp('batch2')),
        'accum2': str(tmp_path_factory.mktemp('accum2')),
    }
    options = {
        'batch2': [],
        'accum2': [
            'train_dataloader.batch_size=1',
            'optim_wrapper.accumulative_counts=2', 'train_cfg.max_iters=10'
        ],
    }
    procs = {
        name:
        subprocess.Popen(
            [
                sys.executable, 'tools/train.py', GN_CONFIG, '--work-dir',
                work_dirs[name]
            ] + (['--cfg-options'] + options[name] if options[name] else []),
            cwd=repo_root,
            env=tool_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True)
        for name in work_dirs
    }
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=RUN_TIMEOUT)
        assert proc.returncode == 0, out[-4000:]
    return work_dirs


@pytest.mark.parametrize('step', [2, 4, 5])
def test_weights_after_each_update_match(runs, step):
    """``iter_<2k>`` of the accumulating run is ``iter_<k>`` of the
    2-image run (the last one is saved at the end, iteration 5/10)."""
    a = load_checkpoint(osp.join(runs['batch2'],
                                 f'iter_{step}.pth'))['state_dict']
    b = load_checkpoint(osp.join(runs['accum2'],
                                 f'iter_{2 * step}.pth'))['state_dict']
    assert a.keys() == b.keys()
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f'\n[grad accumulation] after update {step}: max |weight diff| '
          f'{diff:.3g}')
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=TOL, msg=key)


def test_micro_batch_losses_average_to_the_batch_loss(runs):
    batch2 = rank_records(runs['batch2'])
    accum2 = rank_records(runs['accum2'])
    assert sorted(batch2) == [1, 2, 3, 4, 5]
    assert sorted(accum2) == list(range(1, 11))
    for it, record in batch2.items():
        micro = [accum2[2 * it - 1], accum2[2 * it]]
        assert [m['images'][0] for m in micro] == record['images']
        for key in ('loss', 'decode.loss_ce', 'aux.loss_ce'):
            mean = (micro[0]['losses'][key] + micro[1]['losses'][key]) / 2
            assert abs(mean - record['losses'][key]) <= TOL, (it, key)
