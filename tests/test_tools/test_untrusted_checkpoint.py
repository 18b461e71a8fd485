# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""No tool runs code from a checkpoint the user names, unless told to.

The crafted checkpoint writes a marker file when it is unpickled (a
``__reduce__`` payload in place of one weight). On every path that loads
a user-named file (``tools/test.py``, ``load_from``, ``--resume``,
``tools/deployment/pytorch2onnx.py``, ``init_model``) it is refused in one
line naming the file and the opt-in, and the marker never appears;
``--trust-checkpoint`` / ``trust_checkpoint=True`` unpickle it (the marker
appears). The toolkit's own checkpoints go through train -> test -> resume
-> export without the opt-in.
"""
import os
import os.path as osp

import pytest
import torch

CONFIG = 'tests/data/configs/deeplabv3_r18-d8_bn_1xb2-tiny_cityscapes-mini-64x64.py'  # noqa: E501


class Payload:
    """Unpickles to ``exec(code)``, which writes ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')", ))


@pytest.fixture(scope='module')
def model_weights(repo_root):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS

    import mmseg_wsbcn  # noqa: F401

    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(
            Config.fromfile(osp.join(repo_root, CONFIG)).model)
    return model.state_dict()


@pytest.fixture
def marker(tmp_path):
    return str(tmp_path / 'marker')


@pytest.fixture
def evil_checkpoint(tmp_path, model_weights, marker):
    """The model's weights with one of them replaced by the payload."""
    state = model_weights.copy()
    state[next(iter(state))] = Payload(marker)
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': state, 'meta': {}}, path)
    return path


@pytest.fixture
def extra_payload_checkpoint(tmp_path, model_weights, marker):
    """The model's weights, and the payload beside them."""
    path = str(tmp_path / 'extra.pth')
    torch.save({
        'state_dict': model_weights,
        'meta': {},
        'extra': Payload(marker)
    }, path)
    return path


def assert_refused(proc, path, marker, assert_one_line_error):
    assert_one_line_error(proc, 'refusing to unpickle checkpoint',
                          f"'{path}'", 'builtins.exec',
                          '--trust-checkpoint')
    assert not osp.exists(marker)


def test_test_py_refuses(run_tool, evil_checkpoint, marker, tmp_path,
                         assert_one_line_error):
    proc = run_tool('test.py', CONFIG, evil_checkpoint, '--work-dir',
                    str(tmp_path / 'w'))
    assert_refused(proc, evil_checkpoint, marker, assert_one_line_error)


def test_load_from_refuses(run_tool, evil_checkpoint, marker, tmp_path,
                           assert_one_line_error):
    proc = run_tool('train.py', CONFIG, '--work-dir', str(tmp_path / 'w'),
                    '--cfg-options', f'load_from={evil_checkpoint}',
                    'train_cfg.max_iters=1')
    assert_refused(proc, evil_checkpoint, marker, assert_one_line_error)


def test_resume_refuses_instead_of_falling_back(run_tool, evil_checkpoint,
                                                marker, tmp_path,
                                                assert_one_line_error):
    work_dir = tmp_path / 'w'
    work_dir.mkdir()
    newest = str(work_dir / 'iter_5.pth')
    os.replace(evil_checkpoint, newest)
    (work_dir / 'last_checkpoint').write_text(newest)
    proc = run_tool('train.py', CONFIG, '--work-dir', str(work_dir),
                    '--resume')
    assert_refused(proc, newest, marker, assert_one_line_error)


def test_pytorch2onnx_refuses(run_tool, evil_checkpoint, marker, tmp_path,
                              assert_one_line_error):
    proc = run_tool('deployment/pytorch2onnx.py', CONFIG, evil_checkpoint,
                    '--out', str(tmp_path / 'model.onnx'))
    assert_refused(proc, evil_checkpoint, marker, assert_one_line_error)


def test_init_model_refuses_unless_trusted(repo_root, evil_checkpoint,
                                           marker):
    from mmseg_wsbcn.apis import init_model
    from mmseg_wsbcn.engine import UntrustedCheckpointError

    config = osp.join(repo_root, CONFIG)
    with pytest.raises(UntrustedCheckpointError, match='trust_checkpoint'):
        init_model(config, evil_checkpoint, 'cpu')
    assert not osp.exists(marker)
    init_model(config, evil_checkpoint, 'cpu', trust_checkpoint=True)
    assert open(marker).read() == 'ran'


def test_test_py_reads_the_weights_and_leaves_the_rest(
        call_tool, extra_payload_checkpoint, marker, tmp_path):
    proc = call_tool('test.py', CONFIG, extra_payload_checkpoint,
                     '--work-dir', str(tmp_path / 'w'))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'read safely without extra' in proc.stdout + proc.stderr
    assert not osp.exists(marker)


def test_trust_checkpoint_opts_in(call_tool, extra_payload_checkpoint,
                                  marker, tmp_path):
    proc = call_tool('test.py', CONFIG, extra_payload_checkpoint,
                     '--work-dir', str(tmp_path / 'w'), '--trust-checkpoint')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert open(marker).read() == 'ran'


def test_own_checkpoints_need_no_opt_in(run_tool, tmp_path, require_extra):
    """train -> test -> resume -> export, all with weights_only=True."""
    work_dir = str(tmp_path / 'w')
    train = run_tool('train.py', CONFIG, '--work-dir', work_dir,
                     '--cfg-options', 'train_cfg.max_iters=5',
                     'train_cfg.val_interval=5')
    assert train.returncode == 0, train.stderr[-2000:]
    checkpoint = osp.join(work_dir, 'iter_5.pth')
    assert torch.serialization.get_unsafe_globals_in_checkpoint(
        checkpoint) == []
    test = run_tool('test.py', CONFIG, checkpoint, '--work-dir', work_dir)
    assert test.returncode == 0, test.stderr[-2000:]
    resume = run_tool('train.py', CONFIG, '--work-dir', work_dir, '--resume',
                      '--cfg-options', 'train_cfg.max_iters=6',
                      'train_cfg.val_interval=6',
                      'default_hooks.checkpoint.interval=6')
    assert resume.returncode == 0, resume.stderr[-2000:]
    assert 'Auto resumed from the checkpoint' in resume.stdout + resume.stderr
    assert 'read safely without' not in resume.stdout + resume.stderr
    require_extra('deploy', 'onnx')
    export = run_tool('deployment/pytorch2onnx.py', CONFIG,
                      osp.join(work_dir, 'iter_6.pth'), '--out',
                      str(tmp_path / 'model.onnx'), '--no-verify')
    assert export.returncode == 0, export.stderr[-2000:]
