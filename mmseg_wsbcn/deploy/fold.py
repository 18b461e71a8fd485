# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
r"""Fold a WS + BCN (or BN) model into plain Conv + GroupNorm layers.

For deployment (ONNX, TensorRT, mmdeploy) a model in eval mode computes
the same outputs with fewer, standard layers:

- every :class:`~mmseg_wsbcn.models.layers.WSConv2d` becomes the plain conv
  holding its standardized weight (:func:`fold_ws_conv`);
- BCN's batch step in eval is a fixed per-channel affine
  ``y = s * x + t`` with ``s = gamma / sqrt(v + eps)``,
  ``t = beta - s * m``. When a conv feeds only this BCN, the affine folds
  into that conv (``W' = s * W``, ``b' = s * b + t``, computed in float64)
  and what remains is ``nn.GroupNorm(G, C)`` whose per-channel affine is
  BCN's group affine repeated ``C / G`` times;
- a BatchNorm after a conv folds into the conv completely (the arithmetic
  of ``mmcv.cnn.fuse_conv_bn``) and becomes ``nn.Identity``;
- GroupNorm (GN, GN+WS) cannot fold and stays as it is.

Which conv feeds which norm is read from the structure, never guessed from
the order in which children were registered:

- mmcv's ``ConvModule`` when ``'norm'`` directly follows ``'conv'`` in its
  ``order``;
- mmseg's and mmdet's ResNet ``BasicBlock`` / ``Bottleneck`` (and their
  subclasses, e.g. ResNeXt's): ``conv1`` -> ``norm1``, ``conv2`` ->
  ``norm2``, ``conv3`` -> ``norm3``, through the blocks' ``norm*_name``;
- mmseg's and mmdet's ``ResNet`` (and ``ResNetV1c/d``, ``ResNeXt``) stem
  when ``deep_stem`` is off: ``conv1`` -> ``norm1``;
- a plain ``nn.Sequential`` (whose ``forward`` is not overridden), e.g. the
  ResNetV1c deep stem and the blocks' ``downsample``: a conv child directly
  followed by a norm child.

A pair also needs a plain ``nn.Conv2d`` (after WS folding) and a conv and
norm that each appear once in the module tree (not shared). Anything else
is left as an exact equivalent and reported: a BCN without a foldable conv
in front becomes ``nn.Sequential(ChannelAffine, nn.GroupNorm)`` (its eval
form), a BatchNorm without one stays a BatchNorm (exact in eval).

What a layer becomes is its own answer, through the layer protocol
(:mod:`~mmseg_wsbcn.models.layers.layer_kind`): ``split_eval_affine`` (the
per-channel affine a conv in front absorbs, and the rest) and
``eval_form`` (its exact eval equivalent); the library BatchNorms fold
with :func:`~mmseg_wsbcn.models.layers.channel_affine.batch_norm_affine`.
"""
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from torch import Tensor

from ..models.layers import ChannelAffine, LayerKind, layer_kind, named_layers
from ..models.layers.channel_affine import batch_norm_affine
from ..models.layers.layer_kind import BATCH_NORM_NAMES
from ..models.utils import fold_ws_conv
from ..models.utils.module_tree import replace_modules

__all__ = ['ChannelAffine', 'FoldReport', 'fold_bcn_ws']


