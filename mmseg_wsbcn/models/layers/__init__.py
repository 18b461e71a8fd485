# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""WS conv and BCN norm layers, registered in MMEngine's root ``MODELS``."""
from .bcn import BCN
from .channel_affine import ChannelAffine
from .layer_kind import LayerKind, inner_modules, layer_kind, named_layers
from .ws_conv import WSConv2d, weight_standardize

__all__ = [
    'BCN', 'ChannelAffine', 'LayerKind', 'WSConv2d', 'inner_modules',
    'layer_kind', 'named_layers', 'weight_standardize'
]
