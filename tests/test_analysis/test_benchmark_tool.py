# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""mmseg's own ``benchmark.py`` (in its wheel under ``.mim/tools``) on the
demo BCN+WS model, unfolded and folded for deployment
(``model = dict(_delete_=True, type='FoldedSegmentor', segmentor=...)``,
docs/analysis.md).

``benchmark.py`` times images 6 to 200 of the test set, so the one bundled
test image is repeated 200 times (mmengine's ``RepeatDataset``) in a config
that inherits the demo's. It loads no checkpoint when the file does not
exist (random weights and default running statistics; folding is exact for
any). The folded run must log the fold report of all 29 WS convs and BCNs;
the unfolded one must not fold.
"""
import glob
import json
import os.path as osp
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

CONFIG = ('configs/demo/'
          'deeplabv3_r18-d8_{}_1xb2-200iters_cityscapes-mini-128x128.py')


def _benchmark(repo_root, tmp_path, variant, folded=False):
    import mmseg
    tool = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools',
                    'analysis_tools', 'benchmark.py')
    config = tmp_path / f'{variant}-{folded}.py'
    base = osp.join(repo_root, CONFIG.format(variant))
    fold = ("model = dict(_delete_=True, type='FoldedSegmentor', "
            'segmentor={{_base_.model}})\n') if folded else ''
    config.write_text(
        f'_base_ = [{base!r}]\n' + fold +
        "test_dataloader = dict(dataset=dict(_delete_=True, "
        "type='RepeatDataset', times=200, "
        'dataset={{_base_.test_dataloader.dataset}}))\n')
    out = tmp_path / f'out-{variant}-{folded}'
    proc = subprocess.run(
        [sys.executable, tool, str(config), str(tmp_path / 'none.pth'),
         '--work-dir', str(out), '--log-interval', '100'],
        cwd=repo_root, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [result] = glob.glob(str(out / 'fps_*.json'))
    with open(result) as f:
        return json.load(f), proc.stdout + proc.stderr


def test_benchmark_unfolded_and_folded(repo_root, tmp_path):
    unfolded, log = _benchmark(repo_root, tmp_path, 'bcn-ws')
    assert unfolded['average_fps'] > 0
    assert 'fold_bcn_ws' not in log
    folded, log = _benchmark(repo_root, tmp_path, 'bcn-ws', folded=True)
    assert folded['average_fps'] > 0
    assert ('fold_bcn_ws: 29 WSConv2d -> Conv2d, 29 BCN folded into convs '
            '(29 GroupNorm made), 0 BN folded, 0 left') in log
