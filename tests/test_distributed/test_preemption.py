# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Preemption with real processes: on SIGTERM or SIGUSR1 training
finishes the iteration, saves ``iter_N.pth`` (atomically, named by
``last_checkpoint``) and exits with status 75 and one line; ``--resume``
then ends with the same weights as a run that was never stopped
(:func:`dist_helpers.assert_resumed_run_equals`, shared with
test_resume_after_kill.py).

- One process, SIGTERM from outside once an iteration is done.
- One process with a DataLoader worker, SIGTERM to the whole process group
  (as slurm signals every process of the job): the worker ignores it
  (PyTorch's own SIGTERM handler would end it, failing the run), the main
  process saves and exits, and no process of the group is left.
- Two ranks (started by hand, as slurm starts them), SIGUSR1 on rank 1
  only, at the start of iteration 3 (the test-only ``FaultInjectionHook``):
  both ranks stop after iteration 3, rank 0 saves; resumed with
  ``dist_train.sh`` it ends as the uninterrupted 2-process run.
- ``tools/slurm_train.sh`` in a batch job (a stand-in ``srun`` and
  ``scontrol``): the SIGUSR1 slurm sends the batch shell reaches the task,
  which saves, and the script requeues the job.
"""
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time

import pytest
from dist_helpers import (BCN_CONFIG, FAKE_SRUN, MAX_ITERS, RUN_TIMEOUT,
                          assert_resumed_run_equals, free_port,
                          load_checkpoint, needs_gloo)

pytestmark = needs_gloo
ONE_IMAGE = 'train_dataloader.batch_size=1'
#: One DataLoader worker (the config has none); persistent_workers stays
#: as the config sets it
ONE_WORKER = 'train_dataloader.num_workers=1'
LINE = (r'train.py: error: stopped by {signal} after iteration (\d+)/10; '
        r'checkpoint saved: {work_dir}/iter_\1\.pth; to continue, run the '
        r'same command with --resume \(exit status 75\)')


def start(args, cwd, env, out_dir, name):
    """Start ``args`` in ``cwd`` with its output in files (no pipe to fill
    up while the test waits); returns the process."""
    with open(osp.join(out_dir, f'{name}.out'), 'w') as out, \
            open(osp.join(out_dir, f'{name}.err'), 'w') as err:
        return subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True)


def finish(proc, out_dir, name):
    """Wait for ``proc`` (killing it past the time limit); returns its
    exit status and stderr."""
    try:
        proc.wait(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with open(osp.join(out_dir, f'{name}.err')) as f:
        return proc.returncode, f.read()


def wait_for_iteration(proc, work_dir, iteration=1, rank=0):
    """Wait until ``rank`` has finished ``iteration`` (its
    ``RankStateRecorderHook`` record exists)."""
    record = osp.join(work_dir, 'rank_state',
                      f'iter{iteration:03d}_rank{rank}.pth')
    deadline = time.monotonic() + RUN_TIMEOUT
    while not osp.exists(record):
        assert proc.poll() is None, 'training ended before the signal'
        assert time.monotonic() < deadline, f'no {record} in time'
        time.sleep(0.01)


def error_lines(stderr):
    return [ln for ln in stderr.splitlines() if 'error:' in ln]


def stopped_state(work_dir):
    """What a stopped run left (before a test resumes it): the files of
    its work_dir, what ``last_checkpoint`` names, the rank records."""
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        last = f.read().strip()
    return dict(
        files=os.listdir(work_dir),
        last=last,
        records=os.listdir(osp.join(work_dir, 'rank_state')))


def check_saved(work_dir, state, step):
    """``iter_<step>.pth`` is complete and ``last_checkpoint`` names it."""
    path = osp.join(work_dir, f'iter_{step}.pth')
    assert load_checkpoint(path)['meta']['iter'] == step
    assert state['last'] == path
    assert not [n for n in state['files'] if '.tmp' in n]
    assert f'iter_{step + 1}.pth' not in state['files']


@pytest.fixture(scope='module')
def sigterm_run(repo_root, tool_env, tmp_path_factory):
    """One process sent SIGTERM once its first iteration is done: its
    work_dir, exit status, stderr and the iteration it stopped after."""
    work_dir = str(tmp_path_factory.mktemp('sigterm'))
    proc = start(
        [sys.executable, 'tools/train.py', BCN_CONFIG, '--work-dir', work_dir],
        repo_root, tool_env(), work_dir, 'train')
    wait_for_iteration(proc, work_dir)
    proc.send_signal(signal.SIGTERM)
    status, stderr = finish(proc, work_dir, 'train')
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr[-4000:]
    match = re.fullmatch(
        LINE.format(signal='SIGTERM', work_dir=re.escape(work_dir)), lines[0])
    assert match, lines[0]
    print(f'\n[SIGTERM] {lines[0]}')
    return work_dir, status, stderr, int(
        match.group(1)), stopped_state(work_dir)


def test_sigterm_saves_and_exits_with_75(sigterm_run):
    work_dir, status, stderr, step, state = sigterm_run
    assert status == 75
    assert 'Traceback' not in stderr, stderr[-4000:]
    assert 1 <= step < MAX_ITERS
    check_saved(work_dir, state, step)


def test_resumed_after_sigterm_equals_the_uninterrupted_run(
        sigterm_run, run_cmd, single_run):
    work_dir, _, _, step, _ = sigterm_run
    result = run_cmd(
        ['tools/train.py', BCN_CONFIG, '--work-dir', work_dir,
         '--resume']).check()
    assert f'resumed epoch: 0, iter: {step}' in result.output
    measured = assert_resumed_run_equals(single_run.work_dir, work_dir, step)
    print(f'\n[resume after SIGTERM at iteration {step}] {measured}')


@pytest.fixture(scope='module')
def sigterm_group_run(repo_root, tool_env, tmp_path_factory):
    """One process with one DataLoader worker (the config's
    persistent_workers), started in its own process group, which gets
    SIGTERM once the first iteration is done: its work_dir, exit status,
    stderr, the iteration it stopped after, what it left, and whether a
    process of the group was still there 10 s after it ended."""
    work_dir = str(tmp_path_factory.mktemp('sigterm_group'))
    proc = start([
        sys.executable, 'tools/train.py', BCN_CONFIG, '--work-dir', work_dir,
        '--cfg-options', ONE_WORKER
    ], repo_root, tool_env(), work_dir, 'train')
    wait_for_iteration(proc, work_dir)
    os.killpg(proc.pid, signal.SIGTERM)  # the main process and its worker
    status, stderr = finish(proc, work_dir, 'train')
    deadline = time.monotonic() + 10
    left = True
    while left and time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
            time.sleep(0.1)
        except ProcessLookupError:
            left = False
    if left:
        os.killpg(proc.pid, signal.SIGKILL)
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr[-4000:]
    match = re.fullmatch(
        LINE.format(signal='SIGTERM', work_dir=re.escape(work_dir)), lines[0])
    assert match, lines[0]
    print(f'\n[SIGTERM to the process group] {lines[0]}')
    return work_dir, status, stderr, int(
        match.group(1)), stopped_state(work_dir), left


def test_sigterm_to_the_process_group_with_a_worker_saves(sigterm_group_run):
    work_dir, status, stderr, step, state, left = sigterm_group_run
    assert status == 75, stderr[-4000:]
    assert 'Traceback' not in stderr, stderr[-4000:]
    assert 'exited unexpectedly' not in stderr
    assert 1 <= step < MAX_ITERS
    check_saved(work_dir, state, step)
    assert not left, 'a process of the group outlived training by 10 s'


def test_resumed_after_sigterm_to_the_group_equals_the_uninterrupted_run(
        sigterm_group_run, run_cmd, single_run):
    work_dir, _, _, step, _, _ = sigterm_group_run
    result = run_cmd([
        'tools/train.py', BCN_CONFIG, '--work-dir', work_dir, '--resume',
        '--cfg-options', ONE_WORKER
    ]).check()
    assert f'resumed epoch: 0, iter: {step}' in result.output
    measured = assert_resumed_run_equals(single_run.work_dir, work_dir, step)
    print(f'\n[resume after SIGTERM to the group at iteration {step}] '
          f'{measured}')


@pytest.fixture(scope='module')
def two_ranks(repo_root, tool_env, tmp_path_factory):
    """Two ranks started by hand; rank 1 alone gets SIGUSR1 at the start
    of iteration 3. Their work_dir and (exit status, stderr) per rank."""
    work_dir = str(tmp_path_factory.mktemp('sigusr1'))
    port = free_port()
    args = [
        sys.executable, 'tools/train.py', BCN_CONFIG, '--launcher', 'pytorch',
        '--work-dir', work_dir, '--cfg-options', ONE_IMAGE,
        'custom_hooks.2.action=sigusr1', 'custom_hooks.2.rank=1',
        'custom_hooks.2.iteration=3'
    ]
    procs = [
        start(
            args, repo_root,
            tool_env(
                RANK=rank,
                LOCAL_RANK=rank,
                WORLD_SIZE=2,
                MASTER_ADDR='127.0.0.1',
                MASTER_PORT=port), work_dir, f'rank{rank}') for rank in (0, 1)
    ]
    ranks = [
        finish(p, work_dir, f'rank{rank}') for rank, p in enumerate(procs)
    ]
    return work_dir, ranks, stopped_state(work_dir)


def test_a_signal_on_one_rank_stops_both_after_the_same_iteration(two_ranks):
    work_dir, ranks, state = two_ranks
    for status, stderr in ranks:
        assert status == 75, stderr[-4000:]
        assert 'Traceback' not in stderr, stderr[-4000:]
        lines = error_lines(stderr)
        assert len(lines) == 1, stderr[-4000:]
        assert re.fullmatch(
            LINE.format(signal='SIGUSR1', work_dir=re.escape(work_dir)),
            lines[0]), lines[0]
        assert 'after iteration 3/10' in lines[0]
    check_saved(work_dir, state, 3)
    # both finished iteration 3 and started no other
    records = state['records']
    assert {'iter003_rank0.pth', 'iter003_rank1.pth'} <= set(records)
    assert not [r for r in records if r.startswith('iter004')]


def test_two_ranks_resumed_equal_the_uninterrupted_run(two_ranks, run_cmd,
                                                       dist_run):
    work_dir, _, _ = two_ranks
    run_cmd([
        'tools/dist_train.sh', BCN_CONFIG, '2', '--work-dir', work_dir,
        '--resume', '--cfg-options', ONE_IMAGE
    ],
            PORT=free_port()).check()
    measured = assert_resumed_run_equals(dist_run.work_dir, work_dir, 3)
    print(f'\n[2 ranks resumed after SIGUSR1 at iteration 3] {measured}')


def test_slurm_batch_job_saves_and_requeues(repo_root, tool_env, tmp_path):
    """``exec tools/slurm_train.sh ...`` in a batch script with
    ``#SBATCH --signal=B:USR1@120``: slurm sends SIGUSR1 to the script,
    which passes it to srun (here a stand-in running one task); training
    saves and exits 75, and the script requeues the job."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    fake = osp.join(repo_root, FAKE_SRUN)
    for tool in ('srun', 'scontrol'):
        path = bin_dir / tool
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{fake}" '
                        f'{tool} "$@"\n')
        path.chmod(0o755)
    work_dir = str(tmp_path / 'work')
    requeued = tmp_path / 'scontrol.txt'
    env = tool_env(
        PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
        FAKE_SRUN_RUN=1,
        FAKE_SCONTROL_RECORD=requeued,
        SLURM_JOB_ID=4242,
        GPUS=1,
        GPUS_PER_NODE=1,
        GRES='',
        PORT=free_port())
    proc = start(
        ['tools/slurm_train.sh', 'cpu', 'wsbcn', BCN_CONFIG, work_dir],
        repo_root, env, str(tmp_path), 'slurm')
    wait_for_iteration(proc, work_dir)
    proc.send_signal(signal.SIGUSR1)
    status, stderr = finish(proc, str(tmp_path), 'slurm')
    assert status == 75, stderr[-4000:]
    line = error_lines(stderr)
    assert len(line) == 1, stderr[-4000:]
    step = int(
        re.fullmatch(
            LINE.format(signal='SIGUSR1', work_dir=re.escape(work_dir)),
            line[0]).group(1))
    check_saved(work_dir, stopped_state(work_dir), step)
    assert requeued.read_text().split() == ['requeue', '4242']
    assert 'requeueing job 4242' in stderr
