# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Test-only: simulate a full disk while the 4th iteration's checkpoint is
written. MMEngine serializes a checkpoint in memory and writes the bytes
with its local file backend's ``put``; here that write stops part-way with
``OSError(ENOSPC)`` for that checkpoint. A test config imports this module
through ``custom_imports``; ``tests/data/hooks`` must be on
``PYTHONPATH``."""
import errno
import os

from mmengine.fileio.backends.local_backend import LocalBackend

_put = LocalBackend.put


def _put_or_fail(self, obj, filepath):
    # the checkpoint of iteration 4, under the temporary name it is
    # written to (iter_4.tmp.pth) or its own
    if os.path.basename(str(filepath)).startswith('iter_4.'):
        with open(filepath, 'wb') as part:
            part.write(bytes(obj)[:1024])
        raise OSError(errno.ENOSPC, 'No space left on device', str(filepath))
    return _put(self, obj, filepath)


LocalBackend.put = _put_or_fail
