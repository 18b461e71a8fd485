# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The launch scripts pass the environment on as mmseg's do: checked with
stand-ins for ``python`` and ``srun`` that record their arguments (the
real launches are in test_dist_train.py, test_faults.py and
test_preemption.py); and slurm_train.sh's preemption logic in a batch job
(passing the signal on, requeueing) with a stand-in ``srun`` that exits as
training would."""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

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
        '--signal=USR1@120', '--quotatype=auto', '--time=1:00:00', 'python3',
        '-u', 'tools/train.py', CONFIG, '--launcher=slurm'
    ] + (['--work-dir=work_dirs/a'] if work_dir else []) + ['--resume']


@pytest.mark.parametrize('seconds,option', [('300', ['--signal=USR1@300']),
                                            ('0', [])])
def test_slurm_train_asks_for_the_warning_signal(run_cmd, fake_srun, seconds,
                                                 option):
    path, recorded = fake_srun
    run_cmd(['tools/slurm_train.sh', 'gpu', 'job1', CONFIG],
            PATH=path,
            SIGNAL_SECONDS=seconds).check()
    assert [a for a in recorded() if a.startswith('--signal')] == option


@pytest.fixture
def stand_in_srun(tmp_path, tool_env, repo_root):
    """``run(mode, *args, signal=None, **env)`` runs ``tools/slurm_train.sh
    gpu job1 configs/x.py *args`` as the batch script of job 4242, with a
    stand-in ``srun`` that records its arguments and then exits with status
    ``mode``, or (``mode='signal'``) waits and exits 75 on SIGUSR1, as
    training does; ``signal`` is sent to the script once srun waits.
    Returns the script's exit status, stderr, the arguments srun got and
    those of ``scontrol`` (``None`` if it was not called)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    srun = bin_dir / 'srun'
    srun.write_text('#!/usr/bin/env bash\n'
                    f'printf "%s\\n" "$@" > "{tmp_path}/srun.txt"\n'
                    'if [ "$MODE" != signal ]; then exit "$MODE"; fi\n'
                    'trap "exit 75" USR1\n'
                    f'touch "{tmp_path}/waiting"\n'
                    'while :; do sleep 0.05; done\n')
    scontrol = bin_dir / 'scontrol'
    scontrol.write_text('#!/bin/sh\n'
                        f'printf "%s\\n" "$@" > "{tmp_path}/scontrol.txt"\n')
    for prog in (srun, scontrol):
        prog.chmod(0o755)

    def run(mode, *args, signal=None, **env):
        proc = subprocess.Popen(
            ['tools/slurm_train.sh', 'gpu', 'job1', CONFIG, *args],
            cwd=repo_root,
            env=tool_env(
                PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
                MODE=mode,
                SLURM_JOB_ID=4242,
                **env),
            stderr=subprocess.PIPE,
            text=True)
        if signal is not None:
            deadline = time.monotonic() + 30
            while not (tmp_path / 'waiting').exists():
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.01)
            proc.send_signal(signal)
        _, stderr = proc.communicate(timeout=30)
        requeue = tmp_path / 'scontrol.txt'
        return (proc.returncode, stderr,
                (tmp_path / 'srun.txt').read_text().splitlines(),
                requeue.read_text().split() if requeue.exists() else None)

    return run


def test_slurm_batch_job_requeued_after_the_warning_signal(stand_in_srun):
    """``#SBATCH --signal=B:USR1@120``: SIGUSR1 reaches the batch script,
    which passes it on to srun; training exits 75 and the job is
    requeued."""
    status, stderr, srun_args, requeue = stand_in_srun(
        'signal', signal=signal.SIGUSR1)
    assert status == 75
    assert requeue == ['requeue', '4242']
    assert stderr.strip() == (
        'slurm_train.sh: training stopped on a signal (exit status 75); '
        'requeueing job 4242, which resumes from its last checkpoint')
    # in a batch job, the signal is the batch script's to ask for
    assert not [a for a in srun_args if a.startswith('--signal')]


def test_slurm_batch_job_not_requeued_after_sigterm(stand_in_srun):
    """SIGTERM (scancel, the time limit itself): the tasks still save (the
    script passes it on as SIGUSR1), but the job is not requeued."""
    status, _, _, requeue = stand_in_srun('signal', signal=signal.SIGTERM)
    assert status == 75 and requeue is None


@pytest.mark.parametrize(
    'mode,env,requeued',
    [
        ('75', {}, True),  # the tasks got the signal themselves
        ('75', dict(REQUEUE=0), False),
        ('0', {}, False),
        ('1', {}, False),
    ])
def test_slurm_batch_job_requeued_on_status_75(stand_in_srun, mode, env,
                                               requeued):
    status, _, _, requeue = stand_in_srun(mode, **env)
    assert status == int(mode)
    assert requeue == (['requeue', '4242'] if requeued else None)


def test_slurm_requeued_job_resumes(stand_in_srun):
    """A requeued job runs the script again with SLURM_RESTART_COUNT set:
    it adds --resume (once)."""
    for args in ([], ['--resume']):
        _, _, srun_args, _ = stand_in_srun('0', *args, SLURM_RESTART_COUNT=1)
        assert srun_args.count('--resume') == 1
    _, _, srun_args, _ = stand_in_srun('0', SLURM_RESTART_COUNT=0)
    assert '--resume' not in srun_args


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
