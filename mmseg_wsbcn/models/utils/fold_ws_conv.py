# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Fold Weight Standardization into plain convs (the inference path)."""
from typing import Optional

import torch.nn as nn

from ..layers import layer_kind
from .module_tree import replace_modules

__all__ = ['fold_ws_conv']


def fold_ws_conv(model: nn.Module) -> nn.Module:
    """Replace every :class:`WSConv2d` in ``model`` by its plain conv.

    For inference or export: each WS conv (including subclasses) becomes
    the ``nn.Conv2d`` of :meth:`WSConv2d.to_conv2d`, so outputs are
    unchanged and no standardization runs at test time (in general: every
    conv layer whose layer protocol has an ``eval_form`` becomes that, see
    :mod:`~mmseg_wsbcn.models.layers.layer_kind`). The model is
    modified in place (recursively, through ``Sequential``, ``ModuleList``,
    ``ModuleDict`` and any other container) and returned; a WS conv that
    is shared by several parents is replaced by one shared plain conv.

    Args:
        model (nn.Module): Any module. If it is itself a :class:`WSConv2d`,
            it cannot be changed in place, so the new conv is returned.

    Returns:
        nn.Module: ``model`` with no :class:`WSConv2d` left, or the plain
        conv when ``model`` is a :class:`WSConv2d`.

    Example:
        >>> model = nn.Sequential(WSConv2d(3, 8, 3), nn.BatchNorm2d(8))
        >>> model = fold_ws_conv(model.eval())
        >>> type(model[0]).__name__
        'Conv2d'
    """
    return replace_modules(model, _plain_conv)


def _plain_conv(name: str, module: nn.Module) -> Optional[nn.Module]:
    """The eval form of a conv layer that has one (the layer protocol's
    ``eval_form``: a WS conv's plain conv), else ``None``."""
    kind = layer_kind(module)
    eval_form = getattr(type(module), 'eval_form', None)
    if kind is None or kind.role != 'conv' or eval_form is None:
        return None
    return eval_form(module)
