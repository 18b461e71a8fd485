# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""FLOP counting of WS / BCN models (``tools/analysis/get_flops.py``,
:mod:`mmseg_wsbcn.analysis.complexity`).

MMEngine's counter traces the model with the JIT; before WSConv2d ran as
plain ops under a trace, its convolutions were an opaque Python op counted
as 0 FLOPs (or the trace failed inside WSConv2d). The references: the
multiply-add count of a convolution written out by hand, and the same
config with plain convs (WS standardizes the weight, the conv's work is the
same).
"""
import pytest
import torch
import torch.nn as nn
from mmengine.analysis import get_model_complexity_info

from mmseg_wsbcn.analysis.complexity import input_shape_of
from mmseg_wsbcn.models.layers import BCN, WSConv2d

DEMO = ('configs/demo/'
        'deeplabv3_r18-d8_bcn-ws_1xb2-200iters_cityscapes-mini-128x128.py')


def conv_macs(cin, cout, k, h, w, groups=1):
    """Multiply-adds of a stride-1 'same' conv: one per weight per output
    pixel."""
    return cout * (cin // groups) * k * k * h * w


@pytest.mark.parametrize('mode', ['var', 'std'])
def test_ws_conv_is_counted_as_its_conv(mode):
    model = nn.Sequential(
        WSConv2d(3, 8, 3, padding=1, mode=mode), BCN(8, num_groups=2),
        nn.ReLU(), WSConv2d(8, 16, 3, padding=1, groups=2, mode=mode))
    model.eval()
    flops = get_model_complexity_info(
        model, inputs=(torch.randn(1, 3, 12, 10), ), show_table=False,
        show_arch=False)['flops']
    convs = conv_macs(3, 8, 3, 12, 10) + conv_macs(8, 16, 3, 12, 10, 2)
    # BCN's normalizations count a few ops per element on top of the convs
    assert convs <= flops < convs + 10 * 8 * 12 * 10


def test_ws_conv_trains_through_its_fused_function_outside_a_trace():
    """The plain path is only for traces: in training WSConv2d still runs
    its fused autograd function (whose backward keeps no W_hat)."""
    conv = WSConv2d(3, 4, 3)
    out = conv(torch.randn(1, 3, 5, 5))
    assert type(out.grad_fn).__name__ == '_WSConv2dFunctionBackward'


def test_get_flops_counts_ws_like_plain_convs(call_tool):
    args = (DEMO, '--shape', '32', '48')
    ws = call_tool('analysis/get_flops.py', *args)
    assert ws.returncode == 0, ws.stderr
    assert 'Input shape: (32, 48)' in ws.stdout
    plain = call_tool('analysis/get_flops.py', *args, '--cfg-options',
                      'model.backbone.conv_cfg=None')
    flops = [ln for ln in ws.stdout.splitlines() if ln.startswith('Flops:')]
    assert flops and flops == [
        ln for ln in plain.stdout.splitlines() if ln.startswith('Flops:')]
    value = float(flops[0].split()[1].rstrip('GMK'))
    assert value > 0


def test_get_flops_bad_shape_is_one_line(call_tool, assert_one_line_error):
    proc = call_tool('analysis/get_flops.py', DEMO, '--shape', '1', '2', '3')
    assert_one_line_error(proc, '--shape', '1 2 3')


def test_input_shape_of():
    assert input_shape_of([64]) == (3, 64, 64)
    assert input_shape_of([64, 32]) == (3, 64, 32)
    with pytest.raises(ValueError, match='--shape'):
        input_shape_of([0, 3])
