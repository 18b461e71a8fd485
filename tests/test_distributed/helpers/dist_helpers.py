# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""What the distributed tests share besides fixtures: the configs they
train, and readers of what the tools wrote.

Importable as ``dist_helpers`` (``pythonpath`` in setup.cfg's
``[tool:pytest]``). The fixtures that start processes (``tool_env``,
``run_cmd``, ``single_run``, ``dist_run``) are in the folder's conftest.py.
Paths are relative to the repository root, the tools' working directory.
"""
import glob
import json
import os.path as osp
import socket
from typing import Dict, List

import pytest
import torch
import torch.distributed as dist

CONFIG_DIR = 'tests/data/configs/distributed'
BCN_CONFIG = f'{CONFIG_DIR}/deeplabv3_r18-d8_bcn-ws_1xb2-10iters_cityscapes-mini-64x64.py'  # noqa: E501
GN_CONFIG = f'{CONFIG_DIR}/deeplabv3_r18-d8_gn-ws_1xb2-5iters_cityscapes-mini-64x64.py'  # noqa: E501
#: The stand-in for slurm's ``srun`` and ``scontrol``.
FAKE_SRUN = 'tests/test_distributed/helpers/fake_srun.py'
MAX_ITERS = 10
#: Mark for modules that start processes: they need gloo.
needs_gloo = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason='needs torch.distributed with the gloo backend')
#: Hard limit for one run; a run that needs it is a hang.
RUN_TIMEOUT = 300


def free_port() -> int:
    """A TCP port that is free right now."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Run:
    """A finished command: return code, output and wall time."""

    def __init__(self, returncode: int, stdout: str, stderr: str,
                 seconds: float):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.output = stdout + stderr
        self.seconds = seconds

    def check(self) -> 'Run':
        assert self.returncode == 0, self.output[-4000:]
        return self


def load_checkpoint(path: str) -> dict:
    # our own training checkpoints: they hold more than tensors
    return torch.load(path, map_location='cpu', weights_only=False)


def rank_records(work_dir: str, rank: int = 0) -> Dict[int, dict]:
    """What RankStateRecorderHook saved for ``rank``, by iteration."""
    records = {}
    for path in glob.glob(
            osp.join(work_dir, 'rank_state', f'iter*_rank{rank}.pth')):
        record = torch.load(path, weights_only=False)
        records[record['iter']] = record
    return records


def read_scalars(work_dir: str) -> List[dict]:
    """The records of the newest run's ``vis_data/scalars.json``."""
    runs = sorted(
        glob.glob(osp.join(work_dir, '2*', 'vis_data', 'scalars.json')))
    with open(runs[-1]) as f:
        return [json.loads(line) for line in f]


def read_test_metrics(work_dir: str) -> dict:
    """The metrics ``tools/test.py`` wrote to
    ``<work_dir>/<time>/metrics.json`` (rank 0 only, atomically).

    Not MMEngine's ``<time>.json``: its ``LoggerHook`` dumps that file from
    every rank at once, so with 2 processes it can come out garbled.
    """
    files = sorted(glob.glob(osp.join(work_dir, '2*', 'metrics.json')))
    with open(files[-1]) as f:
        return json.load(f)['metrics']


def bcn_errors(a: dict, b: dict, eps: float = 1e-5) -> dict:
    """Largest differences between two sets of BCN buffers, in the units
    the layer uses them in: ``mu_hat``'s in units of
    ``sqrt(var_hat + eps)``, ``var_hat``'s relative; and of the step
    counts."""
    err = dict(mean=0.0, var=0.0, count=0.0)
    for key in a:
        x, y = a[key].double(), b[key].double()
        diff = (x - y).abs()
        if key.endswith('running_mean'):
            std = (b[key[:-len('mean')] + 'var'].double() + eps).sqrt()
            err['mean'] = max(err['mean'], (diff / std).max().item())
        elif key.endswith('running_var'):
            err['var'] = max(err['var'], (diff / y).max().item())
        else:
            err['count'] = max(err['count'], diff.max().item())
    return err


def assert_resumed_run_equals(ref_dir: str, work_dir: str, step: int) -> str:
    """Check that the run in ``work_dir``, stopped after iteration ``step``
    and resumed, ended as the uninterrupted run in ``ref_dir`` (same
    config): final weights to 1e-6, BCN statistics to 1e-5 in the units
    the layer uses them (:func:`bcn_errors`), the SGD momentum, and rank
    0's losses of the iterations after ``step``
    (``RankStateRecorderHook``).

    The runs are usually bit-identical; the tolerances only absorb float32
    rounding (rarely, two fresh processes with the same seed already
    differ in the last bit of the first loss on this CPU build).

    Returns:
        str: What was measured, to print.
    """
    name = f'iter_{MAX_ITERS}.pth'
    ref = load_checkpoint(osp.join(ref_dir, name))
    got = load_checkpoint(osp.join(work_dir, name))
    ref_sd, got_sd = ref['state_dict'], got['state_dict']
    assert ref_sd.keys() == got_sd.keys()
    identical = all(torch.equal(ref_sd[k], got_sd[k]) for k in ref_sd)
    stats = [k for k in ref_sd if '.pbn.running_' in k or 'num_batches' in k]
    params = [k for k in ref_sd if k not in stats]
    diff = max((ref_sd[k] - got_sd[k]).abs().max().item() for k in params)
    err = bcn_errors({k: got_sd[k]
                      for k in stats}, {k: ref_sd[k]
                                        for k in stats})
    for key in params:
        torch.testing.assert_close(
            got_sd[key], ref_sd[key], rtol=0, atol=1e-6, msg=key)
    assert err['mean'] <= 1e-5 and err['var'] <= 1e-5 and err['count'] == 0
    # the optimizer state (SGD momentum) too
    for a, b in zip(ref['optimizer']['state'].values(),
                    got['optimizer']['state'].values()):
        torch.testing.assert_close(
            b['momentum_buffer'], a['momentum_buffer'], rtol=1e-4, atol=1e-6)
    # and the losses: the iterations after the resume repeat the curve
    ref_losses = rank_records(ref_dir)
    got_losses = rank_records(work_dir)
    assert set(range(step + 1, MAX_ITERS + 1)) <= set(got_losses)
    for it in got_losses:
        assert got_losses[it]['losses']['loss'] == pytest.approx(
            ref_losses[it]['losses']['loss'], abs=1e-6), it
    return (f'bit-identical: {identical}; max |weight diff| {diff:.3g}; '
            f'BCN statistics {err}')
