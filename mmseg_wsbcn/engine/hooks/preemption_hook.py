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
iteration: the runner's :class:`~mmseg_wsbcn.engine.hooks.
AtomicCheckpointHook` saves ``iter_N.pth`` exactly as an interval
checkpoint (atomically, ``last_checkpoint`` updated, on the master rank;
:meth:`~mmseg_wsbcn.engine.hooks.AtomicCheckpointHook.save_now`), and every
rank raises :class:`TrainingPreempted`, which the tools print as one line
and exit with :data:`PREEMPTED_EXIT_STATUS`::

    train.py: error: stopped by SIGTERM after iteration 3/10; checkpoint
    saved: work_dirs/x/iter_3.pth; to continue, run the same command with
    --resume (exit status 75)

``--resume`` then continues from that checkpoint as from any other, to the
same final weights as a run that was never stopped.

:class:`~mmseg_wsbcn.engine.SafeCheckpointRunner` adds the hook when the
config lists none, and catches the signals from the start of ``train()``.
The previous handlers are back when training ends, however it ends.

Slurm signals every process of the job step, DataLoader workers included
(the time limit, ``scancel`` and preemption signal the whole process
group). A worker does not keep the handler it inherits: PyTorch's worker
loop installs its own C-level SIGTERM handler, which ends the worker, and
the main process then fails with ``DataLoader worker (pid(s) ...) exited
unexpectedly``, before any checkpoint; a worker started with ``spawn``
dies of SIGUSR1 too. So ``SafeCheckpointRunner.build_dataloader`` wraps
each loader's ``worker_init_fn`` in :class:`IgnoreSignalsInWorker`: the
workers ignore SIGTERM and SIGUSR1 (the hook's default signals; a hook
configured with other signals leaves the workers to their default for
those) unless the main process itself sends SIGTERM (as it does to shut
them down at exit), and exit with the main process.
"""
import os
import os.path as osp
import signal
import threading
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.registry import HOOKS

from ...utils.errors import OneLineError
from .checkpoint_hook import AtomicCheckpointHook, CheckpointSaveError

DATA_BATCH = Optional[Union[dict, tuple, list]]

#: Exit status of a run that a signal stopped: ``EX_TEMPFAIL`` of
#: ``sysexits.h`` ("try again later"). Its checkpoint is saved, so
#: ``--resume`` continues from it; ``tools/slurm_train.sh`` requeues the
#: job on this status.
PREEMPTED_EXIT_STATUS = 75


def _wait_for_sigterm() -> None:
    """Take the worker's SIGTERMs (blocked in its other threads): end the
    worker on one from its main process, drop the others."""
    while True:
        info = signal.sigwaitinfo({signal.SIGTERM})
        if info.si_pid == os.getppid():
            # what PyTorch's own handler does for its parent's SIGTERM:
            # multiprocessing's atexit function terminates, then joins, the
            # workers of a loader still alive at exit (as after
            # TrainingPreempted); _shutdown_workers' last resort too
            os._exit(0)


class IgnoreSignalsInWorker:
    """A DataLoader ``worker_init_fn`` that makes the worker ignore SIGTERM
    and SIGUSR1 from anyone but its main process, then calls the loader's
    own ``worker_init_fn`` (if any).

    Slurm signals every process of the job step; PyTorch's worker loop
    installs a C-level SIGTERM handler (before it calls
    ``worker_init_fn``) that ends the worker, failing the main process
    before its :class:`PreemptionHook` can save. Plain ``SIG_IGN`` would
    not do for SIGTERM: that handler exits quietly on a SIGTERM from the
    main process, and multiprocessing's atexit function relies on it (it
    terminates the workers of a loader still alive at exit, as after
    :class:`TrainingPreempted`, and then joins them: ignoring workers hang
    the exit). So SIGTERM is blocked in the worker and a thread takes it
    with ``sigwaitinfo``: from the main process it ends the worker
    (``os._exit(0)``, as PyTorch's handler does), from anyone else it is
    dropped. SIGUSR1 is simply ignored. The worker still exits when the
    main process shuts it down or dies (PyTorch's parent watchdog).

    Threads the worker starts later inherit the blocked SIGTERM. A thread
    that already runs when ``worker_init_fn`` is called keeps PyTorch's
    handler: none with the ``fork`` start method (MMEngine's default);
    with ``spawn``/``forkserver``, e.g. the thread pool OpenBLAS starts
    when NumPy is imported, unless ``OMP_NUM_THREADS=1`` (which MMEngine
    and torchrun set for several processes). Where ``signal.sigwaitinfo``
    is missing (macOS, Windows), SIGTERM keeps PyTorch's handling. A
    module-level class holding the original function, so that it pickles
    for ``spawn`` and ``forkserver``.

    Args:
        worker_init_fn (callable, optional): The loader's own
            ``worker_init_fn``, called with the worker id.
    """

    def __init__(self, worker_init_fn: Optional[Callable] = None) -> None:
        self.worker_init_fn = worker_init_fn

    def __call__(self, worker_id: int) -> None:
        if hasattr(signal, 'SIGUSR1'):
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        if hasattr(signal, 'sigwaitinfo'):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            threading.Thread(
                target=_wait_for_sigterm,
                name='wsbcn_worker_sigterm',
                daemon=True).start()
        if self.worker_init_fn is not None:
            self.worker_init_fn(worker_id)

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.worker_init_fn!r})'


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

    It saves through the runner's :class:`~mmseg_wsbcn.engine.hooks.
    AtomicCheckpointHook` (:meth:`~mmseg_wsbcn.engine.hooks.
    AtomicCheckpointHook.save_now`), which ``SafeCheckpointRunner`` puts in
    place of a plain ``CheckpointHook``. Where the checkpoint hook is
    another one (another runner, or a ``CheckpointHook`` subclass of the
    config's own), it warns when training starts; with such a hook, or
    none, a signal stops training after the iteration without saving: the
    line names the last checkpoint, which ``--resume`` continues from.

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
        if not self.enabled:
            return
        checkpoint_hook = self._checkpoint_hook(runner)
        if checkpoint_hook is not None and not checkpoint_hook.by_epoch \
                and not isinstance(checkpoint_hook, AtomicCheckpointHook):
            runner.logger.warning(
                f'PreemptionHook: {self._why_unsaved(checkpoint_hook)}; a '
                'signal stops training without saving a checkpoint')

    @staticmethod
    def _checkpoint_hook(runner) -> Optional[CheckpointHook]:
        """The runner's (last) ``CheckpointHook`` or subclass, if any."""
        checkpoint_hook = None
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook):
                checkpoint_hook = hook
        return checkpoint_hook

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
        checkpoint_hook = self._checkpoint_hook(runner)
        try:  # a second signal while saving counts for nothing
            if not isinstance(checkpoint_hook, AtomicCheckpointHook) \
                    or checkpoint_hook.by_epoch:
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
    def _save(runner, checkpoint_hook: AtomicCheckpointHook,
              where: str) -> str:
        """Save this iteration's checkpoint as an interval save does
        (unless that just happened); return its path. A rank 0 that fails
        to save makes every rank fail."""
        filename = checkpoint_hook.filename_tmpl.format(runner.iter + 1)
        last = getattr(checkpoint_hook, 'last_ckpt', None)
        error = None
        if osp.basename(str(last)) != filename:
            try:
                checkpoint_hook.save_now(runner)
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
    def _why_unsaved(checkpoint_hook: Optional[CheckpointHook]) -> str:
        """Why nothing can be saved mid-run, in a few words."""
        if checkpoint_hook is None:
            return 'the run has no CheckpointHook (default_hooks.checkpoint)'
        if checkpoint_hook.by_epoch:
            return 'an epoch-based run resumes only from the end of an epoch'
        name = type(checkpoint_hook).__name__
        return (f"the run's checkpoint hook is a {name}, not an "
                "AtomicCheckpointHook (set type='AtomicCheckpointHook' in "
                "default_hooks.checkpoint, or runner_type="
                "'SafeCheckpointRunner')")

    @classmethod
    def _unsaved(cls, where: str,
                 checkpoint_hook: Optional[CheckpointHook]) -> str:
        """The message when nothing could be saved mid-run."""
        why = cls._why_unsaved(checkpoint_hook)
        last = getattr(checkpoint_hook, 'last_ckpt', None)
        return (f'stopped by {where}; nothing saved: {why}; last checkpoint: '
                f'{last or "none yet"}; to continue, run the same command '
                f'with --resume (exit status {PREEMPTED_EXIT_STATUS})')
