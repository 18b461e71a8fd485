# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
from .layers import *  # noqa: F401,F403
from .utils import *  # noqa: F401,F403
from .segmentors import *  # noqa: F401,F403
