# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The checkpoint files of a run: reading the one the user named, and which
one ``--resume`` may use.

- :func:`load_checkpoint_file` reads a local checkpoint the user named for
  this run (``--resume``, ``load_from``, ``tools/test.py CHECKPOINT``,
  ``init_model``). MMEngine 0.10.7's training checkpoints hold more than
  tensors (``HistoryBuffer``, numpy arrays, which pickle through
  ``builtins.getattr``), so torch >= 2.6's default ``weights_only=True``
  refuses them; allow-listing ``getattr`` would open the unpickler to
  anything. The file the user named is therefore read with
  ``weights_only=False`` (trusted), and only that one: pretrained backbones
  named in ``init_cfg=dict(type='Pretrained', ...)`` keep MMEngine's loader
  and torch's safe default. An unreadable file is
  :class:`CheckpointLoadError`, one line naming it.
- :func:`resume_candidates` lists what ``--resume`` may use, newest first,
  so that a damaged newest file falls back to the one before it.
"""
import os
import os.path as osp
import re
from typing import Iterable, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.runner.checkpoint import load_state_dict

from ..utils.errors import OneLineError, first_sentence
from ..utils.state_dict import (DEFAULT_REVISE_KEYS, checkpoint_weights,
                                revise_keys)

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


def load_checkpoint_file(filename: str, map_location=None) -> dict:
    """``torch.load`` a local checkpoint the user named for this run.

    Args:
        filename (str): The file (``~`` is expanded).
        map_location: As for ``torch.load``.

    Returns:
        dict: The checkpoint.

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
        raise CheckpointLoadError.for_file(filename, first_sentence(e)) \
            from e


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
