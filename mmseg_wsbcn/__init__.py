# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""WS and BCN for MMSegmentation.

Importing the package registers its components in MMEngine's root registries
(``MODELS``: ``'WSConv2d'``, ``'BCN'``; ``RUNNERS``:
``'SafeCheckpointRunner'``; its hooks and transforms), so any OpenMMLab
project finds them whatever its ``default_scope``. Configs pull it in with
``custom_imports = dict(imports=['mmseg_wsbcn'],
allow_failed_imports=False)``.
"""
# isort: off
from .utils.stack import check_stack

#: ``'openmmlab'`` or ``'onedl'``: the OpenMMLab stack found at import time
#: (:mod:`mmseg_wsbcn.utils.stack`; another one raises a one-line error).
STACK = check_stack()

from . import datasets, engine, models  # noqa: F401,E402  (registers them)
# isort: on
from .version import __version__, version_info  # noqa: E402

__all__ = ['__version__', 'version_info', 'STACK']
