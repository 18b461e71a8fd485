# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Dataset transforms (registered in MMEngine's root ``TRANSFORMS``)."""
from .transforms import *  # noqa: F401,F403
