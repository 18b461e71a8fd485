# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Every config under ``configs/`` loads, builds the model its name promises
and takes one training and one validation step on CPU.

The configs are discovered, not listed. Three levels, from cheap to costly:

1. Every config loads with ``Config.fromfile``; its name (mmseg's scheme,
   ``deeplabv3_r50-d8_bcn-ws_8xb1-80k_cityscapes-512x1024.py``) matches its
   contents (depth, output stride, batch, schedule, crop, learning-rate
   rule); the model is built through the registry at its real depth (on
   the ``meta`` device: no memory, no init cost) and the norm and conv
   layers of backbone, decode head and auxiliary head are counted.
2. Every distinct training setting trains one iteration and validates once
   on the bundled mini data, shrunk (ResNet-18, 64x64 crops, at most 2
   images per batch, the config's own 1 image for micro-batch configs).
   Configs that differ only in depth or output stride share one step (set
   ``MMSEG_WSBCN_STEP_ALL_CONFIGS=1`` to step every config).
3. Focused checks: a micro-batch config at its real depth trains at 1 image
   with the ASPP image-pooling branch at 1x1; the paper's VOC config has the
   paper's settings; missing checkpoint and data paths fail in one line that
   names them.

A test chooses its configs with ``@pytest.mark.configs(select=...)``
(``conftest.py`` in this folder finds the configs once).
"""
import ast
import copy
import functools
import math
import os
import os.path as osp
import re
import uuid

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.config import config as mmengine_config

from mmseg_wsbcn.launch import build_runner, check_paths
from mmseg_wsbcn.models.layers import BCN, WSConv2d, layer_kind, named_layers
from mmseg_wsbcn.models.utils.ckpt_convert import (OFFICIAL_FILES,
                                                   converted_name)
from mmseg_wsbcn.utils.errors import ToolError

PAPER_CONFIG = ('configs/deeplabv3/deeplabv3_r101-d16_bcnbatch-ws-in1k-pre_'
                '4xb4-33k_voc12aug-513x513.py')
MICRO_CONFIG = ('configs/deeplabv3/deeplabv3_r50-d8_bcn-ws_8xb1-80k_'
                'cityscapes-512x1024.py')
CITYSCAPES_CONFIG = ('configs/deeplabv3/deeplabv3_r50-d8_syncbn_4xb2-80k_'
                     'cityscapes-512x1024.py')

#: Where the bundled mini sets are (relative to the checkout), by mmseg
#: dataset class.
MINI_ROOTS = {
    'CityscapesDataset': 'demo/data/cityscapes_mini/',
    'PascalVOCDataset': 'demo/data/voc_mini/VOC2012',
}
#: The ``custom_imports`` every shipped config gets from
#: ``configs/_base_/default_runtime.py``.
PACKAGE_IMPORT = dict(imports=['mmseg_wsbcn'], allow_failed_imports=False)
#: ``norm`` field of a config name -> (norm kind, conv form, BCN estimate).
#: The conv form is a WS mode (``'std'``, ``'var'``), ``'cen'`` (CenConv2d)
#: or None (plain convs). The first six form the paper's matrix (R-50/101,
#: output stride 8/16, both datasets); the rest are the micro-batch
#: normalization zoo (R-50-D8 8xb1 on both datasets, docs/norms.md).
MATRIX_VARIANTS = {
    'bn': ('bn', None, None),
    'syncbn': ('syncbn', None, None),
    'gn': ('gn', None, None),
    'gn-ws': ('gn', 'std', None),
    'bcn-ws': ('bcn', 'var', True),
    'bcnbatch-ws': ('bcn', 'var', False),
}
ZOO_VARIANTS = {
    'frn': ('frn', None, None),
    'evonorm-s0': ('evonorm-s0', None, None),
    'evonorm-b0': ('evonorm-b0', None, None),
    'mabn': ('mabn', 'cen', None),
    'frozenbn': ('bn', None, None),
    'syncbn-precise': ('syncbn', None, None),
    'bn-precise': ('bn', None, None),
}
VARIANTS = {**MATRIX_VARIANTS, **ZOO_VARIANTS}
#: Variants whose heads use another norm than the backbone (FrozenBN: a
#: frozen BN backbone, GroupNorm heads).
HEAD_KINDS = {'frozenbn': 'gn'}
#: Variants that add a hook to the runtime.
VARIANT_HOOKS = {
    'syncbn-precise': 'PreciseBNHook',
    'bn-precise': 'PreciseBNHook'
}
#: Norm layers of mmseg's ResNet backbones: stem + 2 or 3 per block + one
#: per downsample. ``ResNet`` (7x7 stem) has 1 stem norm, ``ResNetV1c``
#: (deep stem) 3. The 53 and 104 of ``ResNet`` are the norm layers of the
#: authors' BCN+WS ImageNet ResNet-50/101 checkpoints.
BACKBONE_NORMS = {
    ('ResNetV1c', 18): 22,
    ('ResNetV1c', 50): 55,
    ('ResNetV1c', 101): 106,
    ('ResNet', 50): 53,
    ('ResNet', 101): 104,
}
#: Reference total batch of mmseg's schedules (lr 0.01), by dataset.
LR_REFERENCE_BATCH = {'cityscapes': 8, 'voc12aug': 16}

NAME_RE = re.compile(
    r'^deeplabv3_r(?P<depth>\d+)-d(?P<os>8|16)_(?P<norm>[a-z0-9-]+?)'
    r'(?P<pre>-in1k-pre)?_(?P<gpus>\d+)xb(?P<per_gpu>\d+)'
    r'(?:-acc(?P<acc>\d+))?-(?P<iters>\d+k|\d+iters)_'
    r'(?P<data>[a-z0-9-]+)-(?P<h>\d+)x(?P<w>\d+)\.py$')

# ------------------------------------------ config selections (marks) --
#: Config folders of other OpenMMLab projects (tested in their own
#: modules), and the package that must be installed to load them.
OTHER_PROJECTS = {
    'configs/mask_rcnn/': 'mmdet',
    'configs/faster_rcnn/': 'mmdet',
    'configs/resnet/': 'mmpretrain',
}


def all_configs(configs):
    return configs


def mmseg_configs(configs):
    return [c for c in configs if not c.startswith(tuple(OTHER_PROJECTS))]


def deeplabv3_configs(configs):
    return [c for c in configs if c.startswith('configs/deeplabv3/')]


def deeplabv3_configs_but_paper(configs):
    return [c for c in deeplabv3_configs(configs) if c != PAPER_CONFIG]


# --------------------------------------------------------------- helpers --
def _memoized_external_cfg_path(original):
    """MMEngine resolves every ``mmseg::`` base by parsing all of mmseg's
    metafiles first (about 0.4 s each time); remember its answers (the same
    every time) so that loading ~70 configs takes seconds."""

    @functools.lru_cache(maxsize=None)
    def lookup(package_path, cfg_file):
        try:
            return original(package_path, cfg_file), None
        except ValueError as e:
            return None, e

    def cached(package_path, cfg_file):
        path, error = lookup(package_path, cfg_file)
        if error is not None:
            raise error
        return path

    return cached


@pytest.fixture(scope='module', autouse=True)
def fast_mmengine():
    """Skip work that does not change what is tested, for this module only:
    the metafile scans above and the environment report (compiler and
    library versions) each Runner collects. (The configs are loaded with
    ``format_python_code=False``, MMEngine's own switch, so that the text
    each Runner logs and dumps is not formatted by yapf; it stays valid
    Python.)"""
    from mmengine.runner import runner as mmengine_runner
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            mmengine_config, '_get_external_cfg_path',
            _memoized_external_cfg_path(
                mmengine_config._get_external_cfg_path))
        collect_env = functools.lru_cache(maxsize=1)(
            mmengine_runner.collect_env)
        mp.setattr(mmengine_runner, 'collect_env', collect_env)
        yield


@pytest.fixture(scope='module')
def load(repo_root, fast_mmengine):
    """``load(config)``: a private copy of the loaded config (each config,
    given relative to the checkout, is read once)."""

    @functools.lru_cache(maxsize=None)
    def read(config):
        return Config.fromfile(
            osp.join(repo_root, config), format_python_code=False)

    return lambda config: copy.deepcopy(read(config))


def parse_name(config):
    match = NAME_RE.match(osp.basename(config))
    assert match, f'{config} does not follow the naming scheme'
    fields = match.groupdict()
    fields['data'] = fields['data'].replace('-mini', '')
    return fields


def iter_datasets(cfg):
    """Every dataset config of the train/val/test loaders, wrapped ones
    included."""
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        stack = [cfg[loader]['dataset']]
        while stack:
            ds = stack.pop()
            yield ds
            if isinstance(ds.get('dataset'), dict):
                stack.append(ds['dataset'])
            stack.extend(ds.get('datasets') or [])


def use_mini_data(cfg, repo_root):
    """Point every dataset of ``cfg`` at the bundled mini set of its
    class."""
    for ds in iter_datasets(cfg):
        if ds['type'] in MINI_ROOTS:
            ds['data_root'] = osp.join(repo_root, MINI_ROOTS[ds['type']])


def shrink_pipeline(pipeline, crop=(64, 64), scale=(128, 64)):
    """The config's pipeline at a tiny size: same transforms, small
    numbers."""
    for t in pipeline:
        if t['type'] in ('RandomResize', 'Resize') and 'scale' in t:
            t['scale'] = scale
        if t['type'] == 'RandomCrop':
            t['crop_size'] = crop
        if t['type'] == 'Pad':
            t['size'] = crop


def tiny(cfg, work_dir, repo_root, batch_size=None, depth=18):
    """Shrink ``cfg`` for a CPU step on the bundled data: ResNet-18 with
    narrow heads, 64x64 crops, 1 iteration then validation. Norm and conv
    layers, optimizer, accumulation and schedule stay the config's own."""
    model = cfg.model
    model.pretrained = None
    model.backbone.depth = depth
    model.backbone.init_cfg = None
    model.data_preprocessor.size = (64, 64)
    model.decode_head.update(in_channels=512, channels=64)
    if model.get('auxiliary_head'):
        model.auxiliary_head.update(in_channels=256, channels=32)
    use_mini_data(cfg, repo_root)
    for ds in iter_datasets(cfg):
        if ds.get('pipeline'):
            shrink_pipeline(ds['pipeline'])
    if batch_size is None:
        batch_size = min(cfg.train_dataloader.batch_size, 2)
    cfg.train_dataloader.batch_size = batch_size
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].update(num_workers=0, persistent_workers=False)
    cfg.train_cfg.update(max_iters=1, val_interval=1)
    for hook in cfg.get('custom_hooks', []):
        if hook['type'] == 'PreciseBNHook':
            hook['num_iters'] = 2
    cfg.default_hooks.checkpoint.save_last = False
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'test_{uuid.uuid4().hex}'
    cfg.randomness = dict(seed=0)
    return cfg


