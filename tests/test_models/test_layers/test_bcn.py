# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Tests of Batch-Channel Normalization against float64 references."""
import re

import bcn_float64 as bcn64
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, DefaultScope, Registry
from mmseg.models.backbones import ResNetV1c
from mmseg.models.backbones.resnet import Bottleneck
from mmseg.registry import MODELS as MMSEG_MODELS
from torch.autograd import gradcheck
from torch.nn.modules.batchnorm import _BatchNorm

from mmseg_wsbcn.models.layers import BCN
from mmseg_wsbcn.models.layers.bcn import batch_channel_norm

EPS = 1e-5


# the float64 reference (tests/helpers/bcn_float64.py)
ref_batch_step, ref_channel_step = bcn64.batch_step, bcn64.channel_step
ref_estimates = bcn64.estimates
per_channel, batch_moments = bcn64.per_channel, bcn64.batch_moments
second_moment = bcn64.second_moment


def randomize(layer, seed=0):
    """Give every parameter of a BCN a non-trivial value."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (layer.weight, layer.bias, layer.pbn.weight, layer.pbn.bias):
            p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
    return layer


def params64(layer):
    return [
        t.detach().double()
        for t in (layer.pbn.weight, layer.pbn.bias, layer.weight, layer.bias)
    ]


# ----------------------------------------------------------- errors first
@pytest.mark.parametrize('kwargs, exc, text', [
    (dict(num_features=8, num_groups=3), ValueError, 'num_groups=3'),
    (dict(num_features=8, num_groups=0), ValueError, 'got 0'),
    (dict(num_features=8, num_groups=-2), ValueError, 'got -2'),
    (dict(num_features=8, num_groups=2.0), TypeError, '2.0'),
    (dict(num_features=0, num_groups=1), ValueError, 'num_features'),
    (dict(num_features=8, num_groups=2, eps=0.), ValueError, 'eps'),
    (dict(num_features=8, num_groups=2, eps=-1e-5), ValueError, '-1e-05'),
    (dict(num_features=8, num_groups=2,
          momentum=-0.1), ValueError, 'momentum must be in [0, 1], got -0.1'),
    (dict(num_features=8, num_groups=2, momentum=1.5), ValueError, '1.5'),
    (dict(num_features=8, num_groups=2, momentum=None), TypeError, 'momentum'),
    (dict(num_features=8, num_groups=2,
          estimate='yes'), TypeError, "estimate must be a bool, got 'yes'"),
    (dict(num_features=8, num_groups=2, sync=1), TypeError, 'sync'),
])
def test_bad_arguments(kwargs, exc, text):
    with pytest.raises(exc, match=re.escape(text)):
        BCN(**kwargs)


@pytest.mark.parametrize('shape', [(2, 8, 4), (2, 8, 2, 2, 2), (8, )])
def test_bad_input_rank(shape):
    layer = BCN(8, num_groups=2)
    with pytest.raises(ValueError, match=re.escape(f'{len(shape)}-D')):
        layer(torch.randn(shape))


def test_bad_channel_count():
    layer = BCN(8, num_groups=2)
    with pytest.raises(ValueError, match='num_features=8.*6 channels'):
        layer(torch.randn(2, 6, 3, 3))


def test_single_value_per_channel_raises_bn_error():
    layer = BCN(4, num_groups=2)
    x = torch.randn(1, 4, 1, 1)
    bn_text = ('Expected more than 1 value per channel when training, '
               f'got input size {x.size()}')
    with pytest.raises(ValueError, match=re.escape(bn_text)):
        layer(x)
    # the same message as BatchNorm's
    with pytest.raises(ValueError, match=re.escape(bn_text)):
        nn.BatchNorm2d(4)(x)


# ----------------------------------------------------------- batch stats
def test_known_answer_batch_statistics():
    """N=2, C=4, G=2: batch_norm(train) -> group_norm -> group affine."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 3, 5) * 3 + 1
    layer = randomize(BCN(4, num_groups=2))
    out = layer(x)

    g, be, a, b = params64(layer)
    x64 = x.double()
    y = F.batch_norm(x64, None, None, g, be, training=True, eps=EPS)
    z = F.group_norm(y, 2, eps=EPS)
    expected = a.view(1, 2, 1, 1, 1) * z.view(2, 2, 2, 3, 5) + b.view(
        1, 2, 1, 1, 1)
    expected = expected.view(2, 4, 3, 5)
    torch.testing.assert_close(out.double(), expected, atol=1e-6, rtol=0)

    # the same with the fully hand-written reference
    mean, var, _ = batch_moments(x)
    hand = ref_channel_step(ref_batch_step(x64, mean, var, g, be), 2, a, b)
    torch.testing.assert_close(out.double(), hand, atol=1e-6, rtol=0)
    # and the layer itself in float64
    layer64 = randomize(BCN(4, num_groups=2, dtype=torch.float64))
    torch.testing.assert_close(layer64(x64), hand, atol=1e-12, rtol=0)


