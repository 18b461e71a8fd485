# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The toolkit's conv and norm layers, registered in MMEngine's root
``MODELS``: WS convs and BCN (the paper), and the micro-batch
normalization zoo (FRN, EvoNorm-S0/B0, MABN with its centred conv; see
docs/norms.md)."""
from .bcn import BCN
from .cen_conv import CenConv2d
from .channel_affine import ChannelAffine
from .evonorm_b0 import EvoNormB0
from .evonorm_s0 import EvoNormS0
from .frn import FRN
from .layer_kind import LayerKind, inner_modules, layer_kind, named_layers
from .mabn import MABN
from .ws_conv import WSConv2d, weight_standardize
from .ws_conv_nd import WSConv1d, WSConv3d

__all__ = [
    'BCN', 'CenConv2d', 'ChannelAffine', 'EvoNormB0', 'EvoNormS0', 'FRN',
    'LayerKind', 'MABN', 'WSConv1d', 'WSConv2d', 'WSConv3d',
    'inner_modules', 'layer_kind', 'named_layers', 'weight_standardize'
]
