# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Log which conv and norm layers a model is really built with."""
from collections import Counter, OrderedDict
from typing import Dict

import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ...models.layers import named_layers

#: Parts of a segmentor summarized separately (others go to ``other``).
PARTS = ('backbone', 'neck', 'decode_head', 'auxiliary_head')


def summarize_layers(model: nn.Module) -> Dict[str, Counter]:
    """Count conv and norm layer kinds per part of a segmentor.

    The layers and their kinds (summaries) are those of
    :func:`~mmseg_wsbcn.models.layers.named_layers`: a BCN's batch-step
    submodule (``pbn``) is part of its BCN and is not counted on its own.

    Args:
        model (nn.Module): A segmentor (or any module).

    Returns:
        dict[str, Counter]: ``{part: Counter({kind: count})}`` for the
        parts in :data:`PARTS` that exist, plus ``'other'``.
    """
    summary: Dict[str, Counter] = OrderedDict()
    for name, _, kind in named_layers(model):
        part = name.split('.')[0] if name.split('.')[0] in PARTS else 'other'
        summary.setdefault(part, Counter())[kind.summary] += 1
    return summary


def format_layer_summary(model: nn.Module) -> str:
    """:func:`summarize_layers` as lines like
    ``backbone: 20 x WSConv2d(mode=var), 20 x BCN(G=32, estimated stats)``,
    followed by the plain convs of the heads (the classifiers)."""
    lines = ['Model layers (conv / norm):']
    for part, counts in summarize_layers(model).items():
        kinds = ', '.join(f'{n} x {k}' for k, n in sorted(counts.items()))
        lines.append(f'  {part:<15} {kinds}')
    plain = [
        name for name, m in model.named_modules()
        if type(m) is nn.Conv2d and name.split('.')[0] != 'backbone'
    ]
    if plain:
        lines.append('  plain convs in heads: ' + ', '.join(plain))
    return '\n'.join(lines)


@HOOKS.register_module()
class LayerSummaryHook(Hook):
    """Before training (or testing), log which conv/norm layers the model
    uses, e.g. to confirm a config really built ``WSConv2d`` + ``BCN``.

    Example (extending the runtime base's hooks, so that the NaN-loss stop
    stays)::

        custom_hooks = _base_.custom_hooks + [dict(type='LayerSummaryHook')]
    """

    priority = 'VERY_LOW'

    def _log(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        runner.logger.info(format_layer_summary(model))

    def before_train(self, runner) -> None:
        self._log(runner)

    def before_test(self, runner) -> None:
        self._log(runner)
