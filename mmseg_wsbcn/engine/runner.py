# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""MMEngine's ``Runner`` with safe checkpoints and checked samples.

:class:`SafeCheckpointRunner` changes only what MMEngine's public methods
let a subclass change:

- ``load_checkpoint`` (which ``resume`` and ``load_from`` go through) reads
  the file the user named (a local path or an ``http(s)://`` URL) with
  :func:`~mmseg_wsbcn.engine.checkpoint_files.load_checkpoint_file`:
  ``weights_only=True``, never running code from it, unless the config sets
  ``trust_checkpoint=True`` (``--trust-checkpoint``); an unreadable or
  untrusted file is one line;
- ``load_or_resume`` resumes from the newest *intact* checkpoint;
- ``register_hooks`` puts :class:`~mmseg_wsbcn.engine.hooks.
  AtomicCheckpointHook` in place of a plain ``CheckpointHook``, and adds
  :class:`~mmseg_wsbcn.engine.hooks.PreemptionHook` (save and stop on
  SIGTERM/SIGUSR1) when ``custom_hooks`` lists none;
- ``train`` lets that hook catch its signals from its start to its end;
- ``build_dataloader`` wraps each dataset's pipeline in the
  :class:`~mmseg_wsbcn.datasets.CheckedPipeline` transform, and makes the
  loader's workers ignore SIGTERM and SIGUSR1 from anyone but the main
  process (whose ``PreemptionHook`` handles them).

``tools/train.py``/``tools/test.py`` use this runner when the config sets no
``runner_type``; the toolkit's configs set
``runner_type='SafeCheckpointRunner'`` (``configs/_base_/default_runtime.py``)
so mmseg's own tools get it too.
"""
import copy
import logging
import os.path as osp
import warnings
from typing import Union

from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from torch.utils.data import DataLoader

from ..datasets import guard_dataset
from ..utils.errors import OneLineError
from ..utils.state_dict import DEFAULT_REVISE_KEYS, unwrap_model
from .checkpoint_files import (LAST_CHECKPOINT, CheckpointLoadError,
                               load_checkpoint_file, load_weights,
                               read_last_checkpoint, resume_candidates)
from .hooks import PreemptionHook
from .hooks.preemption_hook import IgnoreSignalsInWorker
from .checkpoint_schemes import (HTTP_PREFIXES, load_from_http_safely,
                                 trusted_loads)


#: What ``--resume`` needs read whole (key paths): the weights, the
#: iteration, the optimizer and scheduler states and the run's info. Only
#: the logged history (``message_hub.log_scalars``) may be left out.
RESUME_KEYS = ('state_dict', 'meta', 'optimizer', 'param_schedulers',
               'message_hub.runtime_info', 'message_hub.resumed_keys')


class ResumeError(OneLineError, RuntimeError):
    """``--resume`` found no intact checkpoint in the work dir."""


def _is_preemption_hook(hook) -> bool:
    """Whether a ``custom_hooks`` entry is a :class:`PreemptionHook`."""
    if isinstance(hook, dict):
        return hook.get('type') in ('PreemptionHook', PreemptionHook)
    return isinstance(hook, PreemptionHook)


def _reason(exc: Union[str, Exception]) -> str:
    """Why a resume candidate was passed over, in a few words."""
    if isinstance(exc, str):
        return exc
    if isinstance(exc, FileNotFoundError):
        return 'no such file'
    return exc.reason


@RUNNERS.register_module()
class SafeCheckpointRunner(Runner):
    """``Runner`` that loads the checkpoints the user names under torch >=
    2.6, resumes from the newest intact one, writes checkpoints atomically
    and names the sample a run fails on (see the module docstring).

    ``--resume`` with an empty ``last_checkpoint``, or one that names a
    missing or unreadable file, warns in one line and continues from the
    newest ``iter_*.pth`` / ``epoch_*.pth`` that loads; only when none does,
    it raises :class:`ResumeError`.
    """

    #: Unpickle the checkpoints this runner loads fully (``weights_only=
    #: False``): set from the config's ``trust_checkpoint`` (the tools'
    #: ``--trust-checkpoint``), for files the user vouches for.
    trust_checkpoint: bool = False
    _resuming: bool = False

    @classmethod
    def from_cfg(cls, cfg) -> 'SafeCheckpointRunner':
        """As ``Runner.from_cfg``, plus the config's ``trust_checkpoint``
        (default False)."""
        runner = super().from_cfg(cfg)
        runner.trust_checkpoint = bool(cfg.get('trust_checkpoint', False))
        return runner

    def register_hooks(self, default_hooks=None, custom_hooks=None) -> None:
        default_hooks = copy.deepcopy(dict(default_hooks or {}))
        checkpoint = default_hooks.get('checkpoint')
        if isinstance(checkpoint, dict) and \
                checkpoint.get('type') in ('CheckpointHook', None):
            checkpoint['type'] = 'AtomicCheckpointHook'
        custom_hooks = list(custom_hooks or [])
        if not any(_is_preemption_hook(h) for h in custom_hooks):
            custom_hooks.append(dict(type='PreemptionHook'))
        super().register_hooks(default_hooks, custom_hooks)

    def train(self):
        """As ``Runner.train``; the :class:`~mmseg_wsbcn.engine.hooks.
        PreemptionHook` catches its signals from the start (before the
        train loop is built and its DataLoader workers start, which ignore
        SIGTERM and SIGUSR1: see :meth:`build_dataloader`) and puts the
        previous handlers back at the end, also when training fails. The
        weights the model's ``init_cfg`` loads (``Pretrained``) are read
        fully only with ``trust_checkpoint``
        (:func:`~mmseg_wsbcn.engine.checkpoint_schemes.trusted_loads`)."""
        hooks = [h for h in self.hooks if isinstance(h, PreemptionHook)]
        for hook in hooks:
            hook.install()
        try:
            with trusted_loads(self.trust_checkpoint):
                return super().train()
        finally:
            for hook in hooks:
                hook.restore()

    def load_checkpoint(self,
                        filename: str,
                        map_location='cpu',
                        strict: bool = False,
                        revise_keys=DEFAULT_REVISE_KEYS):
        """As ``Runner.load_checkpoint``; a local file or ``http(s)://`` URL
        is read by
        :func:`~mmseg_wsbcn.engine.checkpoint_files.load_checkpoint_file`.
        """
        complete = RESUME_KEYS if self._resuming else ('state_dict', )
        if str(filename).startswith(HTTP_PREFIXES):
            checkpoint = load_from_http_safely(filename, map_location,
                                               self.trust_checkpoint)
        elif '://' in str(filename):  # model-zoo names (checkpoint_schemes)
            with trusted_loads(self.trust_checkpoint):
                return super().load_checkpoint(filename, map_location,
                                               strict, list(revise_keys))
        else:
            checkpoint = load_checkpoint_file(
                filename,
                map_location,
                self.trust_checkpoint,
                complete=complete)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        load_weights(unwrap_model(self.model), checkpoint, strict, revise_keys)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    def resume(self, filename: str, *args, **kwargs) -> None:
        """As ``Runner.resume``; the checkpoint must then be read whole
        (:data:`RESUME_KEYS`): a file whose optimizer, scheduler or run
        state only full unpickling reads is refused rather than resumed
        inexactly."""
        self._resuming = True
        try:
            return super().resume(filename, *args, **kwargs)
        finally:
            self._resuming = False

    def load_or_resume(self) -> None:
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
            damaged.append((osp.join(self.work_dir, LAST_CHECKPOINT), 'empty'))
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

    @staticmethod
    def build_dataloader(dataloader, seed=None, diff_rank_seed=False):
        """As ``Runner.build_dataloader``; also puts the dataset's pipeline
        in :class:`~mmseg_wsbcn.datasets.CheckedPipeline` and makes the
        loader's workers ignore SIGTERM and SIGUSR1 from anyone but the
        main process (:class:`~mmseg_wsbcn.engine.hooks.preemption_hook.
        IgnoreSignalsInWorker` around its ``worker_init_fn``, an attribute
        a ``DataLoader`` reads when it starts its workers): slurm signals
        every process of the job, and PyTorch's own SIGTERM handler in a
        worker would end it, failing the run before the
        :class:`~mmseg_wsbcn.engine.hooks.PreemptionHook` of the main
        process saves."""
        loader = Runner.build_dataloader(dataloader, seed, diff_rank_seed)
        if isinstance(loader, DataLoader):
            guard_dataset(loader.dataset)
            if loader.num_workers > 0 and not isinstance(
                    loader.worker_init_fn, IgnoreSignalsInWorker):
                loader.worker_init_fn = IgnoreSignalsInWorker(
                    loader.worker_init_fn)
        return loader


@RUNNERS.register_module()
class WSBCNRunner(SafeCheckpointRunner):
    """Deprecated name of :class:`SafeCheckpointRunner` (it has nothing to
    do with WS or BCN); configs that name it keep working, with a
    warning."""

    def __init__(self, *args, **kwargs) -> None:
        warnings.warn(
            "runner_type='WSBCNRunner' is deprecated; use "
            "'SafeCheckpointRunner' (the same runner)",
            DeprecationWarning,
            stacklevel=2)
        super().__init__(*args, **kwargs)
