# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Every checkpoint name MMEngine's ``CheckpointLoader`` resolves, read as
safely as a file the user names.

MMEngine reads ``http(s)://`` URLs and the model-zoo names that resolve to
one (``open-mmlab://``, ``openmmlab://``, ``torchvision://``,
``modelzoo://``, ``mmcls://``) through ``torch.hub.load_state_dict_from_url``,
whose ``weights_only`` defaults to False, and local paths through a plain
``torch.load``. Importing this module registers, with MMEngine's public
``CheckpointLoader.register_scheme``, loaders for those prefixes and for
local paths that resolve the name as MMEngine does (its public
``get_external_models``, ``get_deprecated_model_names``,
``get_torchvision_models``, ``get_mmcls_models``), download a URL into
torch's hub cache, and read the file with
:func:`~mmseg_wsbcn.engine.checkpoint_files.load_checkpoint_file`. So a
``load_from``, ``model.pretrained`` or ``Pretrained`` ``init_cfg`` name is
read with ``weights_only=True`` whatever its form.

``CheckpointLoader`` calls a loader with ``(filename, map_location)`` only;
:func:`trusted_loads` is how a runner with ``trust_checkpoint=True`` opts
these loads in to full unpickling too.
"""
import contextlib
import contextvars
import hashlib
import os
import os.path as osp
from collections import OrderedDict
from typing import Iterator
from urllib.parse import urlparse

import torch
from mmengine.dist import barrier, get_dist_info
from mmengine.runner.checkpoint import (CheckpointLoader,
                                        get_deprecated_model_names,
                                        get_external_models, get_mmcls_models,
                                        get_torchvision_models)

from .checkpoint_files import load_checkpoint_file

#: The URL prefixes read by :func:`load_from_http_safely`.
HTTP_PREFIXES = ('http://', 'https://')

_TRUST = contextvars.ContextVar('mmseg_wsbcn_trust_checkpoint', default=False)


@contextlib.contextmanager
def trusted_loads(trust: bool = True) -> Iterator[None]:
    """Within the block, the loaders registered here unpickle fully when
    ``trust`` is True (a runner's ``trust_checkpoint``)."""
    token = _TRUST.set(bool(trust))
    try:
        yield
    finally:
        _TRUST.reset(token)


def download_checkpoint(url: str) -> str:
    """The local copy of ``url`` in torch's hub cache, downloaded once (by
    rank 0 first in a distributed run), in a folder named by a hash of the
    whole URL, so two URLs with the same file name never share a copy.

    Args:
        url (str): An ``http://`` or ``https://`` URL.

    Returns:
        str: The cached file.
    """
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    folder = osp.join(torch.hub.get_dir(), 'checkpoints', key)
    cached = osp.join(folder, osp.basename(urlparse(url).path) or 'ckpt.pth')
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
                          trust: bool = None) -> dict:
    """Download ``filename`` (a URL) and read it with
    :func:`~mmseg_wsbcn.engine.checkpoint_files.load_checkpoint_file`
    (``trust`` defaults to :func:`trusted_loads`' setting)."""
    return load_checkpoint_file(
        download_checkpoint(filename),
        map_location,
        trust=_TRUST.get() if trust is None else trust)


def load_from_local_safely(filename: str, map_location=None) -> dict:
    """A local path (MMEngine's ``''`` scheme), read safely."""
    return load_checkpoint_file(filename, map_location, trust=_TRUST.get())


def _zoo_url(filename: str, urls: dict, prefix: str) -> str:
    name = filename[len(prefix):]
    if name not in urls:
        raise FileNotFoundError(
            f"'{filename}': no model named '{name}' under {prefix}")
    url = urls[name]
    if not url.startswith(HTTP_PREFIXES):
        raise FileNotFoundError(
            f"'{filename}' names the local file '{url}' in MMEngine's home; "
            'give its full path instead')
    return url


def load_from_openmmlab_safely(filename: str, map_location=None) -> dict:
    """``open-mmlab://NAME`` / ``openmmlab://NAME``, resolved as MMEngine
    does (deprecated names mapped to their new ones)."""
    prefix = 'open-mmlab://' if filename.startswith('open-mmlab://') \
        else 'openmmlab://'
    name = filename[len(prefix):]
    name = get_deprecated_model_names().get(name, name)
    return load_from_http_safely(
        _zoo_url(prefix + name, get_external_models(), prefix), map_location)


def load_from_torchvision_safely(filename: str, map_location=None) -> dict:
    """``torchvision://NAME`` (and the deprecated ``modelzoo://NAME``)."""
    prefix = 'torchvision://' if filename.startswith('torchvision://') \
        else 'modelzoo://'
    return load_from_http_safely(
        _zoo_url(filename, get_torchvision_models(), prefix), map_location)


def load_from_mmcls_safely(filename: str, map_location=None) -> dict:
    """``mmcls://NAME``: the classifier's ``backbone.*`` weights, renamed
    to the backbone's own keys, as MMEngine's loader returns them."""
    checkpoint = load_from_http_safely(
        _zoo_url(filename, get_mmcls_models(), 'mmcls://'), map_location)
    weights = checkpoint.get('state_dict', checkpoint)
    return dict(
        state_dict=OrderedDict((k[len('backbone.'):], v)
                               for k, v in weights.items()
                               if k.startswith('backbone.')))


for _prefixes, _loader in (
    (HTTP_PREFIXES, load_from_http_safely),
    ('', load_from_local_safely),
    (('open-mmlab://', 'openmmlab://'), load_from_openmmlab_safely),
    (('torchvision://', 'modelzoo://'), load_from_torchvision_safely),
    ('mmcls://', load_from_mmcls_safely),
):
    CheckpointLoader.register_scheme(
        prefixes=_prefixes, loader=_loader, force=True)
