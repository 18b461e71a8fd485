# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""WS conv and BCN norm layers, registered in MMEngine's root ``MODELS``."""
from .bcn import BCN
from .ws_conv import WSConv2d, weight_standardize

__all__ = ['BCN', 'WSConv2d', 'weight_standardize']
