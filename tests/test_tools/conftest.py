# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Fixtures of the tool tests.

``data_copy`` is a writable copy of the bundled Cityscapes mini set
(``demo/data/cityscapes_mini``) under ``tmp_path``, for tests that plant
bad files in it.
"""
import os.path as osp
import shutil

import pytest


@pytest.fixture
def data_copy(repo_root, tmp_path):
    root = tmp_path / 'cityscapes_mini'
    shutil.copytree(osp.join(repo_root, 'demo/data/cityscapes_mini'), root)
    return root
