# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""``FoldedSegmentor``: a segmentor that folds its WS / BCN / BN layers
(:func:`~mmseg_wsbcn.deploy.fold_bcn_ws`) at its first inference, so that
any tool that builds ``cfg.model``, loads a checkpoint and calls
``model.eval()`` (mmseg's ``benchmark.py``, ``test.py``) runs the deployed
network: plain Conv2d + GroupNorm.

The model built is the segmentor itself (same class, same state-dict keys,
so checkpoints load as they are); a forward pre-hook folds it the first time
it runs in eval mode, after the tool has loaded the weights and running
statistics, and then removes itself. In training mode nothing changes.

In a config::

    _base_ = ['./deeplabv3_r18-d8_bcn-ws_1xb2-200iters_'
              'cityscapes-mini-128x128.py']
    model = dict(_delete_=True, type='FoldedSegmentor',
                 segmentor={{_base_.model}})
"""
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.registry import MODELS


@MODELS.register_module()
def FoldedSegmentor(segmentor: dict, **overrides) -> nn.Module:  # noqa: N802
    """Build ``segmentor`` and fold it at its first forward in eval mode.

    Args:
        segmentor (dict): The config of the segmentor (e.g. an mmseg
            ``EncoderDecoder`` with WS / BCN layers).
        **overrides: Keys set on the model config by the tools, which
            apply to the segmentor (mmseg's ``benchmark.py`` sets
            ``pretrained=None`` and ``train_cfg=None``).

    Returns:
        nn.Module: The segmentor (its own class), with a one-shot forward
        pre-hook that calls :func:`~mmseg_wsbcn.deploy.fold_bcn_ws` on it
        and logs the fold report.
    """
    from ...deploy.fold import fold_bcn_ws
    model = MODELS.build(dict(segmentor, **overrides))

    def fold_once(module: nn.Module, args, kwargs):
        if module.training:
            return None
        handle.remove()
        print_log(str(fold_bcn_ws(module)), logger='current')
        return None

    handle = model.register_forward_pre_hook(fold_once, with_kwargs=True)
    return model
