# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Inference API, as ``mmseg.apis``: :func:`init_model` builds a WS + BCN
segmentor (optionally with WS folded); run it with mmseg's
``inference_model``."""
from .inference import init_model

__all__ = ['init_model']
