# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The checkpoint files of a work dir: which to resume from, and writing
them so that a kill or a full disk never leaves a damaged one.

MMEngine's ``CheckpointHook`` records the newest checkpoint in
``<work_dir>/last_checkpoint`` with a plain ``open(..., 'w')``: a kill in
the middle leaves it empty, and ``--resume`` then fails with
``FileNotFoundError:  can not be found.``. :func:`atomic_last_checkpoint`
makes that write go through a temporary file and a rename, like the
checkpoints themselves; :func:`resume_candidates` lists what ``--resume``
may use, newest first, so that a damaged newest file falls back to the one
before it.
"""
import builtins
import contextlib
import os
import os.path as osp
import re
from typing import Iterator, List, Optional

from mmengine.hooks import checkpoint_hook

#: The file MMEngine's CheckpointHook writes the newest checkpoint's path to.
LAST_CHECKPOINT = 'last_checkpoint'
_CKPT_RE = re.compile(r'^(iter|epoch)_(\d+)\.pth$')


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through ``<path>.tmp`` and a rename, so
    that ``path`` holds either the old or the new text, never a part."""
    tmp = f'{path}.tmp'
    try:
        with builtins.open(tmp, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


class _AtomicTextFile:
    """The file object ``CheckpointHook`` writes ``last_checkpoint``
    through: it collects the text and writes it atomically on close."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.parts: List[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def close(self) -> None:
        write_text_atomic(self.path, ''.join(self.parts))

    def __enter__(self) -> '_AtomicTextFile':
        return self

    def __exit__(self, exc_type, *args) -> None:
        if exc_type is None:
            self.close()


def _open(file, mode='r', *args, **kwargs):
    if mode == 'w' and osp.basename(str(file)) == LAST_CHECKPOINT:
        return _AtomicTextFile(str(file))
    return builtins.open(file, mode, *args, **kwargs)


@contextlib.contextmanager
def atomic_last_checkpoint() -> Iterator[None]:
    """Within the block, MMEngine's ``CheckpointHook`` writes
    ``last_checkpoint`` atomically (only that module's ``open`` is
    redirected, and only for that file)."""
    checkpoint_hook.open = _open
    try:
        yield
    finally:
        del checkpoint_hook.open


def read_last_checkpoint(work_dir: str) -> Optional[str]:
    """The path ``<work_dir>/last_checkpoint`` names: ``None`` when there
    is no such record, ``''`` when it is empty (a write that was cut)."""
    record = osp.join(work_dir, LAST_CHECKPOINT)
    if not osp.isfile(record):
        return None
    with builtins.open(record) as f:
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
