# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Does a checkpoint fit the config's model?

MMEngine loads ``load_from`` with ``strict=False``: keys the model lacks, keys
the checkpoint lacks and tensors of another shape are logged and skipped, and
the run goes on. For ``tools/test.py`` that turns a wrong checkpoint (a BN
config with a BCN+WS checkpoint, say) into a low mIoU and exit code 0.

:func:`~mmseg_wsbcn.utils.state_dict.compare_state_dicts` is the pure
comparison;
:class:`CheckpointMatchHook` runs it on the checkpoint the runner is loading
(``after_load_checkpoint``, so it works with any ``Runner``) and either stops
the run with one line (:class:`CheckpointMismatchError`) or, for an explicit
partial load, warns once and loads only what matches.
"""
import logging
import re
from collections import OrderedDict
from typing import Callable, Iterable, Mapping, Tuple

import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel, is_model_wrapper

from ..models.layers import BCN
from ..utils.state_dict import Shape, StateDictMismatch, compare_state_dicts
from .parser import ToolError

#: MMEngine's ``Runner.load_checkpoint`` strips this prefix (a checkpoint
#: saved from a DDP-wrapped model) before loading.
DEFAULT_REVISE_KEYS = ((r'^module\.', ''), )


def revise_keys(state_dict: Mapping,
                revisions: Iterable[Tuple[str, str]] = DEFAULT_REVISE_KEYS
                ) -> 'OrderedDict':
    """The state dict with its keys renamed as MMEngine's loader renames
    them (``(pattern, replacement)`` regular expressions, in order)."""
    revised = OrderedDict(state_dict)
    for pattern, replacement in revisions:
        revised = OrderedDict(
            (re.sub(pattern, replacement, k), v) for k, v in revised.items())
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

    :class:`~mmseg_wsbcn.models.layers.BCN` accepts its group affine
    (``weight``/``bias``, ``(G,)``) in the authors' ``(1, G, 1)`` form.
    """
    modules = dict(model.named_modules())

    def shape_ok(key: str, ckpt_shape: Shape, model_shape: Shape) -> bool:
        owner, _, name = key.rpartition('.')
        module = modules.get(owner)
        return (isinstance(module, BCN) and name in ('weight', 'bias')
                and ckpt_shape == (1, module.num_groups, 1)
                and model_shape == (module.num_groups, ))

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


class CheckpointMismatchError(ToolError):
    """The checkpoint's keys or shapes do not match the model."""


class CheckpointMatchHook(Hook):
    """Check the checkpoint the runner loads against its model.

    Runs in ``after_load_checkpoint`` (MMEngine calls it between reading the
    file and loading the weights), last among the hooks so that hooks which
    rename keys run first.

    Args:
        filename (str): The checkpoint, for the message.
        allow_partial (bool): Load only the matching keys and warn once,
            instead of raising :class:`CheckpointMismatchError`. The model
            keeps its initial values for the missing and mis-shaped keys;
            unexpected keys are dropped (the same weights as MMEngine's
            ``strict=False`` load, with one warning line instead of its key
            lists).
        hint (str): Appended to the error, e.g. how to allow a partial load.
        first (int): How many keys of each kind the message names.
    """
    priority = 'LOWEST'

    def __init__(self,
                 filename: str,
                 allow_partial: bool = False,
                 hint: str = '',
                 first: int = 3) -> None:
        self.filename = filename
        self.allow_partial = allow_partial
        self.hint = hint
        self.first = first

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = unwrap_model(runner.model)
        diff = compare_checkpoint(checkpoint, model)
        if not diff:
            return
        summary = diff.summary(self.first)
        if not self.allow_partial:
            raise CheckpointMismatchError(
                f"checkpoint '{self.filename}' does not match the model: "
                f'{summary}' + (f'; {self.hint}' if self.hint else ''))
        print_log(
            f"partial load of checkpoint '{self.filename}': {diff.matched} "
            f'keys match, {summary}; the model keeps its initial values for '
            'the missing and mis-shaped keys',
            logger='current',
            level=logging.WARNING)
        self._keep_matching(checkpoint, model, diff)

    @staticmethod
    def _keep_matching(checkpoint: dict, model: nn.Module,
                       diff: StateDictMismatch) -> None:
        """Rewrite the checkpoint's weights in place so that the loader sees
        an exact match: matching keys, plus the model's own values for what
        is missing or mis-shaped."""
        weights = checkpoint_weights(checkpoint)
        metadata = getattr(weights, '_metadata', None)
        revised = revise_keys(weights)
        model_state = model.state_dict()
        drop = set(diff.unexpected) | {k for k, _, _ in diff.mismatched}
        kept = OrderedDict((k, v) for k, v in revised.items() if k not in drop)
        for key in list(diff.missing) + [k for k, _, _ in diff.mismatched]:
            kept[key] = model_state[key]
        weights.clear()
        weights.update(kept)
        if metadata is not None:
            weights._metadata = metadata