def test_running_statistics_update_and_eval():
    torch.manual_seed(1)
    layer = randomize(BCN(6, num_groups=3, momentum=0.3))
    rm = torch.zeros(6, dtype=torch.float64)
    rv = torch.ones(6, dtype=torch.float64)
    for _ in range(3):
        x = torch.randn(3, 6, 4, 2) * 2 - 0.5
        layer(x)
        mean, _, unbiased = batch_moments(x)
        rm = 0.7 * rm + 0.3 * mean
        rv = 0.7 * rv + 0.3 * unbiased
    torch.testing.assert_close(layer.pbn.running_mean.double(), rm)
    torch.testing.assert_close(layer.pbn.running_var.double(), rv)
    assert layer.pbn.num_batches_tracked.item() == 3

    layer.eval()
    x = torch.randn(2, 6, 3, 3)
    out = layer(x)
    g, be, a, b = params64(layer)
    expected = ref_channel_step(
        ref_batch_step(x.double(), rm, rv, g, be), 3, a, b)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=0)
    # eval leaves the buffers alone
    torch.testing.assert_close(layer.pbn.running_mean.double(), rm)
    assert layer.pbn.num_batches_tracked.item() == 3


# ----------------------------------------------------------- estimates
def test_estimated_statistics_recurrence():
    torch.manual_seed(2)
    r = 0.25
    layer = randomize(BCN(8, num_groups=4, momentum=r, estimate=True))
    g, be, a, b = params64(layer)
    mu_hat = torch.zeros(8, dtype=torch.float64)
    var_hat = torch.ones(8, dtype=torch.float64)
    for step in range(4):
        x = (torch.randn(2, 8, 3, 3) * (step + 1) + step).requires_grad_()
        out = layer(x)

        mu_hat, var_hat = ref_estimates(x, mu_hat, var_hat, r)
        # float32 buffers updated in float32: float32's precision
        torch.testing.assert_close(
            layer.pbn.running_mean.double(), mu_hat, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(
            layer.pbn.running_var.double(), var_hat, rtol=1e-6, atol=1e-7)

        # the output uses the just-updated estimates, which are constants
        x64 = x.detach().double().requires_grad_()
        expected = ref_channel_step(
            ref_batch_step(x64, mu_hat, var_hat, g, be), 4, a, b)
        torch.testing.assert_close(
            out.double(), expected, atol=1e-5, rtol=1e-5)
        w = torch.randn_like(out)
        (out * w).sum().backward()
        (expected * w.double()).sum().backward()
        torch.testing.assert_close(
            x.grad.double(), x64.grad, atol=1e-5, rtol=1e-5)

    assert not layer.pbn.running_mean.requires_grad
    assert layer.pbn.running_mean.grad is None
    assert layer.pbn.running_var.grad is None
    assert layer.pbn.num_batches_tracked.item() == 4

    layer.eval()
    before = layer.pbn.running_mean.clone(), layer.pbn.running_var.clone()
    x = torch.randn(1, 8, 2, 2)
    out = layer(x)
    expected = ref_channel_step(
        ref_batch_step(x.double(), mu_hat, var_hat, g, be), 4, a, b)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=0)
    assert torch.equal(layer.pbn.running_mean, before[0])
    assert torch.equal(layer.pbn.running_var, before[1])


