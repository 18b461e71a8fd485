# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""PreciseBNHook with a real MMEngine Runner.

The test records, with its own forward pre-hooks, the input each norm
layer receives during the hook's passes (training mode, no gradient) and
re-derives the expected statistics from those inputs in float64 (Wu &
Johnson, arXiv:2105.07576, Sec. 3; fvcore's ``update_bn_stats``): for a
BatchNorm and BCN's batch statistics the equal-weight average over the
batches of the per-batch mean and unbiased variance; for BCN's estimated
statistics the mean of the batch means and the variance of all values
about it, each batch weighted equally.
"""
import os

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.model import BaseModel
from mmengine.registry import HOOKS
from mmengine.runner import Runner
from torch.testing import assert_close

from gloo_ranks import run_gloo_ranks
import mmseg_wsbcn  # noqa: F401  (registers the hook and the layers)
from mmseg_wsbcn.engine.hooks import PreciseBNHook, update_precise_statistics
from mmseg_wsbcn.models.layers import BCN

C = 4
#: the layers whose statistics the hook recomputes
LAYERS = ('bn', 'bcn', 'bcn_est')


class TinyNormModel(BaseModel):
    """conv -> BN -> (``local``: an unsynchronized BCN) -> BCN (batch
    stats) -> BCN (estimated stats) -> a BatchNorm kept in eval mode (as
    ``norm_eval`` keeps a FrozenBN) -> dropout (it draws random numbers).
    ``sync`` is the two BCNs' (a no-op in one process)."""

    def __init__(self, estimate=True, sync=False, local=False):
        super().__init__()
        self.conv = nn.Conv2d(3, C, 1)
        self.bn = nn.BatchNorm2d(C)
        self.bcn_local = (
            BCN(C, num_groups=2, sync=False, impl='eager')
            if local else nn.Identity())
        self.bcn = BCN(C, num_groups=2, sync=sync, impl='eager')
        self.bcn_est = (
            BCN(C, num_groups=2, estimate=True, sync=sync, impl='eager')
            if estimate else nn.Identity())
        self.frozen = nn.BatchNorm2d(C)
        with torch.no_grad():
            self.frozen.running_mean.fill_(0.5)
            self.frozen.running_var.fill_(2.0)
        self.drop = nn.Dropout(0.5)

    def train(self, mode=True):
        super().train(mode)
        self.frozen.eval()
        return self

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = self.bcn_local(self.bn(self.conv(inputs)))
        x = self.bcn_est(self.bcn(x))
        x = self.drop(self.frozen(x))
        if mode == 'loss':
            return dict(loss=x.square().mean())
        if mode == 'predict':
            return [out.mean() for out in x]
        return x


class CountMetric(BaseMetric):

    def process(self, data_batch, data_samples):
        self.results.extend(float(s) for s in data_samples)

    def compute_metrics(self, results):
        return dict(count=len(results))


def make_data(n=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [
        dict(inputs=torch.randn(3, 3, 2, generator=gen) * 2 + 1)
        for _ in range(n)
    ]


def make_runner(work_dir,
                model=None,
                num_iters=3,
                hook=True,
                validate=True,
                shuffle=False,
                **train_cfg):
    """A tiny runner: batch 2, SGD, checkpoints at every validation."""
    data = make_data()
    loader = dict(
        dataset=data,
        sampler=dict(type='DefaultSampler', shuffle=shuffle),
        collate_fn=dict(type='default_collate'),
        batch_size=2)
    val = dict(
        val_dataloader=dict(
            loader, sampler=dict(type='DefaultSampler', shuffle=False)),
        val_cfg=dict(),
        val_evaluator=Evaluator([CountMetric()])) if validate else {}
    by_epoch = train_cfg.get('by_epoch', False)
    cfg = dict(val_interval=1) if by_epoch else dict(
        by_epoch=False, max_iters=2, val_interval=2)
    cfg.update(train_cfg)
    return Runner(
        model=TinyNormModel() if model is None else model,
        work_dir=str(work_dir),
        train_dataloader=loader,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=cfg,
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook',
                by_epoch=by_epoch,
                interval=cfg.get('val_interval', 1))),
        custom_hooks=[dict(type='PreciseBNHook', num_iters=num_iters)]
        if hook else [],
        randomness=dict(seed=0),
        default_scope='mmengine',
        **val)


def record_inputs(model, names=LAYERS):
    """``{name: [input, ...]}`` of the calls in training mode without
    gradient (the hook's passes), as float64 copies."""
    seen = {name: [] for name in names}

    def recorder(name):

        def hook(module, args):
            if module.training and not torch.is_grad_enabled():
                seen[name].append(args[0].detach().double().clone())

        return hook

    for name in names:
        getattr(model, name).register_forward_pre_hook(recorder(name))
    return seen


