# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Release a trained checkpoint the way mmseg's model zoo names them:
``<name>-<first 8 hex digits of its sha256>.pth``.

mmseg ships ``tools/misc/publish_model.py`` in its wheel; it is not reused
because, in mmseg 1.2.2, it hashes the *input* file rather than the one it
publishes (the suffix does not identify the released bytes), strips the
extension with ``str.rstrip('.pth')`` (which also eats a name's trailing
``p``, ``t`` and ``h``), renames with an asynchronous ``mv`` and unpickles
the input fully. :func:`publish_checkpoint` reads the checkpoint safely,
drops the optimizer state, keeps it plain data (so the release loads with
``weights_only=True``), hashes the bytes it writes and renames atomically.
"""
import hashlib
import os
import os.path as osp

import torch

from ..utils.atomic import atomic_path
from .checkpoint_files import load_checkpoint_file
from .plain_checkpoint import to_plain

#: Keys a release leaves out (mmseg's publish_model.py drops the optimizer).
DROPPED_KEYS = ('optimizer', )


def sha256_of(path: str, block: int = 1 << 20) -> str:
    """The hex sha256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(block), b''):
            digest.update(chunk)
    return digest.hexdigest()


def release_name(out_file: str, sha256: str) -> str:
    """``out/name.pth`` -> ``out/name-<sha256[:8]>.pth``."""
    stem = out_file[:-len('.pth')] if out_file.endswith('.pth') else out_file
    return f'{stem}-{sha256[:8]}.pth'


def publish_checkpoint(in_file: str, out_file: str) -> str:
    """Write the release of ``in_file`` next to ``out_file``.

    Args:
        in_file (str): A training checkpoint (read with
            ``weights_only=True``).
        out_file (str): The release's name without its hash, e.g.
            ``releases/deeplabv3_r50-d8_bcn-ws_8xb1-80k_cityscapes.pth``.

    Returns:
        str: The file written, ``<out_file stem>-<sha256[:8]>.pth``; its
        own sha256 starts with those digits.
    """
    checkpoint = load_checkpoint_file(in_file, map_location='cpu')
    for key in DROPPED_KEYS:
        checkpoint.pop(key, None)
    with atomic_path(out_file) as tmp:
        torch.save(to_plain(checkpoint), tmp)
    final = release_name(out_file, sha256_of(out_file))
    os.replace(out_file, final)
    return osp.abspath(final)