@pytest.mark.parametrize('channels, groups', [(8, 2), (8, 8)])
def test_estimate_batch_one_and_1x1(channels, groups):
    """The ASPP image-pooling case: one sample, a 1x1 map."""
    layer = randomize(BCN(channels, num_groups=groups, estimate=True))
    x = torch.randn(1, channels, 1, 1, requires_grad=True)
    out = layer(x)
    out.sum().backward()
    assert out.shape == x.shape
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    # one step from (0, 1): mu = 0.1 x, var = 0.9 + 0.1 x^2
    x0 = x.detach().flatten().double()
    torch.testing.assert_close(layer.pbn.running_mean.double(), 0.1 * x0)
    torch.testing.assert_close(layer.pbn.running_var.double(),
                               0.9 + 0.1 * x0**2)
    g, be, a, b = params64(layer)
    expected = ref_channel_step(
        ref_batch_step(x.detach().double(), 0.1 * x0, 0.9 + 0.1 * x0**2, g,
                       be), groups, a, b)
    # a group of one value normalizes to 0, up to float32 rounding that
    # 1 / sqrt(eps) amplifies
    atol = 1e-4 if groups == channels else 1e-5
    torch.testing.assert_close(out.double(), expected, atol=atol, rtol=0)
    if groups == channels:
        torch.testing.assert_close(
            out.flatten(), layer.bias.detach(), atol=atol, rtol=0)
    layer.eval()
    assert layer(x).shape == x.shape


