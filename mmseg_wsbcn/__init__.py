# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""WS and BCN for MMSegmentation.

Importing the package registers its components in MMEngine's root registries
(``MODELS``: ``'WSConv2d'``, ``'BCN'``; ``RUNNERS``: ``'WSBCNRunner'``), so
any OpenMMLab project finds them whatever its ``default_scope``. Configs
pull it in with ``custom_imports = dict(imports=['mmseg_wsbcn'],
allow_failed_imports=False)``.
"""
from . import engine, models  # noqa: F401  (registers the components)
from .version import __version__, version_info

__all__ = ['__version__', 'version_info']
