# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""``WSConv2d`` and ``BCN`` resolve by their plain names from the scopes of
the OpenMMLab projects that use them (each project's own ``MODELS`` is a
child of MMEngine's root registry, where the layers are), through mmcv's
``build_conv_layer`` / ``build_norm_layer`` as those projects call them."""
import importlib

import pytest
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.registry import DefaultScope

from mmseg_wsbcn.models.layers import BCN, WSConv2d
from mmseg_wsbcn.utils.optional import mmpretrain_unavailable


def _project_registry(project):
    """Import ``<project>.registry`` (and its models), or skip."""
    if project == 'mmpretrain':
        reason = mmpretrain_unavailable()
        if reason:
            pytest.skip(reason)
    else:
        pytest.importorskip(f'{project}.models',
                            reason=f'{project} is not installed')
    return importlib.import_module(f'{project}.registry').MODELS


@pytest.mark.parametrize('project', ['mmseg', 'mmdet', 'mmpretrain', None])
def test_plain_names_resolve_in_every_scope(project):
    if project is None:
        context = DefaultScope.overwrite_default_scope(None)
    else:
        registry = _project_registry(project)
        assert registry.parent is not None  # a child of the root registry
        context = DefaultScope.overwrite_default_scope(project)
    with context:
        conv = build_conv_layer(dict(type='WSConv2d', mode='std'), 8, 8, 3)
        name, norm = build_norm_layer(
            dict(type='BCN', num_groups=4, estimate=True), 8)
        if project is not None:
            assert type(registry.get('WSConv2d')) is type  # found from there
            assert registry.get('BCN') is BCN
    assert isinstance(conv, WSConv2d) and conv.mode == 'std'
    assert isinstance(norm, BCN) and name == 'bn' and norm.estimate
