# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Compare a state dict with the keys and shapes it should have.

Pure functions, shared by the checkpoint check of the tools
(:class:`~mmseg_wsbcn.engine.hooks.CheckpointMatchHook`) and the converter
of the authors' backbones (:mod:`mmseg_wsbcn.models.utils.ckpt_convert`).
"""
import re
from collections import OrderedDict
from typing import (Callable, Iterable, List, Mapping, NamedTuple, Optional,
                    Sequence, Tuple)

import torch.nn as nn
from mmengine.model import BaseTTAModel, is_model_wrapper

#: Keys a checkpoint may lack without harm: MMEngine ignores them too (BN
#: layers of checkpoints from old PyTorch versions).
IGNORED_MISSING = ('num_batches_tracked', )

Shape = Tuple[int, ...]


class StateDictMismatch(NamedTuple):
    """What differs between a checkpoint's and a model's state dict.

    Attributes:
        missing (list[str]): Model keys the checkpoint lacks (model order).
        unexpected (list[str]): Checkpoint keys the model lacks
            (checkpoint order).
        mismatched (list[tuple]): ``(key, checkpoint_shape, model_shape)``
            for keys present in both with another shape.
        matched (int): Keys that load (in both, same shape).
    """
    missing: List[str]
    unexpected: List[str]
    mismatched: List[Tuple[str, Shape, Shape]]
    matched: int

    def __bool__(self) -> bool:
        """True when anything differs."""
        return bool(self.missing or self.unexpected or self.mismatched)

    def summary(self, first: int = 3) -> str:
        """One line: the counts and the first few keys of each kind, e.g.
        ``2 missing keys (a, b), 0 unexpected keys, 1 mis-shaped key (c:
        checkpoint (3,) vs model (4,))``."""

        def part(items: Sequence[str], what: str) -> str:
            text = f'{len(items)} {what}{"" if len(items) == 1 else "s"}'
            if items:
                shown = ', '.join(items[:first])
                more = ', ...' if len(items) > first else ''
                text += f' ({shown}{more})'
            return text

        shapes = [
            f'{key}: checkpoint {tuple(c)} vs model {tuple(m)}'
            for key, c, m in self.mismatched
        ]
        return ', '.join([
            part(self.missing, 'missing key'),
            part(self.unexpected, 'unexpected key'),
            part(shapes, 'mis-shaped key')
        ])


def _shape(value) -> Optional[Shape]:
    """The shape of a tensor, or ``value`` itself when it is a shape."""
    if isinstance(value, tuple):
        return value
    shape = getattr(value, 'shape', None)
    return None if shape is None else tuple(shape)


def compare_state_dicts(
    state_dict: Mapping,
    model_state_dict: Mapping,
    ignore_missing: Iterable[str] = IGNORED_MISSING,
    shape_ok: Optional[Callable[[str, Shape, Shape], bool]] = None
) -> StateDictMismatch:
    """Compare a checkpoint's state dict with ``model.state_dict()``.

    Pure: neither argument is changed.

    Args:
        state_dict (Mapping): The checkpoint's weights, keys already revised
            the way the loader will (see :func:`revise_keys`).
        model_state_dict (Mapping): ``model.state_dict()``, or the expected
            shapes (key -> tuple).
        ignore_missing (Iterable[str]): Missing keys ending with one of these
            names are not reported (as MMEngine's loader does for
            ``num_batches_tracked``).
        shape_ok (callable, optional): ``shape_ok(key, checkpoint_shape,
            model_shape)`` returns True for a shape difference the model's
            layer converts while loading.

    Returns:
        StateDictMismatch: What differs (false when everything matches).
    """
    ignore = tuple(ignore_missing)
    missing = [
        k for k in model_state_dict
        if k not in state_dict and k.split('.')[-1] not in ignore
    ]
    unexpected = [k for k in state_dict if k not in model_state_dict]
    mismatched, matched = [], 0
    for key, value in state_dict.items():
        if key not in model_state_dict:
            continue
        ckpt_shape = _shape(value)
        model_shape = _shape(model_state_dict[key])
        if ckpt_shape != model_shape and not (
                shape_ok is not None and ckpt_shape is not None and model_shape
                is not None and shape_ok(key, ckpt_shape, model_shape)):
            mismatched.append((key, ckpt_shape, model_shape))
        else:
            matched += 1
    return StateDictMismatch(missing, unexpected, mismatched, matched)


#: MMEngine's ``Runner.load_checkpoint`` strips this prefix (a checkpoint
#: saved from a DDP-wrapped model) before loading.
DEFAULT_REVISE_KEYS = ((r'^module\.', ''), )


def revise_keys(state_dict: Mapping,
                revisions: Iterable[Tuple[str, str]] = DEFAULT_REVISE_KEYS
                ) -> 'OrderedDict':
    """The state dict with its keys renamed as MMEngine's loader renames
    them (``(pattern, replacement)`` regular expressions, in order). The
    ``_metadata`` torch's ``load_state_dict`` reads (module versions) is
    kept."""
    revised = OrderedDict(state_dict)
    for pattern, replacement in revisions:
        revised = OrderedDict(
            (re.sub(pattern, replacement, k), v) for k, v in revised.items())
    metadata = getattr(state_dict, '_metadata', None)
    if metadata is not None:
        revised._metadata = metadata
    return revised


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model the weights load into: through DDP-like wrappers and TTA
    models (``SegTTAModel.module``), as MMEngine's loader does."""
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


ShapeCheck = Callable[[str, Shape, Shape], bool]


def layer_conversions(model: nn.Module) -> ShapeCheck:
    """``shape_ok`` for :func:`compare_state_dicts`: the shape differences
    the model's layers convert while loading.

    A layer that loads another shape of one of its tensors says so with
    ``accepts_checkpoint_shape(name, ckpt_shape, model_shape)`` (the layer
    protocol, :mod:`mmseg_wsbcn.models.layers.layer_kind`); e.g.
    :class:`~mmseg_wsbcn.models.layers.BCN` accepts its group affine
    (``weight``/``bias``, ``(G,)``) in the authors' ``(1, G, 1)`` form.
    """
    modules = dict(model.named_modules())

    def shape_ok(key: str, ckpt_shape: Shape, model_shape: Shape) -> bool:
        owner, _, name = key.rpartition('.')
        accepts = getattr(modules.get(owner), 'accepts_checkpoint_shape', None)
        return accepts is not None and accepts(name, ckpt_shape, model_shape)

    return shape_ok


def checkpoint_weights(checkpoint: Mapping) -> Mapping:
    """The state dict inside a loaded checkpoint (``checkpoint['state_dict']``
    or the checkpoint itself), as MMEngine reads it."""
    if 'state_dict' in checkpoint:
        return checkpoint['state_dict']
    return checkpoint


def compare_checkpoint(
    checkpoint: Mapping,
    model: nn.Module,
    revisions: Iterable[Tuple[str, str]] = DEFAULT_REVISE_KEYS
) -> StateDictMismatch:
    """Compare a loaded checkpoint with the model it is about to load into
    (unwrapped, keys revised, layer conversions accepted)."""
    model = unwrap_model(model)
    state_dict = revise_keys(checkpoint_weights(checkpoint), revisions)
    return compare_state_dicts(
        state_dict, model.state_dict(), shape_ok=layer_conversions(model))