@pytest.mark.parametrize('estimate', [False, True])
def test_cumulative_moving_average(estimate):
    """``pbn.momentum = None`` (BatchNorm's cumulative moving average): step
    ``k`` folds its statistics in at rate ``1 / k``, so after ``k`` steps
    the buffers hold the plain average of the ``k`` steps' statistics (the
    initial values weigh nothing)."""
    torch.manual_seed(9)
    layer = randomize(BCN(6, num_groups=3, estimate=estimate))
    layer.pbn.momentum = None
    assert layer.momentum is None
    means, variances = [], []
    mu_hat = torch.zeros(6, dtype=torch.float64)
    for step in range(1, 5):
        x = torch.randn(3, 6, 4, 2) * step + 2 * step
        layer(x)
        mean, _, unbiased = batch_moments(x)
        # estimate=True: the second moment about the previous estimate
        variances.append(second_moment(x, mu_hat) if estimate else unbiased)
        means.append(mean)
        mu_hat = torch.stack(means).mean(0)
        var_hat = torch.stack(variances).mean(0)
        torch.testing.assert_close(
            layer.pbn.running_mean.double(), mu_hat, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(
            layer.pbn.running_var.double(), var_hat, rtol=1e-5, atol=1e-6)
        assert layer.pbn.num_batches_tracked.item() == step


@pytest.mark.parametrize('estimate', [False, True])
def test_called_twice_before_backward(estimate):
    """A layer used twice in one graph (the update must not break it)."""
    layer = randomize(BCN(4, num_groups=2, estimate=estimate))
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    (layer(x) * layer(x * 2)).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert layer.pbn.num_batches_tracked.item() == 2


def test_init_weights_restores_only_a_zeroed_layer():
    layer = randomize(BCN(4, num_groups=2))
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    layer.init_weights()
    for k, v in layer.state_dict().items():
        assert torch.equal(v, before[k])
    with torch.no_grad():
        for p in layer.parameters():
            p.zero_()
    layer.init_weights()
    assert torch.equal(layer.pbn.weight, torch.ones(4))
    assert not layer.weight.any() and not layer.bias.any()
    assert not layer.pbn.bias.any()


@pytest.mark.parametrize('zeroed', ['weight', 'pbn.weight'])
def test_init_weights_leaves_a_partly_zeroed_layer_alone(zeroed):
    """Only one of the two weights all zero: nothing changes.

    The real case: the group affine weight zero and ``pbn.weight`` 1, as
    ``zero_init_residual`` and one ``init_weights`` leave it, met by a
    second ``init_weights``. ``pbn.weight`` is random here, so that a reset
    to 1 would show.
    """
    layer = randomize(BCN(4, num_groups=2))
    with torch.no_grad():
        layer.get_parameter(zeroed).zero_()
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    layer.init_weights()
    for k, v in layer.state_dict().items():
        assert torch.equal(v, before[k]), k


# ----------------------------------------------------------- gradients
@pytest.mark.parametrize('training', [True, False])
@pytest.mark.parametrize('estimate', [False, True])
def test_gradcheck(estimate, training):
    torch.manual_seed(3)
    x = torch.randn(2, 4, 2, 3, dtype=torch.float64, requires_grad=True)
    params = [(torch.rand(n, dtype=torch.float64) + 0.5).requires_grad_()
              for n in (2, 2, 4, 4)]
    rm0 = torch.randn(4, dtype=torch.float64)
    rv0 = torch.rand(4, dtype=torch.float64) + 0.5

    # estimate=True treats its statistics as constants (no gradient through
    # them); momentum=0 keeps them constant, so the numerical Jacobian
    # agrees. estimate=False uses momentum 0.3: its running statistics do
    # not enter the training output.
    momentum = 0.0 if estimate else 0.3

    def func(x, a, b, gamma, beta):
        # fresh buffers per call: an update must not change the function
        return batch_channel_norm(
            x,
            2,
            rm0.clone(),
            rv0.clone(),
            a,
            b,
            gamma,
            beta,
            training=training,
            estimate=estimate,
            momentum=momentum)

    assert gradcheck(func, (x, *params), eps=1e-6, atol=1e-5)


# ----------------------------------------------------------- precision
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
@pytest.mark.parametrize('estimate', [False, True])
def test_half_precision_input(dtype, estimate):
    """A half-precision input far from 0 (mean 100, std 4), against the
    float64 reference on the same rounded input.

    The statistics are accumulated and kept in float32, so the buffers
    match to float32 rounding. The output is rounded to ``dtype``, and so
    is the batch step's output before the channel step standardizes it,
    so the output matches to a few units of ``dtype``'s precision.
    """
    torch.manual_seed(4)
    x = (torch.randn(2, 8, 4, 4) * 4 + 100).to(dtype)
    layer = randomize(BCN(8, num_groups=2, estimate=estimate))
    r = layer.momentum
    if estimate:
        # estimates near the data's statistics, as in a trained layer;
        # from (0, 1) the batch step would output values around 3 that
        # differ by ~0.1, and the channel step would amplify their rounding
        layer.pbn.running_mean.fill_(99.)
        layer.pbn.running_var.fill_(15.)
    mu0 = layer.pbn.running_mean.double()
    var0 = layer.pbn.running_var.double()
    g, be, a, b = params64(layer)
    out = layer(x)

    mean, var, unbiased = batch_moments(x)
    if estimate:
        running_mean, running_var = ref_estimates(x, mu0, var0, r)
        m, v = running_mean, running_var
    else:
        running_mean = (1 - r) * mu0 + r * mean
        running_var = (1 - r) * var0 + r * unbiased
        m, v = mean, var
    expected = ref_channel_step(
        ref_batch_step(x.double(), m, v, g, be), 2, a, b)
    assert out.dtype == dtype
    # errors seen: up to 0.7 eps * (1 + |expected|)
    tol = 4 * torch.finfo(dtype).eps
    torch.testing.assert_close(out.double(), expected, atol=tol, rtol=tol)
    torch.testing.assert_close(
        layer.pbn.running_mean.double(), running_mean, rtol=1e-5, atol=0)
    torch.testing.assert_close(
        layer.pbn.running_var.double(), running_var, rtol=1e-5, atol=0)


# ----------------------------------------------------------- builders
def _check_built(name, layer):
    assert name == 'bn'
    assert isinstance(layer, BCN)
    assert layer.num_channels == 8 and layer.num_groups == 2
    assert layer.estimate and layer.eps == 1e-5
    assert layer(torch.randn(1, 8, 1, 1)).shape == (1, 8, 1, 1)


def test_build_norm_layer():
    cfg = dict(type='BCN', num_groups=2, estimate=True)
    _check_built(*build_norm_layer(cfg, 8))
    assert MODELS.get('BCN') is BCN
    name, layer = build_norm_layer(cfg, 8, postfix=3)
    assert name == 'bn3'
    with pytest.raises(ValueError, match='num_groups=3'):
        build_norm_layer(dict(type='BCN', num_groups=3), 8)


def test_build_norm_layer_under_mmseg_scope():
    cfg = dict(type='BCN', num_groups=2, estimate=True)
    assert MMSEG_MODELS.get('BCN') is BCN
    with DefaultScope.overwrite_default_scope('mmseg'):
        _check_built(*build_norm_layer(cfg, 8))


def test_build_norm_layer_under_child_registry():
    child = Registry('x', parent=MODELS, scope='xproj')
    assert child.get('BCN') is BCN
    cfg = dict(type='BCN', num_groups=2, estimate=True)
    with DefaultScope.overwrite_default_scope('xproj'):
        _check_built(*build_norm_layer(cfg, 8))


def test_repr_and_parameter_count():
    layer = BCN(64, num_groups=32, estimate=True)
    text = repr(layer)
    assert text.startswith('BCN(\n  64, num_groups=32, eps=1e-05, ')
    assert 'estimate=True, sync=True' in text and '(pbn): ' in text
    assert sum(p.numel() for p in layer.parameters()) == 2 * 64 + 2 * 32
    assert isinstance(layer, nn.GroupNorm)
    assert isinstance(layer.pbn, _BatchNorm)
    assert layer.num_features == 64 and layer.momentum == 0.1


# ----------------------------------------------------------- state dict
def test_state_dict_keys():
    layer = BCN(64, num_groups=32)
    shapes = {k: tuple(v.shape) for k, v in layer.state_dict().items()}
    assert list(shapes) == [
        'weight', 'bias', 'pbn.weight', 'pbn.bias', 'pbn.running_mean',
        'pbn.running_var', 'pbn.num_batches_tracked'
    ]
    assert shapes['weight'] == (32, ) and shapes['pbn.weight'] == (64, )
    assert shapes['pbn.num_batches_tracked'] == ()


def test_load_authors_group_affine_shape():
    src = randomize(BCN(8, num_groups=4), seed=5)
    state = src.state_dict()
    state['weight'] = state['weight'].view(1, 4, 1)
    state['bias'] = state['bias'].view(1, 4, 1)
    dst = BCN(8, num_groups=4)
    dst.load_state_dict(state, strict=True)
    assert dst.weight.shape == (4, )
    torch.testing.assert_close(dst.weight, src.weight)
    torch.testing.assert_close(dst.bias, src.bias)
    torch.testing.assert_close(dst.pbn.weight, src.pbn.weight)
    # nested, as in a backbone checkpoint
    seq = nn.Sequential(BCN(8, num_groups=4))
    seq.load_state_dict({'0.' + k: v for k, v in state.items()})
    torch.testing.assert_close(seq[0].bias, src.bias)
    # a mismatched group count still fails loudly
    state['weight'] = torch.ones(1, 2, 1)
    with pytest.raises(RuntimeError, match='size mismatch'):
        BCN(8, num_groups=4).load_state_dict(state)


# ----------------------------------------------------------- mmseg ResNet
def _resnet(depth, **kwargs):
    model = ResNetV1c(
        depth=depth,
        stem_channels=16,
        base_channels=8,
        norm_cfg=dict(type='BCN', num_groups=4, estimate=True),
        **kwargs)
    model.init_weights()
    return model


def _bcns(model):
    return [m for m in model.modules() if isinstance(m, BCN)]


def test_resnet_norm_eval_freezes_statistics():
    torch.manual_seed(6)
    model = _resnet(18, norm_eval=True)
    model.train()
    bcns = _bcns(model)
    assert bcns and all(m.training and not m.pbn.training for m in bcns)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model(torch.randn(1, 3, 32, 32))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k

    # without norm_eval the estimates move
    model = _resnet(18, norm_eval=False)
    model.train()
    model(torch.randn(1, 3, 32, 32))
    assert model.stem[1].pbn.num_batches_tracked.item() == 1
    assert model.stem[1].pbn.running_mean.abs().sum() > 0


def test_resnet_default_init():
    # mmseg's ResNet defaults to zero_init_residual=True
    model = _resnet(18, zero_init_residual=False)
    assert type(model.stem[1]) is BCN
    assert type(model.layer1[0].bn1) is BCN
    for m in _bcns(model):
        for p, val in ((m.weight, 1.), (m.bias, 0.), (m.pbn.weight, 1.),
                       (m.pbn.bias, 0.)):
            assert torch.equal(p, torch.full_like(p, val))
    keys = model.state_dict().keys()
    assert 'layer1.0.bn1.weight' in keys
    assert 'layer1.0.bn1.pbn.running_mean' in keys


def test_resnet_zero_init_residual():
    torch.manual_seed(7)
    model = _resnet(50, zero_init_residual=True)
    outputs = []
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 16
    for block in blocks:
        norm3 = block.norm3
        assert isinstance(norm3, BCN) and block.norm3_name == 'bn3'
        assert not norm3.weight.any() and not norm3.bias.any()
        # the batch step keeps gamma = 1, so the group affine can learn
        assert torch.equal(norm3.pbn.weight, torch.ones_like(norm3.pbn.weight))
        # clone: Bottleneck adds the identity to this tensor in place
        norm3.register_forward_hook(lambda m, i, o: outputs.append(o.clone()))
    model.train()
    model(torch.randn(2, 3, 32, 32))
    assert len(outputs) == 16
    assert all(torch.equal(o, torch.zeros_like(o)) for o in outputs)
    # and the group affine gets a gradient
    outputs.clear()
    sum(o.sum() for o in model(torch.randn(2, 3, 32, 32))).backward()
    assert blocks[0].norm3.weight.grad.abs().sum() > 0


def test_resnet_norm_decay_mult_reaches_all_bcn_parameters():
    model = _resnet(18)
    wrapper = build_optim_wrapper(
        model,
        dict(
            type='OptimWrapper',
            optimizer=dict(type='SGD', lr=0.1, weight_decay=1e-4),
            paramwise_cfg=dict(norm_decay_mult=0.)))
    decay = {}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            decay[id(p)] = group['weight_decay']
    bcn_params = [p for m in _bcns(model) for p in m.parameters()]
    assert len(bcn_params) == 4 * len(_bcns(model))
    assert all(decay[id(p)] == 0 for p in bcn_params)
    assert decay[id(model.layer1[0].conv1.weight)] == 1e-4


def test_resnet_convert_and_revert_sync_batchnorm():
    torch.manual_seed(8)
    model = _resnet(18)
    model.train()
    model(torch.randn(2, 3, 32, 32))  # move the estimates
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)

    synced = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert all(isinstance(m.pbn, nn.SyncBatchNorm) for m in _bcns(synced))
    synced.eval()
    for a, b in zip(synced(x), expected):
        assert torch.equal(a, b)

    reverted = revert_sync_batchnorm(synced)
    pbns = [m.pbn for m in _bcns(reverted)]
    assert all(
        isinstance(p, _BatchNorm) and not isinstance(p, nn.SyncBatchNorm)
        for p in pbns)
    reverted.eval()
    for a, b in zip(reverted(x), expected):
        assert torch.equal(a, b)
    # training also works (single process: the SyncBN is never called)
    reverted.train()
    reverted(x)
