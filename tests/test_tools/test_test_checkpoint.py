# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""tools/test.py refuses a checkpoint that does not fit the config's model
(a BN config with a BCN+WS checkpoint) and an unreadable one, in one line;
--allow-partial-load loads the matching keys with one warning."""
import glob
import json
import os.path as osp

import pytest
import torch

BN_CONFIG = 'tests/data/configs/deeplabv3_r18-d8_bn_1xb2-tiny_cityscapes-mini-64x64.py'  # noqa: E501
BCN_CONFIG = 'configs/demo/deeplabv3_r18-d8_bcn-ws_1xb2-200iters_cityscapes-mini-128x128.py'  # noqa: E501


@pytest.fixture(scope='module')
def bcn_ws_checkpoint(repo_root, tmp_path_factory):
    """A checkpoint of the BCN+WS demo model (same ResNet-18 DeepLabv3 as
    the BN config, other layers)."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS

    import mmseg_wsbcn  # noqa: F401

    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(
            Config.fromfile(osp.join(repo_root, BCN_CONFIG)).model)
    path = str(tmp_path_factory.mktemp('ckpt') / 'bcn_ws.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


def test_bcn_ws_checkpoint_with_a_bn_config_stops_in_one_line(
        run_tool, assert_one_line_error, bcn_ws_checkpoint, tmp_path):
    proc = run_tool('test.py', BN_CONFIG, bcn_ws_checkpoint, '--work-dir',
                    str(tmp_path))
    assert_one_line_error(
        proc, f"test.py: error: checkpoint '{bcn_ws_checkpoint}' does not "
        'match the model: ', '58 missing keys (backbone.stem.1.running_mean, ',
        '145 unexpected keys (backbone.stem.1.pbn.weight, ',
        '54 mis-shaped keys (backbone.stem.7.weight: checkpoint (32,) vs '
        'model (64,), ', '--allow-partial-load')
    assert proc.returncode == 1
    assert not glob.glob(osp.join(str(tmp_path), '*', 'metrics.json'))


def test_allow_partial_load_warns_once_and_tests(run_tool, bcn_ws_checkpoint,
                                                 tmp_path):
    proc = run_tool('test.py', BN_CONFIG, bcn_ws_checkpoint, '--work-dir',
                    str(tmp_path), '--allow-partial-load')
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    warnings = [ln for ln in out.splitlines() if 'partial load' in ln]
    assert len(warnings) == 1, warnings
    assert 'WARNING' in warnings[0]
    assert '58 missing keys' in warnings[0]
    assert 'keep' in warnings[0] and 'initial values' in warnings[0]
    # MMEngine's own key lists are not printed on top
    assert 'missing keys in source state_dict' not in out
    assert 'unexpected key in source state_dict' not in out
    [metrics] = glob.glob(osp.join(str(tmp_path), '*', 'metrics.json'))
    with open(metrics) as f:
        assert 'mIoU' in json.load(f)['metrics']


@pytest.mark.parametrize('content, needle', [
    (None, 'PytorchStreamReader failed reading zip archive'),
    (b'', '(empty file)'),
])
def test_unreadable_checkpoint_is_one_line(run_tool, assert_one_line_error,
                                           bcn_ws_checkpoint, tmp_path,
                                           content, needle):
    bad = tmp_path / 'bad.pth'
    if content is None:  # truncated, as by a copy that stopped
        with open(bcn_ws_checkpoint, 'rb') as f:
            content = f.read()[:100000]
    bad.write_bytes(content)
    proc = run_tool('test.py', BN_CONFIG, str(bad), '--work-dir',
                    str(tmp_path / 'work'))
    assert_one_line_error(proc,
                          f"test.py: error: cannot read checkpoint '{bad}' (",
                          needle, 'truncated, corrupted')
