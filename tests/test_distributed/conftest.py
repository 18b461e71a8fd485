# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The training runs that several distributed tests compare, run once per
session (real processes on CPU, ``gloo``):

- ``single_run``: 1 process x 2 images per step, 10 iterations,
  checkpoints every 2, validation on 5 images at the end.
- ``dist_run``: the same with 2 processes x 1 image per step, through
  ``tools/dist_train.sh CONFIG 2``.
"""
import os.path as osp
import sys

import pytest

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from dist_helpers import BCN_CONFIG, free_port, run  # noqa: E402


@pytest.fixture(scope='session')
def single_run(tmp_path_factory):
    """1 process x 2 images per step."""
    work_dir = str(tmp_path_factory.mktemp('single'))
    result = run(['tools/train.py', BCN_CONFIG, '--work-dir',
                  work_dir]).check()
    result.work_dir = work_dir
    return result


@pytest.fixture(scope='session')
def dist_run(tmp_path_factory):
    """2 processes x 1 image per step through ``tools/dist_train.sh``."""
    work_dir = str(tmp_path_factory.mktemp('dist'))
    result = run([
        'tools/dist_train.sh', BCN_CONFIG, '2', '--work-dir', work_dir,
        '--cfg-options', 'train_dataloader.batch_size=1'
    ],
                 PORT=free_port()).check()
    result.work_dir = work_dir
    return result
