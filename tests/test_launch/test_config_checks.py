# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The path checks the tools run before building the Runner."""
import pytest
from mmengine.config import Config

from mmseg_wsbcn.launch import check_checkpoint_paths, check_data_roots
from mmseg_wsbcn.utils.errors import ToolError


def test_data_root_inside_a_concat_dataset_is_checked(tmp_path):
    cfg = Config(
        dict(
            train_dataloader=dict(
                dataset=dict(
                    type='ConcatDataset',
                    datasets=[
                        dict(type='PascalVOCDataset', data_root=str(tmp_path)),
                        dict(type='PascalVOCDataset', data_root='no/aug'),
                    ])),
            val_cfg=None))
    with pytest.raises(ToolError) as e:
        check_data_roots(cfg, 'train')
    assert "'no/aug'" in str(e.value)
    assert 'train_dataloader.dataset.datasets[1].data_root' in str(e.value)


def test_val_loader_is_skipped_without_val_cfg_and_test_mode_only_test(
        tmp_path):
    cfg = Config(
        dict(
            train_dataloader=dict(dataset=dict(data_root=str(tmp_path))),
            val_dataloader=dict(dataset=dict(data_root='no/val')),
            val_cfg=None,
            test_dataloader=dict(dataset=dict(data_root='no/test'))))
    check_data_roots(cfg, 'train')  # val is not built: no error
    with pytest.raises(ToolError, match="'no/test'"):
        check_data_roots(cfg, 'test')


def test_pretrained_in_a_list_of_auxiliary_heads_is_checked():
    cfg = Config(
        dict(
            model=dict(auxiliary_head=[
                dict(type='FCNHead'),
                dict(
                    type='FCNHead',
                    init_cfg=dict(type='Pretrained', checkpoint='nope.pth'))
            ])))
    with pytest.raises(ToolError, match="'nope.pth'"):
        check_checkpoint_paths(cfg, 'train')
    # testing loads the trained checkpoint over init_cfg: not checked
    check_checkpoint_paths(cfg, 'test')


def test_urls_are_left_to_mmengine():
    cfg = Config(dict(load_from='https://example.com/x.pth', model={}))
    check_checkpoint_paths(cfg, 'train')


def test_missing_converted_backbone_names_the_conversion_command():
    path = 'checkpoints/wsbcn/X-101-GN-WS_mmseg.pth'
    cfg = Config(
        dict(
            model=dict(
                backbone=dict(
                    init_cfg=dict(type='Pretrained', checkpoint=path)))))
    with pytest.raises(ToolError) as e:
        check_checkpoint_paths(cfg, 'train')
    assert str(e.value) == (
        f"checkpoint file '{path}' (model.backbone.init_cfg.checkpoint) does "
        "not exist; convert the authors' ImageNet backbone first: python "
        'tools/model_converters/wsbcn2mmseg.py X-101-GN-WS.pth.tar '
        f'{path} (docs/pretrained.md), or override it with --cfg-options '
        'model.backbone.init_cfg.checkpoint=...')
