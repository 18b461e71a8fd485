# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Build a segmentor for inference from a config and a checkpoint.

A thin layer over :func:`mmseg.apis.init_model`, which does the work
(config, ``dataset_meta``, SyncBN reverted on CPU, eval mode). It adds two
things a WS + BCN model needs:

- the checkpoint the caller names is loaded with ``weights_only=False``
  (MMEngine's training checkpoints hold more than tensors, which torch >=
  2.6 refuses by default; see :mod:`mmseg_wsbcn.engine.runner`);
- ``fold=True`` replaces every ``WSConv2d`` by the plain conv holding its
  standardized weight (:func:`~mmseg_wsbcn.models.utils.fold_ws_conv`), so
  no standardization runs at inference.
"""
from typing import Optional, Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmseg.apis import init_model as mmseg_init_model

from ..engine.runner import trusted_local_checkpoints
from ..models.utils import fold_ws_conv


def init_model(config: Union[str, Config],
               checkpoint: Optional[str] = None,
               device: Optional[str] = None,
               fold: bool = False,
               cfg_options: Optional[dict] = None) -> nn.Module:
    """Build a segmentor from a config, load a checkpoint, set eval mode.

    Args:
        config (str or Config): Config file path or the config itself.
        checkpoint (str, optional): Checkpoint to load (a local file is
            trusted, as for ``load_from``). ``None`` keeps the weights the
            config initializes.
        device (str, optional): Where to put the model. Defaults to
            ``'cuda:0'`` when CUDA is available, else ``'cpu'``.
        fold (bool): Fold Weight Standardization into plain convs. Outputs
            are unchanged up to float rounding. Defaults to False.
        cfg_options (dict, optional): Overrides merged into the config.

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
    with trusted_local_checkpoints():
        model = mmseg_init_model(config, checkpoint, device, cfg_options)
    if fold:
        fold_ws_conv(model)
    return model.eval()
