# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""BCN with real processes: 2 gloo ranks vs one process on the whole batch.

Rank 0 holds 1 sample and rank 1 holds 3 samples of a fixed batch of 4
(in the ``_empty`` cases rank 0 holds none: a RoI head without RoIs). With
``sync=True`` their outputs, input gradients and buffers must equal those
of a single process (no process group) on all 4 samples, and the sum of
their parameter gradients must equal its parameter gradients. The
``_compile`` case runs the fused tier (compiled stages, the all-reduce
between them).
"""
import os

import pytest
import torch
import torch.distributed as dist

from gloo_ranks import run_gloo_ranks
from mmseg_wsbcn.models.layers import BCN

WORLD_SIZE = 2
SLICES = [slice(0, 1), slice(1, 4)]  # unequal per-rank batch sizes
EMPTY = [slice(0, 0), slice(0, 4)]  # rank 0 holds no sample
CHANNELS, GROUPS, STEPS = 4, 2, 2
F32, F64 = torch.float32, torch.float64
# case name -> (estimate, sync, spatial size, dtype, per-rank slices, impl)
CASES = {
    'batch': (False, True, (3, 2), F32, SLICES, 'eager'),
    'estimate': (True, True, (3, 2), F32, SLICES, 'eager'),
    # rank 0 holds a single value per channel; the global batch has 4. The
    # group norm over 2 values amplifies rounding: compare in float64
    'batch_1x1': (False, True, (1, 1), F64, SLICES, 'eager'),
    'estimate_1x1': (True, True, (1, 1), F64, SLICES, 'eager'),
    'batch_empty': (False, True, (3, 2), F32, EMPTY, 'eager'),
    'estimate_empty': (True, True, (3, 2), F32, EMPTY, 'eager'),
    'batch_compile': (False, True, (3, 2), F32, SLICES, 'compile'),
    'batch_nosync': (False, False, (3, 2), F32, SLICES, 'eager'),
    'estimate_nosync': (True, False, (3, 2), F32, SLICES, 'eager'),
}
TIMEOUT_S = 180

pytestmark = [
    # every test here compares two gloo processes with one
    pytest.mark.slow,
    pytest.mark.skipif(
        not (dist.is_available() and dist.is_gloo_available()),
        reason='needs torch.distributed with the gloo backend')
]


def make_inputs(seed=0):
    """Fixed inputs, loss weights and initial states for every case."""
    gen = torch.Generator().manual_seed(seed)
    data = {}
    for case, (_, _, (h, w), dtype, _, _) in CASES.items():
        base, _, variant = case.rpartition('_')
        if variant in ('nosync', 'empty', 'compile'):
            # the same data as the plain synced case
            data[case] = data[base]
            continue
        shape = (4, CHANNELS, h, w)
        data[case] = dict(
            x=[(torch.randn(shape, generator=gen) * 2 + 1).to(dtype)
               for _ in range(STEPS)],
            w=[
                torch.randn(shape, generator=gen).to(dtype)
                for _ in range(STEPS)
            ],
            params=[(torch.rand(n, generator=gen) + 0.5).to(dtype)
                    for n in (GROUPS, GROUPS, CHANNELS, CHANNELS)],
            mean0=torch.randn(CHANNELS, generator=gen).to(dtype),
            var0=(torch.rand(CHANNELS, generator=gen) + 0.5).to(dtype))
    return data


def run_case(case, data, index):
    """Train a BCN for STEPS steps on ``x[index]``; return what it saw."""
    estimate, sync, _, dtype, _, impl = CASES[case]
    d = data[case]
    layer = BCN(
        CHANNELS,
        num_groups=GROUPS,
        momentum=0.2,
        estimate=estimate,
        sync=sync,
        impl=impl,
        dtype=dtype)
    with torch.no_grad():
        for p, v in zip(
            (layer.weight, layer.bias, layer.pbn.weight, layer.pbn.bias),
                d['params']):
            p.copy_(v)
        layer.pbn.running_mean.copy_(d['mean0'])
        layer.pbn.running_var.copy_(d['var0'])
    outs, grads = [], []
    for step in range(STEPS):
        x = d['x'][step][index].clone().requires_grad_()
        out = layer(x)
        (out * d['w'][step][index]).sum().backward()
        outs.append(out.detach())
        grads.append(x.grad)
    return dict(
        out=outs,
        grad=grads,
        param_grad=[p.grad.clone() for p in layer.parameters()],
        buffers={
            k: v.clone()
            for k, v in layer.named_buffers()
        })


def _rank_body(rank, tmp_dir):
    """What each gloo rank computes (run by ``run_gloo_ranks``)."""
    data = torch.load(os.path.join(tmp_dir, 'inputs.pt'))
    results = {
        case: run_case(case, data, CASES[case][4][rank])
        for case in CASES
    }
    return results


@pytest.fixture(scope='module')
def results(tmp_path_factory):
    """Spawn the two ranks once; return (data, rank results)."""
    tmp_dir = tmp_path_factory.mktemp('bcn_dist')
    data = make_inputs()
    torch.save(data, tmp_dir / 'inputs.pt')
    ranks = run_gloo_ranks(_rank_body, WORLD_SIZE, tmp_dir, TIMEOUT_S)
    return data, ranks


def _close(actual, expected):
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('case', [
    'batch', 'estimate', 'batch_1x1', 'estimate_1x1', 'batch_empty',
    'estimate_empty', 'batch_compile'
])
def test_two_ranks_equal_one_process(results, case):
    data, ranks = results
    assert not (dist.is_available() and dist.is_initialized())
    ref = run_case(case, data, slice(0, 4))
    for step in range(STEPS):
        _close(
            torch.cat([r[case]['out'][step] for r in ranks]), ref['out'][step])
        _close(
            torch.cat([r[case]['grad'][step] for r in ranks]),
            ref['grad'][step])
    # DDP would average these; their sum is the gradient of the total loss
    for i, expected in enumerate(ref['param_grad']):
        _close(
            ranks[0][case]['param_grad'][i] + ranks[1][case]['param_grad'][i],
            expected)
        assert expected.abs().sum() > 0
    for rank in ranks:
        for name, value in ref['buffers'].items():
            _close(rank[case]['buffers'][name], value)
    # the buffers moved from their initial values
    assert not torch.allclose(ref['buffers']['pbn.running_mean'],
                              data[case]['mean0'])


@pytest.mark.parametrize('case', ['batch_nosync', 'estimate_nosync'])
def test_sync_false_uses_per_rank_statistics(results, case):
    data, ranks = results
    sync_case = case.replace('_nosync', '')
    for rank, index in enumerate(CASES[case][4]):
        local = run_case(case, data, index)
        for step in range(STEPS):
            _close(ranks[rank][case]['out'][step], local['out'][step])
            _close(ranks[rank][case]['grad'][step], local['grad'][step])
        for name, value in local['buffers'].items():
            _close(ranks[rank][case]['buffers'][name], value)
    # ... which differ from the global statistics
    glob = torch.cat([r[sync_case]['out'][-1] for r in ranks])
    mine = torch.cat([r[case]['out'][-1] for r in ranks])
    assert (glob - mine).abs().max() > 1e-3
    assert not torch.allclose(ranks[0][case]['buffers']['pbn.running_mean'],
                              ranks[1][case]['buffers']['pbn.running_mean'])
