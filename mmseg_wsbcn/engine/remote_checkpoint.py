# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Checkpoints named by URL, read as safely as local ones.

MMEngine's ``http://`` / ``https://`` loader ends in
``torch.hub.load_state_dict_from_url``, whose ``weights_only`` defaults to
False: a ``load_from`` URL or a ``Pretrained`` ``init_cfg`` URL would be
fully unpickled. Here the file is downloaded into torch's hub cache (the
folder MMEngine uses, ``<torch hub dir>/checkpoints``) and read with
:func:`~mmseg_wsbcn.engine.checkpoint_files.load_checkpoint_file`.

Importing this module registers :func:`load_from_http_safely` for both
prefixes with MMEngine's public ``CheckpointLoader.register_scheme``, so
every loader that goes through ``CheckpointLoader`` (``init_cfg``,
``mmengine.runner.load_checkpoint``) reads URLs safely.
"""
import os
import os.path as osp
from urllib.parse import urlparse

import torch
from mmengine.dist import barrier, get_dist_info
from mmengine.runner.checkpoint import CheckpointLoader

from .checkpoint_files import load_checkpoint_file

#: The URL prefixes this module reads.
HTTP_PREFIXES = ('http://', 'https://')


def download_checkpoint(url: str) -> str:
    """The local copy of ``url`` in torch's hub cache, downloaded once (by
    rank 0 first in a distributed run).

    Args:
        url (str): An ``http://`` or ``https://`` URL.

    Returns:
        str: The cached file.
    """
    folder = osp.join(torch.hub.get_dir(), 'checkpoints')
    cached = osp.join(folder, osp.basename(urlparse(url).path))
    rank, world_size = get_dist_info()
    if rank == 0 and not osp.isfile(cached):
        os.makedirs(folder, exist_ok=True)
        torch.hub.download_url_to_file(url, cached, progress=False)
    if world_size > 1:
        barrier()
    if not osp.isfile(cached):  # ranks on other nodes
        os.makedirs(folder, exist_ok=True)
        torch.hub.download_url_to_file(url, cached, progress=False)
    return cached


def load_from_http_safely(filename: str,
                          map_location=None,
                          trust: bool = False) -> dict:
    """Download ``filename`` (a URL) and read it with
    :func:`~mmseg_wsbcn.engine.checkpoint_files.load_checkpoint_file`."""
    return load_checkpoint_file(
        download_checkpoint(filename), map_location, trust=trust)


CheckpointLoader.register_scheme(
    prefixes=HTTP_PREFIXES, loader=load_from_http_safely, force=True)
