# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Test-only: simulate a full disk while the 4th iteration's checkpoint is
written. MMEngine serializes a checkpoint in memory and writes the bytes
with its local file backend's ``put``; here that write stops part-way with
``OSError(ENOSPC)`` for that checkpoint. A test config imports this module
through ``custom_imports``; ``tests/data/hooks`` must be on
``PYTHONPATH``."""
import errno

from mmengine.fileio.backends.local_backend import LocalBackend

_put = LocalBackend.put


def _put_or_fail(self, obj, filepath):
    if 'iter_4.pth' in str(filepath):
        with open(filepath, 'wb') as part:
            part.write(bytes(obj)[:1024])
        raise OSError(errno.ENOSPC, 'No space left on device', str(filepath))
    return _put(self, obj, filepath)


LocalBackend.put = _put_or_fail