def layer_census(module):
    """``(norms, convs)`` of ``module``: lists of ``(name, layer)``. BCN
    counts as one norm layer (its inner ``pbn`` BatchNorm is part of it)."""
    norms, convs = [], []
    for name, m, kind in named_layers(module):
        (norms if kind.role == 'norm' else convs).append((name, m))
    return norms, convs


def norm_kind(layer):
    """``'bn'``, ``'syncbn'``, ``'gn'``, ``'bcn'`` (the layer's kind name),
    else the class name."""
    kind = layer_kind(layer)
    return type(layer).__name__ if kind is None else kind.name


def assert_layers(part, part_name, kind, ws_mode, estimate):
    """Every conv of ``part`` (except the classifier ``conv_seg``) has the
    requested form and is followed by one norm layer of the requested kind;
    ``conv_seg`` is a plain ``nn.Conv2d``. Returns the norm count."""
    norms, convs = layer_census(part)
    kinds = {norm_kind(m) for _, m in norms}
    assert kinds == {kind}, f'{part_name}: norm layers {kinds} != {kind}'
    classifier = [(n, m) for n, m in convs if n.split('.')[-1] == 'conv_seg']
    others = [(n, m) for n, m in convs if n.split('.')[-1] != 'conv_seg']
    for name, conv in classifier:
        assert type(conv) is nn.Conv2d, f'{part_name}.{name} is not plain'
    assert len(others) == len(norms), (
        f'{part_name}: {len(others)} convs but {len(norms)} norm layers')
    for name, conv in others:
        if ws_mode is None:
            assert type(conv) is nn.Conv2d, f'{part_name}.{name}: {conv}'
        elif ws_mode == 'cen':
            assert layer_kind(conv).name == 'cen_conv', \
                f'{part_name}.{name}: {conv}'
        else:
            assert isinstance(conv, WSConv2d), f'{part_name}.{name}: {conv}'
            assert conv.mode == ws_mode, f'{part_name}.{name}: {conv.mode}'
    for name, norm in norms:
        if kind == 'gn':
            assert norm.num_groups == 32, f'{part_name}.{name}'
        if kind == 'bcn':
            got = (norm.num_groups, norm.estimate, norm.sync)
            assert got == (32, estimate, True), f'{part_name}.{name}: {got}'
    return len(norms)


