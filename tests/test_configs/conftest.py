# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Which configs the config tests run on.

``shipped_configs`` finds them, once: every ``*.py`` under ``configs/``
except the ``_base_`` files, as sorted paths relative to the checkout.
Tests get them in two ways:

- ``@pytest.mark.configs(select=...)`` parametrizes the test's ``config``
  argument with ``select(configs)``: ``select`` takes the list and returns
  the configs to run (a keyword: a mark given one bare function would
  decorate it instead). Parametrizing happens at collection, before any
  fixture exists, so the list is looked up under pytest's rootdir, which
  is the checkout (its setup.cfg holds the pytest settings) and the folder
  the ``repo_root`` fixture names.
- The ``configs`` fixture is the whole list.
"""
import functools
import glob
import os.path as osp

import pytest


@functools.lru_cache(maxsize=None)
def shipped_configs(root):
    config_root = osp.join(root, 'configs')
    return tuple(
        sorted(
            osp.relpath(p, root) for p in glob.glob(
                osp.join(config_root, '**', '*.py'), recursive=True)
            if '_base_' not in osp.relpath(p, config_root).split(osp.sep)))


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'configs(select=...): run the test on select(configs), '
        'the configs chosen from the shipped ones (tests/test_configs)')


def _representative(configs):
    """The config a per-config test runs in the fast loop: the first BCN+WS
    one (the toolkit's main layer pair), else the first."""
    return next((c for c in configs if 'bcn-ws' in c), configs[0])


def pytest_generate_tests(metafunc):
    """Parametrize ``config``; all but one representative config are
    ``slow`` (``pytest -m "not slow"`` runs each test on one config)."""
    mark = metafunc.definition.get_closest_marker('configs')
    if mark is not None:
        configs = list(shipped_configs(str(metafunc.config.rootpath)))
        selected = mark.kwargs['select'](configs)
        fast = _representative(selected) if selected else None
        metafunc.parametrize('config', [
            c if c == fast else pytest.param(c, marks=pytest.mark.slow)
            for c in selected
        ])


@pytest.fixture(scope='session')
def configs(repo_root):
    return list(shipped_configs(repo_root))
