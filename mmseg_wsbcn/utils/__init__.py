# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Utilities shared by the layers and the tools."""