@dataclass
class FoldReport:
    """What :func:`fold_bcn_ws` did.

    Attributes:
        ws_convs (int): WSConv2d layers replaced by plain convs.
        bcn_folded (list[tuple[str, str]]): ``(conv name, BCN name)`` pairs
            whose batch step went into the conv; each BCN became
            ``nn.GroupNorm`` (also the pairs of any other norm layer of
            the toolkit with a ``split_eval_affine``).
        bn_folded (list[tuple[str, str]]): ``(conv name, BN name)`` pairs
            folded into the conv; each BN became ``nn.Identity``.
        left (list[tuple[str, str]]): ``(norm name, reason)`` for the BCN
            and BN layers that did not fold. Such a BCN became its exact
            eval form ``Sequential(ChannelAffine, GroupNorm)``; such a BN
            stays.
        group_norms (int): ``nn.GroupNorm`` layers made from BCNs (folded
            or not).
    """

    ws_convs: int = 0
    bcn_folded: List[Tuple[str, str]] = field(default_factory=list)
    bn_folded: List[Tuple[str, str]] = field(default_factory=list)
    left: List[Tuple[str, str]] = field(default_factory=list)
    group_norms: int = 0

    def __str__(self) -> str:
        """One line, e.g. ``fold_bcn_ws: 20 WSConv2d -> Conv2d, 20 BCN
        folded into convs, 0 BN folded, 1 left (a: reason)``."""
        text = (f'fold_bcn_ws: {self.ws_convs} WSConv2d -> Conv2d, '
                f'{len(self.bcn_folded)} BCN folded into convs '
                f'({self.group_norms} GroupNorm made), '
                f'{len(self.bn_folded)} BN folded, {len(self.left)} left')
        if self.left:
            shown = '; '.join(f'{n}: {r}' for n, r in self.left[:3])
            more = '; ...' if len(self.left) > 3 else ''
            text += f' ({shown}{more})'
        return text


# (parent module, parent name, conv attribute, norm attribute)
_Pair = Tuple[nn.Module, str, str, str]


def _resnet_classes() -> Tuple[tuple, tuple]:
    """mmseg's (and, when installed, mmdet's) ResNet blocks and backbones."""
    from mmseg.models.backbones import resnet as seg_resnet
    blocks = [seg_resnet.BasicBlock, seg_resnet.Bottleneck]
    backbones = [seg_resnet.ResNet]
    try:
        from mmdet.models.backbones import resnet as det_resnet
    except ImportError:  # mmdet is an optional extra
        pass
    else:
        blocks += [det_resnet.BasicBlock, det_resnet.Bottleneck]
        backbones.append(det_resnet.ResNet)
    return tuple(blocks), tuple(backbones)


def _join(prefix: str, name: str) -> str:
    return f'{prefix}.{name}' if prefix else name


def _role(module: Optional[nn.Module]) -> Optional[str]:
    """``'conv'``, ``'norm'`` (see :func:`layer_kind`) or ``None``."""
    kind = None if module is None else layer_kind(module)
    return None if kind is None else kind.role


def _structural_pairs(model: nn.Module) -> Iterator[_Pair]:
    """Yield every conv -> norm pair the module structure guarantees."""
    blocks, backbones = _resnet_classes()
    for name, module in model.named_modules():
        if isinstance(module, ConvModule):
            if module.with_norm and 'conv' in module.order and (
                    module.order.index('norm')
                    == module.order.index('conv') + 1):
                yield module, name, 'conv', module.norm_name
        elif isinstance(module, blocks):
            yield module, name, 'conv1', module.norm1_name
            yield module, name, 'conv2', module.norm2_name
            if hasattr(module, 'norm3_name'):
                yield module, name, 'conv3', module.norm3_name
        elif isinstance(module, backbones):
            if not module.deep_stem:
                yield module, name, 'conv1', module.norm1_name
        elif (isinstance(module, nn.Sequential)
              and type(module).forward is nn.Sequential.forward):
            children = list(module._modules.items())
            for (first, conv), (second, norm) in zip(children, children[1:]):
                if _role(conv) == 'conv' and _role(norm) == 'norm':
                    yield module, name, first, second


def _conv_bias(conv: nn.Conv2d) -> Tensor:
    if conv.bias is None:
        return conv.weight.new_zeros(conv.out_channels, dtype=torch.float64)
    return conv.bias.detach().double()


def _can_split(norm: nn.Module, kind: LayerKind) -> bool:
    """Whether a conv in front can absorb part of ``norm`` (a BatchNorm, or
    a layer whose protocol has ``split_eval_affine``)."""
    return kind.name in BATCH_NORM_NAMES or hasattr(
        type(norm), 'split_eval_affine')


