# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Convert the authors' ImageNet WS backbones to OpenMMLab's ResNet keys.

The authors of *Micro-Batch Training with Batch-Channel Normalization and
Weight Standardization* (arXiv:1903.10520) released seven ImageNet
backbones, trained with their own ``l_resnet*`` / ``l_resnext*`` models
(repositories ``joe-siyuan-qiao/pytorch-classification`` for GN+WS and
``joe-siyuan-qiao/Batch-Channel-Normalization`` for BCN+WS):

============================  ======  =========================
file                          family  architecture
============================  ======  =========================
``R-50-GN-WS.pth.tar``        GN+WS   ResNet-50
``R-101-GN-WS.pth.tar``       GN+WS   ResNet-101
``X-50-GN-WS.pth.tar``        GN+WS   ResNeXt-50 32x4d
``X-101-GN-WS.pth.tar``       GN+WS   ResNeXt-101 32x4d
``rn50_bcn_ws.pth``           BCN+WS  ResNet-50
``rn101_bcn_ws.pth``          BCN+WS  ResNet-101
``rx50_bcn_ws.pth``           BCN+WS  ResNeXt-50 32x4d
============================  ======  =========================

Both families are ResNet v1 with a 7x7 stem and the stride on the 3x3 conv
(mmseg's and mmdet's ``ResNet`` / ``ResNeXt`` with ``style='pytorch'``, not
``ResNetV1c``); every conv, the stem and ``downsample.0`` included, is a
WS conv, and every norm uses 32 groups:

- GN+WS: ``nn.GroupNorm(32, C)`` after WS in the ``std`` form. Its norms
  are named ``bn*`` by the authors, ``gn*`` by OpenMMLab (``GN``'s
  abbreviation); the keys are renamed.
- BCN+WS: WS in the ``var`` form, then BCN: a per-channel BatchNorm step
  ``pbn`` with running statistics, group normalization and a per-group
  affine stored as ``(1, 32, 1)``, which becomes ``(32,)``. BCN's
  abbreviation is ``bn``, so the names stay.

