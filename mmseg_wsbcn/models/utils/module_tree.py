# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Replace modules in a module tree: the one rewriter of the toolkit."""
from typing import Callable, Dict, List, Optional, Tuple

import torch.nn as nn

__all__ = ['ReplaceFn', 'replace_modules', 'set_submodule']

#: ``fn(qualified name, module)`` -> a replacement, ``module`` itself to
#: keep it as it is (and not look inside), or ``None`` to recurse into it.
ReplaceFn = Callable[[str, nn.Module], Optional[nn.Module]]


def replace_modules(model: nn.Module, fn: ReplaceFn) -> nn.Module:
    """Replace modules of ``model`` by what ``fn`` returns, in place.

    Depth first, parents before children: ``fn(name, module)`` is called
    with each module's qualified name (``''`` for ``model``) and returns a
    replacement (its subtree is not visited), ``module`` itself (kept,
    subtree not visited) or ``None`` (kept, its children are visited).
    A module registered under several names (or parents) is seen once,
    under its first name, and its one result is put in every place, so
    shared modules stay shared. Children are read from ``_modules``, which
    also holds a child registered under a second name.

    The rewrite is atomic: ``fn`` is called for every module it reaches
    before the first replacement is put in place, so when ``fn`` raises,
    ``model`` is unchanged.

    Args:
        model (nn.Module): The root module, modified in place.
        fn (ReplaceFn): What each module becomes (see above).

    Returns:
        nn.Module: ``model``, or ``fn('', model)`` when that replaces it.

    Example:
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
        >>> model = replace_modules(
        ...     model, lambda name, m: nn.GELU()
        ...     if isinstance(m, nn.ReLU) else None)
        >>> type(model[1]).__name__
        'GELU'
    """
    # id -> (module, result); holding the module keeps its id unique
    memo: Dict[int, Tuple[nn.Module, nn.Module]] = {}
    swaps: List[Tuple[nn.Module, str, nn.Module]] = []

    def visit(module: nn.Module, name: str) -> nn.Module:
        if id(module) in memo:
            return memo[id(module)][1]
        result = fn(name, module)
        if result is None:
            result = module
            for child_name, child in list(module._modules.items()):
                if child is None:
                    continue
                qualified = f'{name}.{child_name}' if name else child_name
                new_child = visit(child, qualified)
                if new_child is not child:
                    swaps.append((module, child_name, new_child))
        memo[id(module)] = (module, result)
        return result

    root = visit(model, '')
    for parent, child_name, new_child in swaps:
        set_submodule(parent, child_name, new_child)
    return root


def set_submodule(model: nn.Module, qualified: str, new: nn.Module) -> None:
    """Put ``new`` at the dotted name ``qualified`` of ``model``.

    Args:
        model (nn.Module): The root module.
        qualified (str): E.g. ``'backbone.layer1.0.bn1'``; its parent must
            exist.
        new (nn.Module): The module to put there.

    Raises:
        ValueError: If ``qualified`` is empty (the root cannot be set).
        AttributeError: If the parent does not exist.
    """
    if not qualified:
        raise ValueError('set_submodule: the root module cannot be replaced '
                         'in place')
    parent_name, _, attr = qualified.rpartition('.')
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)
