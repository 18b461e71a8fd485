# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The config checks run before the build: each mistake is one line naming
the key, the bad value and the allowed values closest first; a config that
builds is never refused."""
import pytest
import torch.nn as nn
from mmengine.config import Config

import mmseg_wsbcn  # noqa: F401  (registers the toolkit's layers)
from mmseg_wsbcn.launch.build_checks import (check_build_config, closest_first,
                                             dataset_config_problem,
                                             model_config_problem)
from mmseg_wsbcn.utils.errors import ToolError

NORM = dict(type='BCN', num_groups=32, estimate=True, requires_grad=True)
CONV = dict(type='WSConv2d')


def deeplabv3(**backbone) -> dict:
    """A DeepLabv3 model config (mmseg's types), the toolkit's layers in
    every part."""
    return dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor'),
        backbone=dict(
            dict(type='ResNetV1c', depth=18, norm_cfg=NORM, conv_cfg=CONV),
            **backbone),
        decode_head=dict(
            type='ASPPHead',
            norm_cfg=NORM,
            conv_cfg=CONV,
            loss_decode=[dict(type='CrossEntropyLoss')]),
        auxiliary_head=dict(type='FCNHead', norm_cfg=NORM, conv_cfg=CONV))


def config(model=None, **extra) -> Config:
    return Config(
        dict(model=model or deeplabv3(), default_scope='mmseg', **extra))


def test_closest_first():
    assert closest_first('BCNN', ['GN', 'BN', 'BCN']) == ['BCN', 'BN', 'GN']
    assert closest_first('bcn', ['GN', 'BCN']) == ['BCN', 'GN']
    assert closest_first(51, [18, 34, 50, 101, 152]) == [50, 34, 18, 101, 152]
    assert closest_first('50', [18, 50]) == [50, 18]  # a string: by text


def test_a_good_config_passes():
    assert model_config_problem(config()) is None


@pytest.mark.parametrize('path,value,expected', [
    ('decode_head.norm_cfg', dict(NORM, type='BCNN'),
     "model.decode_head.norm_cfg.type='BCNN' is not a registered norm "
     "layer; the registered norm layers, closest first: 'BCN', 'BN', "),
    ('auxiliary_head.conv_cfg', dict(type='WSConv'),
     "model.auxiliary_head.conv_cfg.type='WSConv' is not a registered "
     "conv layer; the registered conv layers, closest first: "
     "'WSConv"),  # WSConv1d, WSConv2d, WSConv3d: equally close
    ('decode_head.norm_cfg', dict(NORM, impl='compiled'),
     "model.decode_head.norm_cfg.impl='compiled' is not a valid impl of "
     "BCN; the valid impls, closest first: 'compile', 'auto', 'eager'"),
    ('backbone.type', 'ResNetV1x',
     "model.backbone.type='ResNetV1x' is not a registered model; the "
     "registered models, closest first: 'ResNetV1c', 'ResNetV1d', "),
    ('decode_head.loss_decode', [dict(type='CrossEntropyLos')],
     "model.decode_head.loss_decode.0.type='CrossEntropyLos' is not a "
     "registered model; the registered models, closest first: "
     "'CrossEntropyLoss', "),
])
def test_mistake_names_key_value_and_closest(path, value, expected):
    cfg = config()
    cfg.merge_from_dict({f'model.{path}': value})
    assert model_config_problem(cfg).startswith(expected)


def test_layer_lists_hold_only_their_kind():
    cfg = config(deeplabv3(norm_cfg=dict(type='Nope'), conv_cfg=None))
    norms = model_config_problem(cfg).split('closest first: ')[1]
    assert "'BCN'" in norms and "'GN'" in norms and "'SyncBN'" in norms
    assert "'WSConv2d'" not in norms and "'Conv2d'" not in norms
    assert '...' not in norms  # all of them
    cfg = config(deeplabv3(conv_cfg=dict(type='Nope')))
    convs = model_config_problem(cfg).split('closest first: ')[1]
    assert "'WSConv2d'" in convs and "'Conv2d'" in convs
    assert "'BCN'" not in convs and "'GN'" not in convs


def test_a_shared_value_is_reported_at_its_first_key():
    norm = dict(type='BCNN')
    model = deeplabv3(norm_cfg=norm)
    model['decode_head']['norm_cfg'] = norm
    assert model_config_problem(
        config(model)).startswith("model.backbone.norm_cfg.type='BCNN' ")


def test_classes_and_scoped_names_resolve_as_the_build_does():
    model = deeplabv3(
        type='mmseg.ResNetV1c', norm_cfg=dict(type=nn.BatchNorm2d))
    assert model_config_problem(config(model)) is None
    model = deeplabv3(type='mmseg.ResNetV1x')
    assert model_config_problem(config(model)).startswith(
        "model.backbone.type='mmseg.ResNetV1x' is not a registered model")


def test_the_build_scope_decides():
    """Without a default_scope MMEngine's Runner builds from the root
    registry, where mmseg's models are not (mmseg's init_model falls back
    to mmseg's scope instead)."""
    cfg = Config(dict(model=deeplabv3()))
    assert model_config_problem(cfg).startswith(
        "model.type='EncoderDecoder' is not a registered model")
    assert model_config_problem(cfg, scope='mmseg') is None


def test_datasets_and_transforms():
    dataset = dict(
        type='ConcatDataset',
        datasets=[
            dict(type='CityscapesDataset', pipeline=[dict(type='Resize')]),
            dict(
                type='CityscapesDataset',
                pipeline=[
                    dict(type='LoadImageFromFile'),
                    dict(type='RandomFlip'),
                    dict(type='PackSegInput')
                ])
        ])
    assert dataset_config_problem(dataset, 'x.dataset', 'mmseg').startswith(
        "x.dataset.datasets[1].pipeline.2.type='PackSegInput' is not a "
        'registered transform; the registered transforms, closest first: '
        "'PackSegInputs', ")
    dataset['datasets'][1]['type'] = 'CityscapeDataset'
    assert dataset_config_problem(dataset, 'x.dataset', 'mmseg').startswith(
        "x.dataset.datasets[1].type='CityscapeDataset' is not a registered "
        "dataset; the registered datasets, closest first: "
        "'CityscapesDataset', ")


def test_only_the_loaders_the_mode_builds_are_checked():
    bad = dict(dataset=dict(type='NoSuchDataset'))
    good = dict(dataset=dict(type='CityscapesDataset'))
    cfg = config(
        train_dataloader=good,
        val_dataloader=bad,
        val_cfg=None,
        test_dataloader=bad)
    check_build_config(cfg, 'train')  # val is not built without val_cfg
    check_build_config(cfg, 'model')
    with pytest.raises(ToolError) as e:
        check_build_config(cfg, 'test')
    assert str(e.value).startswith(
        "cannot build the dataset: test_dataloader.dataset.type="
        "'NoSuchDataset' is not a registered dataset")


@pytest.mark.parametrize('config_file', [
    'configs/demo/deeplabv3_r18-d8_bcn-ws_1xb2-200iters_cityscapes-mini-'
    '128x128.py',
    'configs/deeplabv3/deeplabv3_r50-d8_gn-ws_4xb2-80k_cityscapes-512x1024.py',
    'configs/deeplabv3/deeplabv3_r101-d8_bcnbatch-ws-in1k-pre_4xb4-40k_'
    'voc12aug-512x512.py',
    'configs/deeplabv3/deeplabv3_r101-d16_syncbn_4xb4-40k_voc12aug-512x512.py',
])
def test_shipped_configs_pass(repo_root, config_file):
    cfg = Config.fromfile(f'{repo_root}/{config_file}')
    for mode in ('train', 'test'):
        check_build_config(cfg, mode)
