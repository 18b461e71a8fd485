# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The checkpoint files of a run: reading the one the user named, and which
one ``--resume`` may use.

- :func:`load_checkpoint_file` reads a local checkpoint the user named for
  this run (``--resume``, ``load_from``, ``tools/test.py CHECKPOINT``,
  ``init_model``) without running code from it: ``torch.load`` with
  ``weights_only=True`` and the allow-list of
  :mod:`~mmseg_wsbcn.engine.safe_load`. A file that names other globals
  (MMEngine's ``HistoryBuffer``, a crafted ``__reduce__`` payload) is read
  partially: the values that hold such a global are left out with one
  warning line, and when that touches the weights the file is refused with
  :class:`UntrustedCheckpointError`, one line naming the file and the
  opt-in (``--trust-checkpoint``, ``init_model(trust_checkpoint=True)``)
  that unpickles it fully. The toolkit's own checkpoints are plain data
  (:mod:`~mmseg_wsbcn.engine.plain_checkpoint`) and load whole. An
  unreadable file is :class:`CheckpointLoadError`, one line naming it.
- :func:`resume_candidates` lists what ``--resume`` may use, newest first,
  so that a damaged newest file falls back to the one before it.
"""
import logging
import os
import os.path as osp
import pickle
import re
import zipfile
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.runner.checkpoint import load_state_dict

from ..utils.errors import OneLineError, first_sentence
from ..utils.state_dict import (DEFAULT_REVISE_KEYS, checkpoint_weights,
                                revise_keys)
from .plain_checkpoint import from_plain
from .safe_load import is_under, prune_unread, safe_load

#: The file MMEngine's CheckpointHook writes the newest checkpoint's path to.
LAST_CHECKPOINT = 'last_checkpoint'
_CKPT_RE = re.compile(r'^(iter|epoch)_(\d+)\.pth$')


class CheckpointLoadError(OneLineError, RuntimeError):
    """A checkpoint named for this run cannot be read (truncated, corrupted,
    not a PyTorch file); the message is one line naming the file."""

    @classmethod
    def for_file(cls, filename: str, reason: str) -> 'CheckpointLoadError':
        """The error for ``filename``; ``reason`` is what torch said, in one
        line."""
        error = cls(f"cannot read checkpoint '{filename}' ({reason}); the "
                    'file is truncated, corrupted or not a PyTorch '
                    'checkpoint: copy or save it again')
        error.filename, error.reason = filename, reason
        return error


class UntrustedCheckpointError(OneLineError, RuntimeError):
    """A checkpoint's weights can only be read by full unpickling, which can
    run code; the message is one line naming the file and the opt-in."""


#: How the tools and :func:`~mmseg_wsbcn.apis.init_model` are told to
#: unpickle a checkpoint fully, for the message.
TRUST_OPT_IN = ('pass --trust-checkpoint to the tool (trust_checkpoint=True '
                'for init_model)')


def load_checkpoint_file(filename: str,
                         map_location=None,
                         trust: bool = False,
                         complete: Sequence[str] = ('state_dict', )) -> dict:
    """Load a local checkpoint the user named for this run.

    Args:
        filename (str): The file (``~`` is expanded).
        map_location: As for ``torch.load``.
        trust (bool): Unpickle the file fully (``weights_only=False``),
            which runs any code it holds: only for a file the user vouches
            for. Defaults to False.
        complete (Sequence[str]): Key paths that must be read whole, or the
            file is refused (``--resume`` asks for its optimizer, scheduler
            and run state too). ``'state_dict'`` stands for the weights,
            also when the checkpoint is a bare state dict.

    Returns:
        dict: The checkpoint, with the toolkit's plain-data training state
        turned back into MMEngine's objects. Without ``trust``, values
        that only full unpickling can read are left out (one warning).

    Raises:
        FileNotFoundError: There is no such file.
        CheckpointLoadError: torch cannot read it.
        UntrustedCheckpointError: What ``complete`` names (or the whole
            file) can only be read by full unpickling.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    if osp.getsize(filename) == 0:
        raise CheckpointLoadError.for_file(filename, 'empty file')
    try:
        if trust:
            checkpoint = torch.load(
                filename, map_location=map_location, weights_only=False)
        else:
            checkpoint = _load_safely(filename, map_location, complete)
        return from_plain(checkpoint) if isinstance(checkpoint, dict) \
            else checkpoint
    except UntrustedCheckpointError:
        raise
    except Exception as e:  # RuntimeError, EOFError, UnpicklingError, ...
        raise CheckpointLoadError.for_file(filename, first_sentence(e)) \
            from e


def _untrusted(filename: str, what: str,
               names: str) -> UntrustedCheckpointError:
    """The refusal: reading ``what`` needs the globals ``names``."""
    error = UntrustedCheckpointError(
        f"refusing to unpickle checkpoint '{filename}': reading {what} "
        f'needs {names}, which only full unpickling reads, and that can '
        f'run code; if you trust this file, {TRUST_OPT_IN}')
    error.filename, error.reason = filename, f'holds {names}'
    return error


def _load_safely(filename: str, map_location, complete: Sequence[str]):
    """:func:`~.safe_load.safe_load`, then the safe part of the result."""
    try:
        checkpoint, unsafe = safe_load(filename, map_location)
    except pickle.UnpicklingError:
        if zipfile.is_zipfile(filename):
            raise  # a damaged pickle in a zip checkpoint
        # torch's legacy (non-zip) format, whose globals cannot be listed
        raise _untrusted(filename, 'its contents (legacy torch format)',
                         'globals beyond the allowed ones')
    if unsafe:
        checkpoint = _keep_safe_part(filename, checkpoint, unsafe, complete)
    return checkpoint


def _keep_safe_part(filename: str, checkpoint, unsafe: List[str],
                    complete: Sequence[str]) -> dict:
    """The checkpoint without the values that hold an unread global; what
    ``complete`` names must be whole."""
    names = ', '.join(unsafe[:3]) + (', ...' if len(unsafe) > 3 else '')
    kept, dropped = prune_unread(checkpoint)
    bare = isinstance(kept, dict) and 'state_dict' not in kept
    if kept is None or not isinstance(kept, dict) or (bare and dropped):
        raise _untrusted(filename, 'its weights', names)
    for key in complete:
        lost = [path for path in dropped if is_under(path, key)]
        if lost:
            what = 'its weights' if key == 'state_dict' else \
                f"its {key} (which --resume needs; e.g. '{lost[0]}')"
            raise _untrusted(filename, what, names)
    dropped.sort(key=lambda path: path.count('.'))  # top-level keys first
    shown = ', '.join(dropped[:3]) + (', ...' if len(dropped) > 3 else '')
    print_log(
        f"checkpoint '{filename}' read safely without {shown} (they hold "
        f'{names}, which only full unpickling reads); to read them, '
        f'{TRUST_OPT_IN}',
        logger='current',
        level=logging.WARNING)
    return kept


def load_weights(model: nn.Module,
                 checkpoint: Mapping,
                 strict: bool = False,
                 revisions: Iterable[Tuple[str, str]] = DEFAULT_REVISE_KEYS
                 ) -> None:
    """Load a checkpoint's weights into ``model`` as MMEngine's loader does
    (``state_dict`` inside it or the checkpoint itself, keys revised, a
    missing/unexpected key is logged unless ``strict``)."""
    state_dict = revise_keys(checkpoint_weights(checkpoint), revisions)
    load_state_dict(model, state_dict, strict, logger='current')


def read_last_checkpoint(work_dir: str) -> Optional[str]:
    """The path ``<work_dir>/last_checkpoint`` names: ``None`` when there
    is no such record, ``''`` when it is empty (a write that was cut)."""
    record = osp.join(work_dir, LAST_CHECKPOINT)
    if not osp.isfile(record):
        return None
    with open(record) as f:
        return f.read().strip()


def resume_candidates(work_dir: str) -> List[str]:
    """The checkpoints ``--resume`` may use, in the order to try them.

    First the file ``last_checkpoint`` names (when it names one), then every
    ``iter_*.pth`` / ``epoch_*.pth`` of ``work_dir``, newest (highest
    number) first.

    Args:
        work_dir (str): The run's work dir.

    Returns:
        list[str]: Paths, without duplicates; they may not exist or not be
        readable (the caller tries them).
    """
    found = []
    for name in os.listdir(work_dir) if osp.isdir(work_dir) else []:
        match = _CKPT_RE.match(name)
        if match:
            found.append((int(match.group(2)), osp.join(work_dir, name)))
    candidates = [path for _, path in sorted(found, reverse=True)]
    named = read_last_checkpoint(work_dir)
    if named:
        candidates = [named] + [
            p for p in candidates if osp.abspath(p) != osp.abspath(named)
        ]
    return candidates
