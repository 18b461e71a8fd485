# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Hooks, registered in MMEngine's root ``HOOKS``."""
from .checkpoint_hook import AtomicCheckpointHook, CheckpointSaveError
from .checkpoint_match_hook import CheckpointMatchHook, CheckpointMismatchError
from .layer_summary_hook import (LayerSummaryHook, format_layer_summary,
                                 summarize_layers)
from .nan_loss_hook import StopOnNonFiniteLossHook, non_finite_losses
from .precise_bn_hook import PreciseBNHook, update_precise_statistics
from .preemption_hook import (PREEMPTED_EXIT_STATUS, PreemptionHook,
                              TrainingPreempted)
from .save_predictions_hook import SavePredictionsHook

__all__ = [
    'AtomicCheckpointHook', 'CheckpointSaveError', 'CheckpointMatchHook',
    'CheckpointMismatchError', 'LayerSummaryHook', 'format_layer_summary',
    'summarize_layers', 'StopOnNonFiniteLossHook', 'non_finite_losses',
    'SavePredictionsHook', 'PreemptionHook', 'TrainingPreempted',
    'PREEMPTED_EXIT_STATUS', 'PreciseBNHook', 'update_precise_statistics'
]
