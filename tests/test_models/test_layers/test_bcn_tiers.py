# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""BCN's reference formula against a float64 re-derivation, and both tiers
(eager closed form, compiled stages) against the reference in float64, on
the shapes a model feeds them; empty batches; channels_last; autocast; the
fused tier's fallback on compiler errors only."""
import warnings

import bcn_float64 as bcn64
import pytest
import torch
from torch.autograd import gradcheck

from mmseg_wsbcn.models.layers import BCN
from mmseg_wsbcn.models.layers.bcn import batch_channel_norm
from mmseg_wsbcn.models.layers.bcn_compiled import (FusedStages,
                                                    is_compiler_error,
                                                    select_impl)
from mmseg_wsbcn.models.layers.bcn_function import BCNFunction, bcn_reference

EPS = 1e-5
R = 0.1
MODES = ['estimate', 'batch', 'eval']


def rederived(x, params, mode, mu0, var0):
    """BCN in float64 from the paper's three steps (the shared reference,
    tests/helpers/bcn_float64.py)."""
    return bcn64.bcn(x, params, mode, mu0, var0, R, EPS)


def make_layer(channels, groups, estimate, impl, seed=0):
    gen = torch.Generator().manual_seed(seed)
    layer = BCN(channels, groups, estimate=estimate, momentum=R, impl=impl)
    with torch.no_grad():
        for p in (layer.weight, layer.bias, layer.pbn.weight, layer.pbn.bias):
            p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
        layer.pbn.running_mean.copy_(torch.randn(channels, generator=gen))
        layer.pbn.running_var.copy_(torch.rand(channels, generator=gen) + 0.5)
    return layer


def params_of(layer):
    return [
        p.detach().double().requires_grad_()
        for p in (layer.weight, layer.bias, layer.pbn.weight, layer.pbn.bias)
    ]


@pytest.mark.parametrize('mode', MODES)
def test_reference_matches_rederivation(mode):
    """The layer's definition (``bcn_reference``) against the formula
    written out independently, values and gradients, in float64."""
    torch.manual_seed(1)
    layer = make_layer(12, 3, mode == 'estimate', 'eager')
    x = (torch.randn(2, 12, 5, 4, dtype=torch.float64) * 2 + 3)
    mu0 = layer.pbn.running_mean.double()
    var0 = layer.pbn.running_var.double()
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    p1, p2 = params_of(layer), params_of(layer)
    out, mean, var = bcn_reference(x1, *p1, mu0, var0, 3, mode, R, EPS)
    expected = rederived(x2, p2, mode, mu0, var0)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    weight = torch.randn_like(x)
    (out * weight).sum().backward()
    (expected * weight).sum().backward()
    for got, want in zip([x1, *p1], [x2, *p2]):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-10,
                                   atol=1e-10)


# (shape, groups, channels_last): the ASPP image-pooling branch, batch 1,
# odd sizes, one group, C == G, channels_last
SHAPES = [((2, 8, 1, 1), 4, False), ((1, 8, 5, 3), 4, False),
          ((2, 12, 7, 5), 3, False), ((2, 8, 4, 4), 1, False),
          ((2, 8, 3, 3), 8, False), ((2, 8, 6, 5), 2, True)]


def run_tier(impl, shape, groups, mode, dtype, channels_last, seed=0):
    """The layer on one input: output, gradients, buffers, the input, and
    the float64 reference's output, gradients and buffers."""
    torch.manual_seed(seed + sum(shape))
    layer = make_layer(shape[1], groups, mode == 'estimate', impl).to(dtype)
    if mode == 'eval':
        layer.eval()
    mu0 = layer.pbn.running_mean.double().clone()
    var0 = layer.pbn.running_var.double().clone()
    x = (torch.randn(shape) * 2 + 3).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    out = layer(x)
    weight = torch.randn(shape, dtype=torch.float64)
    (out.double() * weight).sum().backward()
    got = [out, x.grad] + [
        p.grad
        for p in (layer.weight, layer.bias, layer.pbn.weight, layer.pbn.bias)
    ] + [layer.pbn.running_mean, layer.pbn.running_var]

    x64 = x.detach().double().requires_grad_()
    p64 = params_of(layer)
    ref, mean, var = bcn_reference(x64, *p64, mu0, var0, groups, mode, R, EPS)
    (ref * weight).sum().backward()
    if mode == 'batch':
        count = shape[0] * shape[2] * shape[3]
        buffers = [(1 - R) * mu0 + R * mean,
                   (1 - R) * var0 + R * var * count / (count - 1)]
    else:
        buffers = [mean, var]
    want = [ref, x64.grad] + [p.grad for p in p64] + buffers
    return got, want, x, out


