# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Test-only: simulate a full disk while the 4th iteration's checkpoint is
written. ``DiskFullRunner`` (registered; a test config names it in
``runner_type`` and imports this module through ``custom_imports``;
``tests/data/hooks`` must be on ``PYTHONPATH``) writes the first KiB of that
checkpoint and then fails with ``OSError(ENOSPC)``, as a full disk does."""
import errno
import os.path as osp

from mmengine.registry import RUNNERS

from mmseg_wsbcn.engine import SafeCheckpointRunner


@RUNNERS.register_module()
class DiskFullRunner(SafeCheckpointRunner):

    def save_checkpoint(self, out_dir, filename, *args, **kwargs):
        # iteration 4's checkpoint, under the temporary name it is written
        # to (iter_4.tmp.pth) or its own
        if not filename.startswith('iter_4.'):
            return super().save_checkpoint(out_dir, filename, *args,
                                           **kwargs)
        path = osp.join(out_dir, filename)
        with open(path, 'wb') as part:
            part.write(b'\0' * 1024)
        raise OSError(errno.ENOSPC, 'No space left on device', path)
