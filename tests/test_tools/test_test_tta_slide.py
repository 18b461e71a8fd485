# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""tools/test.py --tta with sliding-window inference on a full-size
Cityscapes image (1024x2048), as mmseg's Cityscapes configs set them: the
dataset base's ``tta_pipeline`` (scales 0.5-1.75, with and without flip, so
up to 1792x3584) and a slide ``test_cfg`` of mmseg's Cityscapes configs
(SegFormer's: 1024x1024 windows every 768 pixels).

The model is the toolkit's DeepLabv3 Cityscapes config with a tiny
ResNet-18 (4 base channels) so that the 12 views x up to 10 windows stay
fast on a CPU; its weights are untrained (the test checks that the run
completes and what it writes, not the figures).
"""
import glob
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

BASE = 'configs/deeplabv3/deeplabv3_r50-d8_bn_4xb2-80k_cityscapes-512x1024.py'
FRAME = 'frankfurt_000000_000294'
SRC = 'demo/data/cityscapes_mini/{}/val/frankfurt/' + FRAME + '_{}.png'


def full_size_cityscapes(repo_root, root):
    """The bundled frame upscaled to 1024x2048, in Cityscapes' layout."""
    for folder, suffix, interp in [
        ('leftImg8bit', 'leftImg8bit', cv2.INTER_LINEAR),
        ('gtFine', 'gtFine_labelTrainIds', cv2.INTER_NEAREST),
    ]:
        img = cv2.imread(
            osp.join(repo_root, SRC.format(folder, suffix)),
            cv2.IMREAD_UNCHANGED)
        big = cv2.resize(img, (2048, 1024), interpolation=interp)
        out = root / folder / 'val' / 'frankfurt'
        out.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out / f'{FRAME}_{suffix}.png'), big)


def tiny_config(repo_root, data_root, path):
    path.write_text(f"""
_base_ = [{osp.join(repo_root, BASE)!r}]
model = dict(
    backbone=dict(depth=18, stem_channels=8, base_channels=4),
    decode_head=dict(in_channels=32, channels=8),
    auxiliary_head=dict(in_channels=16, channels=4),
    test_cfg=dict(mode='slide', crop_size=(1024, 1024), stride=(768, 768)))
test_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root={str(data_root)!r}))
""")


def save_initial_weights(config, checkpoint):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS

    import mmseg_wsbcn  # noqa: F401

    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(Config.fromfile(config).model)
    model.init_weights()
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)


def test_tta_with_sliding_windows_on_a_full_cityscapes_image(
        run_tool, repo_root, tmp_path):
    data_root = tmp_path / 'cityscapes'
    full_size_cityscapes(repo_root, data_root)
    config = tmp_path / 'tiny_slide_cityscapes.py'
    tiny_config(repo_root, data_root, config)
    checkpoint = str(tmp_path / 'tiny.pth')
    save_initial_weights(str(config), checkpoint)
    work, out = tmp_path / 'work', tmp_path / 'out'

    proc = run_tool('test.py', str(config), checkpoint, '--tta', '--out',
                    str(out), '--work-dir', str(work))
    assert proc.returncode == 0, proc.stderr[-3000:]

    pred = Image.open(out / 'frankfurt' / f'{FRAME}.png')
    assert pred.mode == 'L' and pred.size == (2048, 1024)
    assert np.array(pred).max() < 19
    [metrics_file] = glob.glob(str(work / '*' / 'metrics.json'))
    with open(metrics_file) as f:
        record = json.load(f)
    assert record['tta'] is True and record['num_images'] == 1
    assert set(record['metrics']) == {'aAcc', 'mIoU', 'mAcc'}
    assert 0 <= record['metrics']['mIoU'] <= 100
    # the run really slid windows over the TTA views
    dumped = glob.glob(str(work / '*.py'))
    assert dumped and "mode='slide'" in open(dumped[0]).read()


@pytest.mark.parametrize('size', [1024, 1280, 1792])
def test_the_slide_setting_covers_every_tta_height(size):
    """1024x1024 windows every 768 pixels leave no row out at the heights
    of --tta's scales (mmseg asserts that), unlike crop_size=(512, 1024)
    with stride=(768, 768), which tools/test.py refuses."""

    def covered(length, crop, stride):
        grids = max(length - crop + stride - 1, 0) // stride + 1
        seen = np.zeros(length, bool)
        for i in range(grids):
            end = min(i * stride + crop, length)
            seen[max(end - crop, 0):end] = True
        return seen.all()

    assert covered(size, 1024, 768)
    assert covered(size * 2, 1024, 768)
    assert not covered(1280, 512, 768)