# ------------------------------------------------- the float64 reference
def batch_reference(inputs):
    """Equal-weight average of per-batch mean and unbiased variance."""
    means = [x.mean((0, 2, 3)) for x in inputs]
    variances = [x.var((0, 2, 3), unbiased=True) for x in inputs]
    return sum(means) / len(means), sum(variances) / len(variances)


def estimate_reference(inputs):
    """Mean of the batch means; mean over batches of the mean squared
    deviation from it."""
    mu = sum(x.mean((0, 2, 3)) for x in inputs) / len(inputs)
    var = sum((x - mu.view(1, -1, 1, 1)).square().mean((0, 2, 3))
              for x in inputs) / len(inputs)
    return mu, var


def check_statistics(model, seen, num_iters, atol=1e-6):
    for name in LAYERS:
        assert len(seen[name]) == num_iters, name
    layers = dict(bn=model.bn, bcn=model.bcn.pbn, bcn_est=model.bcn_est.pbn)
    for name, ref in (('bn', batch_reference), ('bcn', batch_reference),
                      ('bcn_est', estimate_reference)):
        mean, var = ref(seen[name])
        assert_close(
            layers[name].running_mean.double(), mean, rtol=1e-5, atol=atol)
        assert_close(
            layers[name].running_var.double(), var, rtol=1e-5, atol=atol)


# ------------------------------------------------------------------ tests
def test_registered_and_arguments():
    assert HOOKS.get('PreciseBNHook') is PreciseBNHook
    assert PreciseBNHook().num_iters == 200
    for bad in (0, -1, 2.0, True, None):
        with pytest.raises(ValueError, match='num_iters'):
            PreciseBNHook(num_iters=bad)
    with pytest.raises(ValueError, match='num_workers'):
        PreciseBNHook(num_workers=-1)


def test_statistics_are_the_equal_weight_average(tmp_path):
    """After the run (validation at its last iteration) BN, BCN's batch
    step and BCN's estimates hold the float64 reference over exactly the
    hook's batches; the eval-mode BatchNorm, the momentum, the counters
    and the training flags are as before; the checkpoint saved at that
    iteration holds the new statistics."""
    num_iters = 5  # more than the 4 batches of the dataset: it wraps
    runner = make_runner(tmp_path, num_iters=num_iters)
    model = runner.model
    seen = record_inputs(model)
    runner.train()
    check_statistics(model, seen, num_iters)
    # the estimates are no average of within-batch variances
    assert not torch.allclose(model.bcn_est.pbn.running_var,
                              model.bcn.pbn.running_var)
    assert_close(model.frozen.running_mean, torch.full((C, ), 0.5))
    assert_close(model.frozen.running_var, torch.full((C, ), 2.0))
    for bn in (model.bn, model.bcn.pbn, model.bcn_est.pbn):
        assert bn.momentum == 0.1
        assert int(bn.num_batches_tracked) == 2  # the 2 training steps
    ckpt = torch.load(tmp_path / 'iter_2.pth', weights_only=False)
    for key, value in model.state_dict().items():
        assert torch.equal(ckpt['state_dict'][key], value), key


def test_nothing_else_changes(tmp_path):
    """The function itself: parameters, other buffers, momentum (None
    too) and training flags unchanged, also after a failing pass."""
    torch.manual_seed(0)
    model = TinyNormModel()
    model.bn.momentum = None
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: m.training for n, m in model.named_modules()}
    batches = [torch.randn(2, 3, 3, 2) for _ in range(3)]
    seen = record_inputs(model, ('bn', ))
    updated, unused = update_precise_statistics(model, batches, 3, model)
    assert updated == ['bn', 'bcn', 'bcn_est'] and unused == []
    assert len(seen['bn']) == 3
    mean, var = batch_reference(seen['bn'])
    assert_close(model.bn.running_mean.double(), mean, rtol=1e-5, atol=1e-6)
    assert_close(model.bn.running_var.double(), var, rtol=1e-5, atol=1e-6)
    changed = {
        k
        for k, v in model.state_dict().items()
        if not torch.equal(v, before[k])
    }
    assert changed == {
        f'{name}.running_{stat}'
        for name in ('bn', 'bcn.pbn', 'bcn_est.pbn')
        for stat in ('mean', 'var')
    }
    assert model.bn.momentum is None
    assert {n: m.training for n, m in model.named_modules()} == flags

    # too few batches: an error, and everything as it was
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match='needs 5 batches'):
        update_precise_statistics(model, batches, 5, model)

    def fails(x):
        model(x)
        raise RuntimeError('boom')

    with pytest.raises(RuntimeError, match='boom'):
        update_precise_statistics(model, batches, 3, fails)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert model.bn.momentum is None
    assert {n: m.training for n, m in model.named_modules()} == flags


