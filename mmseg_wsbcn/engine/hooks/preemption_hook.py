# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Save a checkpoint and stop when the job is about to be killed.

Slurm sends SIGTERM, or the signal its ``--signal`` option names (e.g.
``USR1``), some time before it kills a job: at the time limit, or when a
job of higher priority preempts it. Python dies of either signal at once
(exit status 143 or 138), and everything since the last interval
checkpoint is lost.

:class:`PreemptionHook` catches SIGTERM and SIGUSR1 instead. The signal
handler only notes the signal; the iteration under way finishes, and after
it every rank learns whether any rank got a signal (one all-reduce of a
scalar per iteration: the signal may reach the ranks at different
iterations, or only some of them). Then all ranks stop after that same
iteration: the runner's ``CheckpointHook`` saves ``iter_N.pth`` exactly as
an interval checkpoint (atomically, ``last_checkpoint`` updated, on the
master rank), and every rank raises :class:`TrainingPreempted`, which the
tools print as one line and exit with :data:`PREEMPTED_EXIT_STATUS`::

    train.py: error: stopped by SIGTERM after iteration 3/10; checkpoint
    saved: work_dirs/x/iter_3.pth; to continue, run the same command with
    --resume (exit status 75)

``--resume`` then continues from that checkpoint as from any other, to the
same final weights as a run that was never stopped.

