# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""``tools/setup_env.sh --plan``: what the setup would do on a CPU machine,
on a (faked) GPU machine and with the fork's wheel index, without doing it.

The GPU is faked by an ``nvidia-smi`` on PATH that answers the query the
setup makes, the CUDA toolkit by an ``nvcc`` that answers ``--dryrun``
(where its toolkit is) and ``--version``; the fork's wheel index by a local
HTTP server. Nothing is installed: the venv named does not exist, and
must not exist afterwards.
"""
import functools
import http.server
import os
import os.path as osp
import stat
import subprocess
import threading

import pytest


def _script(path, text):
    path.write_text('#!/bin/sh\n' + text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def fake_bin(tmp_path):
    """A folder put first on PATH; ``gpu(lines)`` adds an nvidia-smi that
    prints ``lines``, ``no_gpu()`` one that fails as on a machine without a
    driver, ``toolkit()`` an nvcc of a fake toolkit (returned)."""
    folder = tmp_path / 'bin'
    folder.mkdir()

    class Fake:
        path = str(folder)

        @staticmethod
        def gpu(*lines):
            _script(folder / 'nvidia-smi', ''.join(
                f'echo "{line}"\n' for line in lines))

        @staticmethod
        def no_gpu():
            _script(folder / 'nvidia-smi',
                    'echo "NVIDIA-SMI has failed" >&2; exit 9\n')

        @staticmethod
        def toolkit():
            home = tmp_path / 'cuda-13.0'
            (home / 'bin').mkdir(parents=True)
            _script(home / 'bin' / 'nvcc', (
                'case "$1" in\n'
                f'  --dryrun) echo "#$ TOP={home}/bin/.." >&2 ;;\n'
                '  --version) printf "nvcc: fake\\nCuda compilation tools, '
                'release 13.0, V13.0.88\\nBuild cuda_13.0\\n" ;;\n'
                'esac\n'))
            _script(folder / 'nvcc', f'exec {home}/bin/nvcc "$@"\n')
            return str(home)

    Fake.no_gpu()
    return Fake


@pytest.fixture
def plan(repo_root, tmp_path, fake_bin):
    """``plan(args=('--plan',), **env)`` runs the setup script with
    ``fake_bin`` first on PATH and a VENV that does not exist."""
    venv = tmp_path / 'venv'

    def run(args=('--plan', ), **env):
        full = {k: v for k, v in os.environ.items()
                if k not in ('STACK', 'DEVICE', 'TORCH_VERSION', 'EXTRAS',
                             'TORCH_CUDA_ARCH_LIST', 'CUDA_HOME',
                             'ONEDL_MMCV_INDEX_URL', 'TORCH_INDEX_URL')}
        full.update(PATH=fake_bin.path + os.pathsep + os.environ['PATH'],
                    VENV=str(venv), MMCV_WHEEL_DIR=str(tmp_path / 'wheels'),
                    **env)
        proc = subprocess.run(
            ['bash', osp.join(repo_root, 'tools', 'setup_env.sh'), *args],
            env=full, capture_output=True, text=True, timeout=120)
        assert not venv.exists(), 'the plan created the venv'
        return proc

    return run


def test_cpu_machine(plan):
    proc = plan()
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert 'stack openmmlab, device cpu (no GPU' in out
    assert 'install torch==2.13.0 first: the CPU build' in out
    assert 'mmcv==2.1.0 with compiled CPU ops' in out
    assert 'FORCE_CUDA=0' in out and 'c++20' not in out
    assert 'run nms on the CPU' in out


def test_faked_gpu_machine(plan, fake_bin):
    fake_bin.gpu('NVIDIA H200, 9.0', 'NVIDIA H200, 9.0')
    home = fake_bin.toolkit()
    out = plan().stdout
    assert 'device cuda (nvidia-smi lists NVIDIA H200)' in out
    assert 'install torch==2.14.1 first: a CUDA build' in out
    assert 'mmcv==2.1.0 with compiled CUDA ops' in out
    # one architecture per kind of GPU, from nvidia-smi
    assert 'FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 ' in out
    # the toolkit behind the nvcc wrapper on PATH, its headers first
    assert f'CPATH={home}/include first' in out
    # torch 2.14's headers need C++20
    assert '-std=c++14/17 become -std=c++20' in out
    assert 'run nms on the GPU' in out


def test_device_cuda_without_a_gpu_needs_an_arch(plan):
    out = plan(DEVICE='cuda').stdout
    assert '<unset: set TORCH_CUDA_ARCH_LIST>' in out
    proc = plan(args=(), DEVICE='cuda')  # a real run stops before any step
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        '[setup] FAILED at step "0/6 decide": DEVICE=cuda without a GPU that '
        'nvidia-smi lists: set TORCH_CUDA_ARCH_LIST (e.g. 9.0 for an '
        'H100/H200, 8.0 for an A100)']
    out = plan(DEVICE='cuda', TORCH_CUDA_ARCH_LIST='8.0;9.0').stdout
    assert 'TORCH_CUDA_ARCH_LIST=8.0;9.0' in out


@pytest.fixture
def wheel_index(tmp_path):
    """A local copy of the fork's wheel index layout with one folder,
    ``cu130-torch2141/onedl-mmcv/``, listing a wheel of onedl-mmcv 2.3.6;
    returns the template URL for ONEDL_MMCV_INDEX_URL."""
    root = tmp_path / 'index'
    project = root / 'cu130-torch2141' / 'onedl-mmcv'
    project.mkdir(parents=True)
    wheel = 'onedl_mmcv-2.3.6-cp311-cp311-manylinux_2_28_x86_64.whl'
    (project / 'index.html').write_text(f'<a href="{wheel}">{wheel}</a>\n')
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{server.server_port}/{{cuda}}-torch{{torch}}/'
    server.shutdown()


def test_fork_uses_its_prebuilt_wheel_where_one_exists(
        plan, fake_bin, wheel_index):
    fake_bin.gpu('NVIDIA H200, 9.0')
    fake_bin.toolkit()
    out = plan(STACK='onedl', ONEDL_MMCV_INDEX_URL=wheel_index).stdout
    url = wheel_index.format(cuda='cu130', torch='2141')
    assert 'stack onedl, device cuda' in out
    assert 'onedl-mmcv==2.3.6 with compiled CUDA ops: download the ' \
           f"fork's prebuilt wheel from {url}" in out
    assert 'requirements/onedl.txt' in out
    assert 'constraints requirements/constraints-onedl.txt' in out
    # another torch: no wheel there, so a source build
    out = plan(STACK='onedl', ONEDL_MMCV_INDEX_URL=wheel_index,
               TORCH_VERSION='2.14.0').stdout
    assert 'no prebuilt wheel at ' + wheel_index.format(
        cuda='cu130', torch='2140') in out
    assert 'build from source: MMCV_WITH_OPS=1 FORCE_CUDA=1' in out


def test_fork_extras_take_the_forks_packages(plan):
    out = plan(STACK='onedl', EXTRAS='mmdet,deploy').stdout
    assert 'extras mmdet deploy' in out
    assert 'stack onedl, device cpu' in out


@pytest.mark.parametrize('env, line', [
    (dict(STACK='mmlab'), 'unknown STACK=mmlab; the stacks are: openmmlab'),
    (dict(DEVICE='gpu'), 'unknown DEVICE=gpu; use auto'),
    (dict(EXTRAS='mmdett'), "unknown extra 'mmdett' in EXTRAS=mmdett"),
])
def test_bad_settings_are_one_line(plan, env, line):
    proc = plan(**env)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and line in lines[0], proc.stderr