def assert_all_close(got, want, tol):
    names = ['output', 'grad x', 'grad a', 'grad b', 'grad gamma',
             'grad beta', 'running_mean', 'running_var']
    for name, g, w in zip(names, got, want):
        torch.testing.assert_close(
            g.double(), w, rtol=tol, atol=tol, msg=lambda m: f'{name}: {m}')


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('shape, groups, channels_last', SHAPES)
def test_eager_tier_matches_reference(shape, groups, channels_last, mode):
    if mode == 'batch' and shape[0] * shape[2] * shape[3] == 1:
        pytest.skip('one value per channel')
    # float64 end to end: the closed form is the same function
    got, want, _, _ = run_tier('eager', shape, groups, mode, torch.float64,
                               channels_last)
    assert_all_close(got, want, 1e-9)
    # float32. On a 1x1 map the batch statistics of 2 values are too
    # ill-conditioned for float32 (the float64 run above covers them), and
    # a group of one value normalizes to 0, where 1 / sqrt(eps) amplifies
    # the rounding of its gradients
    if mode == 'batch' and shape[2:] == (1, 1):
        return
    got, want, _, _ = run_tier('eager', shape, groups, mode, torch.float32,
                               channels_last)
    tol = 1e-3 if shape[2:] == (1, 1) else 1e-4
    assert_all_close(got, want, tol)


@pytest.mark.parametrize('mode', MODES)
def test_fused_tier_matches_reference(mode):
    """The compiled stages (inductor's C++ backend here) at batch 1, odd
    sizes, C == G and channels_last; the 1x1 branch runs the eager stages.
    """
    fused = select_impl('compile', torch.zeros(2, 4, 3, 3))
    assert fused == 'compile', 'the fused tier is off in this process'
    for shape, groups, channels_last in [((1, 8, 5, 3), 4, False),
                                         ((2, 8, 7, 5), 8, False),
                                         ((2, 8, 6, 5), 2, True)]:
        got, want, x, out = run_tier('compile', shape, groups, mode,
                                     torch.float32, channels_last)
        assert_all_close(got, want, 1e-4)
        if channels_last:
            assert out.is_contiguous(memory_format=torch.channels_last)
    assert select_impl('compile', torch.zeros(2, 4, 3, 3)) == 'compile', (
        'compiling failed, so the eager tier ran instead')


