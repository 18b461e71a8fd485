# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Hooks, registered in MMEngine's root ``HOOKS``."""
from .nan_loss_hook import StopOnNonFiniteLossHook, non_finite_losses

__all__ = ['StopOnNonFiniteLossHook', 'non_finite_losses']
