# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Write a file so that it holds the old content or the new, never a part.

Everything the toolkit writes that a later step reads (checkpoints,
``last_checkpoint``, metrics, prediction PNGs, converted backbones) goes
through :func:`atomic_path`: the writer fills a temporary file next to the
target, which is renamed over the target only when the writer returned
(``os.replace`` is atomic on POSIX). A kill or a full disk leaves the old
file, or none, and no temporary file behind.
"""
import contextlib
import os
import os.path as osp
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path to write ``path``'s new content to.

    The temporary file keeps ``path``'s extension (``x.png`` is written as
    ``x.tmp.png``), so writers that choose the format from the name still
    do. The folder is created.

    Args:
        path (str): The file to write.

    Yields:
        str: The temporary path; on a clean exit it is renamed to ``path``,
        on an error it is removed.
    """
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem, ext = osp.splitext(path)
    tmp = f'{stem}.tmp{ext}'
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if osp.lexists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = 'w', **kwargs) -> Iterator[IO]:
    """``open(path, mode)`` for writing, atomically (see
    :func:`atomic_path`); the data reach the disk before the rename."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
