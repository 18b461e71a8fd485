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
2. **An unreadable checkpoint is one line.** A truncated or corrupted file
   (``PytorchStreamReader failed reading zip archive ...``, ``Ran out of
   input``) raises :class:`CheckpointLoadError` naming the file, which the
   tools report in one line instead of a traceback.
3. **No half-written checkpoint.** A checkpoint is written to
   ``<name>.tmp`` and renamed over ``<name>`` (atomic on POSIX), so a run
   killed while saving leaves the previous checkpoints intact and
   ``--resume`` never picks up a truncated file.

``tools/train.py``/``tools/test.py`` use this runner when the config sets no
``runner_type``; the toolkit's configs set ``runner_type='WSBCNRunner'``
(``configs/_base_/default_runtime.py``) so mmseg's own tools get it too.
"""
import contextlib
import logging
import os
import os.path as osp
from typing import Iterator, Optional

import torch
from mmengine.dist import master_only
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from mmengine.runner.checkpoint import CheckpointLoader
from torch.utils.data import DataLoader

from ..datasets import guard_dataset
from ..utils.errors import first_sentence
from .checkpoint_files import (LAST_CHECKPOINT, atomic_last_checkpoint,
                               read_last_checkpoint, resume_candidates)


class CheckpointLoadError(RuntimeError):
    """A checkpoint named for this run cannot be read (truncated, corrupted,
    not a PyTorch file); the message is one line naming the file.

    Args:
        filename (str): The file.
        reason (str): What torch said, in one line (``reason`` attribute).
    """

    def __init__(self, filename: str, reason: str) -> None:
        self.filename, self.reason = filename, reason
        super().__init__(
            f"cannot read checkpoint '{filename}' ({reason}); the file is "
            'truncated, corrupted or not a PyTorch checkpoint: copy or save '
            'it again')


def _reason(exc) -> str:
    """Why a resume candidate was passed over, in a few words."""
    if isinstance(exc, str):
        return exc
    if isinstance(exc, FileNotFoundError):
        return 'no such file'
    return exc.reason


# MMEngine names the scheme in its log line from ``__name__[10:]``, hence the
# ``load_from_`` prefix ("Loads checkpoint by trusted_local backend").
def load_from_trusted_local(filename: str, map_location=None) -> dict:
    """``torch.load`` a local file with ``weights_only=False``.

    Raises:
        FileNotFoundError: There is no such file.
        CheckpointLoadError: torch cannot read it.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    try:
        return torch.load(
            filename, map_location=map_location, weights_only=False)
    except Exception as e:  # RuntimeError, EOFError, UnpicklingError, ...
        raise CheckpointLoadError(filename, first_sentence(e)) from e


@contextlib.contextmanager
def trusted_local_checkpoints() -> Iterator[None]:
    """Within the block, MMEngine loads local checkpoint files with
    ``weights_only=False``; the previous loader is restored on exit."""
    schemes = CheckpointLoader._schemes
    previous = schemes.get('')
    CheckpointLoader.register_scheme('', load_from_trusted_local, force=True)
    try:
        yield
    finally:
        if previous is not None:
            CheckpointLoader.register_scheme('', previous, force=True)


class CheckpointSaveError(RuntimeError):
    """A checkpoint could not be written (e.g. the disk is full); the
    previous checkpoints are intact. The message is one line."""


class ResumeError(RuntimeError):
    """``--resume`` found no intact checkpoint in the work dir."""


@RUNNERS.register_module()
class WSBCNRunner(Runner):
    """``Runner`` that can resume under torch >= 2.6 and saves checkpoints
    atomically (see the module docstring).

    It also:

    - resumes from the newest *intact* checkpoint: when ``last_checkpoint``
      is empty, names a missing file or a file that cannot be read,
      ``--resume`` warns in one line and continues from the newest
      ``iter_*.pth`` / ``epoch_*.pth`` that loads; only when none does, it
      raises :class:`ResumeError`;
    - writes ``last_checkpoint`` atomically
      (:func:`~mmseg_wsbcn.engine.checkpoint_files.atomic_last_checkpoint`);
    - turns a failed checkpoint write (a full disk) into
      :class:`CheckpointSaveError`, leaving no temporary file;
    - guards the pipeline of every segmentation dataset it builds
      (:func:`~mmseg_wsbcn.datasets.guard_dataset`), so that a sample that
      fails to load or whose label leaves the classes stops the run with the
      sample and its files named.
    """

    def load_or_resume(self) -> None:
        with trusted_local_checkpoints():
            if self._has_loaded or not self._resume \
                    or self._load_from is not None:
                return super().load_or_resume()
            self._resume_newest_intact()

    def _resume_newest_intact(self) -> None:
        """Auto-resume from the newest checkpoint that loads."""
        candidates = resume_candidates(self.work_dir)
        if not candidates:
            self.logger.info('Did not find a checkpoint to resume from; '
                             'training from the start.')
            return
        damaged = []
        if read_last_checkpoint(self.work_dir) == '':
            damaged.append((osp.join(self.work_dir, LAST_CHECKPOINT),
                            'empty'))
        for path in candidates:
            try:
                self.resume(path)
            except (FileNotFoundError, CheckpointLoadError) as e:
                damaged.append((path, e))
                continue
            if damaged:
                print_log(
                    f"--resume: '{damaged[0][0]}' "
                    f'({_reason(damaged[0][1])}) cannot be used; resuming '
                    f"from '{path}' instead",
                    logger='current',
                    level=logging.WARNING)
            self.logger.info(f'Auto resumed from the checkpoint {path}.')
            self._has_loaded = True
            return
        raise ResumeError(
            f"--resume: no intact checkpoint in '{self.work_dir}': " +
            '; '.join(f"'{p}' ({_reason(e)})" for p, e in damaged[:3]) +
            ('; ...' if len(damaged) > 3 else '') +
            '; start without --resume, or with --cfg-options load_from=PATH')

    def train(self):
        with atomic_last_checkpoint():
            return super().train()

    @staticmethod
    def build_dataloader(dataloader, seed=None, diff_rank_seed=False):
        loader = Runner.build_dataloader(dataloader, seed, diff_rank_seed)
        if isinstance(loader, DataLoader):
            guard_dataset(loader.dataset)
        return loader

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
        tmp_path = osp.join(out_dir, tmp_name)
        try:
            super().save_checkpoint(out_dir, tmp_name, file_client_args,
                                    save_optimizer, save_param_scheduler,
                                    meta, by_epoch, backend_args)
            os.replace(tmp_path, osp.join(out_dir, filename))
        except OSError as e:
            if osp.exists(tmp_path):
                os.remove(tmp_path)
            raise CheckpointSaveError(
                f"could not save checkpoint '{osp.join(out_dir, filename)}' "
                f'({e.strerror or e}); the previous checkpoints in '
                f"'{out_dir}' are intact: free space there (or set "
                '--work-dir elsewhere) and resume with --resume') from e
