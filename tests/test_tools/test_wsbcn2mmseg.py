# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""``tools/model_converters/wsbcn2mmseg.py``: a synthetic file in the
authors' released form converts in one command, and what it writes loads
through ``init_cfg=dict(type='Pretrained')`` (torch's ``weights_only=True``
path); bad input ends in one line and writes nothing."""
import os
import os.path as osp

import pytest
import torch
from mmseg.registry import MODELS

import mmseg_wsbcn  # noqa: F401  (registers WSConv2d and BCN)

TOOL = 'model_converters/wsbcn2mmseg.py'


def write_official(official_state_dict, path, layout, edit=None):
    """Save a synthetic file in the released form (``module.`` prefix)."""
    state = official_state_dict(*layout, prefix='module.')
    if edit:
        edit(state)
    torch.save(state, path)
    return state


@pytest.fixture(scope='module')
def bcn_x50(official_state_dict, tmp_path_factory, run_tool):
    folder = tmp_path_factory.mktemp('convert')
    src = str(folder / 'rx50_bcn_ws.pth')
    state = write_official(official_state_dict, src, ('bcn-ws', 'resnext', 50))
    dst = str(folder / 'out' / 'rx50_bcn_ws_mmseg.pth')
    proc = run_tool(TOOL, src, dst)
    return proc, state, dst


def test_prints_what_it_detected_and_the_config(bcn_x50):
    proc, _, dst = bcn_x50
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Detected BCN+WS ResNeXt-50 32x4d (the authors' rx50_bcn_ws.pth)" \
        ': 424 backbone tensors, fc dropped.' in out
    assert "type='ResNeXt'," in out and 'groups=32,' in out
    assert "conv_cfg=dict(type='WSConv2d', mode='var')," in out
    assert "norm_cfg=dict(type='BCN', num_groups=32, requires_grad=True)," \
        in out
    assert f"init_cfg=dict(type='Pretrained', checkpoint='{dst}')," in out
    assert not [n for n in os.listdir(osp.dirname(dst)) if '.tmp' in n]


def test_output_loads_as_a_pretrained_backbone(bcn_x50):
    """The config the tool printed (from the checkpoint's meta), built by
    mmseg's registry, initialized from the file the way configs do."""
    _, state, dst = bcn_x50
    meta = torch.load(dst, weights_only=True)['meta']['wsbcn_converter']
    assert meta['source'] == 'rx50_bcn_ws.pth'
    assert meta['layout'] == 'BCN+WS ResNeXt-50 32x4d'
    assert meta['conv_cfg'] == dict(type='WSConv2d', mode='var')
    backbone = MODELS.build(
        dict(
            meta['backbone'], init_cfg=dict(type='Pretrained',
                                            checkpoint=dst)))
    backbone.init_weights()
    loaded = backbone.state_dict()
    torch.testing.assert_close(loaded['layer1.0.conv2.weight'],
                               state['module.layer1.0.conv2.weight'])
    torch.testing.assert_close(loaded['layer4.2.bn2.pbn.running_var'],
                               state['module.layer4.2.bn2.pbn.running_var'])
    torch.testing.assert_close(
        loaded['layer2.0.downsample.1.bias'],
        state['module.layer2.0.downsample.1.bias'].flatten())


def _drop_two(state):
    del state['module.layer1.0.conv1.weight']
    del state['module.layer4.2.bn3.pbn.running_mean']


def _torchvision(state):
    """BatchNorm statistics in every norm, as a torchvision ResNet has."""
    for key in [k for k in state if k.endswith('bn1.bias')]:
        state[key.replace('bias', 'running_mean')] = torch.zeros(64)


@pytest.mark.parametrize('layout,edit,needles', [
    (('bcn-ws', 'resnet', 50), _drop_two, [
        'not the BCN+WS ResNet-50 layout', '2 missing: layer1.0.conv1.weight, '
        'layer4.2.bn3.pbn.running_mean'
    ]),
    (('gn-ws', 'resnet', 50), _torchvision,
     ['unknown layout', 'BatchNorm ResNet']),
])
def test_bad_layouts(layout, edit, needles, official_state_dict, tmp_path,
                     call_tool, assert_one_line_error):
    src = str(tmp_path / 'in.pth')
    write_official(official_state_dict, src, layout, edit=edit)
    dst = str(tmp_path / 'out.pth')
    proc = call_tool(TOOL, src, dst)
    assert_one_line_error(proc, 'wsbcn2mmseg.py: error: ', src, *needles)
    assert not osp.exists(dst)
    assert not [n for n in os.listdir(osp.dirname(dst)) if '.tmp' in n]


def test_files_that_are_not_checkpoints(repo_root, tmp_path, call_tool,
                                        assert_one_line_error):
    dst = str(tmp_path / 'out.pth')
    text = osp.join(repo_root, 'README.md')
    assert_one_line_error(
        call_tool(TOOL, text, dst), 'README.md: not a checkpoint that '
        'torch.load(weights_only=True) can read')
    src = str(tmp_path / 'full.pth')
    torch.save({'module.conv1.weight': torch.zeros(64, 3, 7, 7)}, src)
    truncated = str(tmp_path / 'truncated.pth')
    with open(src, 'rb') as f, open(truncated, 'wb') as g:
        g.write(f.read()[:2000])
    assert_one_line_error(
        call_tool(TOOL, truncated, dst), 'not a checkpoint', 'zip archive')
    assert_one_line_error(
        call_tool(TOOL, str(tmp_path / 'nothing.pth'), dst), 'no such file')
    assert_one_line_error(call_tool(TOOL, src, src), 'the same file')
    assert not osp.exists(dst)
