# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
from .folded_segmentor import FoldedSegmentor

__all__ = ['FoldedSegmentor']
