# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Demo-scale models with non-trivial norm statistics, for the deploy
tests."""
import torch
import torch.nn as nn
from mmengine.config import Config

from mmseg_wsbcn.models.layers import layer_kind
from mmseg_wsbcn.models.layers.layer_kind import BATCH_NORM_NAMES

DEMO_BCN = ('configs/demo/'
            'deeplabv3_r18-d8_bcn-ws_1xb2-200iters_cityscapes-mini-128x128.py')
DEMO_BN = ('configs/demo/'
           'deeplabv3_r18-d8_bn_1xb2-200iters_cityscapes-mini-128x128.py')

#: norm variant -> (conv_cfg, norm_cfg) swapped into the demo config
VARIANTS = {
    'bn': (None, dict(type='BN', requires_grad=True)),
    'gn': (None, dict(type='GN', num_groups=32, requires_grad=True)),
    'gn-ws': (dict(type='WSConv2d', mode='std'),
              dict(type='GN', num_groups=32, requires_grad=True)),
    'bcn-ws': (dict(type='WSConv2d'),
               dict(type='BCN', num_groups=32, estimate=True,
                    requires_grad=True)),
    'bcnbatch-ws': (dict(type='WSConv2d'),
                    dict(type='BCN', num_groups=32, requires_grad=True)),
}


def variant_config(repo_root: str, variant: str) -> Config:
    """The demo DeepLabv3 (R-18) config with the variant's layers, channels
    halved for speed."""
    cfg = Config.fromfile(f'{repo_root}/{DEMO_BCN}')
    conv_cfg, norm_cfg = VARIANTS[variant]
    for part in ('backbone', 'decode_head', 'auxiliary_head'):
        cfg.model[part]['conv_cfg'] = conv_cfg
        cfg.model[part]['norm_cfg'] = norm_cfg
    cfg.model.decode_head.channels = 64
    cfg.model.auxiliary_head.channels = 32
    return cfg


def randomize_norms(model: nn.Module, seed: int = 1) -> None:
    """Give every BCN / BN / GN random, non-default statistics and affine
    parameters."""
    g = torch.Generator().manual_seed(seed)

    def rand(n, lo, hi):
        return torch.rand(n, generator=g) * (hi - lo) + lo

    with torch.no_grad():
        # every module, BCN's inner batch step ``pbn`` included
        for m in model.modules():
            kind = layer_kind(m)
            if kind is None or kind.role != 'norm':
                continue
            if kind.name in BATCH_NORM_NAMES:
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
                m.running_var.copy_(rand(c, 0.5, 2.5))
                m.weight.copy_(rand(c, 0.5, 1.5))
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)
            else:  # GroupNorm, BCN's group affine
                n = m.weight.numel()
                m.weight.copy_(rand(n, 0.5, 1.5))
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)


def build_model(repo_root: str, variant: str, seed: int = 0) -> nn.Module:
    """The variant's segmentor, initialized, randomized norms, eval."""
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    torch.manual_seed(seed)
    cfg = variant_config(repo_root, variant)
    model = MODELS.build(cfg.model)
    model.init_weights()
    randomize_norms(model)
    model.cfg = cfg
    return model.eval()


def save_checkpoint(model: nn.Module, path: str) -> None:
    """Save ``model`` as an MMEngine-style checkpoint."""
    torch.save(dict(meta=dict(), state_dict=model.state_dict()), path)