def build_model(cfg, device='meta'):
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    with torch.device(device):
        return MODELS.build(cfg.model)


# ------------------------------------------------- 1. load, name, layers --
def test_configs_are_discovered(configs):
    deeplabv3 = deeplabv3_configs(configs)
    assert len(deeplabv3) >= 40
    assert PAPER_CONFIG in deeplabv3 and MICRO_CONFIG in deeplabv3
    fields = [parse_name(c) for c in deeplabv3]
    for data in ('cityscapes', 'voc12aug'):
        for norm in ZOO_VARIANTS:
            if norm == 'bn-precise':  # per-GPU BN: a demo row only
                continue
            found = {(f['depth'], f['os'], f['gpus'], f['per_gpu'])
                     for f in fields if (f['data'], f['norm']) == (data, norm)}
            assert found == {('50', '8', '8', '1')}, (data, norm, found)
        for norm in MATRIX_VARIANTS:
            for depth in ('50', '101'):
                found = {
                    f['os']
                    for f in fields if (f['data'], f['norm'], f['depth'],
                                        f['pre']) == (data, norm, depth, None)
                }
                assert found == {'8', '16'}, (data, norm, depth, found)


@pytest.mark.configs(select=mmseg_configs)
def test_config_loads_and_matches_its_name(config, repo_root, load):
    with open(osp.join(repo_root, config)) as f:
        source = f.read()
    assert not re.search(r'^\s*(import|from)\s', source, re.M), config
    cfg = load(config)
    # the toolkit's runtime (configs/_base_/default_runtime.py)
    assert cfg.custom_imports == PACKAGE_IMPORT
    assert cfg.runner_type == 'SafeCheckpointRunner'
    assert cfg.default_scope == 'mmseg'
    name = parse_name(config)
    model = cfg.model
    assert model.backbone.depth == int(name['depth'])
    strides = model.backbone.strides
    assert 4 * math.prod(strides) == int(name['os'])
    if name['os'] == '8':  # mmseg's d8
        dilations, aspp_rates = (1, 1, 2, 4), (1, 12, 24, 36)
    else:  # the DeepLabv3 paper's output stride 16
        dilations, aspp_rates = (1, 1, 1, 2), (1, 6, 12, 18)
    assert model.backbone.dilations == dilations
    assert model.decode_head.dilations == aspp_rates
    assert int(name['gpus']) >= 1
    assert cfg.train_dataloader.batch_size == int(name['per_gpu'])
    acc = int(name['acc'] or 1)
    assert cfg.optim_wrapper.get('accumulative_counts', 1) == acc
    crop = (int(name['h']), int(name['w']))
    assert tuple(model.data_preprocessor.size) == crop
    train_ds = cfg.train_dataloader.dataset
    for ds in train_ds.get('datasets') or [train_ds]:
        crops = [
            tuple(t['crop_size']) for t in ds.pipeline
            if t['type'] == 'RandomCrop'
        ]
        assert crops == [crop], config
    iters = cfg.train_cfg.max_iters
    if name['iters'].endswith('k'):
        assert round(iters / 1000) == int(name['iters'][:-1])
    else:
        assert iters == int(name['iters'][:-len('iters')])
    assert cfg.param_scheduler[-1]['end'] == iters
    # everything is local: from scratch, or a local checkpoint file
    pretrained = [model.get('pretrained')]
    init_cfg = model.backbone.get('init_cfg')
    if init_cfg:
        assert init_cfg.type == 'Pretrained'
        pretrained.append(init_cfg.checkpoint)
    for path in pretrained:
        assert path is None or '://' not in path, path
    assert (init_cfg is not None) == (name['pre'] is not None)


