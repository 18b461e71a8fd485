# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""MMEngine's ``CheckpointHook``, writing every file atomically.

MMEngine's hook writes ``iter_N.pth`` and ``last_checkpoint`` in place: a
kill while saving leaves a truncated checkpoint, or an empty
``last_checkpoint`` that ``--resume`` then fails on with
``FileNotFoundError:  can not be found.``. :class:`AtomicCheckpointHook`
writes both through :func:`~mmseg_wsbcn.utils.atomic.atomic_path`, so the
previous files stay intact until the new one is complete, and turns a
failed write (a full disk) into :class:`CheckpointSaveError`.

Every checkpoint it saves is plain data
(:func:`~mmseg_wsbcn.engine.plain_checkpoint.to_plain`, in
``before_save_checkpoint``, which ``Runner.save_checkpoint`` calls after
the other hooks' since this hook's priority is ``VERY_LOW``), so
``torch.load(weights_only=True)`` reads it whole, ``--resume`` included.

:meth:`AtomicCheckpointHook.save_now` saves the current iteration's
checkpoint as an interval save would, at any time (``PreemptionHook`` uses
it on SIGTERM/SIGUSR1).

Name it in ``default_hooks.checkpoint`` (``type='AtomicCheckpointHook'``);
:class:`~mmseg_wsbcn.engine.SafeCheckpointRunner` uses it in place of a
plain ``CheckpointHook`` by itself.
"""
import os
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS

from ...utils.atomic import atomic_open, atomic_path
from ...utils.errors import OneLineError
from ..checkpoint_files import LAST_CHECKPOINT
from ..plain_checkpoint import to_plain


class CheckpointSaveError(OneLineError, RuntimeError):
    """A checkpoint could not be written (e.g. the disk is full); the
    previous checkpoints are intact. The message is one line."""


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose checkpoint and ``last_checkpoint`` writes are
    atomic. Takes ``CheckpointHook``'s arguments; checkpoints on a remote
    backend (``backend_args``, a URL ``out_dir``) are saved as MMEngine
    saves them, since renaming is a local-disk guarantee."""

    def save_now(self, runner) -> str:
        """Save the checkpoint of the iteration just finished (of the
        epoch, when ``by_epoch``) now, exactly as an interval save does:
        ``iter_N.pth`` (``filename_tmpl``) written atomically by the master
        rank, ``last_checkpoint`` updated, the oldest checkpoint removed
        past ``max_keep_ckpts``, the same contents. Call it after the
        iteration, on every rank (as :class:`~mmseg_wsbcn.engine.hooks.
        PreemptionHook` does from ``after_train_iter``); it saves even if
        that iteration's checkpoint was just saved.

        It calls ``CheckpointHook._save_checkpoint``, the method MMEngine's
        own ``after_train_iter``/``after_train_epoch`` call for an interval
        checkpoint (it computes the step and ``meta``); that private
        method then calls ``_save_checkpoint_with_step``, which this class
        already overrides, so the pair is this class's contract with
        MMEngine, in one place.

        Args:
            runner (Runner): The runner of the training process.

        Returns:
            str: The checkpoint's path (:attr:`last_ckpt`).

        Raises:
            CheckpointSaveError: The file could not be written; the
                previous checkpoints are intact.
        """
        self._save_checkpoint(runner)
        return self.last_ckpt

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Make the checkpoint plain data before it is written."""
        to_plain(checkpoint)

    def _is_local(self) -> bool:
        return self.file_client_args is None and self.backend_args is None \
            and '://' not in str(self.out_dir)

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        if not self._is_local():
            return super()._save_checkpoint_with_step(runner, step, meta)
        self._drop_oldest(runner, step)
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = osp.join(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        kwargs = dict(
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            **self.args)
        if not is_main_process():  # Runner.save_checkpoint is master-only
            runner.save_checkpoint(self.out_dir, filename, **kwargs)
            return
        try:
            with atomic_path(self.last_ckpt) as tmp:
                runner.save_checkpoint(self.out_dir, osp.basename(tmp),
                                       **kwargs)
            with atomic_open(osp.join(runner.work_dir, LAST_CHECKPOINT)) as f:
                f.write(self.last_ckpt)
        except OSError as e:
            raise CheckpointSaveError(
                f"could not save checkpoint '{self.last_ckpt}' "
                f'({e.strerror or e}); the previous checkpoints in '
                f"'{self.out_dir}' are intact: free space there (or set "
                '--work-dir elsewhere) and resume with --resume') from e

    def _drop_oldest(self, runner, step: int) -> None:
        """Keep at most ``max_keep_ckpts`` checkpoints, as MMEngine does:
        remove the oldest before saving ``step``."""
        if self.max_keep_ckpts <= 0 or (self.keep_ckpt_ids
                                        and self.keep_ckpt_ids[-1] == step):
            return
        if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
            old = osp.join(
                self.out_dir,
                self.filename_tmpl.format(self.keep_ckpt_ids.popleft()))
            if is_main_process() and osp.isfile(old):
                os.remove(old)
        self.keep_ckpt_ids.append(step)
        runner.message_hub.update_info('keep_ckpt_ids',
                                       list(self.keep_ckpt_ids))