@pytest.mark.parametrize('impl', ['eager', 'compile'])
@pytest.mark.parametrize('estimate', [True, False])
def test_autocast_half_precision(impl, estimate):
    """Under bf16 autocast (a conv before it emits bf16): output in bf16,
    statistics in float32, against the float64 reference on the same
    rounded input."""
    torch.manual_seed(7)
    layer = make_layer(16, 4, estimate, impl)
    mu0 = layer.pbn.running_mean.double().clone()
    var0 = layer.pbn.running_var.double().clone()
    x = (torch.randn(2, 16, 6, 5) * 2 + 1).bfloat16().requires_grad_()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.bfloat16
    assert layer.pbn.running_mean.dtype == torch.float32
    out.float().sum().backward()
    x64 = x.detach().double().requires_grad_()
    mode = 'estimate' if estimate else 'batch'
    ref, mean, _ = bcn_reference(x64, *params_of(layer), mu0, var0, 4, mode,
                                 R, EPS)
    ref.sum().backward()
    tol = 4 * torch.finfo(torch.bfloat16).eps
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)
    torch.testing.assert_close(
        x.grad.double(), x64.grad, rtol=tol, atol=tol)
    expected_mean = mean if estimate else (1 - R) * mu0 + R * mean
    torch.testing.assert_close(
        layer.pbn.running_mean.double(), expected_mean, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('impl', ['eager', 'compile'])
@pytest.mark.parametrize('mode', MODES)
def test_empty_batch(impl, mode):
    """N = 0 (a RoI head with no RoIs): an empty output, gradients that
    flow (zeros for the parameters), statistics unchanged."""
    layer = make_layer(8, 2, mode == 'estimate', impl)
    if mode == 'eval':
        layer.eval()
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    x = torch.randn(0, 8, 5, 5, requires_grad=True)
    out = layer(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    out.sum().backward()
    assert x.grad.shape == x.shape
    for p in layer.parameters():
        assert p.grad is not None and not p.grad.any()
    for key, value in layer.state_dict().items():
        assert torch.equal(value, before[key]), key
    with torch.no_grad():
        assert layer(x).shape == x.shape


def test_channels_last_saves_the_input_itself(saved_tensors):
    """channels_last in, channels_last out; the backward pass keeps the
    input tensor itself (no contiguous copy) and only small statistics."""
    layer = make_layer(16, 4, True, 'eager')
    x = torch.randn(2, 16, 8, 8).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    out, saved = saved_tensors(lambda: layer(x))
    assert out.is_contiguous(memory_format=torch.channels_last)
    big = [t for t in saved if t.numel() >= x.numel()]
    assert len(big) == 1 and big[0].data_ptr() == x.data_ptr()
    assert sum(t.numel() for t in saved if t.numel() < x.numel()) < (
        x.numel() / 4)
    out.sum().backward()


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('shape, groups',
                         [((1, 4, 3, 2), 2), ((3, 4, 1, 1), 4),
                          ((2, 4, 2, 3), 1)])
def test_gradcheck(shape, groups, mode):
    """Every gradient of the eager tier, the batch statistics' included."""
    if mode == 'batch' and shape[0] * shape[2] * shape[3] == 1:
        pytest.skip('one value per channel')
    torch.manual_seed(5)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    params = [(torch.rand(k, dtype=torch.float64) + 0.5).requires_grad_()
              for k in (groups, groups, shape[1], shape[1])]
    rm0 = torch.randn(shape[1], dtype=torch.float64)
    rv0 = torch.rand(shape[1], dtype=torch.float64) + 0.5

    def func(x, a, b, gamma, beta):
        # momentum 0 keeps the estimates constant, as the gradient assumes
        return batch_channel_norm(
            x, groups, rm0.clone(), rv0.clone(), a, b, gamma, beta,
            training=mode != 'eval', estimate=mode == 'estimate',
            momentum=0.0, impl='eager')

    assert gradcheck(func, (x, *params), eps=1e-6, atol=1e-6)


# ------------------------------------------------ compiler errors only
class Backend:
    """A ``torch.compile`` backend that compiles nothing (runs the traced
    graph) until told to fail: at compile time (``'compile'``), or with an
    out-of-memory error when the compiled code runs (``'oom'``)."""

    def __init__(self):
        self.fail = None

    def __call__(self, gm, example_inputs):
        if self.fail == 'compile':
            raise RuntimeError('simulated compiler crash')
        if self.fail == 'oom':

            def run(*args):
                raise torch.OutOfMemoryError('simulated out of memory')

            return run
        return gm.forward


def _apply(layer, x, run):
    return BCNFunction.apply(x, layer.weight, layer.bias, layer.pbn.weight,
                             layer.pbn.bias, layer.pbn.running_mean,
                             layer.pbn.running_var, layer.num_groups,
                             'batch', R, EPS, False, run)


def test_compiler_error_in_backward_falls_back():
    """The backward stages are compiled on the first backward pass: a
    compiler error there runs the eager stages (same gradients) and
    switches that fused tier off, with one warning."""
    torch._dynamo.reset()
    backend = Backend()
    fused = FusedStages(backend=backend)
    layer = make_layer(8, 2, False, 'compile')
    x = (torch.randn(2, 8, 5, 4) * 2 + 1).requires_grad_()
    out = _apply(layer, x, fused)
    assert fused.state['failed'] is None
    backend.fail = 'compile'
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        out.sum().backward()
    assert is_compiler_error(fused.state['failed'])
    assert any('torch.compile failed' in str(w.message) for w in caught)
    grad = x.grad.clone()
    x.grad = None
    make_layer(8, 2, False, 'eager')(x).sum().backward()
    torch.testing.assert_close(grad, x.grad, rtol=1e-5, atol=1e-6)
    torch._dynamo.reset()


def test_out_of_memory_is_raised():
    """An out-of-memory error in compiled code is the program's, not the
    compiler's: raised as it is, the fused tier stays on."""
    torch._dynamo.reset()
    backend = Backend()
    backend.fail = 'oom'
    fused = FusedStages(backend=backend)
    layer = make_layer(8, 2, False, 'compile')
    with pytest.raises(torch.OutOfMemoryError, match='simulated'):
        _apply(layer, torch.randn(2, 8, 5, 4), fused)
    assert fused.state['failed'] is None
    torch._dynamo.reset()


@pytest.mark.parametrize('impl, shape, expected', [
    ('eager', (2, 4, 3, 3), 'eager'),
    ('auto', (2, 4, 3, 3), 'eager'),  # a CPU input
    ('compile', (2, 4, 3, 3), 'compile'),
    ('compile', (1, 4, 3, 3), 'compile'),
    ('compile', (0, 4, 3, 3), 'eager'),
    ('compile', (2, 4, 1, 1), 'eager'),
])
def test_select_impl(impl, shape, expected):
    assert select_impl(impl, torch.zeros(shape)) == expected


def test_bad_impl():
    with pytest.raises(ValueError, match="impl must be one of .*'fast'"):
        BCN(8, 2, impl='fast')
