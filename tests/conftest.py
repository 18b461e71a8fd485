# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
import importlib
import os
import os.path as osp
import re
import subprocess
import sys
from typing import Callable, Optional

import pytest

#: The checkout's root, located once for the whole test suite.
REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='session')
def repo_root() -> str:
    """The checkout's root (configs and ``demo/data`` are relative to it).

    Tests ask for this fixture rather than computing the path from their
    own ``__file__``.
    """
    return REPO_ROOT


@pytest.fixture(scope='session')
def run_tool(repo_root) -> Callable[..., subprocess.CompletedProcess]:
    """``run_tool(tool, *args, cwd=repo_root, timeout=600)`` runs
    ``tools/<tool>`` in a fresh interpreter and returns the finished
    process (text stdout/stderr captured)."""

    def run(tool: str,
            *args: str,
            cwd: Optional[str] = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable,
             osp.join(repo_root, 'tools', tool), *args],
            cwd=repo_root if cwd is None else cwd,
            capture_output=True,
            text=True,
            timeout=timeout)

    return run


@pytest.fixture(scope='session')
def assert_one_line_error() -> Callable[..., None]:
    """``assert_one_line_error(proc, *needles)``: the tool failed with one
    line on stderr (no traceback) that contains every needle."""

    def check(proc: subprocess.CompletedProcess, *needles: str) -> None:
        assert proc.returncode != 0
        assert 'Traceback' not in proc.stderr, proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, proc.stderr
        for needle in needles:
            assert needle in lines[0], lines[0]

    return check


@pytest.fixture(scope='session')
def require_extra() -> Callable[[str, str], object]:
    """``require_extra(extra, module)`` imports ``module`` of the optional
    ``extra`` (``requirements/<extra>.txt``). It skips the test when the
    module is not installed, unless ``EXTRAS`` names the extra (as
    ``.ci/run`` does): then the test fails, so CI never skips it silently.
    """

    def require(extra: str, module: str):
        try:
            return importlib.import_module(module)
        except ImportError as e:
            wanted = re.split(r'[,\s]+', os.environ.get('EXTRAS', ''))
            if extra in wanted:
                pytest.fail(f'EXTRAS names {extra!r} but {module} is missing '
                            f'({e}); run EXTRAS={extra} bash '
                            'tools/setup_env.sh')
            pytest.skip(f'needs the optional {extra!r} extra ({module}): '
                        f'EXTRAS={extra} bash tools/setup_env.sh')

    return require
