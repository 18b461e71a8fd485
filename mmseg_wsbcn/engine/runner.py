# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""MMEngine's ``Runner`` with two checkpoint guarantees.

1. **Resume and ``load_from`` work with torch >= 2.6.** Since torch 2.6,
   ``torch.load`` defaults to ``weights_only=True``; MMEngine 0.10.7 does not
   pass ``weights_only``, and its training checkpoints hold more than
   tensors (``HistoryBuffer``, numpy arrays, which pickle through
   ``builtins.getattr``), so ``--resume`` and ``load_from`` fail with
   ``Weights only load failed ... HistoryBuffer``. Allow-listing those
   globals is not an option (``getattr`` would open the unpickler to
   anything). Instead, :class:`WSBCNRunner` treats the one file the user
   named for this run (``--resume``'s checkpoint or ``load_from``) as
   trusted and loads *only that* with ``weights_only=False``. Every other
   load keeps torch's safe default: pretrained backbones named in
   ``init_cfg=dict(type='Pretrained', ...)`` / ``model.pretrained`` are plain
   weight files and stay on the ``weights_only=True`` path.
2. **No half-written checkpoint.** A checkpoint is written to
   ``<name>.tmp`` and renamed over ``<name>`` (atomic on POSIX), so a run
   killed while saving leaves the previous checkpoints intact and
   ``--resume`` never picks up a truncated file.

``tools/train.py``/``tools/test.py`` use this runner when the config sets no
``runner_type``; the toolkit's configs set ``runner_type='WSBCNRunner'``
(``configs/_base_/default_runtime.py``) so mmseg's own tools get it too.
"""
import contextlib
import os
import os.path as osp
from typing import Iterator, Optional

import torch
from mmengine.dist import master_only
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from mmengine.runner.checkpoint import CheckpointLoader


def _load_trusted_local(filename: str, map_location=None) -> dict:
    """``torch.load`` a local file with ``weights_only=False``."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return torch.load(filename, map_location=map_location, weights_only=False)


@contextlib.contextmanager
def trusted_local_checkpoints() -> Iterator[None]:
    """Within the block, MMEngine loads local checkpoint files with
    ``weights_only=False``; the previous loader is restored on exit."""
    schemes = CheckpointLoader._schemes
    previous = schemes.get('')
    CheckpointLoader.register_scheme('', _load_trusted_local, force=True)
    try:
        yield
    finally:
        if previous is not None:
            CheckpointLoader.register_scheme('', previous, force=True)


@RUNNERS.register_module()
class WSBCNRunner(Runner):
    """``Runner`` that can resume under torch >= 2.6 and saves checkpoints
    atomically (see the module docstring)."""

    def load_or_resume(self) -> None:
        with trusted_local_checkpoints():
            super().load_or_resume()

    @master_only  # as Runner.save_checkpoint: only rank 0 writes the file
    def save_checkpoint(self,
                        out_dir: str,
                        filename: str,
                        file_client_args: Optional[dict] = None,
                        save_optimizer: bool = True,
                        save_param_scheduler: bool = True,
                        meta: Optional[dict] = None,
                        by_epoch: bool = True,
                        backend_args: Optional[dict] = None) -> None:
        remote = file_client_args is not None or backend_args is not None \
            or '://' in str(out_dir)
        if remote:  # renaming is a local-disk guarantee
            return super().save_checkpoint(out_dir, filename,
                                           file_client_args, save_optimizer,
                                           save_param_scheduler, meta,
                                           by_epoch, backend_args)
        tmp_name = f'{filename}.tmp'
        super().save_checkpoint(out_dir, tmp_name, file_client_args,
                                save_optimizer, save_param_scheduler, meta,
                                by_epoch, backend_args)
        os.replace(osp.join(out_dir, tmp_name), osp.join(out_dir, filename))