:class:`~mmseg_wsbcn.engine.SafeCheckpointRunner` adds the hook when the
config lists none, and catches the signals from the start of ``train()``
(before the train loop starts its DataLoader workers, which inherit the
handler; slurm signals them too). The previous handlers are back when
training ends, however it ends.
"""
import os.path as osp
import signal
import warnings
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.registry import HOOKS

from ...utils.errors import OneLineError
from .checkpoint_hook import CheckpointSaveError

DATA_BATCH = Optional[Union[dict, tuple, list]]

#: Exit status of a run that a signal stopped: ``EX_TEMPFAIL`` of
#: ``sysexits.h`` ("try again later"). Its checkpoint is saved, so
#: ``--resume`` continues from it; ``tools/slurm_train.sh`` requeues the
#: job on this status.
PREEMPTED_EXIT_STATUS = 75


class TrainingPreempted(OneLineError):
    """Training was stopped by a signal; the message says where its
    checkpoint was saved (or why none could be), and how to continue. The
    tools exit with :data:`PREEMPTED_EXIT_STATUS`."""

    exit_status = PREEMPTED_EXIT_STATUS


def as_signal(value: Union[str, int]) -> signal.Signals:
    """A signal given by name (``'SIGTERM'``, ``'TERM'``, ``'usr1'``) or
    number, checked to be one a process can catch.

    Args:
        value (str | int): The signal.

    Returns:
        signal.Signals: The signal.

    Raises:
        ValueError: For an unknown signal, and for SIGKILL and SIGSTOP.
    """
    try:
        if isinstance(value, str):
            name = value.upper()
            sig = signal.Signals[name if name.startswith('SIG') else 'SIG' +
                                 name]
        else:
            sig = signal.Signals(value)
    except (KeyError, ValueError):
        raise ValueError(f'PreemptionHook: unknown signal {value!r}; name '
                         "one such as 'SIGTERM' or 'SIGUSR1'") from None
    if sig in (signal.SIGKILL, signal.SIGSTOP):
        raise ValueError(f'PreemptionHook: {sig.name} cannot be caught')
    return sig


@HOOKS.register_module()
class PreemptionHook(Hook):
    """On SIGTERM or SIGUSR1, finish the iteration, save a checkpoint and
    stop every rank at the same iteration (see the module docstring).

    It runs after every other hook of the iteration (``LOWEST``), so an
    interval checkpoint of the same iteration is already saved (and not
    saved twice), and the checkpoint holds what an interval checkpoint
    would. A signal during the last iteration changes nothing: the run
    ends with its final checkpoint, status 0. A signal that arrives twice
    counts once; to stop at once, use SIGKILL or Ctrl-C (SIGINT).

    An epoch-based loop resumes only from the end of an epoch, so there
    the hook saves nothing mid-epoch: the run stops after the iteration
    and ``--resume`` continues from the last epoch's checkpoint.

    Args:
        signals (Sequence[str | int]): The signals that stop training.
            Defaults to ``('SIGTERM', 'SIGUSR1')``.
        enabled (bool): Whether to catch them. Defaults to True.
    """

    priority = 'LOWEST'

    def __init__(self,
                 signals: Sequence[Union[str, int]] = ('SIGTERM', 'SIGUSR1'),
                 enabled: bool = True) -> None:
        if not isinstance(enabled, bool):
            raise TypeError('PreemptionHook: enabled must be a bool, got '
                            f'{enabled!r}')
        if isinstance(signals, (str, int)):
            signals = [signals]
        self.signals: List[signal.Signals] = [as_signal(s) for s in signals]
        self.enabled = enabled
        self._received = 0  # the first signal caught, 0 for none
        self._previous: Dict[signal.Signals, object] = {}

    def install(self) -> None:
        """Catch :attr:`signals` from now on (again: nothing happens).

        :class:`~mmseg_wsbcn.engine.SafeCheckpointRunner` calls it when
        ``train()`` starts; with another runner, ``before_train`` does.
        Outside the main thread, where Python cannot set signal handlers,
        it warns and leaves the signals alone.
        """
        if not self.enabled or self._previous:
            return
        self._received = 0
        try:
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        except ValueError as e:  # not the main thread
            self.restore()
            warnings.warn(f'PreemptionHook: cannot catch signals ({e}); '
                          'a signal ends training without a checkpoint')

    def restore(self) -> None:
        """Put back the handlers :meth:`install` replaced."""
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame) -> None:
        # only a note: the iteration finishes, after_train_iter acts on it
        self._received = self._received or signum

    def before_train(self, runner) -> None:
        self.install()

    def after_train(self, runner) -> None:
        self.restore()

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: DATA_BATCH = None,
                         outputs: Optional[dict] = None) -> None:
        if not self.enabled:
            return
        signum = self._received
        if get_world_size() > 1:  # any rank's signal stops them all
            flag = torch.tensor([float(signum)])
            all_reduce(flag, op='max')
            signum = int(flag.item())
        if not signum or runner.iter + 1 >= runner.max_iters:
            return
        name = signal.Signals(signum).name
        where = f'{name} after iteration {runner.iter + 1}/{runner.max_iters}'
        runner.logger.warning(f'{where}: saving a checkpoint and stopping')
        checkpoint_hook = None
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook):  # or a subclass
                checkpoint_hook = hook
        try:  # a second signal while saving counts for nothing
            if checkpoint_hook is None or checkpoint_hook.by_epoch:
                message = self._unsaved(where, checkpoint_hook)
            else:
                message = (
                    f'stopped by {where}; checkpoint saved: '
                    f'{self._save(runner, checkpoint_hook, where)}; to '
                    'continue, run the same command with --resume (exit '
                    f'status {PREEMPTED_EXIT_STATUS})')
        finally:
            self.restore()
        raise TrainingPreempted(message)

    @staticmethod
    def _save(runner, checkpoint_hook: CheckpointHook, where: str) -> str:
        """Save this iteration's checkpoint as an interval save does
        (unless that just happened); return its path. A rank 0 that fails
        to save makes every rank fail."""
        filename = checkpoint_hook.filename_tmpl.format(runner.iter + 1)
        last = getattr(checkpoint_hook, 'last_ckpt', None)
        error = None
        if osp.basename(str(last)) != filename:
            try:
                # what CheckpointHook.after_train_iter calls for an interval
                checkpoint_hook._save_checkpoint(runner)
            except Exception as e:  # told to every rank below
                error = e
        if get_world_size() > 1:
            saved = torch.tensor([0.0 if error else 1.0])
            all_reduce(saved, op='min')
            if error is None and not saved.item():
                raise CheckpointSaveError(
                    f'stopped by {where}, but the master rank could not '
                    'save the checkpoint (its log says why); --resume '
                    'continues from the previous one')
        if error is not None:
            raise error
        return checkpoint_hook.last_ckpt

    @staticmethod
    def _unsaved(where: str, checkpoint_hook: Optional[CheckpointHook]) -> str:
        """The message when nothing could be saved mid-run."""
        if checkpoint_hook is None:
            why = 'the run has no CheckpointHook (default_hooks.checkpoint)'
            last = None
        else:
            why = 'an epoch-based run resumes only from the end of an epoch'
            last = getattr(checkpoint_hook, 'last_ckpt', None)
        return (f'stopped by {where}; nothing saved: {why}; last checkpoint: '
                f'{last or "none yet"}; to continue, run the same command '
                f'with --resume (exit status {PREEMPTED_EXIT_STATUS})')
