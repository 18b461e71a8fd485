# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""tools/deployment/pytorch2onnx.py: ONNX Runtime parity, standard ops,
metadata, one-line errors."""
import json
import os.path as osp

import numpy as np
import pytest
from deploy_helpers import build_model, save_checkpoint

TOOL = 'deployment/pytorch2onnx.py'
IMAGE = ('demo/data/cityscapes_mini/leftImg8bit/val/frankfurt/'
         'frankfurt_000000_000294_leftImg8bit.png')


def _files(repo_root, tmp_path, variant):
    model = build_model(repo_root, variant)
    cfg, ckpt = str(tmp_path / f'{variant}.py'), str(tmp_path / 'm.pth')
    model.cfg.dump(cfg)
    save_checkpoint(model, ckpt)
    return cfg, ckpt


@pytest.mark.parametrize('variant,dynamic', [('bcn-ws', False),
                                             ('gn-ws', True)])
def test_export_parity(repo_root, run_tool, tmp_path, require_extra, variant,
                       dynamic):
    ort = require_extra('deploy', 'onnxruntime')
    onnx = require_extra('deploy', 'onnx')
    cfg, ckpt = _files(repo_root, tmp_path, variant)
    out = str(tmp_path / 'm.onnx')
    args = [cfg, ckpt, '--out', out, '--runs', '1']
    if dynamic:
        args += ['--dynamic-shape', '--shape', '96', '160']
    proc = run_tool(TOOL, *args)
    assert proc.returncode == 0, proc.stderr
    assert 'argmax agrees on' in proc.stdout, proc.stdout
    assert 'ONNX Runtime' in proc.stdout and 'PyTorch folded' in proc.stdout

    model = onnx.load(out)
    assert {n.domain for n in model.graph.node} <= {'', 'ai.onnx'}
    assert {o.domain for o in model.opset_import} <= {'', 'ai.onnx'}
    ops = {n.op_type for n in model.graph.node}
    assert 'ReduceMean' in ops and 'Conv' in ops
    assert 'InstanceNormalization' not in ops  # the two-level GroupNorm
    assert 'BatchNormalization' not in ops  # folded
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta['bgr_to_rgb']) is True
    assert len(json.loads(meta['mean'])) == 3

    if dynamic:  # another shape than the exported one, vs PyTorch
        import torch

        from mmseg_wsbcn.deploy.export import SegLogits, preprocess_image
        torch_model = build_model(repo_root, variant)
        image = preprocess_image(
            osp.join(repo_root, IMAGE),
            torch_model.cfg.model.data_preprocessor, (128, 256))
        with torch.no_grad():
            expected = SegLogits(torch_model)(image).numpy()
        sess = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
        got = sess.run(None, {'input': image.numpy()})[0]
        assert got.shape == expected.shape == (1, 19, 128, 256)
        assert np.abs(got - expected).max() < 1e-4


def test_mismatched_checkpoint(repo_root, run_tool, tmp_path,
                               assert_one_line_error):
    cfg, _ = _files(repo_root, tmp_path, 'bcn-ws')
    bn_model = build_model(repo_root, 'bn')
    ckpt = str(tmp_path / 'bn.pth')
    save_checkpoint(bn_model, ckpt)
    proc = run_tool(TOOL, cfg, ckpt, '--out', str(tmp_path / 'x.onnx'))
    assert_one_line_error(proc, 'does not match the config', 'missing key')
    assert not osp.exists(tmp_path / 'x.onnx')


def test_bad_opset_and_missing_files(repo_root, run_tool, tmp_path,
                                     assert_one_line_error):
    cfg = osp.join(repo_root, 'configs/demo/'
                   'deeplabv3_r18-d8_bcn-ws_1xb2-200iters_'
                   'cityscapes-mini-128x128.py')
    ckpt = tmp_path / 'c.pth'
    ckpt.write_bytes(b'')
    out = str(tmp_path / 'x.onnx')
    assert_one_line_error(
        run_tool(TOOL, cfg, str(ckpt), '--out', out, '--opset', '9'),
        'unsupported opset 9')
    assert_one_line_error(
        run_tool(TOOL, cfg, str(tmp_path / 'none.pth'), '--out', out),
        'checkpoint file not found')
    assert_one_line_error(
        run_tool(TOOL, str(tmp_path / 'none.py'), str(ckpt), '--out', out),
        'config file not found')
    assert_one_line_error(
        run_tool(TOOL, cfg, str(ckpt), '--out', out), 'cannot read '
        'checkpoint')
