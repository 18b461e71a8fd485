# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Build a segmentor for inference from a config and a checkpoint.

A thin layer over :func:`mmseg.apis.init_model`, which does the work
(config, ``dataset_meta``, SyncBN reverted on CPU, eval mode). It adds two
things a WS + BCN model needs:

- the checkpoint the caller names is read by
  :func:`~mmseg_wsbcn.engine.load_checkpoint_file`, with
  ``weights_only=True`` unless ``trust_checkpoint=True`` (see
  :mod:`mmseg_wsbcn.engine.checkpoint_files`), and its ``dataset_meta`` set
  as mmseg sets it;
- ``fold=True`` replaces every ``WSConv2d`` by the plain conv holding its
  standardized weight (:func:`~mmseg_wsbcn.models.utils.fold_ws_conv`), so
  no standardization runs at inference.
"""
import warnings
from typing import Optional, Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmseg.apis import init_model as mmseg_init_model
from mmseg.utils import dataset_aliases, get_classes, get_palette

from ..engine.checkpoint_files import load_checkpoint_file, load_weights
from ..engine.checkpoint_schemes import HTTP_PREFIXES, download_checkpoint
from ..models.utils import fold_ws_conv


def init_model(config: Union[str, Config],
               checkpoint: Optional[str] = None,
               device: Optional[str] = None,
               fold: bool = False,
               cfg_options: Optional[dict] = None,
               trust_checkpoint: bool = False) -> nn.Module:
    """Build a segmentor from a config, load a checkpoint, set eval mode.

    Args:
        config (str or Config): Config file path or the config itself.
        checkpoint (str, optional): Checkpoint to load, a local file or an
            ``http(s)://`` URL, read with ``weights_only=True``. ``None``
            keeps the weights the config initializes.
        device (str, optional): Where to put the model. Defaults to
            ``'cuda:0'`` when CUDA is available, else ``'cpu'``.
        fold (bool): Fold Weight Standardization into plain convs. Outputs
            are unchanged up to float rounding. Defaults to False.
        cfg_options (dict, optional): Overrides merged into the config.
        trust_checkpoint (bool): Unpickle the checkpoint fully
            (``weights_only=False``), which runs any code it holds: only for
            a file you trust. Defaults to False.

    Returns:
        nn.Module: The segmentor in eval mode, with ``cfg`` and
        ``dataset_meta`` set as mmseg sets them.

    Example:
        >>> from mmseg.apis import inference_model
        >>> from mmseg_wsbcn.apis import init_model
        >>> model = init_model(CONFIG, CHECKPOINT, 'cpu', fold=True)
        >>> result = inference_model(model, 'demo.png')
    """
    if device is None:
        device = 'cuda:0' if torch.cuda.is_available() else 'cpu'
    model = mmseg_init_model(config, None, device, cfg_options)
    if checkpoint is not None:
        loaded = load_checkpoint_file(
            download_checkpoint(checkpoint)
            if checkpoint.startswith(HTTP_PREFIXES) else checkpoint,
            map_location='cpu',
            trust=trust_checkpoint)
        load_weights(model, loaded)
        model.dataset_meta = _dataset_meta(loaded.get('meta') or {}, model)
    if fold:
        fold_ws_conv(model)
    return model.eval()


def _dataset_meta(meta: dict, model: nn.Module) -> dict:
    """``classes`` and ``palette`` as :func:`mmseg.apis.init_model` sets
    them: from the checkpoint's meta (mmseg 1.x, then 0.x keys), else the
    first known dataset with the model's number of classes (with mmseg's
    warning)."""
    if 'dataset_meta' in meta:
        return meta['dataset_meta']
    if 'CLASSES' in meta:
        return dict(classes=meta['CLASSES'], palette=meta['PALETTE'])
    warnings.warn('dataset_meta or class names are not saved in the '
                  "checkpoint's meta data, classes and palette will be set "
                  'according to num_classes')
    num_classes = model.decode_head.num_classes
    name = next(
        (n for n in dataset_aliases if len(get_classes(n)) == num_classes),
        'cityscapes')
    return dict(classes=get_classes(name), palette=get_palette(name))
