# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The checkpoint-to-model check of tools/test.py
(mmseg_wsbcn/cli/checkpoint.py) on small models: the pure comparison, its
one-line summary, and the hook that stops the load or keeps only the
matching keys."""
from collections import OrderedDict
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseTTAModel

from mmseg_wsbcn.engine.hooks import (CheckpointMatchHook,
                                      CheckpointMismatchError)
from mmseg_wsbcn.models.layers import BCN
from mmseg_wsbcn.utils.errors import ToolError
from mmseg_wsbcn.utils.state_dict import (compare_checkpoint,
                                          compare_state_dicts, revise_keys,
                                          unwrap_model)


def bn_net(classes=4):
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(3, 8, 3, bias=False),
            norm=nn.BatchNorm2d(8),
            cls=nn.Conv2d(8, classes, 1)))


def bcn_net(classes=4):
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(3, 8, 3, bias=False),
            norm=BCN(8, num_groups=2, estimate=True),
            cls=nn.Conv2d(8, classes, 1)))


def test_identical_state_dicts_match():
    sd = bn_net().state_dict()
    diff = compare_state_dicts(sd, bn_net().state_dict())
    assert not diff
    assert diff.matched == len(sd)
    assert diff.summary() == ('0 missing keys, 0 unexpected keys, '
                              '0 mis-shaped keys')


def test_missing_unexpected_and_misshaped_keys_are_counted_in_order():
    model = bn_net(classes=4).state_dict()
    ckpt = bn_net(classes=19).state_dict()
    del ckpt['norm.weight'], ckpt['norm.bias']
    ckpt['extra.a'] = torch.zeros(1)
    ckpt['extra.b'] = torch.zeros(1)
    diff = compare_state_dicts(ckpt, model)
    assert diff.missing == ['norm.weight', 'norm.bias']
    assert diff.unexpected == ['extra.a', 'extra.b']
    assert diff.mismatched == [('cls.weight', (19, 8, 1, 1), (4, 8, 1, 1)),
                               ('cls.bias', (19, ), (4, ))]
    assert diff.summary(first=1) == (
        '2 missing keys (norm.weight, ...), 2 unexpected keys (extra.a, ...),'
        ' 2 mis-shaped keys (cls.weight: checkpoint (19, 8, 1, 1) vs model '
        '(4, 8, 1, 1), ...)')
    assert 'extra.b' in diff.summary(first=3)


def test_missing_num_batches_tracked_is_ignored_as_mmengine_does():
    model = bn_net().state_dict()
    ckpt = OrderedDict(
        (k, v) for k, v in model.items() if 'num_batches_tracked' not in k)
    assert not compare_state_dicts(ckpt, model)


def test_the_arguments_are_not_changed():
    model = bn_net().state_dict()
    ckpt = bcn_net().state_dict()
    before = (list(ckpt), list(model))
    compare_state_dicts(ckpt, model)
    assert (list(ckpt), list(model)) == before


def test_bn_checkpoint_against_a_bcn_model_is_reported():
    diff = compare_state_dicts(bn_net().state_dict(), bcn_net().state_dict())
    assert diff
    assert 'norm.running_mean' in diff.unexpected
    assert any(k.startswith('norm.pbn.') for k in diff.missing)
    # the group affine of BCN is (G,) = (2,); BN's is (8,)
    assert ('norm.weight', (8, ), (2, )) in diff.mismatched


def test_bcn_affine_in_the_authors_shape_is_accepted():
    """BCN loads its group affine from (1, G, 1) (the authors' files)."""
    model = bcn_net()
    ckpt = bcn_net().state_dict()
    ckpt['norm.weight'] = ckpt['norm.weight'].reshape(1, 2, 1)
    ckpt['norm.bias'] = ckpt['norm.bias'].reshape(1, 2, 1)
    assert not compare_checkpoint({'state_dict': ckpt}, model)
    # the same shape on a layer that does not convert it is a mismatch
    ckpt['cls.bias'] = ckpt['cls.bias'].reshape(1, 4, 1)
    diff = compare_checkpoint({'state_dict': ckpt}, model)
    assert [k for k, _, _ in diff.mismatched] == ['cls.bias']


def test_ddp_prefix_is_revised_and_tta_models_are_unwrapped():
    inner = bn_net()
    inner.test_step = lambda data: data  # what BaseTTAModel asks of a model
    ckpt = OrderedDict(
        (f'module.{k}', v) for k, v in bn_net().state_dict().items())
    assert list(revise_keys(ckpt))[0] == 'conv.weight'

    class TTA(BaseTTAModel):

        def merge_preds(self, data_samples_list):
            return data_samples_list

    tta = TTA(module=inner)
    assert unwrap_model(tta) is inner
    assert not compare_checkpoint({'state_dict': ckpt, 'meta': {}}, tta)
    # a bare state dict (no 'state_dict' key) is read as MMEngine reads it
    assert not compare_checkpoint(ckpt, tta)


def runner_for(model):
    return SimpleNamespace(model=model)


def test_hook_raises_one_line_with_the_hint():
    hook = CheckpointMatchHook('x.pth', hint='pass --allow-partial-load')
    with pytest.raises(CheckpointMismatchError) as e:
        hook.after_load_checkpoint(
            runner_for(bcn_net()), {'state_dict': bn_net().state_dict()})
    assert isinstance(e.value, ToolError)
    msg = str(e.value)
    assert '\n' not in msg
    assert msg.startswith("checkpoint 'x.pth' does not match the model: ")
    assert 'missing keys' in msg and 'unexpected keys' in msg
    assert 'mis-shaped key' in msg
    assert msg.endswith('; pass --allow-partial-load')


def test_hook_passes_a_matching_checkpoint_untouched():
    sd = bn_net().state_dict()
    checkpoint = {'state_dict': sd}
    CheckpointMatchHook('x.pth').after_load_checkpoint(
        runner_for(bn_net()), checkpoint)
    assert checkpoint['state_dict'] is sd


def test_partial_load_keeps_matching_weights_and_the_model_init_elsewhere(
        caplog):
    torch.manual_seed(0)
    model = bn_net(classes=4)
    source = bn_net(classes=19)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)
    ckpt = source.state_dict()
    ckpt['stray'] = torch.ones(3)
    checkpoint = {'state_dict': ckpt, 'meta': {}}
    init_cls = model.cls.weight.detach().clone()

    CheckpointMatchHook(
        'x.pth', allow_partial=True).after_load_checkpoint(
            runner_for(model), checkpoint)
    # the loader now sees an exact match: strict loading succeeds
    model.load_state_dict(checkpoint['state_dict'], strict=True)
    assert torch.equal(model.conv.weight, source.conv.weight)
    assert torch.equal(model.norm.weight, source.norm.weight)
    assert torch.equal(model.cls.weight, init_cls)  # mis-shaped: kept
    assert 'stray' not in checkpoint['state_dict']
