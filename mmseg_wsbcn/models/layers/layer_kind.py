# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""What kind of layer a module is: the one place that answers it.

The summary hook, the deploy fold, :func:`~mmseg_wsbcn.models.utils.
convert_model`, the checkpoint shape check and the tests all ask
:func:`layer_kind` (or walk :func:`named_layers`) instead of testing
classes themselves. The toolkit's layers answer for themselves through the
*layer protocol*; library layers (``nn.Conv2d``, ``nn.GroupNorm``, the
BatchNorms) are answered by one table, most specific type first.

The layer protocol. A layer class implements:

- ``layer_kind() -> LayerKind`` (required): its role, short name and
  one-line summary.
- ``inner_modules() -> tuple[nn.Module, ...]`` (optional): submodules that
  are part of the layer and are not layers of the model on their own
  (BCN's batch step ``pbn``). :func:`named_layers` skips them; model
  conversion carries a BatchNorm's weights into the one it finds here.
- ``eval_form() -> nn.Module`` (optional): plain modules computing the
  same outputs in eval mode (:class:`~.WSConv2d`: an ``nn.Conv2d`` holding
  the standardized weight; :class:`~.BCN`: ``Sequential(ChannelAffine,
  GroupNorm)``). Deployment folding replaces the layer by it.
- ``split_eval_affine() -> (scale, shift, rest)`` (optional, norms): in
  eval mode the layer computes ``rest(x * scale + shift)`` with
  per-channel float64 ``scale`` and ``shift`` of shape ``(C,)``, so that
  a conv in front can absorb the affine and ``rest`` replaces the layer.
- ``accepts_checkpoint_shape(name, ckpt_shape, model_shape) -> bool``
  (optional): whether the layer loads its tensor ``name`` from a
  checkpoint of another shape (it converts the shape while loading).

Example:
    >>> layer_kind(nn.GroupNorm(4, 8))
    LayerKind(role='norm', name='gn', summary='GroupNorm(G=4)')
    >>> layer_kind(nn.ReLU()) is None
    True
"""
import functools
from typing import (Callable, Iterator, NamedTuple, Optional, Protocol, Set,
                    Tuple, runtime_checkable)

import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    'BATCH_NORM_NAMES', 'LayerKind', 'LayerProtocol', 'inner_modules',
    'layer_kind', 'named_layers'
]

#: Kind names of the BatchNorms (per-channel statistics, foldable affine).
BATCH_NORM_NAMES: Tuple[str, ...] = ('bn', 'syncbn')


class LayerKind(NamedTuple):
    """The kind of a conv or norm layer.

    Attributes:
        role (str): ``'conv'`` or ``'norm'``.
        name (str): A short stable id: ``'conv'``, ``'ws_conv'``, ``'bn'``,
            ``'syncbn'``, ``'gn'``, ``'bcn'`` (or a new layer's own).
        summary (str): A one-line description, e.g.
            ``'WSConv2d(mode=var)'``, ``'BCN(G=32, estimated stats)'``,
            ``'GroupNorm(G=32)'``, ``'BatchNorm2d'``, ``'Conv2d'``.
    """

    role: str
    name: str
    summary: str


@runtime_checkable
class LayerProtocol(Protocol):
    """A layer that says what kind it is (see the module docstring for
    the optional members: ``inner_modules``, ``eval_form``,
    ``split_eval_affine``, ``accepts_checkpoint_shape``)."""

    def layer_kind(self) -> LayerKind:
        """The layer's :class:`LayerKind`."""


#: ``(qualified name, layer, its kind)``, as :func:`named_layers` yields.
NamedLayer = Tuple[str, nn.Module, LayerKind]


def _type_name(module: nn.Module) -> str:
    return type(module).__name__


def _group_norm(module: nn.Module) -> str:
    return f'GroupNorm(G={module.num_groups})'


def _conv(module: nn.Module) -> str:
    return 'Conv2d'


# (type, role, name, summary of an instance)
_Entry = Tuple[type, str, str, Callable[[nn.Module], str]]


@functools.lru_cache(maxsize=None)
def _library_table() -> Tuple[_Entry, ...]:
    """The library layers, most specific type first."""
    table = [(nn.SyncBatchNorm, 'norm', 'syncbn', _type_name)]
    try:  # mmcv's own SyncBatchNorm ('MMSyncBN'), not a _BatchNorm
        from mmcv.ops import SyncBatchNorm as MMSyncBN
    except Exception:  # mmcv without compiled ops
        pass
    else:
        table.append((MMSyncBN, 'norm', 'syncbn', _type_name))
    table += [
        (_BatchNorm, 'norm', 'bn', _type_name),
        (nn.GroupNorm, 'norm', 'gn', _group_norm),
        (nn.Conv2d, 'conv', 'conv', _conv),
    ]
    return tuple(table)


def layer_kind(module: nn.Module) -> Optional[LayerKind]:
    """The kind of ``module``, or ``None`` if it is no conv or norm layer.

    A module whose class implements the layer protocol answers itself
    (``module.layer_kind()``); any other is looked up in one table of
    library types: ``nn.SyncBatchNorm`` (also mmcv's ``SyncBN``) and
    mmcv's ``MMSyncBN`` are ``'syncbn'``, any other ``_BatchNorm`` (1-D,
    2-D, 3-D, mmengine's ``_BatchNormXd``) is ``'bn'``, ``nn.GroupNorm``
    is ``'gn'`` and ``nn.Conv2d`` (and its subclasses) is ``'conv'``.

    Args:
        module (nn.Module): Any module.

    Returns:
        LayerKind | None: Its role, name and summary.
    """
    own = getattr(type(module), 'layer_kind', None)
    if callable(own):
        return own(module)
    for cls, role, name, summary in _library_table():
        if isinstance(module, cls):
            return LayerKind(role, name, summary(module))
    return None


def inner_modules(module: nn.Module) -> Tuple[nn.Module, ...]:
    """The submodules that are part of ``module`` (its protocol's
    ``inner_modules()``; none for any other module).

    Args:
        module (nn.Module): Any module.

    Returns:
        tuple[nn.Module, ...]: E.g. ``(bcn.pbn, )`` for a BCN.
    """
    own = getattr(type(module), 'inner_modules', None)
    return tuple(own(module)) if callable(own) else ()


def named_layers(model: nn.Module) -> Iterator[NamedLayer]:
    """Every conv and norm layer of ``model``, once each.

    In the order of ``model.named_modules()`` (a shared layer once, under
    its first name). The inner modules of a layer (and what is under them)
    are part of it and are not yielded on their own.

    Args:
        model (nn.Module): Any module (itself included when a layer).

    Yields:
        tuple[str, nn.Module, LayerKind]: Qualified name, layer, kind.
    """
    inside: Set[int] = set()
    for name, module in model.named_modules():
        if id(module) in inside:
            inside.update(id(m) for m in module.modules())
            continue
        kind = layer_kind(module)
        if kind is None:
            continue
        for inner in inner_modules(module):
            inside.update(id(m) for m in inner.modules())
        yield name, module, kind
