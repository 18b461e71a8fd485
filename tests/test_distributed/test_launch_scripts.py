# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The launch scripts pass the environment on as mmseg's do: checked with
stand-ins for ``python`` and ``srun`` that record their arguments (the
real launches are in test_dist_train.py and test_faults.py)."""
import os
import os.path as osp
import sys

import pytest

CONFIG = 'configs/x.py'


@pytest.fixture
def recorder(tmp_path):
    """A ``recorder`` program that writes its arguments to a file; returns
    ``(path of the program, function reading the recorded arguments)``."""
    record = tmp_path / 'args.txt'
    prog = tmp_path / 'recorder'
    prog.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{record}"\n')
    prog.chmod(0o755)
    return str(prog), lambda: record.read_text().splitlines()


def test_dist_train_on_the_second_of_two_nodes(run_cmd, recorder):
    prog, recorded = recorder
    run_cmd(['tools/dist_train.sh', CONFIG, '4', '--work-dir', 'w d', '--amp'],
            PYTHON=prog,
            NNODES=2,
            NODE_RANK=1,
            MASTER_ADDR='10.1.2.3',
            PORT=29123).check()
    assert recorded() == [
        '-m', 'torch.distributed.run', '--nnodes=2', '--node_rank=1',
        '--master_addr=10.1.2.3', '--nproc_per_node=4', '--master_port=29123',
        'tools/train.py', CONFIG, '--launcher', 'pytorch', '--work-dir', 'w d',
        '--amp'
    ]


def test_dist_test_defaults(run_cmd, recorder):
    prog, recorded = recorder
    # node 0 checks the port first (with the recorder: nothing to check)
    run_cmd(['tools/dist_test.sh', CONFIG, 'ckpt.pth', '2', '--out', 'o'],
            PYTHON=prog).check()
    assert recorded() == [
        '-m', 'torch.distributed.run', '--nnodes=1', '--node_rank=0',
        '--master_addr=127.0.0.1', '--nproc_per_node=2', '--master_port=29500',
        'tools/test.py', CONFIG, 'ckpt.pth', '--launcher', 'pytorch', '--out',
        'o'
    ]


@pytest.fixture
def fake_srun(tmp_path, recorder):
    prog, recorded = recorder
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    os.symlink(prog, bin_dir / 'srun')
    return f'{bin_dir}{os.pathsep}{os.environ["PATH"]}', recorded


@pytest.mark.parametrize('work_dir', [True, False])
def test_slurm_train(run_cmd, fake_srun, work_dir):
    path, recorded = fake_srun
    args = ['tools/slurm_train.sh', 'gpu', 'job1', CONFIG]
    if work_dir:
        args.append('work_dirs/a')
    run_cmd(
        args + ['--resume'],
        PATH=path,
        GPUS=16,
        GPUS_PER_NODE=8,
        CPUS_PER_TASK=3,
        SRUN_ARGS='--quotatype=auto --time=1:00:00',
        PORT=29777,
        PYTHON='python3').check()
    assert recorded() == [
        '-p', 'gpu', '--job-name=job1', '--gres=gpu:8', '--ntasks=16',
        '--ntasks-per-node=8', '--cpus-per-task=3', '--kill-on-bad-exit=1',
        '--quotatype=auto', '--time=1:00:00', 'python3', '-u',
        'tools/train.py', CONFIG, '--launcher=slurm'
    ] + (['--work-dir=work_dirs/a'] if work_dir else []) + ['--resume']


def test_slurm_test_on_cpu_nodes(run_cmd, fake_srun):
    """``GRES=`` requests no GPUs (CPU partitions, gloo)."""
    path, recorded = fake_srun
    run_cmd(['tools/slurm_test.sh', 'cpu', 'job2', CONFIG, 'ckpt.pth'],
            PATH=path,
            GRES='').check()
    assert recorded() == [
        '-p', 'cpu', '--job-name=job2', '--ntasks=4', '--ntasks-per-node=4',
        '--cpus-per-task=5', '--kill-on-bad-exit=1', sys.executable, '-u',
        'tools/test.py', CONFIG, 'ckpt.pth', '--launcher=slurm'
    ]


@pytest.mark.parametrize('script,nargs', [('dist_train.sh', 2),
                                          ('dist_test.sh', 3),
                                          ('slurm_train.sh', 3),
                                          ('slurm_test.sh', 4)])
def test_missing_arguments(run_cmd, script, nargs):
    result = run_cmd(['tools/' + script] + ['x'] * (nargs - 1))
    assert result.returncode == 2
    assert result.stderr.startswith('usage: tools/' + script)


def test_scripts_are_executable(repo_root):
    for script in ('dist_train.sh', 'dist_test.sh', 'slurm_train.sh',
                   'slurm_test.sh'):
        assert os.access(osp.join(repo_root, 'tools', script), os.X_OK)