@pytest.mark.configs(select=all_configs)
def test_config_text_formats_and_loads_back(config, load):
    """The text MMEngine logs and dumps for a config (``pretty_text``),
    formatted by yapf for real (the other tests skip that for speed), is
    valid Python and loads back to the same config. Fails when a value has
    no literal form or yapf cannot format the text."""
    for folder, project in OTHER_PROJECTS.items():
        if config.startswith(folder):
            pytest.importorskip(project, reason=f'{project} is not installed')
    cfg = Config(load(config).to_dict(), format_python_code=True)
    text = cfg.pretty_text
    ast.parse(text, filename=config)
    assert Config.fromstring(text, '.py').to_dict() == cfg.to_dict()


@pytest.mark.configs(select=deeplabv3_configs)
def test_config_uses_mmsegs_datasets(config, load):
    """Cityscapes: mmseg's ``CityscapesDataset`` on ``data/cityscapes/``
    (``*_gtFine_labelTrainIds.png``, 19 classes). VOC: mmseg's train.txt
    (``SegmentationClass``) + aug.txt (``SegmentationClassAug``), the
    10,582-image train+aug set, and val.txt; 21 classes."""
    cfg = load(config)
    name = parse_name(config)
    train = cfg.train_dataloader.dataset
    val = cfg.val_dataloader.dataset
    if name['data'] == 'cityscapes':
        assert train.type == val.type == 'CityscapesDataset'
        assert train.data_root == val.data_root == 'data/cityscapes/'
        assert train.data_prefix.seg_map_path == 'gtFine/train'
        assert val.data_prefix.seg_map_path == 'gtFine/val'
        num_classes = 19
    else:
        assert train.type == 'ConcatDataset'
        splits = [(ds.type, ds.data_root, ds.ann_file,
                   ds.data_prefix.seg_map_path) for ds in train.datasets]
        root = 'data/VOCdevkit/VOC2012'
        assert splits == [
            ('PascalVOCDataset', root, 'ImageSets/Segmentation/train.txt',
             'SegmentationClass'),
            ('PascalVOCDataset', root, 'ImageSets/Segmentation/aug.txt',
             'SegmentationClassAug'),
        ]
        assert (val.type, val.data_root,
                val.ann_file) == ('PascalVOCDataset', root,
                                  'ImageSets/Segmentation/val.txt')
        num_classes = 21
    assert cfg.model.decode_head.num_classes == num_classes
    if cfg.model.get('auxiliary_head'):
        assert cfg.model.auxiliary_head.num_classes == num_classes
    assert cfg.val_evaluator.type == 'IoUMetric'


