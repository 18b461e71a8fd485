# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
import os.path as osp

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='session')
def repo_root() -> str:
    """The checkout's root (configs and ``demo/data`` are relative to it)."""
    return REPO_ROOT
