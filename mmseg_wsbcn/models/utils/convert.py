# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Turn an existing model into its WS + BCN form.

:func:`convert_model` walks any ``nn.Module`` (an mmseg segmentor or
backbone, a torchvision-style ResNet, ...) and swaps, in place:

- every ``nn.Conv2d`` for the conv of ``conv`` (default :class:`WSConv2d`),
  built by ``mmcv.cnn.build_conv_layer`` with the same hyper-parameters and
  holding the *same* weight and bias parameters;
- every 2-D BatchNorm (``nn.BatchNorm2d``, ``nn.SyncBatchNorm``, mmengine's
  ``_BatchNormXd``, mmcv's ``SyncBatchNorm``) and every ``nn.GroupNorm``
  for the norm of ``norm`` (default :class:`BCN` with 32 groups and
  estimated statistics), built by ``mmcv.cnn.build_norm_layer``.

What carries over. A BatchNorm's affine ``gamma, beta`` and its running
statistics mean the same thing in BCN's batch step, so they become
``pbn.weight``, ``pbn.bias``, ``pbn.running_mean``, ``pbn.running_var`` and
``pbn.num_batches_tracked`` (with ``estimate=True`` the running statistics
are the starting estimates ``mu_hat, var_hat``). Nothing of a GroupNorm maps
exactly: its affine is per channel, BCN's group affine per group, and BCN
has no per-channel affine after the group normalization; the new layer
starts from its defaults (the report says so). The whole model function
changes anyway, since BCN adds a channel step and WS re-parameterizes the
convs: a converted model is a starting point for fine-tuning, not an
equivalent network.

Which convs. WS belongs on convs that are followed by a norm layer, so the
final classifier conv stays plain (the README of the authors' code,
``joe-siyuan-qiao/WeightStandardization``: "only replace convolutional
layers that are followed by normalization layers"). Which conv feeds a
norm cannot be told in general from the module tree, so every
``nn.Conv2d`` is converted except those whose qualified name matches an
``exclude`` pattern. mmseg's classifier convs, ``conv_seg`` in every decode
head, are always excluded (:data:`DEFAULT_EXCLUDE`); exclude the others
(e.g. a plain conv that predicts outputs) yourself.

What is a conv and what is a norm is :func:`~mmseg_wsbcn.models.layers.
layer_kind`'s answer; the walk is :func:`.module_tree.replace_modules`
(after mmengine's ``revert_sync_batchnorm``, itself adapted from @kapily's
work, pytorch/pytorch#41081), shared with ``fold_ws_conv`` and the deploy
fold.
"""
import fnmatch
import inspect
import logging
from dataclasses import dataclass, field
from typing import (Any, Dict, List, Literal, Optional, Sequence, Tuple, Union,
                    overload)

import torch.nn as nn
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.logging import print_log
from mmengine.registry import MODELS

from ..layers import inner_modules, layer_kind, named_layers
from ..layers.layer_kind import BATCH_NORM_NAMES, LayerProtocol
from .module_tree import replace_modules

__all__ = ['DEFAULT_EXCLUDE', 'ConvertReport', 'convert_model']

#: Patterns always excluded: the classifier conv of mmseg's decode heads.
DEFAULT_EXCLUDE: Tuple[str, ...] = ('conv_seg', '*.conv_seg')

_REGISTERED_HINT = ("'WSConv2d' and 'BCN' are registered by "
                    '`import mmseg_wsbcn`')


@dataclass
class ConvertReport:
    """What :func:`convert_model` did.

    Attributes:
        converted (list[tuple[str, str, str]]): One ``(qualified name, old
            type, new type)`` per replaced module, e.g.
            ``('backbone.stem.0', 'Conv2d', 'WSConv2d')``. The model itself
            is named ``''``.
        skipped (list[tuple[str, str]]): ``(qualified name, reason)`` for
            the convs and norms left as they were (excluded by a pattern,
            already weight-standardized, not 2-D, ...). An excluded
            container stands for all the modules under it.
        notes (list[str]): What did not carry over, e.g. a GroupNorm's
            affine or a differing ``eps``.
    """

    converted: List[Tuple[str, str, str]] = field(default_factory=list)
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def counts(self) -> Dict[Tuple[str, str], int]:
        """Count the replacements by ``(old type, new type)``.

        Returns:
            dict[tuple[str, str], int]: E.g.
            ``{('Conv2d', 'WSConv2d'): 20, ('BatchNorm2d', 'BCN'): 20}``,
            in order of first appearance.
        """
        counts: Dict[Tuple[str, str], int] = {}
        for _, old, new in self.converted:
            counts[(old, new)] = counts.get((old, new), 0) + 1
        return counts

    def __str__(self) -> str:
        """One-line summary, e.g. ``convert_model: 20 Conv2d -> WSConv2d,
        20 BatchNorm2d -> BCN, skipped: decode_head.conv_seg``."""
        parts = [
            f'{n} {old} -> {new}' for (old, new), n in self.counts().items()
        ] or ['nothing converted']
        text = 'convert_model: ' + ', '.join(parts)
        if self.skipped:
            text += ', skipped: ' + ', '.join(
                name if reason == 'excluded' else f'{name} ({reason})'
                for name, reason in self.skipped)
        if self.notes:
            text += '; notes: ' + '; '.join(self.notes)
        return text


@overload
def convert_model(model: nn.Module,
                  conv: Optional[dict] = ...,
                  norm: Optional[dict] = ...,
                  exclude: Sequence[str] = ...,
                  logger: Union[str, logging.Logger, None] = ...,
                  return_report: Literal[False] = ...) -> nn.Module:
    ...


@overload
def convert_model(model: nn.Module,
                  conv: Optional[dict] = ...,
                  norm: Optional[dict] = ...,
                  exclude: Sequence[str] = ...,
                  logger: Union[str, logging.Logger, None] = ...,
                  *,
                  return_report: Literal[True]
                  ) -> Tuple[nn.Module, ConvertReport]:
    ...


def convert_model(
    model: nn.Module,
    conv: Optional[dict] = dict(type='WSConv2d'),
    norm: Optional[dict] = dict(type='BCN', num_groups=32, estimate=True),
    exclude: Sequence[str] = (),
    logger: Union[str, logging.Logger, None] = 'current',
    return_report: bool = False
) -> Union[nn.Module, Tuple[nn.Module, ConvertReport]]:
    """Convert the convs and norms of ``model`` to WS + BCN, in place.

    See the module docstring for what is converted and what carries over.
    In short, for each module (by qualified name, depth first):

    1. If the name matches a pattern of :data:`DEFAULT_EXCLUDE` or
       ``exclude`` (``fnmatch`` on the dotted name, case-sensitive, where
       ``*`` also matches dots), the module and everything under it stay.
    2. A norm layer of this toolkit (:class:`BCN`, also a ``GroupNorm``:
       any norm implementing the layer protocol), an instance of the
       target conv/norm class, and an already weight-standardized conv
       (:class:`WSConv2d`, mmcv's ``ConvWS2d``/``ConvAWS2d``) stay.
    3. An ``nn.Conv2d`` (or subclass) becomes the ``conv`` layer: same in/
       out channels, kernel size, stride, padding, dilation, groups, bias
       or not, padding mode, device and dtype; its ``weight`` and ``bias``
       parameters are reused (not copied), so they are bit-exact and tied
       weights stay tied.
    4. A 2-D BatchNorm or a ``GroupNorm`` becomes the ``norm`` layer with
       the same channel count. From a BatchNorm, ``weight``, ``bias``,
       ``running_mean``, ``running_var`` and ``num_batches_tracked`` are
       reused by the new layer's batch step (the first BatchNorm among its
       ``inner_modules()``: ``pbn`` of :class:`BCN`; or the layer itself
       when the target is a BatchNorm). ``BatchNorm1d``/
       ``3d`` are skipped (BCN is 2-D only).

    The new modules take the old ones' train/eval mode (``norm_eval``
    keeps working) and, unless ``norm`` sets ``requires_grad``, a norm
    whose parameters were all frozen gives a frozen layer. ``eps`` and
    ``momentum`` come from ``norm`` (with mmcv's default ``eps=1e-5``), not
    from the old layer; a difference is listed in the report's notes.
    Hooks on replaced modules are not carried over. A module registered
    under several names is converted once and stays shared (its first name
    decides exclusion).

    The conversion is atomic: every new module is built before the first
    one is put in place, so on an error the model is unchanged. Convert
    before building the optimizer and before wrapping the model (DDP):
    the new layers have new parameters (BCN's group affine) and the
    state-dict keys of a BatchNorm move under ``pbn.``.

    Args:
        model (nn.Module): The model. It is modified in place.
        conv (dict, optional): Config of the new convs, for
            ``mmcv.cnn.build_conv_layer``; ``None`` leaves the convs alone.
            Defaults to ``dict(type='WSConv2d')``.
        norm (dict, optional): Config of the new norms, for
            ``mmcv.cnn.build_norm_layer``; ``None`` leaves the norms alone.
            Defaults to ``dict(type='BCN', num_groups=32, estimate=True)``.
        exclude (Sequence[str]): Extra ``fnmatch`` patterns of qualified
            module names to leave as they are, e.g. ``('*.conv_seg',
            'fc', 'backbone.stem*')``. :data:`DEFAULT_EXCLUDE` always
            applies. Defaults to ``()``.
        logger (str | logging.Logger, optional): Where
            ``mmengine.logging.print_log`` writes the one-line summary:
            ``'current'`` (default), ``'silent'``, a logger or its name,
            ``None`` for ``print``.
        return_report (bool): Also return the :class:`ConvertReport`.
            Defaults to False.

    Returns:
        nn.Module | tuple[nn.Module, ConvertReport]: ``model``, or its
        replacement when ``model`` itself is a conv or a norm; with
        ``return_report=True``, the pair ``(model, report)``.

    Raises:
        TypeError: If ``model`` is not an ``nn.Module``, ``conv``/``norm``
            is not a dict (or ``None``) or an ``exclude`` entry is not a
            string.
        KeyError: If ``conv``/``norm`` has no ``'type'``, or its type is
            not registered in MMEngine's ``MODELS``.
        ValueError: If a new layer cannot be built for some module (e.g.
            a channel count that ``num_groups`` does not divide); the
            message names the module.

    Example:
        >>> import mmseg_wsbcn  # registers WSConv2d and BCN
        >>> from mmseg_wsbcn.models.utils import convert_model
        >>> model = nn.Sequential(
        ...     nn.Conv2d(3, 64, 3, bias=False), nn.BatchNorm2d(64))
        >>> model, report = convert_model(
        ...     model, logger='silent', return_report=True)
        >>> [type(m).__name__ for m in model]
        ['WSConv2d', 'BCN']
        >>> str(report)
        'convert_model: 1 Conv2d -> WSConv2d, 1 BatchNorm2d -> BCN'
    """
    if not isinstance(model, nn.Module):
        raise TypeError('convert_model: model must be an nn.Module, got '
                        f'{type(model).__name__}')
    patterns = tuple(DEFAULT_EXCLUDE) + _check_patterns(exclude)
    conv_cls = None if conv is None else _resolve_type(conv, 'conv')
    norm_cls = None if norm is None else _resolve_type(norm, 'norm')
    converter = _Converter(conv, conv_cls, norm, norm_cls, patterns)

    # replace_modules builds every replacement before it puts the first in
    # place, so that errors change nothing
    new_root = replace_modules(model, converter.visit)

    report = converter.report
    print_log(str(report), logger=logger, level=logging.INFO)
    if return_report:
        return new_root, report
    return new_root


def _check_patterns(exclude: Sequence[str]) -> Tuple[str, ...]:
    """Return ``exclude`` as a tuple of strings or raise ``TypeError``."""
    if isinstance(exclude, str):
        exclude = (exclude, )
    patterns = tuple(exclude)
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError('convert_model: exclude must be a sequence of '
                            f'str patterns, got {pattern!r}')
    return patterns


def _resolve_type(cfg: Any, kind: str) -> type:
    """Return the class a conv/norm config names, with clear errors.

    The lookup mirrors mmcv's builders: a class is taken as is, a string
    is looked up in the current scope's ``MODELS`` and then in MMEngine's
    root registry.
    """
    if not isinstance(cfg, dict):
        raise TypeError(f'convert_model: {kind} must be a dict config or '
                        f'None, got {cfg!r}')
    if 'type' not in cfg:
        raise KeyError(f'convert_model: the {kind} config {cfg!r} has no '
                       "'type' key")
    layer_type = cfg['type']
    if inspect.isclass(layer_type):
        return layer_type
    cls = None
    if isinstance(layer_type, str):
        try:
            with MODELS.switch_scope_and_registry(None) as registry:
                cls = registry.get(layer_type)
        except Exception:  # e.g. a malformed 'scope.Name' key
            cls = None
    if cls is None:
        raise KeyError(f'convert_model: {kind} type {layer_type!r} is not '
                       "registered in MMEngine's MODELS registry; register "
                       'it (or import the package that does) or fix the '
                       f'name. {_REGISTERED_HINT}.')
    return cls


def _mmcv_ws_conv_types() -> Tuple[type, ...]:
    """mmcv's conv classes that already standardize their weight (their
    kind is a plain ``'conv'``; the toolkit's are ``'ws_conv'``)."""
    try:
        from mmcv.cnn.bricks.conv_ws import ConvAWS2d, ConvWS2d
    except ImportError:
        return ()
    return (ConvWS2d, ConvAWS2d)


def _batch_norm_of(layer: nn.Module) -> Optional[nn.Module]:
    """Where a layer keeps BatchNorm weights and statistics: the layer
    itself when it is a BatchNorm, else the first BatchNorm among its
    :func:`~mmseg_wsbcn.models.layers.inner_modules` (BCN's ``pbn``)."""
    for module in (layer, ) + inner_modules(layer):
        kind = layer_kind(module)
        if kind is not None and kind.name in BATCH_NORM_NAMES:
            return module
    return None


def _accepts(cls: type, name: str) -> bool:
    """Whether ``cls(...)`` takes a keyword argument ``name``."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD
                                 for p in params.values())


def _all_frozen(module: nn.Module) -> bool:
    """Whether ``module`` has parameters and none requires grad."""
    params = list(module.parameters(recurse=False))
    return bool(params) and not any(p.requires_grad for p in params)


class _Converter:
    """Plans the replacements of :func:`convert_model`.

    :meth:`visit` is the ``fn`` of :func:`.module_tree.replace_modules`: it
    builds the new modules and records in :attr:`report` what it did; it
    does not touch the model.
    """

    def __init__(self, conv_cfg: Optional[dict], conv_cls: Optional[type],
                 norm_cfg: Optional[dict], norm_cls: Optional[type],
                 patterns: Tuple[str, ...]) -> None:
        self.conv_cfg = conv_cfg
        self.conv_cls = conv_cls
        self.norm_cfg = norm_cfg
        self.norm_cls = norm_cls
        self.patterns = patterns
        self.mmcv_ws_types = _mmcv_ws_conv_types()
        self.report = ConvertReport()

    # -- walking -------------------------------------------------------
    def visit(self, name: str, module: nn.Module) -> Optional[nn.Module]:
        """What ``module`` (named ``name``) becomes: a new layer, itself
        (kept, not looked into) or ``None`` (look into its children)."""
        kind = self._kind(module)
        if self._excluded(name):
            if kind is not None or self._has_target(module):
                self.report.skipped.append((name, 'excluded'))
            return module
        if kind == 'conv':
            return self._convert_conv(module, name)
        if kind == 'norm':
            return self._convert_norm(module, name)
        if kind is not None:  # a layer that stays, with the reason
            if kind:
                self.report.skipped.append((name, kind))
            return module
        return None

    def _excluded(self, name: str) -> bool:
        return any(
            fnmatch.fnmatchcase(name, pattern) for pattern in self.patterns)

    def _kind(self, module: nn.Module) -> Optional[str]:
        """Classify ``module``.

        Returns ``'conv'``/``'norm'`` for a module to convert, ``''`` for
        a leaf to keep silently (already the target, a disabled kind),
        another string (the reason) for a leaf to keep and report, and
        ``None`` for anything else (recurse into it).
        """
        kind = layer_kind(module)
        if kind is None:
            return None
        if kind.role == 'conv':
            if self.conv_cls is None or isinstance(module, self.conv_cls):
                return ''
            if kind.name == 'ws_conv' or isinstance(module,
                                                    self.mmcv_ws_types):
                return ('already weight-standardized '
                        f'{type(module).__name__}')
            return 'conv'
        # the toolkit's own norms stay (BCN: also a GroupNorm, holding a
        # BatchNorm2d)
        if (self.norm_cls is None or isinstance(module, self.norm_cls)
                or isinstance(module, LayerProtocol)):
            return ''
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm3d)):
            return f'{type(module).__name__} is not 2-D'
        return 'norm'

    def _has_target(self, module: nn.Module) -> bool:
        """Whether ``module`` or a descendant would have been converted."""
        return any(
            self._kind(layer) in ('conv', 'norm')
            for _, layer, _ in named_layers(module))

    # -- building ------------------------------------------------------
    def _convert_conv(self, old: nn.Conv2d, name: str) -> nn.Module:
        weight = old.weight
        if nn.parameter.is_lazy(weight):
            raise ValueError(f'convert_model: {name or "the model"} '
                             f'({type(old).__name__}) is lazy; run a '
                             'forward pass to initialize it first')
        cls = self.conv_cls
        kwargs: Dict[str, Any] = dict(
            stride=old.stride,
            padding=old.padding,
            dilation=old.dilation,
            groups=old.groups,
            bias=old.bias is not None)
        if old.padding_mode != 'zeros':
            kwargs['padding_mode'] = old.padding_mode
        for key, value in (('device', weight.device), ('dtype', weight.dtype)):
            if _accepts(cls, key):
                kwargs[key] = value
        try:
            new = build_conv_layer(self.conv_cfg, old.in_channels,
                                   old.out_channels, old.kernel_size, **kwargs)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f'convert_model: cannot convert {name or "the model"} '
                f'({old}) to {cls.__name__}: {e}') from e
        new.to(device=weight.device, dtype=weight.dtype)
        self._reuse(new, old, ('weight', 'bias'), name)
        new.train(old.training)
        self.report.converted.append(
            (name, type(old).__name__, type(new).__name__))
        return new

    def _convert_norm(self, old: nn.Module, name: str) -> nn.Module:
        is_bn = layer_kind(old).name in BATCH_NORM_NAMES
        channels = old.num_features if is_bn else old.num_channels
        cls = self.norm_cls
        cfg = dict(self.norm_cfg)
        ref = old.weight if getattr(old, 'weight', None) is not None else (
            getattr(old, 'running_mean', None))
        if ref is not None:
            for key, value in (('device', ref.device), ('dtype', ref.dtype)):
                if key not in cfg and _accepts(cls, key):
                    cfg[key] = value
        try:
            new = build_norm_layer(cfg, channels)[1]
        except (TypeError, ValueError) as e:
            raise ValueError(
                f'convert_model: cannot convert {name or "the model"} '
                f'({type(old).__name__}, {channels} channels) to '
                f'{cls.__name__}: {e}') from e
        if ref is not None:
            new.to(device=ref.device, dtype=ref.dtype)
        old_type, new_type = type(old).__name__, type(new).__name__
        label = f'{name or "the model"} ({old_type} -> {new_type})'

        target = _batch_norm_of(new)  # BCN: its batch step ``pbn``
        if is_bn and target is not None:
            names = ('weight', 'bias') if old.affine else ()
            if old.track_running_stats:
                names += ('running_mean', 'running_var', 'num_batches_tracked')
            else:
                self.report.notes.append(
                    f'{label}: no running statistics to carry over')
            self._reuse(target, old, names, name)
        else:
            self.report.notes.append(f'{label}: no weights carried over')
        for attr in ('eps', 'momentum'):
            old_value = getattr(old, attr, None)
            new_value = getattr(new, attr, None)
            if (old_value is not None and new_value is not None
                    and old_value != new_value):
                self.report.notes.append(
                    f'{label}: {attr} {old_value} -> {new_value}')
        if 'requires_grad' not in self.norm_cfg and _all_frozen(old):
            new.requires_grad_(False)
        new.train(old.training)  # BCN: also sets ``pbn``, its real switch
        self.report.converted.append((name, old_type, new_type))
        return new

    @staticmethod
    def _reuse(new: nn.Module, old: nn.Module, names: Sequence[str],
               name: str) -> None:
        """Put ``old``'s parameters/buffers ``names`` into ``new``.

        The tensors themselves are reused; a shape mismatch (a conv class
        whose weight is laid out differently) raises ``ValueError``.
        """
        for attr in names:
            value = getattr(old, attr, None)
            if value is None:
                continue
            current = getattr(new, attr, None)
            if current is None or current.shape != value.shape:
                shape = None if current is None else tuple(current.shape)
                raise ValueError(
                    f'convert_model: cannot carry {name or "the model"}.'
                    f'{attr} of shape {tuple(value.shape)} over to '
                    f'{type(new).__name__}, whose {attr} is {shape}')
            # a Parameter replaces the parameter, a tensor the buffer
            setattr(new, attr, value)