def test_metafile_indexes_every_config(configs, repo_root):
    import yaml
    folder = osp.join(repo_root, 'configs', 'deeplabv3')
    with open(osp.join(folder, 'metafile.yaml')) as f:
        meta = yaml.safe_load(f)
    listed = [m['Config'] for m in meta['Models']]
    assert sorted(listed) == deeplabv3_configs(configs)
    for entry in meta['Models']:
        # nothing trained here yet: no results or weights to claim
        assert 'Results' not in entry and 'Weights' not in entry
        name = parse_name(entry['Config'])
        assert entry['Name'] == osp.basename(entry['Config'])[:-3]
        assert entry['Metadata']['Batch Size'] == int(name['gpus']) * int(
            name['per_gpu'])


def test_readme_links_resolve(configs, repo_root):
    folder = osp.join(repo_root, 'configs', 'deeplabv3')
    with open(osp.join(folder, 'README.md')) as f:
        readme = f.read()
    links = re.findall(r'\]\(([^)#:]+)\)', readme)
    assert len(links) > 30
    for link in links:
        assert osp.exists(osp.join(folder, link)), link
    # the config count stated in the README
    assert f'There are {len(deeplabv3_configs(configs))} configs' in readme


@pytest.mark.configs(select=deeplabv3_configs_but_paper)
def test_learning_rate_follows_the_linear_rule(config, load):
    """lr = 0.01 x (images per optimizer step) / (mmseg's reference batch:
    8 on Cityscapes, 16 on VOC), and the number of iterations keeps the
    number of epochs of mmseg's schedule (README.md)."""
    cfg = load(config)
    name = parse_name(config)
    ref = LR_REFERENCE_BATCH[name['data']]
    total = int(name['gpus']) * int(name['per_gpu']) * int(name['acc'] or 1)
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(0.01 * total / ref)
    steps = cfg.train_cfg.max_iters // int(name['acc'] or 1)
    mmseg_steps = {'cityscapes': 80000, 'voc12aug': 40000}[name['data']]
    assert steps * total == mmseg_steps * ref


