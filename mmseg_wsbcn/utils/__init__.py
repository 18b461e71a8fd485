# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Utilities shared by the layers and the tools."""
from .dist import differentiable_all_reduce

__all__ = ['differentiable_all_reduce']
