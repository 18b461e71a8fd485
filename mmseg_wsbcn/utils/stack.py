# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Which OpenMMLab stack is installed, checked when the package is imported.

Two stacks provide the modules ``mmcv``, ``mmengine`` and ``mmseg`` under the
same import names: the upstream OpenMMLab releases (distributions ``mmcv``,
``mmengine``, ``mmsegmentation``) and the maintained fork (``onedl-mmcv``,
``onedl-mmengine``, ``onedl-mmsegmentation``). The check reads the modules'
own ``__version__``, not distribution names, so it accepts either stack
however it was installed, and says in one line what is missing.
"""
import importlib
from typing import Dict, NamedTuple, Optional

from packaging.version import Version

from .errors import OneLineError


class VersionRange(NamedTuple):
    """``low <= version < high``."""
    low: str
    high: str

    def __contains__(self, version: str) -> bool:
        return Version(self.low) <= Version(version) < Version(self.high)

    def __str__(self) -> str:
        return f'>={self.low},<{self.high}'


#: The module version ranges of each stack, as in requirements/openmmlab.txt
#: and requirements/onedl.txt (and setup.cfg's extras of the same names).
STACKS: Dict[str, Dict[str, VersionRange]] = {
    'openmmlab': dict(
        mmcv=VersionRange('2.0.0', '2.2.0'),
        mmengine=VersionRange('0.10.0', '1.0.0'),
        mmseg=VersionRange('1.2.0', '1.3.0')),
    'onedl': dict(
        mmcv=VersionRange('2.3.0', '2.4.0'),
        mmengine=VersionRange('0.10.8', '1.0.0'),
        mmseg=VersionRange('1.4.0', '1.5.0')),
}

#: How to install a stack, for the messages.
INSTALL_HINT = ('install one with `bash tools/setup_env.sh` (STACK=onedl '
                "for the fork), or `pip install 'mmseg_wsbcn[openmmlab]'` / "
                "`'mmseg_wsbcn[onedl]'` next to an mmcv built with its ops")


class StackError(OneLineError, ImportError):
    """The installed mmcv / mmengine / mmseg are not one supported stack."""


def _wanted() -> str:
    return ' or '.join(
        f'{name} (' + ', '.join(f'{m}{r}' for m, r in ranges.items()) + ')'
        for name, ranges in STACKS.items())


def matching_stack(versions: Dict[str, str]) -> Optional[str]:
    """The name of the stack whose ranges hold every version of
    ``versions`` (module name -> version), or None.

    Example:
        >>> matching_stack(dict(mmcv='2.1.0', mmengine='0.10.7',
        ...                     mmseg='1.2.2'))
        'openmmlab'
    """
    for name, ranges in STACKS.items():
        if all(v.split('+')[0] in ranges[m] for m, v in versions.items()):
            return name
    return None


def _stack_message(versions: Dict[str, str]) -> str:
    found = ', '.join(f'{m} {v}' for m, v in versions.items())
    return (f'mmseg_wsbcn needs {_wanted()}; found {found}; {INSTALL_HINT}')


def _import_version(module: str) -> str:
    """``module.__version__``, importing it; a missing module is a
    :class:`StackError`."""
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        if getattr(e, 'name', None) not in (module, None):
            raise  # the module is there but one of its imports fails
        raise StackError(f'mmseg_wsbcn needs {module}, which is not '
                         f'installed: {_wanted()}; {INSTALL_HINT}') from e
    return str(getattr(mod, '__version__', '0'))


def check_stack() -> str:
    """Check that mmcv, mmengine and mmseg are one of :data:`STACKS`.

    mmcv and mmengine are checked before mmseg is imported, because mmseg
    asserts its own mmcv range at import time.

    Returns:
        str: the name of the stack found (``'openmmlab'`` or ``'onedl'``).

    Raises:
        StackError: a module is missing, or the versions are no stack.
    """
    versions = {m: _import_version(m) for m in ('mmcv', 'mmengine')}
    if matching_stack(versions) is None:
        raise StackError(_stack_message(versions))
    try:
        versions['mmseg'] = _import_version('mmseg')
    except AssertionError as e:  # mmseg's own check of the mmcv version
        raise StackError(
            _stack_message(dict(versions, mmseg='(refuses to import)'))) \
            from e
    stack = matching_stack(versions)
    if stack is None:
        raise StackError(_stack_message(versions))
    return stack
