# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""A stand-in for slurm's ``srun`` (and ``scontrol``) for the tests:
``python fake_srun.py srun ARGS...`` / ``python fake_srun.py scontrol ...``
(the tests put wrappers named ``srun`` and ``scontrol`` on ``PATH``).

``srun``: writes its arguments, one per line, to ``$FAKE_SRUN_RECORD``;
then, if ``$FAKE_SRUN_RUN`` is set, starts ``--ntasks`` copies of the
command on this machine with the variables slurm gives each task
(``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``, ``SLURM_NODELIST``)
and, like ``--kill-on-bad-exit=1``, kills the others when one fails. Like
srun, it passes a SIGUSR1 it receives on to the tasks.

``scontrol show hostname NODES``: prints ``127.0.0.1``; ``scontrol
requeue ID`` (any other command): writes its arguments, one per line, to
``$FAKE_SCONTROL_RECORD`` if that is set.
"""
import os
import signal
import subprocess
import sys
import time

# srun options that take their value as the next argument
_WITH_VALUE = {'-p', '--partition', '-J', '-n', '-N', '-c'}


def split_command(args):
    """``(options, command)`` of an srun command line."""
    i = 0
    while i < len(args) and args[i].startswith('-'):
        i += 2 if args[i] in _WITH_VALUE else 1
    return args[:i], args[i:]


def srun(args) -> int:
    record = os.environ.get('FAKE_SRUN_RECORD')
    if record:
        with open(record, 'w') as f:
            f.write('\n'.join(args) + '\n')
    if not os.environ.get('FAKE_SRUN_RUN'):
        return 0
    options, command = split_command(args)
    ntasks = int(
        next(o for o in options if o.startswith('--ntasks=')).split('=')[1])
    procs = []
    signal.signal(signal.SIGUSR1,
                  lambda signum, frame: [p.send_signal(signum) for p in procs])
    for rank in range(ntasks):
        env = dict(
            os.environ,
            SLURM_PROCID=str(rank),
            SLURM_NTASKS=str(ntasks),
            SLURM_LOCALID=str(rank),
            SLURM_NODELIST='fake-node')
        procs.append(subprocess.Popen(command, env=env))
    while True:
        codes = [p.poll() for p in procs]
        if any(c not in (None, 0) for c in codes):
            for p in procs:
                if p.poll() is None:
                    p.kill()
            return next(c for c in codes if c not in (None, 0))
        if all(c == 0 for c in codes):
            return 0
        time.sleep(0.1)


def scontrol(args) -> int:
    if args[:1] == ['show']:
        print('127.0.0.1')
        return 0
    record = os.environ.get('FAKE_SCONTROL_RECORD')
    if record:
        with open(record, 'w') as f:
            f.write('\n'.join(args) + '\n')
    return 0


if __name__ == '__main__':
    tool, args = sys.argv[1], sys.argv[2:]
    sys.exit((scontrol if tool == 'scontrol' else srun)(args))
