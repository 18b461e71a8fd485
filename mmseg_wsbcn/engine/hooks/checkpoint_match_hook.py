# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Does a checkpoint fit the config's model?

MMEngine loads ``load_from`` with ``strict=False``: keys the model lacks, keys
the checkpoint lacks and tensors of another shape are logged and skipped, and
the run goes on. For ``tools/test.py`` that turns a wrong checkpoint (a BN
config with a BCN+WS checkpoint, say) into a low mIoU and exit code 0.

:func:`~mmseg_wsbcn.utils.state_dict.compare_checkpoint` is the pure
comparison;
:class:`CheckpointMatchHook` runs it on the checkpoint the runner is loading
(``after_load_checkpoint``, so it works with any ``Runner``) and either stops
the run with one line (:class:`CheckpointMismatchError`) or, for an explicit
partial load, warns once and loads only what matches.
"""
import logging
from collections import OrderedDict

import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from ...utils.errors import ToolError
from ...utils.state_dict import (StateDictMismatch, checkpoint_weights,
                                 compare_checkpoint, revise_keys, unwrap_model)


class CheckpointMismatchError(ToolError):
    """The checkpoint's keys or shapes do not match the model."""


@HOOKS.register_module()
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
        revised = revise_keys(weights)
        model_state = model.state_dict()
        drop = set(diff.unexpected) | {k for k, _, _ in diff.mismatched}
        kept = OrderedDict((k, v) for k, v in revised.items() if k not in drop)
        for key in list(diff.missing) + [k for k, _, _ in diff.mismatched]:
            kept[key] = model_state[key]
        weights.clear()  # its attributes (``_metadata``) stay
        weights.update(kept)