@pytest.mark.parametrize(
    'train_cfg, validate, expected',
    [
        # every val_interval, and the last iteration
        (dict(max_iters=5, val_interval=2), True, [2, 4, 5]),
        (dict(max_iters=5, val_interval=2, val_begin=3), True, [4, 5]),
        # dynamic intervals: 2 until iteration 3, then 1
        (dict(max_iters=5, val_interval=2,
              dynamic_intervals=[(3, 1)]), True, [2, 3, 4, 5]),
        # no validation: only after the last iteration
        (dict(max_iters=3, val_interval=1), False, [3]),
        # epoch-based: after the epochs the loop validates after
        (dict(by_epoch=True, max_epochs=3, val_interval=2), True, [2, 3]),
    ])
def test_when_it_runs(tmp_path, train_cfg, validate, expected):
    runner = make_runner(tmp_path, num_iters=1, validate=validate, **train_cfg)
    hook = next(h for h in runner.hooks if isinstance(h, PreciseBNHook))
    by_epoch = train_cfg.get('by_epoch', False)
    calls, update = [], hook.update

    def spy(runner):
        calls.append((runner.epoch if by_epoch else runner.iter) + 1)
        return update(runner)

    hook.update = spy
    runner.train()
    assert calls == expected


def test_training_is_not_disturbed(tmp_path):
    """The same batches and random draws (dropout, shuffling) as without
    the hook: with batch statistics only, the same final weights."""
    results = []
    for hook in (False, True):
        torch.manual_seed(0)
        model = TinyNormModel(estimate=False)
        batches = []

        def record(module, args):
            if torch.is_grad_enabled():
                batches.append(args[0].detach().clone())

        model.conv.register_forward_pre_hook(record)
        runner = make_runner(
            tmp_path / str(hook),
            model=model,
            hook=hook,
            shuffle=True,
            max_iters=4,
            val_interval=2)
        runner.train()
        results.append((batches, {
            k: v.detach().clone()
            for k, v in model.named_parameters()
        }, torch.rand(1)))
    (batches0, params0, draw0), (batches1, params1, draw1) = results
    assert len(batches0) == len(batches1) == 4
    for a, b in zip(batches0, batches1):
        assert torch.equal(a, b)
    for key in params0:
        assert torch.equal(params0[key], params1[key]), key
    assert torch.equal(draw0, draw1)


# -------------------------------------------- two processes (gloo) -----
WORLD_SIZE, DIST_ITERS = 2, 3
DIST_TIMEOUT_S = 180


def _rank_body(rank, tmp_dir):
    """What each gloo rank computes (run by ``run_gloo_ranks``)."""
    # the process group is up, so the samplers and the hook see 2
    # ranks; the runner itself is not distributed (no DDP wrapper)
    model = TinyNormModel(sync=True, local=True)
    seen = record_inputs(model, LAYERS + ('bcn_local', ))
    runner = make_runner(
        os.path.join(tmp_dir, 'work'),
        model=model,
        num_iters=DIST_ITERS,
        validate=False,
        max_iters=1)
    runner.train()
    return dict(
            seen=seen,
            buffers={
                k: v.clone()
                for k, v in model.state_dict().items()
            })


@pytest.mark.slow
@pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason='needs torch.distributed with the gloo backend')
def test_two_ranks_agree_on_the_average_of_both(tmp_path):
    """Both ranks end with the same statistics: the average over both
    ranks' batches (per-rank BN and unsynchronized BCN: 2 x 3 batches;
    synchronized BCN: its global batches, the same on both ranks;
    estimates: all 6 batches)."""
    ranks = run_gloo_ranks(_rank_body, WORLD_SIZE, tmp_path, DIST_TIMEOUT_S)
    for key, value in ranks[0]['buffers'].items():
        if 'running' in key:
            assert torch.equal(value, ranks[1]['buffers'][key]), key
    seen = [r['seen'] for r in ranks]
    for name in ('bn', 'bcn_local', 'bcn', 'bcn_est'):
        assert [len(s[name]) for s in seen] == [DIST_ITERS] * 2, name
    both = {name: seen[0][name] + seen[1][name] for name in seen[0]}
    # the synchronized batch step normalizes each global batch
    both['bcn'] = [
        torch.cat([a, b]) for a, b in zip(seen[0]['bcn'], seen[1]['bcn'])
    ]
    buffers = ranks[0]['buffers']
    for name, key, ref in (('bn', 'bn', batch_reference),
                           ('bcn_local', 'bcn_local.pbn', batch_reference),
                           ('bcn', 'bcn.pbn', batch_reference),
                           ('bcn_est', 'bcn_est.pbn', estimate_reference)):
        mean, var = ref(both[name])
        assert_close(
            buffers[f'{key}.running_mean'].double(),
            mean,
            rtol=1e-5,
            atol=1e-6)
        assert_close(
            buffers[f'{key}.running_var'].double(), var, rtol=1e-5, atol=1e-6)