def _split_eval_affine(norm: nn.Module,
                       kind: LayerKind) -> Tuple[Tensor, Tensor, nn.Module]:
    """``(scale, shift, rest)``, ``norm(x) == rest(x * scale + shift)`` in
    eval: the layer protocol's ``split_eval_affine``, or a BatchNorm's
    affine with ``nn.Identity``."""
    split = getattr(type(norm), 'split_eval_affine', None)
    if split is not None:
        return split(norm)
    return (*batch_norm_affine(norm), nn.Identity())


def _group_norms(module: nn.Module) -> int:
    """How many ``nn.GroupNorm`` (kind ``'gn'``) are in ``module``."""
    return sum(kind.name == 'gn' for _, _, kind in named_layers(module))


def _describe(module: nn.Module) -> str:
    """``'Sequential(ChannelAffine, GroupNorm)'``, ``'GroupNorm'``, ..."""
    if type(module) is nn.Sequential:
        return 'Sequential({})'.format(', '.join(
            type(m).__name__ for m in module.children()))
    return type(module).__name__


def _fold_affine_into_conv(conv: nn.Conv2d, scale: Tensor,
                           shift: Tensor) -> None:
    """``conv`` becomes ``scale * conv(x) + shift`` (per output channel),
    in place; a conv without bias gets one."""
    dtype = conv.weight.dtype
    weight = conv.weight.detach().double() * scale.view(-1, 1, 1, 1)
    bias = _conv_bias(conv) * scale + shift
    conv.weight = nn.Parameter(
        weight.to(dtype), requires_grad=conv.weight.requires_grad)
    conv.bias = nn.Parameter(
        bias.to(dtype), requires_grad=conv.weight.requires_grad)


def _occurrences(model: nn.Module) -> Dict[int, int]:
    """How many times each module object appears in the tree."""
    counts: Dict[int, int] = {}
    for _, module in model.named_modules(remove_duplicate=False):
        counts[id(module)] = counts.get(id(module), 0) + 1
    return counts


def _check_eval(model: nn.Module) -> None:
    training = [n or '(model)' for n, m in model.named_modules() if m.training]
    if training:
        more = ', ...' if len(training) > 3 else ''
        shown = ', '.join(training[:3]) + more
        raise RuntimeError(
            f'fold_bcn_ws needs a model in eval mode (call model.eval() '
            f'first): {len(training)} modules are in training mode '
            f'({shown}); folding uses the running statistics, which '
            'training would keep changing')