The ImageNet classifier ``fc`` is dropped. Every other key must be there
with its exact shape; the one optional key is ``pbn.num_batches_tracked``
(written as 0 when absent: the layers update with ``momentum``, never with
the count).
"""
import re
from collections import OrderedDict
from typing import Dict, List, Mapping, NamedTuple, Tuple

import torch
from torch import Tensor

from ...utils.errors import OneLineError
from ...utils.state_dict import compare_state_dicts

#: Blocks per stage, by depth.
STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
#: Channel groups of every norm layer, and ResNeXt's cardinality and width.
NUM_GROUPS = 32
RESNEXT_GROUPS, RESNEXT_BASE_WIDTH = 32, 4
#: The authors' file names, by (family, arch, depth).
OFFICIAL_FILES = {
    ('gn-ws', 'resnet', 50): 'R-50-GN-WS.pth.tar',
    ('gn-ws', 'resnet', 101): 'R-101-GN-WS.pth.tar',
    ('gn-ws', 'resnext', 50): 'X-50-GN-WS.pth.tar',
    ('gn-ws', 'resnext', 101): 'X-101-GN-WS.pth.tar',
    ('bcn-ws', 'resnet', 50): 'rn50_bcn_ws.pth',
    ('bcn-ws', 'resnet', 101): 'rn101_bcn_ws.pth',
    ('bcn-ws', 'resnext', 50): 'rx50_bcn_ws.pth',
}
#: Where the converter's output goes by convention: the authors' file name
#: without its extension, plus this suffix.
CONVERTED_SUFFIX = '_mmseg.pth'
CONVERTER = 'tools/model_converters/wsbcn2mmseg.py'
_SHOWN = 3  # offending keys named in an error


def converted_name(official_file: str) -> str:
    """``'R-50-GN-WS.pth.tar'`` -> ``'R-50-GN-WS_mmseg.pth'``."""
    stem = re.sub(r'\.pth(\.tar)?$', '', official_file)
    return stem + CONVERTED_SUFFIX


def conversion_command(converted_path: str) -> str:
    """The command that writes ``converted_path`` when its file name is
    that of a converted official file (``''`` otherwise), e.g.
    ``python tools/model_converters/wsbcn2mmseg.py rn101_bcn_ws.pth
    checkpoints/wsbcn/rn101_bcn_ws_mmseg.pth``."""
    name = converted_path.replace('\\', '/').rsplit('/', 1)[-1]
    for official in OFFICIAL_FILES.values():
        if converted_name(official) == name:
            return f'python {CONVERTER} {official} {converted_path}'
    return ''


class ConversionError(OneLineError, ValueError):
    """The input is not one of the authors' layouts; the message is one
    line with counts and the first offending keys."""


class Layout(NamedTuple):
    """One of the authors' backbone layouts.

    Attributes:
        family (str): ``'gn-ws'`` or ``'bcn-ws'``.
        arch (str): ``'resnet'`` or ``'resnext'`` (32x4d).
        depth (int): 50 or 101.
    """
    family: str
    arch: str
    depth: int

    @property
    def name(self) -> str:
        """E.g. ``'BCN+WS ResNeXt-50 32x4d'``."""
        family = 'GN+WS' if self.family == 'gn-ws' else 'BCN+WS'
        arch = (f'ResNet-{self.depth}' if self.arch == 'resnet' else
                f'ResNeXt-{self.depth} {RESNEXT_GROUPS}x'
                f'{RESNEXT_BASE_WIDTH}d')
        return f'{family} {arch}'

    @property
    def official_file(self) -> str:
        """The authors' file name, or ``''`` for a layout they did not
        release (BCN+WS ResNeXt-101)."""
        return OFFICIAL_FILES.get(tuple(self), '')

    def conv_cfg(self) -> dict:
        """The WS form the checkpoint was trained with."""
        return dict(
            type='WSConv2d', mode='std' if self.family == 'gn-ws' else 'var')

    def norm_cfg(self) -> dict:
        """The norm layer; for BCN, ``estimate`` is the user's choice
        (``False``: batch statistics, ``True``: micro-batch)."""
        if self.family == 'gn-ws':
            return dict(type='GN', num_groups=NUM_GROUPS, requires_grad=True)
        return dict(type='BCN', num_groups=NUM_GROUPS, requires_grad=True)

    def backbone_cfg(self) -> dict:
        """The mmseg / mmdet backbone these weights load into."""
        cfg = dict(type='ResNet', depth=self.depth, style='pytorch')
        if self.arch == 'resnext':
            cfg.update(
                type='ResNeXt',
                groups=RESNEXT_GROUPS,
                base_width=RESNEXT_BASE_WIDTH)
        cfg.update(conv_cfg=self.conv_cfg(), norm_cfg=self.norm_cfg())
        return cfg


def official_shapes(layout: Layout) -> 'OrderedDict[str, Tuple[int, ...]]':
    """The authors' state-dict keys and shapes for ``layout``, in their
    order (``fc`` last).

    Args:
        layout (Layout): The layout.

    Returns:
        OrderedDict[str, tuple[int, ...]]: Key to shape, without a
        ``module.`` prefix.
    """
    shapes: 'OrderedDict[str, Tuple[int, ...]]' = OrderedDict()

    def conv(name: str, out: int, fan_in: int, k: int) -> None:
        shapes[f'{name}.weight'] = (out, fan_in, k, k)

    def norm(name: str, channels: int) -> None:
        if layout.family == 'gn-ws':
            shapes[f'{name}.weight'] = shapes[f'{name}.bias'] = (channels, )
            return
        shapes[f'{name}.weight'] = shapes[f'{name}.bias'] = (1, NUM_GROUPS, 1)
        for stat in ('weight', 'bias', 'running_mean', 'running_var'):
            shapes[f'{name}.pbn.{stat}'] = (channels, )
        shapes[f'{name}.pbn.num_batches_tracked'] = ()

    conv('conv1', 64, 3, 7)
    norm('bn1', 64)
    inplanes = 64
    groups = RESNEXT_GROUPS if layout.arch == 'resnext' else 1
    for stage, blocks in enumerate(STAGE_BLOCKS[layout.depth]):
        planes = 64 * 2**stage
        width = planes if groups == 1 else \
            planes * RESNEXT_BASE_WIDTH // 64 * groups
        for block in range(blocks):
            prefix = f'layer{stage + 1}.{block}'
            conv(f'{prefix}.conv1', width, inplanes, 1)
            norm(f'{prefix}.bn1', width)
            conv(f'{prefix}.conv2', width, width // groups, 3)
            norm(f'{prefix}.bn2', width)
            conv(f'{prefix}.conv3', planes * 4, width, 1)
            norm(f'{prefix}.bn3', planes * 4)
            if block == 0:
                conv(f'{prefix}.downsample.0', planes * 4, inplanes, 1)
                norm(f'{prefix}.downsample.1', planes * 4)
            inplanes = planes * 4
    shapes['fc.weight'] = (1000, 2048)
    shapes['fc.bias'] = (1000, )
    return shapes


def _first(keys: List[str]) -> str:
    shown = ', '.join(keys[:_SHOWN])
    return shown + (', ...' if len(keys) > _SHOWN else '')


def unwrap_state_dict(obj: object) -> Dict[str, Tensor]:
    """The flat state dict of a loaded checkpoint.

    Accepts a flat state dict, one whose keys all carry DataParallel's
    ``module.`` prefix, and either wrapped as ``{'state_dict': ...}``.

    Args:
        obj (object): What ``torch.load`` returned.

    Returns:
        dict[str, Tensor]: Keys without the ``module.`` prefix.

    Raises:
        ConversionError: ``obj`` is not a state dict of tensors, or only
            some keys carry the prefix.
    """
    if isinstance(obj, Mapping) and isinstance(obj.get('state_dict'), Mapping):
        obj = obj['state_dict']
    if not isinstance(obj, Mapping) or not obj:
        got = 'an empty dict' if isinstance(obj, Mapping) else \
            type(obj).__name__
        raise ConversionError(
            f'expected a state dict (or {{"state_dict": ...}}), got {got}')
    not_tensors = [str(k) for k, v in obj.items() if not torch.is_tensor(v)]
    if not_tensors:
        raise ConversionError(
            f'{len(not_tensors)} entries are not tensors, so this is not a '
            f'state dict: {_first(not_tensors)}')
    prefixed = [k for k in obj if k.startswith('module.')]
    if prefixed and len(prefixed) != len(obj):
        plain = [k for k in obj if not k.startswith('module.')]
        raise ConversionError(
            f'{len(prefixed)} keys carry the "module." prefix and '
            f'{len(plain)} do not: {_first(plain)}')
    if prefixed:
        return {k[len('module.'):]: v for k, v in obj.items()}
    return dict(obj)


def detect_layout(state_dict: Mapping[str, Tensor]) -> Layout:
    """Tell which of the authors' layouts ``state_dict`` has.

    The family comes from the stem norm (``bn1.pbn.*`` for BCN, a ``(64,)``
    ``bn1.weight`` without statistics for GN), the depth from the number of
    blocks of stage 3, ResNet or ResNeXt from the first 3x3 conv (grouped in
    ResNeXt). :func:`convert_wsbcn_state_dict` then checks every key.

    Args:
        state_dict (Mapping[str, Tensor]): Keys without ``module.``.

    Returns:
        Layout: The layout.

    Raises:
        ConversionError: Not one of the layouts (e.g. a torchvision ResNet,
            which has BatchNorm ``bn1.running_mean``).
    """
    first = _first(list(state_dict))
    if 'bn1.pbn.running_mean' in state_dict:
        family = 'bcn-ws'
    elif 'bn1.running_mean' in state_dict:
        raise ConversionError(
            'unknown layout: a BatchNorm ResNet (bn1.running_mean, as '
            "torchvision's), not one of the authors' GN+WS or BCN+WS "
            'backbones')
    elif 'bn1.weight' in state_dict and \
            tuple(state_dict['bn1.weight'].shape) == (64, ):
        family = 'gn-ws'
    else:
        raise ConversionError(
            'unknown layout: no stem norm (bn1.weight of shape (64,) for '
            f'GN+WS, bn1.pbn.* for BCN+WS); first keys: {first}')
    blocks = {
        int(m.group(1))
        for m in map(re.compile(r'^layer3\.(\d+)\.').match, state_dict) if m
    }
    depth = {6: 50, 23: 101}.get(len(blocks))
    if depth is None:
        raise ConversionError(
            f'unknown layout: stage 3 (layer3.*) has {len(blocks)} blocks; '
            'ResNet/ResNeXt-50 has 6, -101 has 23')
    conv2 = state_dict.get('layer1.0.conv2.weight')
    if conv2 is None or conv2.dim() != 4:
        raise ConversionError('unknown layout: no 3x3 conv '
                              'layer1.0.conv2.weight')
    out, fan_in = conv2.shape[:2]
    if out == fan_in:
        arch = 'resnet'
    elif out == fan_in * RESNEXT_GROUPS:
        arch = 'resnext'
    else:
        raise ConversionError(
            'unknown layout: layer1.0.conv2.weight has shape '
            f'{tuple(conv2.shape)}, neither a ResNet 3x3 conv nor a ResNeXt '
            f'one with {RESNEXT_GROUPS} groups')
    return Layout(family, arch, depth)


def check_keys(state_dict: Mapping[str, Tensor], layout: Layout) -> None:
    """Raise :class:`ConversionError` unless ``state_dict`` has exactly the
    keys and shapes of ``layout`` (``pbn.num_batches_tracked`` optional).
    """
    expected = official_shapes(layout)
    # a missing num_batches_tracked is ignored (compare_state_dicts' default)
    diff = compare_state_dicts(state_dict, expected)
    wrong = [
        f'{k} {got} (expected {want})' for k, got, want in diff.mismatched
    ]
    problems = []
    for what, keys in (('missing', diff.missing),
                       ('unexpected', diff.unexpected), ('with a wrong shape',
                                                         wrong)):
        if keys:
            problems.append(f'{len(keys)} {what}: {_first(keys)}')
    if problems:
        raise ConversionError(
            f'not the {layout.name} layout ({len(expected)} keys): ' +
            '; '.join(problems))


def _mmseg_key(key: str, family: str) -> str:
    """The authors' key as named in OpenMMLab's ResNet: GN layers are
    ``gn*`` there (``bn1`` -> ``gn1``, ``layer1.0.bn2`` -> ``layer1.0.gn2``);
    convs, ``downsample.*`` and BCN layers keep their names."""
    if family == 'gn-ws':
        return re.sub(r'(^|\.)bn(\d+)\.', r'\1gn\2.', key)
    return key


def convert_wsbcn_state_dict(state_dict: Mapping[str, Tensor]
                             ) -> Tuple['OrderedDict[str, Tensor]', Layout]:
    """Convert one of the authors' backbones to OpenMMLab's keys.

    Args:
        state_dict (Mapping[str, Tensor]): A state dict as
            :func:`unwrap_state_dict` returns it.

    Returns:
        tuple[OrderedDict[str, Tensor], Layout]: The backbone's state dict
        for mmseg's / mmdet's ``ResNet`` or ``ResNeXt`` (``fc`` dropped,
        BCN's group affine reshaped to ``(32,)``, every value contiguous)
        and the detected layout.

    Raises:
        ConversionError: Not exactly one of the layouts.
    """
    layout = detect_layout(state_dict)
    check_keys(state_dict, layout)
    converted: 'OrderedDict[str, Tensor]' = OrderedDict()
    for key in official_shapes(layout):
        if key.startswith('fc.'):
            continue
        if key not in state_dict:  # the optional num_batches_tracked
            value = torch.zeros((), dtype=torch.long)
        else:
            value = state_dict[key]
        if layout.family == 'bcn-ws' and value.dim() == 3:
            value = value.reshape(NUM_GROUPS)  # (1, G, 1) -> (G,)
        converted[_mmseg_key(key, layout.family)] = value.contiguous()
    return converted, layout
