# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Both BCN tiers (eager closed form, torch.compile) against a float64
re-derivation of BCN's three steps, at the edge shapes; gradcheck; what
the backward pass keeps in memory."""
import pytest
import torch
from torch.autograd import gradcheck

from mmseg_wsbcn.models.layers import BCN
from mmseg_wsbcn.models.layers.bcn import batch_channel_norm
from mmseg_wsbcn.models.layers.bcn_compiled import select_impl

EPS = 1e-5
R = 0.1


def reference(x, layer, mode, mu0, var0):
    """BCN in float64, step by step: statistics, batch step, channel step,
    group affine. Returns the output and the expected running buffers."""
    x = x.double()
    n, c, h, w = x.shape
    g = layer.num_groups
    per_channel = x.transpose(0, 1).reshape(c, -1)
    if mode == 'batch':
        mean = per_channel.mean(1)
        var = per_channel.var(1, unbiased=False)
        count = per_channel.size(1)
        buffers = ((1 - R) * mu0 + R * mean.detach(),
                   (1 - R) * var0 + R * var.detach() * count / (count - 1))
    elif mode == 'estimate':
        xd = per_channel.detach()
        mean = (1 - R) * mu0 + R * xd.mean(1)
        var = (1 - R) * var0 + R * ((xd - mu0[:, None])**2).mean(1)
        buffers = (mean, var)
    else:
        mean, var = mu0, var0
        buffers = (mu0, var0)
    gamma, beta, a, b = (
        p.detach().double().requires_grad_()
        for p in (layer.pbn.weight, layer.pbn.bias, layer.weight, layer.bias))
    y = (
        gamma.view(1, -1, 1, 1) * (x - mean.view(1, -1, 1, 1)) /
        torch.sqrt(var.view(1, -1, 1, 1) + EPS) + beta.view(1, -1, 1, 1))
    yg = y.reshape(n, g, -1)
    mu = yg.mean(2, keepdim=True)
    sd = torch.sqrt(((yg - mu)**2).mean(2, keepdim=True) + EPS)
    out = (a.view(1, g, 1) * (yg - mu) / sd + b.view(1, g, 1))
    return out.reshape(n, c, h, w), buffers, (a, b, gamma, beta)


def make_layer(channels, groups, estimate, impl, seed=0):
    gen = torch.Generator().manual_seed(seed)
    layer = BCN(channels, groups, estimate=estimate, momentum=R, impl=impl)
    with torch.no_grad():
        for p in (layer.weight, layer.bias, layer.pbn.weight, layer.pbn.bias):
            p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
        layer.pbn.running_mean.copy_(torch.randn(channels, generator=gen))
        layer.pbn.running_var.copy_(torch.rand(channels, generator=gen) + 0.5)
    return layer


# (shape, groups): batch 1, a 1x1 map, one group, C == G, a plain case
SHAPES = [((1, 8, 5, 3), 4), ((3, 8, 1, 1), 2), ((2, 8, 4, 4), 1),
          ((2, 8, 3, 3), 8), ((2, 12, 6, 5), 3)]
MODES = ['estimate', 'batch', 'eval']


def _check(impl, shape, groups, mode):
    torch.manual_seed(sum(shape) + groups)
    layer = make_layer(shape[1], groups, mode == 'estimate', impl)
    if mode == 'eval':
        layer.eval()
    mu0 = layer.pbn.running_mean.double().clone()
    var0 = layer.pbn.running_var.double().clone()
    x = (torch.randn(shape) * 2 + 3).requires_grad_()
    out = layer(x)
    expected, buffers, params64 = reference(x.detach().requires_grad_(), layer,
                                            mode, mu0, var0)
    torch.testing.assert_close(out.double(), expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        layer.pbn.running_mean.double(), buffers[0], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(
        layer.pbn.running_var.double(), buffers[1], atol=1e-6, rtol=1e-6)

    weight = torch.randn(shape)
    x64 = x.detach().double().requires_grad_()
    expected, _, params64 = reference(x64, layer, mode, mu0, var0)
    (out * weight).sum().backward()
    (expected * weight.double()).sum().backward()
    torch.testing.assert_close(x.grad.double(), x64.grad, atol=1e-4, rtol=1e-4)
    for p, p64 in zip(
        (layer.weight, layer.bias, layer.pbn.weight, layer.pbn.bias),
            params64):
        torch.testing.assert_close(
            p.grad.double(), p64.grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('shape, groups', SHAPES)
def test_eager_tier_matches_float64(shape, groups, mode):
    if mode == 'batch' and shape[0] * shape[2] * shape[3] == 1:
        pytest.skip('one value per channel')
    _check('eager', shape, groups, mode)


@pytest.mark.parametrize('mode', MODES)
def test_fused_tier_matches_float64(mode):
    """The compiled closed form (inductor's C++ backend here), on shapes
    with batch 1, a 1x1 map and C == G."""
    assert select_impl('compile', torch.zeros(1), False) == 'compile'
    for shape, groups in (((1, 8, 5, 3), 4), ((3, 8, 1, 1), 8)):
        if mode == 'batch' and shape[2] * shape[3] == 1:
            shape = (3, 8, 2, 1)
        _check('compile', shape, groups, mode)
    assert select_impl('compile', torch.zeros(1), False) == 'compile', (
        'compiling failed, so the eager tier ran instead')


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('shape, groups',
                         [((1, 4, 3, 2), 2), ((3, 4, 1, 1), 4),
                          ((2, 4, 2, 3), 1)])
def test_gradcheck(shape, groups, mode):
    """Every gradient, the batch statistics' included, in float64."""
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
            x,
            groups,
            rm0.clone(),
            rv0.clone(),
            a,
            b,
            gamma,
            beta,
            training=mode != 'eval',
            estimate=mode == 'estimate',
            momentum=0.0,
            impl='eager')

    assert gradcheck(func, (x, *params), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize('estimate', [True, False])
def test_backward_keeps_only_the_input(saved_tensors, estimate):
    """GroupNorm's memory: of the tensors saved for the backward pass, the
    only full-size one is the input itself (no second activation)."""
    layer = make_layer(16, 4, estimate, 'eager')
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    out, saved = saved_tensors(lambda: layer(x * 1))
    big = [t for t in saved if t.numel() >= x.numel()]
    assert len(big) == 1 and big[0].shape == x.shape
    small = sum(t.numel() for t in saved if t.numel() < x.numel())
    assert small < x.numel() / 4
    out.sum().backward()


@pytest.mark.parametrize('impl, device, distributed, expected', [
    ('eager', 'cpu', False, 'eager'),
    ('auto', 'cpu', False, 'eager'),
    ('compile', 'cpu', False, 'compile'),
    ('compile', 'cpu', True, 'eager'),
])
def test_select_impl(impl, device, distributed, expected):
    assert select_impl(impl, torch.zeros(1, device=device),
                       distributed) == expected


def test_bad_impl():
    with pytest.raises(ValueError, match="impl must be one of .*'fast'"):
        BCN(8, 2, impl='fast')
