# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
import importlib
import importlib.util
import json
import os
import os.path as osp
import re
import subprocess
import sys
from collections import OrderedDict
from typing import Callable, Optional

import pytest
import torch

#: The checkout's root, located once for the whole test suite.
REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

#: Fixtures that start a tool in a fresh interpreter: a test that uses one
#: is ``slow`` (each start re-imports torch and mmseg).
SUBPROCESS_FIXTURES = ('run_tool', 'run_cmd')
#: Folders whose tests all start several processes or time a benchmark.
SLOW_FOLDERS = ('test_distributed', 'test_benchmarks')


def pytest_collection_modifyitems(config, items) -> None:
    """Mark the ``slow`` tests (see ``setup.cfg``): those that start
    subprocesses (:data:`SUBPROCESS_FIXTURES`) or live in
    :data:`SLOW_FOLDERS`; others carry ``@pytest.mark.slow`` themselves."""
    for item in items:
        parts = item.path.parts
        if any(f in item.fixturenames for f in SUBPROCESS_FIXTURES) or any(
                folder in parts for folder in SLOW_FOLDERS):
            item.add_marker(pytest.mark.slow)


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


def _load_tool(path: str):
    """The module of a tool script, imported from its file (once)."""
    name = 'tool_' + osp.relpath(path, REPO_ROOT).replace(osp.sep, '_')[:-3]
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


@pytest.fixture
def call_tool(repo_root, capsys,
              monkeypatch) -> Callable[..., subprocess.CompletedProcess]:
    """``call_tool(tool, *args)`` runs ``tools/<tool>``'s ``main(argv)`` in
    this process, from the checkout's root, and returns what
    :func:`run_tool` would: the exit status, and stdout/stderr as the tool
    printed them (a ``sys.exit(message)`` counts as the message on stderr
    and status 1). For tests where a fresh interpreter is not the point."""
    monkeypatch.chdir(repo_root)

    def call(tool: str, *args: str) -> subprocess.CompletedProcess:
        main = _load_tool(osp.join(repo_root, 'tools', tool)).main
        code = 0
        try:
            main(list(args))
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr()
        err = out.err
        if isinstance(code, str):
            err, code = err + code + '\n', 1
        return subprocess.CompletedProcess([tool, *args], code or 0,
                                           out.out, err)

    return call


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


def _official_key_file(family: str, arch: str, depth: int) -> str:
    """``tests/data/official_keys`` file of one of the authors' layouts,
    e.g. ``('bcn-ws', 'resnext', 50)`` -> ``bcn_ws_resnext50_32x4d.json``."""
    suffix = '_32x4d' if arch == 'resnext' else ''
    return f"{family.replace('-', '_')}_{arch}{depth}{suffix}.json"


@pytest.fixture(scope='session')
def official_key_shapes(repo_root) -> Callable[..., 'OrderedDict']:
    """``official_key_shapes(family, arch, depth)``: the keys and shapes of
    the authors' released backbone, in their order
    (``tests/data/official_keys``)."""

    def load(family: str, arch: str, depth: int) -> 'OrderedDict':
        path = osp.join(repo_root, 'tests/data/official_keys',
                        _official_key_file(family, arch, depth))
        with open(path) as f:
            return OrderedDict((k, tuple(v)) for k, v in json.load(f).items())

    return load


@pytest.fixture(scope='session')
def official_state_dict(official_key_shapes) -> Callable[..., 'OrderedDict']:
    """``official_state_dict(family, arch, depth, seed=0, prefix='')``: a
    synthetic checkpoint with exactly the released file's keys and shapes
    (float32, as released) and plausible random values: conv filters whose
    scales span 1e-4 to 1e-1 (so the two WS forms differ visibly), positive
    variances, non-trivial affines, ``num_batches_tracked`` 1000. ``prefix``
    is put before every key (``'module.'``, as the released files)."""

    def make(family: str, arch: str, depth: int, seed: int = 0,
             prefix: str = '') -> 'OrderedDict':
        gen = torch.Generator().manual_seed(seed)
        out = OrderedDict()
        for key, shape in official_key_shapes(family, arch, depth).items():
            if key.endswith('num_batches_tracked'):
                value = torch.tensor(1000, dtype=torch.long)
            elif len(shape) == 4:  # conv: per-filter scales 1e-4 .. 1e-1
                scale = 10**(-4 + 3 * torch.rand(shape[0], generator=gen))
                value = torch.randn(shape, generator=gen) * \
                    scale.view(-1, 1, 1, 1) + 0.3 * scale.view(-1, 1, 1, 1)
            elif key.endswith('running_var'):
                value = torch.rand(shape, generator=gen) + 0.5
            elif key.endswith('weight'):
                value = 1 + 0.3 * torch.randn(shape, generator=gen)
            else:  # biases, running means
                value = 0.2 * torch.randn(shape, generator=gen)
            out[prefix + key] = value
        return out

    return make


@pytest.fixture
def saved_tensors() -> Callable[[Callable[[], object]], tuple]:
    """``saved_tensors(fn)`` runs ``fn()`` and returns its result and the
    list of tensors autograd saved for the backward pass meanwhile (what a
    layer keeps in memory until its backward pass)."""

    def run(fn):
        saved = []

        def pack(t):
            saved.append(t)
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = fn()
        return out, saved

    return run
