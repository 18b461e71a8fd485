# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""``--resume`` when the newest checkpoint is damaged: the run continues
from the newest intact one, warns in one line naming both, and reaches the
weights of the uninterrupted run (``single_run``, the same seed and
deterministic CPU setting as test_resume_after_kill.py)."""
import os.path as osp

import torch
from dist_helpers import BCN_CONFIG, MAX_ITERS, load_checkpoint, needs_gloo

pytestmark = needs_gloo


def test_truncated_newest_checkpoint_falls_back(run_cmd, single_run,
                                                tmp_path):
    work_dir = str(tmp_path)
    run_cmd([
        'tools/train.py', BCN_CONFIG, '--work-dir', work_dir,
        '--cfg-options', 'train_cfg.max_iters=4'
    ]).check()
    newest = osp.join(work_dir, 'iter_4.pth')
    with open(newest, 'rb') as f:
        head = f.read(4096)
    with open(newest, 'wb') as f:  # a copy cut short
        f.write(head)
    result = run_cmd(
        ['tools/train.py', BCN_CONFIG, '--work-dir', work_dir,
         '--resume']).check()
    warnings = [
        ln for ln in result.output.splitlines() if 'WARNING - --resume:' in ln
    ]
    assert len(warnings) == 1, result.output[-3000:]
    assert f"'{newest}' (RuntimeError: PytorchStreamReader failed reading " \
        'zip archive' in warnings[0]
    assert f"resuming from '{osp.join(work_dir, 'iter_2.pth')}'" in \
        warnings[0]
    assert 'resumed epoch: 0, iter: 2' in result.output
    ref = load_checkpoint(
        osp.join(single_run.work_dir, f'iter_{MAX_ITERS}.pth'))['state_dict']
    got = load_checkpoint(osp.join(work_dir,
                                   f'iter_{MAX_ITERS}.pth'))['state_dict']
    for key in ref:
        if '.pbn.running_' in key or 'num_batches' in key:
            continue  # BCN estimates: compared in test_resume_after_kill
        torch.testing.assert_close(got[key], ref[key], rtol=0, atol=1e-6,
                                   msg=key)
