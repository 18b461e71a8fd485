# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Model utilities: convert an existing model to WS + BCN."""
from .convert import DEFAULT_EXCLUDE, ConvertReport, convert_model

__all__ = ['DEFAULT_EXCLUDE', 'ConvertReport', 'convert_model']
