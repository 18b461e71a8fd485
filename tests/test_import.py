# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
import re


def test_package_imports_and_has_version():
    import mmseg_wsbcn
    assert re.fullmatch(r'\d+\.\d+\.\d+', mmseg_wsbcn.__version__)
    assert mmseg_wsbcn.version_info[:3] == tuple(
        int(x) for x in mmseg_wsbcn.__version__.split('.'))


def test_import_registers_components_in_the_root_registries():
    from mmengine.registry import MODELS, RUNNERS

    import mmseg_wsbcn  # noqa: F401
    for name in ('WSConv2d', 'BCN'):
        assert MODELS.get(name) is not None, name
    for name in ('SafeCheckpointRunner', 'WSBCNRunner'):
        assert RUNNERS.get(name) is not None, name
