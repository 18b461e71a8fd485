# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Model utilities: convert an existing model to WS + BCN, fold WS back
into plain convs, replace modules in a module tree."""
from .convert import DEFAULT_EXCLUDE, ConvertReport, convert_model
from .fold_ws_conv import fold_ws_conv
from .module_tree import replace_modules, set_submodule

__all__ = [
    'DEFAULT_EXCLUDE', 'ConvertReport', 'convert_model', 'fold_ws_conv',
    'replace_modules', 'set_submodule'
]
