# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Fixtures of the layer tests.

``ws_conv_off_defaults`` builds the WS conv the eval-form and gradcheck
tests share: every hyper-parameter that the training and eval paths must
carry is off its default.
"""
import pytest
import torch

import mmseg_wsbcn  # noqa: F401  (registers the layers)
from mmseg_wsbcn.models.layers import WSConv2d


@pytest.fixture
def ws_conv_off_defaults():
    """``make(mode)``: a float64 ``WSConv2d``, 4 -> 6 channels, 3x3, with
    stride 2, padding 2 (reflect), dilation 2, 2 groups, a bias and eps 0.1
    (against a weight variance near 0.01 the ``var`` and ``std`` forms
    differ by ~40%)."""

    def make(mode: str) -> WSConv2d:
        return WSConv2d(
            4,
            6,
            3,
            stride=2,
            padding=2,
            dilation=2,
            groups=2,
            padding_mode='reflect',
            eps=0.1,
            mode=mode,
            dtype=torch.float64)

    return make