@pytest.mark.configs(select=mmseg_configs)
def test_model_has_the_requested_layers(config, load):
    """At the config's real depth: norm layers of the named variant after
    every conv of backbone, ASPP head and auxiliary head; WSConv2d where
    named; plain classifier convs."""
    name = parse_name(config)
    kind, ws_mode, estimate = VARIANTS[name['norm']]
    cfg = load(config)
    model = build_model(cfg)
    backbone = model.backbone
    count = assert_layers(backbone, 'backbone', kind, ws_mode, estimate)
    key = (cfg.model.backbone.type, int(name['depth']))
    assert count == BACKBONE_NORMS[key], (key, count)
    head_kind = HEAD_KINDS.get(name['norm'], kind)
    head = model.decode_head
    count = assert_layers(head, 'decode_head', head_kind, ws_mode, estimate)
    # image pooling + 1x1 + three atrous branches + bottleneck
    assert count == len(cfg.model.decode_head.dilations) + 2
    assert isinstance(head.image_pool[0], nn.AdaptiveAvgPool2d)
    assert type(head.conv_seg) is nn.Conv2d
    if cfg.model.get('auxiliary_head'):
        aux = model.auxiliary_head
        assert assert_layers(aux, 'auxiliary_head', head_kind, ws_mode,
                             estimate) == cfg.model.auxiliary_head.num_convs
        assert type(aux.conv_seg) is nn.Conv2d
    else:
        assert name['pre'] is not None  # only the paper config drops it
    # and nothing else in the model normalizes differently
    norms, _ = layer_census(model)
    assert {norm_kind(m) for _, m in norms} == {kind, head_kind}
    hooks = [h['type'] for h in cfg.custom_hooks]
    if name['norm'] in VARIANT_HOOKS:
        assert hooks[-1] == VARIANT_HOOKS[name['norm']], hooks
    if name['norm'] == 'frozenbn':
        assert cfg.model.backbone.norm_eval is True
        assert cfg.model.backbone.norm_cfg.requires_grad is False


# -------------------------------------------------------- 2. train a step --
def step_setting(config):
    """What a shrunk training step of ``config`` depends on. The step runs
    ResNet-18 at 64x64, so depth (overridden) and output stride (a stride
    and dilations, checked at real depth above) do not change it; the norm
    variant, dataset and pipeline, images per GPU, accumulation, optimizer
    and schedule are the config's own."""
    f = parse_name(config)
    return (osp.dirname(config), f['data'], f['norm'], f['pre'], f['gpus'],
            f['per_gpu'], f['acc'], f['iters'])


def step_configs(configs):
    """One config per distinct training setting (the first in sorted
    order), or every config with ``MMSEG_WSBCN_STEP_ALL_CONFIGS=1``."""
    configs = mmseg_configs(configs)
    if os.environ.get('MMSEG_WSBCN_STEP_ALL_CONFIGS') == '1':
        return configs
    chosen = {}
    for config in configs:
        chosen.setdefault(step_setting(config), config)
    return sorted(chosen.values())


def test_every_training_setting_is_stepped(configs):
    stepped = {step_setting(c) for c in step_configs(configs)}
    assert stepped == {step_setting(c) for c in mmseg_configs(configs)}


