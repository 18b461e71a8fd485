# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Deployment: fold WS + BCN (or BN) into plain Conv + GroupNorm layers
(:mod:`.fold`) and export a segmentor's logits to ONNX (:mod:`.export`)."""
from .fold import ChannelAffine, FoldReport, count_layers, fold_bcn_ws

__all__ = ['ChannelAffine', 'FoldReport', 'count_layers', 'fold_bcn_ws']
