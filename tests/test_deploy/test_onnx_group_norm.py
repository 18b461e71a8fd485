# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""GroupNorm exported as two-level reductions, run by ONNX Runtime, against
a float64 reference, at the opsets on both sides of ReduceMean's change."""
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmseg_wsbcn.deploy.onnx_group_norm import two_level_group_norm


@pytest.mark.parametrize('opset', [11, 17, 18, 20])
def test_two_level_group_norm_accuracy(require_extra, opset):
    onnx = require_extra('deploy', 'onnx')
    ort = require_extra('deploy', 'onnxruntime')
    torch.manual_seed(0)
    gn = torch.nn.GroupNorm(32, 512)
    with torch.no_grad():
        gn.weight.uniform_(0.5, 1.5)
        gn.bias.uniform_(-0.5, 0.5)
    x = torch.randn(1, 512, 64, 64) * 2 + 0.5
    f = io.BytesIO()
    with two_level_group_norm(opset), torch.no_grad():
        torch.onnx.export(
            gn, (x, ),
            f,
            opset_version=opset,
            dynamo=False,
            input_names=['input'],
            dynamic_axes={'input': {
                0: 'n',
                2: 'h',
                3: 'w'
            }})
    model = onnx.load_from_string(f.getvalue())
    ops = {n.op_type for n in model.graph.node}
    assert 'ReduceMean' in ops and 'InstanceNormalization' not in ops
    session = ort.InferenceSession(
        f.getvalue(), providers=['CPUExecutionProvider'])
    for inp in (x, x[:, :, :20, :33]):
        got = session.run(None, {'input': inp.numpy()})[0]
        with torch.no_grad():
            ref = F.group_norm(inp.double(), 32, gn.weight.double(),
                               gn.bias.double(), 1e-5).numpy()
            torch32 = gn(inp).double().numpy()
        err = np.abs(got - ref).max()
        # ONNX Runtime's InstanceNormalization: 5.2e-6 on this map;
        # PyTorch's own float32 GroupNorm: 6.7e-7; this export: 1.0e-6
        assert err < max(3 * np.abs(torch32 - ref).max(), 1e-6), err


def test_export_outside_the_context_is_untouched(require_extra):
    onnx = require_extra('deploy', 'onnx')
    gn = torch.nn.GroupNorm(2, 4)
    with two_level_group_norm(17):
        pass
    f = io.BytesIO()
    torch.onnx.export(
        gn, (torch.randn(1, 4, 3, 3), ), f, opset_version=17, dynamo=False)
    ops = {n.op_type for n in onnx.load_from_string(f.getvalue()).graph.node}
    assert 'InstanceNormalization' in ops