@pytest.mark.configs(select=step_configs)
def test_config_trains_and_validates_one_step(config, tmp_path, repo_root,
                                              load):
    # SyncBN pools the statistics of all GPUs: at 1 image per GPU (the
    # syncbn-precise zoo rows) one process stands in for two with 2 images
    syncbn = VARIANTS[parse_name(config)['norm']][0] == 'syncbn'
    cfg = tiny(load(config), tmp_path, repo_root, batch_size=2 if syncbn
               else None)
    runner = build_runner(cfg)
    runner.train()
    assert runner.iter == 1
    scalars = runner.message_hub.log_scalars
    assert math.isfinite(scalars['train/loss'].current())
    assert 'val/mIoU' in scalars
    assert 0 <= scalars['val/mIoU'].current() <= 100


# --------------------------------------------------- 3. focused checks --
def test_micro_batch_config_trains_at_one_image_per_process(
        tmp_path, repo_root, load):
    """The micro-batch config at its real depth (R-50) trains at 1 image per
    process; the ASPP image-pooling branch normalizes a 1x1 map of 1
    sample, which only batch-independent or estimated statistics allow."""
    cfg = load(MICRO_CONFIG)
    assert cfg.train_dataloader.batch_size == 1
    depth = cfg.model.backbone.depth
    cfg = tiny(cfg, tmp_path, repo_root, batch_size=1, depth=depth)
    cfg.model.decode_head.update(in_channels=2048, channels=64)
    cfg.model.auxiliary_head.update(in_channels=1024, channels=32)
    runner = build_runner(cfg)
    seen = []
    pool_norm = runner.model.decode_head.image_pool[1].norm
    assert isinstance(pool_norm, BCN) and pool_norm.estimate

    def record(module, args, output):
        seen.append((module.training, tuple(args[0].shape)))

    pool_norm.register_forward_hook(record)
    before = pool_norm.pbn.running_mean.clone()
    runner.train()
    assert runner.iter == 1
    assert math.isfinite(runner.message_hub.get_scalar('train/loss').current())
    assert (True, (1, 64, 1, 1)) in seen
    assert not torch.equal(before, pool_norm.pbn.running_mean)


def test_paper_config_has_the_papers_settings(load):
    cfg = load(PAPER_CONFIG)
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.depth) == ('ResNet', 101)  # 7x7 stem
    assert backbone.norm_cfg == dict(
        type='BCN', num_groups=32, estimate=False, requires_grad=True)
    assert backbone.conv_cfg == dict(type='WSConv2d')
    assert backbone.init_cfg == dict(
        type='Pretrained',
        checkpoint='checkpoints/wsbcn/rn101_bcn_ws_mmseg.pth')
    head = cfg.model.decode_head
    assert head.type == 'ASPPHead' and head.dilations == (1, 6, 12, 18)
    assert cfg.model.auxiliary_head is None
    total = 4 * cfg.train_dataloader.batch_size
    assert total == 16
    assert tuple(cfg.model.data_preprocessor.size) == (513, 513)
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.momentum,
            optimizer.weight_decay) == ('SGD', 0.007, 0.9, 1e-4)
    (poly, ) = cfg.param_scheduler
    assert (poly.type, poly.power, poly.eta_min) == ('PolyLR', 0.9, 0.0)
    # 50 epochs of the 10,582 train+aug images at batch 16
    assert cfg.train_cfg.max_iters == 50 * math.ceil(10582 / 16) == 33100
    # output stride 16 with stage-4 block dilations (1, 2, 2)
    model = build_model(cfg)
    dilations = [block.conv2.dilation for block in model.backbone.layer4]
    assert dilations == [(1, 1), (2, 2), (2, 2)]
    assert model.backbone.layer3[0].conv2.stride == (2, 2)
    assert model.backbone.conv1.kernel_size == (7, 7)


def in1k_pre_configs(configs):
    return [c for c in deeplabv3_configs(configs) if parse_name(c)['pre']]


