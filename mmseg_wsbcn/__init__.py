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
from . import datasets, engine, models  # noqa: F401  (registers them)
# isort: on
from .version import __version__, version_info

__all__ = ['__version__', 'version_info']
