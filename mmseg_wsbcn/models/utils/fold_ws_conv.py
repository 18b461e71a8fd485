# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Fold Weight Standardization into plain convs (the inference path)."""
from typing import Dict, Tuple

import torch.nn as nn

from ..layers import WSConv2d

__all__ = ['fold_ws_conv']


def fold_ws_conv(model: nn.Module) -> nn.Module:
    """Replace every :class:`WSConv2d` in ``model`` by its plain conv.

    For inference or export: each WS conv (including subclasses) becomes
    the ``nn.Conv2d`` of :meth:`WSConv2d.to_conv2d`, so outputs are
    unchanged and no standardization runs at test time. The model is
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
    return _fold(model, {})


# id of a folded WS conv -> (that WS conv, its plain conv)
_FoldMemo = Dict[int, Tuple[nn.Module, nn.Conv2d]]


def _fold(module: nn.Module, memo: _FoldMemo) -> nn.Module:
    """Recursive worker of :func:`fold_ws_conv`; ``memo`` maps the id of
    each WS conv already folded to the pair (WS conv, plain conv)."""
    if isinstance(module, WSConv2d):
        if id(module) not in memo:
            # keep ``module`` alive so that its id cannot be reused
            memo[id(module)] = (module, module.to_conv2d())
        return memo[id(module)][1]
    # ``_modules`` rather than ``named_children()``, which skips a child
    # registered under a second name.
    for name, child in list(module._modules.items()):
        if child is None:
            continue
        new_child = _fold(child, memo)
        if new_child is not child:
            setattr(module, name, new_child)
    return module
