# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The import-time check of the OpenMMLab stack (mmseg_wsbcn/utils/stack.py).

The reference for "which stack is this" is pip's view of the environment:
the distribution that provides mmcv (``mmcv`` or ``onedl-mmcv``), which the
check itself never reads.
"""
import importlib.metadata
import subprocess
import sys

import pytest

import mmseg_wsbcn
from mmseg_wsbcn.utils.stack import StackError, check_stack, matching_stack


def _installed(dist):
    try:
        importlib.metadata.version(dist)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def test_the_stack_found_is_the_one_pip_installed():
    expected = 'onedl' if _installed('onedl-mmcv') else 'openmmlab'
    assert check_stack() == expected == mmseg_wsbcn.STACK


@pytest.mark.parametrize('versions, stack', [
    (dict(mmcv='2.1.0', mmengine='0.10.7', mmseg='1.2.2'), 'openmmlab'),
    (dict(mmcv='2.0.0', mmengine='0.10.0', mmseg='1.2.0'), 'openmmlab'),
    (dict(mmcv='2.3.6', mmengine='0.10.12', mmseg='1.4.2'), 'onedl'),
    # upstream mmcv with the fork's mmengine: still upstream's ranges
    (dict(mmcv='2.1.0', mmengine='0.10.12', mmseg='1.2.2'), 'openmmlab'),
    (dict(mmcv='2.2.0', mmengine='0.10.7', mmseg='1.2.2'), None),
    (dict(mmcv='2.3.6', mmengine='0.10.7', mmseg='1.4.2'), None),
    (dict(mmcv='2.1.0', mmengine='0.10.7', mmseg='1.4.2'), None),
    (dict(mmcv='2.1.0+cu121', mmengine='0.10.7', mmseg='1.2.2'), 'openmmlab'),
])
def test_matching_stack(versions, stack):
    assert matching_stack(versions) == stack


def _import_with(tmp_path, setup):
    """``import mmseg_wsbcn`` in a fresh interpreter after ``setup``."""
    code = f'{setup}\nimport mmseg_wsbcn\n'
    return subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)


def test_an_mmcv_outside_both_stacks_is_one_line(tmp_path):
    fake = tmp_path / 'fake' / 'mmcv'
    fake.mkdir(parents=True)
    (fake / '__init__.py').write_text("__version__ = '2.2.0'\n")
    proc = _import_with(
        tmp_path, f'import sys; sys.path.insert(0, {str(fake.parent)!r})')
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('mmseg_wsbcn.utils.stack.StackError: mmseg_wsbcn '
                           'needs openmmlab (mmcv>=2.0.0,<2.2.0'), last
    assert 'onedl (mmcv>=2.3.0,<2.4.0' in last
    assert 'found mmcv 2.2.0, mmengine ' in last
    assert 'tools/setup_env.sh' in last


def test_a_missing_module_is_named():
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, 'mmcv', None)  # "import mmcv" fails
        with pytest.raises(StackError, match=r'^mmseg_wsbcn needs mmcv, '
                           r'which is not installed: openmmlab \(mmcv'):
            check_stack()
    assert issubclass(StackError, ImportError)
