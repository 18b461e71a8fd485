# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""mmseg's own ``browse_dataset.py`` (in its wheel under ``.mim/tools``) on
this toolkit's demo config, on the stack where that tool works: the fork's
mmseg 1.4.2. mmseg 1.2.2's stops in OpenCV (``Layout of the output array
img is incompatible with cv::Mat``, open-mmlab/mmsegmentation#3405; see
docs/analysis.md).

The reference: the training samples that mmseg's own dataset class lists for
the config, one painted image per sample, each of the size the training
pipeline gives it (at most the 128 x 128 crop).
"""
import glob
import os.path as osp
import subprocess
import sys

import pytest
from PIL import Image

import mmseg_wsbcn

DEMO = ('configs/demo/'
        'deeplabv3_r18-d8_bcn-ws_1xb2-200iters_cityscapes-mini-128x128.py')

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        mmseg_wsbcn.STACK == 'openmmlab',
        reason="mmseg 1.2.2's browse_dataset.py fails in OpenCV "
        '(open-mmlab/mmsegmentation#3405); it works on the fork '
        '(STACK=onedl)')
]


def test_browse_dataset_paints_every_training_sample(repo_root, tmp_path):
    import mmseg
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    tool = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools',
                    'analysis_tools', 'browse_dataset.py')
    proc = subprocess.run(
        [sys.executable, tool, DEMO, '--output-dir', str(tmp_path),
         '--not-show'], cwd=repo_root, capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = Config.fromfile(osp.join(repo_root, DEMO))
    init_default_scope('mmseg')
    dataset_cfg = cfg.train_dataloader.dataset
    dataset_cfg.data_root = osp.join(repo_root, dataset_cfg.data_root)
    dataset = DATASETS.build(dataset_cfg)
    expected = sorted(
        osp.basename(dataset.get_data_info(i)['img_path'])
        for i in range(len(dataset)))
    painted = sorted(glob.glob(str(tmp_path / '*.png')))
    assert [osp.basename(p) for p in painted] == expected
    for path in painted:
        w, h = Image.open(path).size
        assert 0 < w <= 128 and 0 < h <= 128
