# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Check what a config asks MMEngine to build, before it builds anything.

A mistake in a config otherwise ends in a traceback from deep inside the
build that names neither the key nor what is allowed: mmcv's
``KeyError: 'Cannot find None in registry under scope name mmseg'`` for
``norm_cfg.type=BCNN``, mmseg's ``KeyError: 'invalid depth 51 for
resnet'``, a ``ValueError`` of a layer for ``conv_cfg.mode=vra``. The
functions here walk the config and raise
:class:`~mmseg_wsbcn.utils.errors.ToolError`, one line naming the config key,
the bad value and what is allowed, closest match first:

- the ``type`` of the model and of its parts (``backbone``, ``neck``,
  ``decode_head``, ``auxiliary_head``, ``loss_decode``,
  ``data_preprocessor``, a TTA model's ``module``) must be registered in
  ``MODELS``; the ``type`` of every ``norm_cfg`` / ``conv_cfg`` / ``dcn``
  in the model must be a registered layer, and the names listed are those
  of the norm (or conv) layers;
- argument values with a known domain: ``depth`` of a class with an
  ``arch_settings`` dict (mmseg's and mmdet's ``ResNet`` family), and the
  arguments a registered class lists in its ``argument_choices`` mapping
  (``WSConv2d``'s ``mode``, ``BCN``'s ``impl``);
- the ``type`` of each dataset a tool builds (wrappers included) in
  ``DATASETS``, and of each step of its ``pipeline`` in ``TRANSFORMS``.

Names are resolved exactly as the build resolves them: in the registry of
the config's ``default_scope`` (e.g. ``mmseg``), then its parents (the
toolkit's layers are in MMEngine's root registry), or in the scope a name
carries (``mmdet.ResNet``). Only names the build could not resolve, and
values the class itself would refuse, are reported: a config that builds
is never refused.
"""
import difflib
import numbers
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Optional,
                    Tuple)

import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import DATASETS, MODELS, TRANSFORMS, Registry
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.instancenorm import _InstanceNorm

from ..models.layers.layer_kind import LayerProtocol
from ..utils.errors import ToolError
from .config import iter_dataset_cfgs, loader_names

#: The parts of a model config (values: a config dict or a list of them)
#: that mmseg builds from ``MODELS``.
MODEL_PARTS = ('backbone', 'neck', 'decode_head', 'auxiliary_head',
               'loss_decode', 'data_preprocessor', 'module')
#: Config keys whose ``type`` names a norm layer (``build_norm_layer``).
NORM_KEYS = ('norm_cfg', )
#: Config keys whose ``type`` names a conv layer (``build_conv_layer``).
CONV_KEYS = ('conv_cfg', 'dcn')
#: At most this many names of a whole registry (models, datasets,
#: transforms) are listed in a message; norm and conv layers are all listed.
MAX_LISTED = 16

# (path, the config dict)
_Node = Tuple[str, dict]
# whether a registered object is of a kind (a norm layer, a conv layer)
_IsKind = Callable[[Any], bool]


def closest_first(value: Any, allowed: Iterable[Any]) -> List[Any]:
    """``allowed`` sorted by similarity to ``value``, the closest first.

    Numbers are compared by their distance, anything else by
    :class:`difflib.SequenceMatcher`'s ratio of the lower-case texts;
    ties keep the order of ``sorted(allowed)``.

    Args:
        value: The bad value, e.g. ``'BCNN'`` or ``51``.
        allowed (Iterable): The allowed values.

    Returns:
        list: E.g. ``['BCN', 'BN', ...]`` for ``'BCNN'``, ``[50, 34, 18,
        101, 152]`` for ``51`` among ResNet's depths.

    Example:
        >>> closest_first('BCNN', ['GN', 'BN', 'BCN'])
        ['BCN', 'BN', 'GN']
    """
    allowed = sorted(allowed, key=str)

    def is_number(v: Any) -> bool:
        return isinstance(v, numbers.Real) and not isinstance(v, bool)

    if is_number(value) and all(is_number(a) for a in allowed):
        return sorted(allowed, key=lambda a: abs(a - value))
    text = str(value).lower()
    return sorted(
        allowed,
        key=lambda a: -difflib.SequenceMatcher(None, text,
                                               str(a).lower()).ratio())


def _listing(value: Any,
             allowed: Iterable[Any],
             limit: Optional[int] = None) -> str:
    """``"'BCN', 'BN', ... (3 more)"``: the allowed values, closest
    first, all of them or at most ``limit``."""
    ranked = closest_first(value, allowed)
    if limit is None or len(ranked) <= limit:
        return ', '.join(repr(a) for a in ranked)
    return ', '.join(repr(a) for a in ranked[:limit]) + \
        f', ... ({len(ranked) - limit} more)'


def scope_registry(root: Registry, scope: Optional[str]) -> Registry:
    """The registry of ``scope`` under the root registry ``root`` (e.g.
    mmseg's ``MODELS`` for ``'mmseg'``), or ``root`` when there is none.

    The scope's package registers its registries when its ``registry``
    module is imported, as MMEngine's ``Registry.switch_scope_and_registry``
    does (this function changes no default scope).
    """
    if scope and scope != root.scope:
        try:
            __import__(f'{scope}.registry')
        except ImportError:
            return root
        pending = list(root.children.values())
        while pending:
            registry = pending.pop(0)
            if registry.scope == scope:
                return registry
            pending += list(registry.children.values())
    return root


def _resolve(registry: Registry, name: Any) -> Optional[type]:
    """What the build gets for ``type=name`` from ``registry``: a class
    (or function) as it is, a registered name looked up, ``None`` when the
    name is not registered."""
    if not isinstance(name, str):
        return name
    return registry.get(name)


def registered(registry: Registry) -> Dict[str, Any]:
    """Every name a ``type`` without a scope resolves to in ``registry``:
    its own and its parents' (the nearest wins, as in ``Registry.get``).
    """
    registry.import_from_location()
    found: Dict[str, Any] = {}
    while registry is not None:
        for name, obj in registry.module_dict.items():
            found.setdefault(name, obj)
        registry = registry.parent
    return found


def _norm_types() -> Tuple[type, ...]:
    """The base classes of the norm layers (those of mmcv's ``is_norm``,
    and mmcv's ``SyncBatchNorm``)."""
    types = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)
    try:
        from mmcv.ops import SyncBatchNorm
    except Exception:  # mmcv without its compiled ops
        return types
    return types + (SyncBatchNorm, )


def _conv_types() -> Tuple[type, ...]:
    """The base classes of the conv layers (mmcv's deformable convs are
    plain modules)."""
    types: Tuple[type, ...] = (_ConvNd, )
    try:
        from mmcv.ops import DeformConv2d, ModulatedDeformConv2d
    except Exception:  # mmcv without its compiled ops
        return types
    return types + (DeformConv2d, ModulatedDeformConv2d)


def _is_norm(obj: Any) -> bool:
    """Whether a registered object is a norm layer class: a library norm
    (:func:`_norm_types`), or a class of the layer protocol
    (:class:`~mmseg_wsbcn.models.layers.layer_kind.LayerProtocol`, whose
    roles are conv and norm) that is no conv."""
    if not isinstance(obj, type):
        return False
    if issubclass(obj, _norm_types()):
        return True
    return issubclass(obj, LayerProtocol) and not _is_conv(obj)


def _is_conv(obj: Any) -> bool:
    """Whether a registered object is a conv layer class."""
    return isinstance(obj, type) and issubclass(obj, _conv_types())


def _names_of_kind(registry: Registry, is_kind: _IsKind) -> List[str]:
    """The names in ``registry`` (and its parents) of the classes that
    ``is_kind``."""
    return [name for name, obj in registered(registry).items() if is_kind(obj)]


def _unknown_type(path: str,
                  name: Any,
                  what: str,
                  allowed: Iterable[str],
                  limit: Optional[int] = MAX_LISTED) -> str:
    """``<path>.type='X' is not a registered <what>; the registered
    <what>s, closest first: ...`` (at most ``limit`` of them)."""
    return (f'{path}.type={name!r} is not a registered {what}; the '
            f'registered {what}s, closest first: '
            f'{_listing(name, allowed, limit)}')


def _invalid_argument(path: str, arg: str, value: Any, cls: type,
                      allowed: Iterable[Any]) -> str:
    """``<path>.<arg>=V is not a valid <arg> of <class>; the valid
    <arg>s, closest first: ...``."""
    return (f'{path}.{arg}={value!r} is not a valid {arg} of '
            f'{cls.__name__}; the valid {arg}s, closest first: '
            f'{_listing(value, allowed)}')


def _check_arguments(path: str, cfg: dict, cls: Any) -> Optional[str]:
    """The problem with the arguments of ``cls`` that ``cfg`` sets, if any:
    a ``depth`` outside ``cls.arch_settings``, or a value outside
    ``cls.argument_choices``."""
    if not isinstance(cls, type):
        return None
    arch = getattr(cls, 'arch_settings', None)
    if isinstance(arch, dict) and 'depth' in cfg and \
            not _is_one_of(cfg['depth'], arch):
        return _invalid_argument(path, 'depth', cfg['depth'], cls, arch)
    choices = getattr(cls, 'argument_choices', None)
    for arg, allowed in (choices or {}).items():
        if arg in cfg and not _is_one_of(cfg[arg], allowed):
            return _invalid_argument(path, arg, cfg[arg], cls, allowed)
    return None


def _is_one_of(value: Any, allowed: Iterable[Any]) -> bool:
    """``value in allowed``; ``False`` for a value that cannot be looked
    up (e.g. a list among dict keys)."""
    try:
        return value in allowed
    except TypeError:
        return False


def _dicts(node: Any, path: str) -> Iterator[_Node]:
    """``(path, dict)`` for every dict in a config subtree, parents first,
    in the config's order (list items as ``path.<index>``, the form
    ``--cfg-options`` takes)."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _dicts(value, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _dicts(value, f'{path}.{i}')


def _items(value: Any, path: str) -> Iterator[_Node]:
    """A part's config, or each config of a list of them."""
    if isinstance(value, dict):
        yield path, value
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            if isinstance(item, dict):
                yield f'{path}.{i}', item


def _model_parts(model: dict, path: str) -> Iterator[_Node]:
    """The model config and each of its :data:`MODEL_PARTS`, recursively
    (a TTA model's ``module`` is a model)."""
    yield path, model
    for key in MODEL_PARTS:
        for sub_path, sub in _items(model.get(key), f'{path}.{key}'):
            yield from _model_parts(sub, sub_path)


def _scope(cfg: Config, scope: Optional[str]) -> str:
    """``scope``, else the config's ``default_scope``, else
    ``'mmengine'`` (what MMEngine's ``Runner`` uses then)."""
    return scope or cfg.get('default_scope') or 'mmengine'


def model_config_problem(cfg: Config,
                         scope: Optional[str] = None) -> Optional[str]:
    """The first mistake in ``cfg.model`` that the build would stop on.

    Args:
        cfg (Config): The tool's config.
        scope (str, optional): The scope the build resolves names in.
            Defaults to the config's ``default_scope``, else
            ``'mmengine'``.

    Returns:
        str | None: One line naming the config key, the bad value and what
        is allowed, closest first; ``None`` when nothing is found.
    """
    model = cfg.get('model')
    if not isinstance(model, dict):
        return None
    registry = scope_registry(MODELS, _scope(cfg, scope))
    # the model and its parts first: a bad backbone type or depth is
    # reported before the layers inside it
    for path, part in _model_parts(model, 'model'):
        if 'type' not in part:
            continue
        cls = _resolve(registry, part['type'])
        if cls is None:
            return _unknown_type(path, part['type'], 'model',
                                 registered(registry))
        problem = _check_arguments(path, part, cls)
        if problem:
            return problem
    for path, node in _dicts(model, 'model'):
        for key, value in node.items():
            if key in NORM_KEYS:
                what, is_kind = 'norm layer', _is_norm
            elif key in CONV_KEYS:
                what, is_kind = 'conv layer', _is_conv
            else:
                continue
            if not isinstance(value, dict) or 'type' not in value:
                continue
            layer_path = f'{path}.{key}'
            cls = _resolve(registry, value['type'])
            if cls is None:
                return _unknown_type(
                    layer_path,
                    value['type'],
                    what,
                    _names_of_kind(registry, is_kind),
                    limit=None)
            problem = _check_arguments(layer_path, value, cls)
            if problem:
                return problem
    return None


def dataset_config_problem(dataset_cfg: dict, where: str,
                           scope: Optional[str]) -> Optional[str]:
    """The first unregistered dataset or transform type in a dataloader's
    ``dataset`` config (datasets wrapped in ``ConcatDataset`` /
    ``RepeatDataset`` included).

    Args:
        dataset_cfg (dict): E.g. ``cfg.train_dataloader.dataset``.
        where (str): Its key, e.g. ``'train_dataloader.dataset'``.
        scope (str, optional): The scope the build resolves names in
            (``None``: MMEngine's root registries).

    Returns:
        str | None: One line naming the key, the bad type and the
        registered names, closest first; ``None`` when all are registered.
    """
    datasets = scope_registry(DATASETS, scope)
    transforms = scope_registry(TRANSFORMS, scope)
    for path, ds in iter_dataset_cfgs(dataset_cfg, where):
        if 'type' in ds and _resolve(datasets, ds['type']) is None:
            return _unknown_type(path, ds['type'], 'dataset',
                                 registered(datasets))
        pipeline = ds.get('pipeline')
        for step_path, step in _items(pipeline, f'{path}.pipeline'):
            if 'type' in step and _resolve(transforms, step['type']) is None:
                return _unknown_type(step_path, step['type'], 'transform',
                                     registered(transforms))
    return None


def check_build_config(cfg: Config,
                       mode: str,
                       scope: Optional[str] = None) -> None:
    """Raise :class:`ToolError` for the first mistake the build of ``mode``
    would stop on: in the model, then in the datasets the mode builds.

    Args:
        cfg (Config): The config, as the tool will build it.
        mode (str): ``'train'`` (the model, the train and val datasets),
            ``'test'`` (the model, the test dataset) or ``'model'`` (the
            model only).
        scope (str, optional): The scope the build resolves names in.
            Defaults to the config's ``default_scope``, else
            ``'mmengine'`` (as MMEngine's ``Runner``); mmseg's
            ``init_model`` falls back to ``'mmseg'``.

    Raises:
        ToolError: E.g. ``cannot build the model:
            model.backbone.norm_cfg.type='BCNN' is not a registered norm
            layer; the registered norm layers, closest first: 'BCN', ...``.
    """
    problem = model_config_problem(cfg, scope)
    if problem:
        raise ToolError(f'cannot build the model: {problem}')
    if mode == 'model':
        return
    for loader in loader_names(cfg, mode):
        check_dataset_config(cfg, loader, scope)


def check_dataset_config(cfg: Config,
                         loader: str,
                         scope: Optional[str] = None) -> None:
    """Raise :class:`ToolError` for the first unregistered dataset or
    transform type in ``cfg[loader].dataset``
    (:func:`dataset_config_problem`).

    Args:
        cfg (Config): The config.
        loader (str): E.g. ``'train_dataloader'``.
        scope (str, optional): As for :func:`check_build_config`.

    Raises:
        ToolError: E.g. ``cannot build the dataset:
            train_dataloader.dataset.pipeline.2.type='RandomResise' is not
            a registered transform; ...``.
    """
    problem = dataset_config_problem(cfg[loader].get('dataset'),
                                     f'{loader}.dataset', _scope(cfg, scope))
    if problem:
        raise ToolError(f'cannot build the dataset: {problem}')
