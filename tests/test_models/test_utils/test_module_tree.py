# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Tests of ``mmseg_wsbcn.models.utils.module_tree``."""
import pytest
import torch.nn as nn

from mmseg_wsbcn.models.utils import replace_modules, set_submodule


def _relu_to_gelu(name, module):
    return nn.GELU() if isinstance(module, nn.ReLU) else None


def test_replace_modules_walks_every_container():
    model = nn.Sequential(nn.ReLU(),
                          nn.ModuleList([nn.Conv2d(1, 1, 1),
                                         nn.ReLU()]),
                          nn.ModuleDict(dict(act=nn.ReLU())))
    assert replace_modules(model, _relu_to_gelu) is model
    assert type(model[0]) is nn.GELU
    assert type(model[1][1]) is nn.GELU
    assert type(model[2]['act']) is nn.GELU
    assert type(model[1][0]) is nn.Conv2d


def test_replace_modules_names_and_order():
    seen = []
    model = nn.Sequential(nn.Sequential(nn.ReLU()), nn.ReLU())
    replace_modules(model, lambda n, m: seen.append(n))
    assert seen == ['', '0', '0.0', '1']


def test_shared_module_is_replaced_once_everywhere():
    shared = nn.ReLU()
    model = nn.Sequential(shared, nn.Sequential(shared))
    model.alias = shared  # a second name in the same parent
    calls = []

    def fn(name, module):
        if module is shared:
            calls.append(name)
            return nn.GELU()
        return None

    replace_modules(model, fn)
    assert calls == ['0']
    assert type(model[0]) is nn.GELU
    assert model[1][0] is model[0] and model.alias is model[0]


def test_returning_the_module_keeps_its_subtree_unvisited():
    inner = nn.Sequential(nn.ReLU())
    model = nn.Sequential(inner, nn.ReLU())
    seen = []

    def fn(name, module):
        seen.append(name)
        if module is inner:
            return module
        return _relu_to_gelu(name, module)

    replace_modules(model, fn)
    assert seen == ['', '0', '1']
    assert type(inner[0]) is nn.ReLU and type(model[1]) is nn.GELU


def test_root_replacement_is_returned():
    assert type(replace_modules(nn.ReLU(), _relu_to_gelu)) is nn.GELU


def test_an_error_leaves_the_model_unchanged():
    first, second = nn.ReLU(), nn.ReLU()
    model = nn.Sequential(first, nn.Tanh(), second)

    def fn(name, module):
        if isinstance(module, nn.Tanh):
            raise ValueError('no')
        return _relu_to_gelu(name, module)

    with pytest.raises(ValueError, match='no'):
        replace_modules(model, fn)
    assert model[0] is first and model[2] is second


def test_set_submodule():
    model = nn.Sequential(nn.Sequential(nn.ReLU()))
    set_submodule(model, '0.0', nn.GELU())
    assert type(model[0][0]) is nn.GELU
    with pytest.raises(ValueError, match='root'):
        set_submodule(model, '', nn.GELU())
    with pytest.raises(AttributeError):
        set_submodule(model, '1.0', nn.GELU())
