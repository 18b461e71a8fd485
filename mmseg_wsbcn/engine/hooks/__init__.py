# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Hooks, registered in MMEngine's root ``HOOKS``."""
from .layer_summary_hook import (LayerSummaryHook, format_layer_summary,
                                 summarize_layers)
from .nan_loss_hook import StopOnNonFiniteLossHook, non_finite_losses

__all__ = [
    'LayerSummaryHook', 'format_layer_summary', 'summarize_layers',
    'StopOnNonFiniteLossHook', 'non_finite_losses'
]
