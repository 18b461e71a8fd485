# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""WS conv and BCN norm layers, registered in MMEngine's root ``MODELS``."""
