# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""A config mistake that the build would stop on (an unknown layer type, a
layer argument or a backbone depth outside its domain, an unknown transform)
ends every tool that builds it in one line naming the key, the bad value
and what is allowed, closest first (the tools' ``main`` in this process;
nothing is built or trained)."""
import pytest

CONFIG = ('configs/demo/'
          'deeplabv3_r18-d8_bcn-ws_1xb2-200iters_cityscapes-mini-128x128.py')
NORMS = ("model.backbone.norm_cfg.type='BCNN' is not a registered norm "
         "layer; the registered norm layers, closest first: 'BCN', 'BN', ")
MODE = ("model.backbone.conv_cfg.mode='vra' is not a valid mode of WSConv2d; "
        "the valid modes, closest first: 'var', 'std'")
DEPTH = ('model.backbone.depth=51 is not a valid depth of ResNetV1c; the '
         'valid depths, closest first: 50, 34, 18, 101, 152')

#: (--cfg-options, the same mistake in a config file, the line's start)
CASES = {
    'unknown norm type': ('model.backbone.norm_cfg.type=BCNN',
                          "model = dict(backbone=dict(norm_cfg=dict(type="
                          "'BCNN')))", NORMS),
    'ws mode typo':
    ('model.backbone.conv_cfg.mode=vra',
     "model = dict(backbone=dict(conv_cfg=dict(mode='vra')))", MODE),
    'resnet depth': ('model.backbone.depth=51',
                     'model = dict(backbone=dict(depth=51))', DEPTH),
}


def one_line(proc) -> str:
    """The tool's only stderr line (it failed with status 1)."""
    assert proc.returncode == 1, proc.stderr
    assert 'Traceback' not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def config_file(repo_root, tmp_path, body: str) -> str:
    path = tmp_path / 'bad.py'
    path.write_text(f"_base_ = ['{repo_root}/{CONFIG}']\n{body}\n")
    return str(path)


def assert_line(line: str, tool: str, expected: str) -> None:
    head = f'{tool}: error: cannot build the model: '
    assert line.startswith(head + expected), line
    if expected is NORMS:  # every norm layer is listed
        for name in ('BCN', 'GN', 'LN', 'SyncBN'):
            assert f"'{name}'" in line, line
    else:
        assert line == head + expected


@pytest.mark.parametrize('case', CASES, ids=list(CASES))
@pytest.mark.parametrize('tool', ['train.py', 'test.py'])
def test_cfg_options_mistake(tool, case, call_tool, tmp_path):
    option, _, expected = CASES[case]
    args = [tool, CONFIG
            ] + ([str(tmp_path / 'ckpt.pth')] if tool == 'test.py' else [])
    (tmp_path / 'ckpt.pth').write_bytes(b'')  # never read: the check is first
    proc = call_tool(*args, '--work-dir', str(tmp_path), '--cfg-options',
                     option)
    assert_line(one_line(proc), tool, expected)


@pytest.mark.parametrize('case', CASES, ids=list(CASES))
def test_config_file_mistake_in_pytorch2onnx(case, call_tool, repo_root,
                                             tmp_path):
    _, body, expected = CASES[case]
    ckpt = tmp_path / 'ckpt.pth'
    ckpt.write_bytes(b'')  # never read: the check is first
    proc = call_tool('deployment/pytorch2onnx.py',
                     config_file(repo_root, tmp_path, body), str(ckpt),
                     '--out', str(tmp_path / 'x.onnx'), '--no-verify')
    assert_line(one_line(proc), 'pytorch2onnx.py', expected)


def test_shared_norm_cfg_names_the_first_key(call_tool, repo_root, tmp_path):
    """A norm_cfg set once and used by every part is reported at its first
    key, the backbone's."""
    body = ("norm_cfg = dict(type='BCNN', num_groups=32)\n"
            'model = dict(backbone=dict(norm_cfg=norm_cfg), '
            'decode_head=dict(norm_cfg=norm_cfg), '
            'auxiliary_head=dict(norm_cfg=norm_cfg))')
    proc = call_tool('train.py', config_file(repo_root, tmp_path, body),
                     '--work-dir', str(tmp_path))
    assert_line(one_line(proc), 'train.py', NORMS)


@pytest.mark.parametrize('tool', ['misc/check_dataset.py', 'train.py'])
def test_unknown_transform(tool, call_tool, tmp_path):
    args = [] if tool != 'train.py' else ['--work-dir', str(tmp_path)]
    proc = call_tool(tool, CONFIG, *args, '--cfg-options',
                     'train_dataloader.dataset.pipeline.2.type=RandomResise')
    line = one_line(proc)
    prog = tool.split('/')[-1]
    assert line.startswith(
        f'{prog}: error: cannot build the dataset: '
        "train_dataloader.dataset.pipeline.2.type='RandomResise' is not a "
        'registered transform; the registered transforms, closest first: '
        "'RandomResize', "), line


def test_unknown_dataset_type_in_check_dataset(call_tool):
    proc = call_tool('misc/check_dataset.py', CONFIG, '--cfg-options',
                     'train_dataloader.dataset.type=CityscapeDataset')
    assert one_line(proc).startswith(
        'check_dataset.py: error: cannot build the dataset: '
        "train_dataloader.dataset.type='CityscapeDataset' is not a "
        'registered dataset; the registered datasets, closest first: '
        "'CityscapesDataset', ")
