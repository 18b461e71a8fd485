# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""FLOPs and parameters of a segmentor, as mmseg's ``get_flops.py`` counts
them, on either OpenMMLab stack.

mmseg 1.2.2's own tool passes both ``input_shape`` and ``inputs`` to
:func:`mmengine.analysis.get_model_complexity_info`, which refuses that
combination (the fork fixed it); this module passes the inputs only.
``WSConv2d`` runs as plain ops under a JIT trace, so its convolution is
counted like any conv (the standardization's few element-wise ops over the
weight are not counted, as MMEngine counts no element-wise op).
"""
from typing import Dict, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.analysis import get_model_complexity_info
from mmengine.model.utils import revert_sync_batchnorm


def input_shape_of(shape: Sequence[int]) -> Tuple[int, int, int]:
    """``(3, H, W)`` from mmseg's ``--shape H [W]`` (one value: square).

    Raises:
        ValueError: ``shape`` has not 1 or 2 positive values.
    """
    if len(shape) not in (1, 2) or any(int(s) <= 0 for s in shape):
        raise ValueError(f'--shape takes H or H W (positive), got '
                         f'{" ".join(map(str, shape))}')
    h, w = (shape[0], shape[0]) if len(shape) == 1 else shape
    return 3, int(h), int(w)


def segmentor_complexity(model: nn.Module,
                         input_shape: Tuple[int, int, int]) -> Dict:
    """Count the FLOPs (multiply-adds, as fvcore and MMEngine count them)
    and the parameters of one inference of ``model`` on a random image.

    Args:
        model (nn.Module): An mmseg segmentor (``EncoderDecoder``), on the
            device to count on. It is put in eval mode; SyncBN is reverted
            to BN. Its auxiliary head is left out (it does not run at
            inference; mmseg's tool drops it too).
        input_shape (tuple): ``(3, H, W)``.

    Returns:
        dict: ``flops`` and ``params`` (ints), and ``flops_str`` and
        ``params_str`` (MMEngine's format, e.g. ``'7.492G'``, as mmseg's
        tool prints them).
    """
    from mmseg.structures import SegDataSample
    model = revert_sync_batchnorm(model)
    if getattr(model, 'auxiliary_head', None):
        model.auxiliary_head = None
    meta = dict(ori_shape=input_shape[-2:], pad_shape=input_shape[-2:],
                img_shape=input_shape[-2:])
    device = next(model.parameters()).device
    batch = dict(inputs=[torch.rand(input_shape, device=device)],
                 data_samples=[SegDataSample(metainfo=meta)])
    data = model.data_preprocessor(batch)
    model.eval()
    with torch.no_grad():
        out = get_model_complexity_info(
            model, inputs=data['inputs'], show_table=False, show_arch=False)
    return dict(flops=int(out['flops']), params=int(out['params']),
                flops_str=out['flops_str'], params_str=out['params_str'])