def fold_bcn_ws(model: nn.Module) -> FoldReport:
    """Fold WS, BCN's batch step and BatchNorm into the convs, in place.

    See the module docstring for what becomes what and how conv -> norm
    pairs are found. Outputs are unchanged up to float rounding; the model
    stays in eval mode and is meant for inference and export only.

    Args:
        model (nn.Module): A model in eval mode (every submodule), e.g. an
            mmseg segmentor, an mmdet detector or a backbone. It must not
            itself be a single WSConv2d or norm layer.

    Returns:
        FoldReport: What was folded, and what was left (with the reason).

    Raises:
        RuntimeError: If any submodule is in training mode.
        TypeError: If ``model`` is itself a WSConv2d, BCN or BatchNorm.

    Example:
        >>> model = init_model(CONFIG, CHECKPOINT, 'cpu')  # eval mode
        >>> report = fold_bcn_ws(model)
        >>> print(report)
    """
    kind = layer_kind(model)
    if kind is not None and (_can_split(model, kind)
                             or hasattr(type(model), 'eval_form')):
        raise TypeError('fold_bcn_ws folds the layers inside a model; got a '
                        f'single {type(model).__name__}')
    _check_eval(model)
    report = FoldReport()
    report.ws_convs = sum(
        kind.role == 'conv' and hasattr(type(m), 'eval_form')
        for _, m, kind in named_layers(model))
    fold_ws_conv(model)

    counts = _occurrences(model)
    names = {id(m): n for n, m in model.named_modules()}
    done = set()  # ids of the norms already folded or left
    replaced: Dict[int, nn.Module] = {}  # id of a folded norm -> its rest
    for parent, parent_name, conv_attr, norm_attr in list(
            _structural_pairs(model)):
        conv = getattr(parent, conv_attr, None)
        norm = getattr(parent, norm_attr, None)
        kind = None if norm is None else layer_kind(norm)
        if (kind is None or kind.role != 'norm' or id(norm) in done
                or not _can_split(norm, kind)):
            continue  # GroupNorm, Identity, a norm already folded
        conv_name = _join(parent_name, conv_attr)
        norm_name = names.get(id(norm), _join(parent_name, norm_attr))
        done.add(id(norm))
        if type(conv) is not nn.Conv2d:
            report.left.append(
                (norm_name, f'{conv_name} is a {type(conv).__name__}, not a '
                 'plain Conv2d'))
            continue
        if counts.get(id(conv), 0) > 1 or counts.get(id(norm), 0) > 1:
            report.left.append(
                (norm_name, f'{conv_name} or the norm is shared by several '
                 'parents, so the conv may feed other layers'))
            continue
        scale, shift, rest = _split_eval_affine(norm, kind)
        _fold_affine_into_conv(conv, scale, shift)
        replaced[id(norm)] = rest
        if kind.name in BATCH_NORM_NAMES:
            report.bn_folded.append((conv_name, norm_name))
        else:
            report.bcn_folded.append((conv_name, norm_name))
        report.group_norms += _group_norms(rest)

    # what no structure covered: BCN -> its exact eval form, BN stays
    left_names = {n for n, _ in report.left}

    def finish(name: str, module: nn.Module) -> Optional[nn.Module]:
        if id(module) in replaced:
            return replaced[id(module)]
        kind = layer_kind(module)
        if kind is None or kind.role != 'norm':
            return None
        eval_form = getattr(type(module), 'eval_form', None)
        if eval_form is not None:
            form = eval_form(module)
            report.group_norms += _group_norms(form)
            if name not in left_names:
                report.left.append((name, 'no conv known to feed only this '
                                    f'{type(module).__name__}; replaced by '
                                    f'{_describe(form)}'))
            return form
        if kind.name in BATCH_NORM_NAMES and name not in left_names:
            report.left.append(
                (name, 'no conv known to feed only this BatchNorm; kept '
                 '(exact in eval)'))
        return module  # a norm's inner modules are part of it

    replace_modules(model, finish)
    return report


#: :func:`count_layers` key of each layer kind name.
_COUNTED = dict(
    ws_conv='WSConv2d',
    bcn='BCN',
    gn='GroupNorm',
    bn='BatchNorm',
    syncbn='BatchNorm')


def count_layers(model: nn.Module) -> Dict[str, int]:
    """Count the layer types that matter for deployment.

    Layers are found by :func:`~mmseg_wsbcn.models.layers.named_layers`:
    a layer's inner modules (BCN's batch step ``pbn``) are part of it and
    not counted on their own.

    Args:
        model (nn.Module): Any module.

    Returns:
        dict[str, int]: ``WSConv2d``, ``BCN``, ``GroupNorm`` (plain, not
        BCN), ``BatchNorm`` (incl. SyncBN) and ``Conv2d`` (all 2-D convs)
        counts; another norm layer of the toolkit is counted under its
        class name.
    """
    out = dict(WSConv2d=0, BCN=0, GroupNorm=0, BatchNorm=0, Conv2d=0)
    for _, module, kind in named_layers(model):
        if kind.role == 'conv':
            out['Conv2d'] += 1
        key = _COUNTED.get(kind.name)
        if key is None and kind.role == 'norm':
            key = type(module).__name__
        if key is not None:
            out[key] = out.get(key, 0) + 1
    return out