@pytest.mark.configs(select=in1k_pre_configs)
def test_in1k_pre_config_names_its_missing_checkpoint(config, tmp_path,
                                                      monkeypatch, repo_root,
                                                      load):
    """Each ``-in1k-pre`` config expects one of the authors' backbones,
    converted, and names the conversion command while it is missing."""
    monkeypatch.chdir(tmp_path)  # where checkpoints/ surely does not exist
    cfg = load(config)
    use_mini_data(cfg, repo_root)
    path = cfg.model.backbone.init_cfg.checkpoint
    name = osp.basename(path)
    official = [
        f for f in OFFICIAL_FILES.values() if converted_name(f) == name
    ]
    assert len(official) == 1, path
    with pytest.raises(ToolError) as info:
        check_paths(cfg, mode='train')
    assert f"'{path}'" in str(info.value)
    assert ('python tools/model_converters/wsbcn2mmseg.py '
            f'{official[0]} {path}') in str(info.value)


@pytest.fixture(scope='module')
def converted_backbone(official_state_dict, tmp_path_factory, run_tool):
    """``converted_backbone(name)``: the path of ``name`` (e.g.
    ``rn50_bcn_ws_mmseg.pth``), written by the converter tool from a
    synthetic file with the released keys and shapes (made once)."""
    folder = tmp_path_factory.mktemp('in1k-pre')

    @functools.lru_cache(maxsize=None)
    def make(name):
        layout, official = next((k, f) for k, f in OFFICIAL_FILES.items()
                                if converted_name(f) == name)
        state = official_state_dict(*layout, prefix='module.')
        src, dst = str(folder / official), str(folder / name)
        torch.save(state, src)
        proc = run_tool('model_converters/wsbcn2mmseg.py', src, dst)
        assert proc.returncode == 0, proc.stderr
        return dst

    return make


@pytest.mark.configs(select=in1k_pre_configs)
def test_in1k_pre_config_loads_the_backbone_and_trains(config, tmp_path,
                                                       repo_root, load,
                                                       converted_backbone):
    """At its real depth, 64x64 crops and narrow heads, the config's model
    initializes its backbone from the converted file (every key, through
    ``init_cfg``'s ``weights_only=True`` path) and trains one step."""
    cfg = load(config)
    path = converted_backbone(
        osp.basename(cfg.model.backbone.init_cfg.checkpoint))
    cfg = tiny(cfg, tmp_path, repo_root, depth=cfg.model.backbone.depth)
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=path)
    cfg.model.decode_head.update(in_channels=2048, channels=64)
    if cfg.model.get('auxiliary_head'):
        cfg.model.auxiliary_head.update(in_channels=1024, channels=32)
    runner = build_runner(cfg)
    runner.model.init_weights()
    loaded = runner.model.backbone.state_dict()
    expected = torch.load(path, weights_only=True)['state_dict']
    assert set(loaded) == set(expected)
    for key in expected:
        torch.testing.assert_close(loaded[key], expected[key], msg=key)
    runner.train()  # init_weights runs once: the loaded weights stay
    assert runner.iter == 1
    assert math.isfinite(runner.message_hub.get_scalar('train/loss').current())


def test_train_tool_names_the_missing_checkpoint(tmp_path, repo_root, run_tool,
                                                 assert_one_line_error):
    """The paper config, with its data found, stops before training with
    one line naming the checkpoint it expects (run in an empty folder, so
    the relative path is surely missing)."""
    voc = osp.join(repo_root, MINI_ROOTS['PascalVOCDataset'])
    proc = run_tool(
        'train.py',
        osp.join(repo_root, PAPER_CONFIG),
        '--cfg-options',
        f'train_dataloader.dataset.datasets.0.data_root={voc}',
        f'train_dataloader.dataset.datasets.1.data_root={voc}',
        f'val_dataloader.dataset.data_root={voc}',
        cwd=str(tmp_path),
        timeout=300)
    assert_one_line_error(proc, "'checkpoints/wsbcn/rn101_bcn_ws_mmseg.pth'",
                          'model.backbone.init_cfg.checkpoint',
                          'does not exist')


def test_train_tool_names_the_missing_data_root(tmp_path, repo_root, run_tool,
                                                assert_one_line_error):
    proc = run_tool(
        'train.py',
        osp.join(repo_root, CITYSCAPES_CONFIG),
        cwd=str(tmp_path),
        timeout=300)
    assert_one_line_error(proc, "'data/cityscapes/'",
                          'train_dataloader.dataset.data_root',
                          'does not exist')
