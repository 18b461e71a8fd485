# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Export a segmentor's logits to ONNX.

The exported graph maps an already normalized float32 image ``input`` of
shape ``(1, 3, H, W)`` to the logits ``(1, num_classes, H, W)``: the
segmentor's ``encode_decode`` output (backbone, neck, decode head) resized
bilinearly to the input size. Normalization (mean, std, channel order) is
not in the graph; it is written into the model's ``metadata_props``.

Exporter: torch's TorchScript-based exporter (``torch.onnx.export(...,
dynamo=False)``). The dynamo-based one, torch's default, needs the
``onnxscript`` package, which this extra does not install. At every opset
``nn.GroupNorm`` is written as standard reductions over each group in two
levels (:mod:`.onnx_group_norm`), not as torch's ``InstanceNormalization``
form (whose one-pass float32 sums in ONNX Runtime cost accuracy), opset
18's deprecated ``GroupNormalization`` (per-group scale and bias) or opset
21's (per-channel): plain reductions run in every ONNX Runtime release and
in TensorRT.
"""
import json
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .onnx_group_norm import two_level_group_norm

__all__ = [
    'SUPPORTED_OPSETS', 'DEFAULT_OPSET', 'SegLogits', 'export_onnx',
    'preprocess_image', 'preprocess_meta'
]

#: Opsets the export is tested with (TorchScript exporter, ONNX Runtime CPU).
SUPPORTED_OPSETS: Tuple[int, ...] = tuple(range(11, 21))
DEFAULT_OPSET = 17


class SegLogits(nn.Module):
    """A segmentor's logits at the input size, for export.

    Same values as ``segmentor.encode_decode(input, metas)`` when the
    metas' ``img_shape`` is the input's size, but the output size is read
    from the input tensor, so the graph also works with dynamic shapes.

    Args:
        segmentor (nn.Module): An mmseg ``EncoderDecoder`` in eval mode.
    """

    def __init__(self, segmentor: nn.Module) -> None:
        super().__init__()
        self.segmentor = segmentor

    def forward(self, input: Tensor) -> Tensor:
        """Logits of shape ``(N, num_classes, H, W)`` for ``input`` of
        shape ``(N, 3, H, W)``."""
        feats = self.segmentor.extract_feat(input)
        head = self.segmentor.decode_head
        logits = head(feats)
        return F.interpolate(
            logits,
            size=input.shape[2:],
            mode='bilinear',
            align_corners=head.align_corners)


def preprocess_meta(data_preprocessor: Dict) -> Dict[str, object]:
    """Mean, std and channel order of a config's ``data_preprocessor``.

    Args:
        data_preprocessor (dict): ``cfg.model.data_preprocessor``.

    Returns:
        dict: ``mean`` and ``std`` (lists of 3 floats, in the model's
        channel order) and ``bgr_to_rgb`` (bool).
    """
    mean = data_preprocessor.get('mean') or [0.0, 0.0, 0.0]
    std = data_preprocessor.get('std') or [1.0, 1.0, 1.0]
    return dict(
        mean=[float(v) for v in mean],
        std=[float(v) for v in std],
        bgr_to_rgb=bool(data_preprocessor.get('bgr_to_rgb', False)))


def preprocess_image(path: str,
                     data_preprocessor: Dict,
                     shape: Optional[Sequence[int]] = None) -> Tensor:
    """Read an image and normalize it as the config's data preprocessor.

    Args:
        path (str): Image file (read by OpenCV, BGR).
        data_preprocessor (dict): ``cfg.model.data_preprocessor``.
        shape (tuple[int, int], optional): ``(H, W)`` to resize to
            (bilinear); ``None`` keeps the image's size.

    Returns:
        Tensor: Float32, shape ``(1, 3, H, W)``.

    Raises:
        FileNotFoundError: If the image cannot be read.
    """
    import cv2
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f'cannot read image {path}')
    if shape is not None and tuple(image.shape[:2]) != tuple(shape):
        image = cv2.resize(
            image, (int(shape[1]), int(shape[0])),
            interpolation=cv2.INTER_LINEAR)
    meta = preprocess_meta(data_preprocessor)
    if meta['bgr_to_rgb']:
        image = image[..., ::-1]
    image = image.astype(np.float32)
    image = (image - np.array(meta['mean'], np.float32)) / np.array(
        meta['std'], np.float32)
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0,
                                                                 1)))[None]


def export_onnx(model: nn.Module,
                out: str,
                shape: Sequence[int],
                opset: int = DEFAULT_OPSET,
                dynamic: bool = False,
                metadata: Optional[Dict[str, object]] = None) -> None:
    """Export ``SegLogits(model)`` to ``out``.

    Args:
        model (nn.Module): The segmentor, in eval mode (folded or not).
        out (str): The ONNX file to write.
        shape (tuple[int, int]): ``(H, W)`` of the example input.
        opset (int): ONNX opset, one of :data:`SUPPORTED_OPSETS`.
        dynamic (bool): Make ``H`` and ``W`` (and the batch) dynamic.
        metadata (dict, optional): Written into ``metadata_props``; values
            that are not strings are stored as JSON.

    Raises:
        ValueError: If ``opset`` is not supported.
    """
    import warnings

    import onnx
    if opset not in SUPPORTED_OPSETS:
        raise ValueError(f'unsupported opset {opset}: use one of '
                         f'{SUPPORTED_OPSETS[0]}..{SUPPORTED_OPSETS[-1]}')
    wrapper = SegLogits(model).eval()
    example = torch.zeros(1, 3, int(shape[0]), int(shape[1]))
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {
            'input': {
                0: 'batch',
                2: 'height',
                3: 'width'
            },
            'logits': {
                0: 'batch',
                2: 'height',
                3: 'width'
            }
        }
    with torch.no_grad(), warnings.catch_warnings(), two_level_group_norm(
            opset):
        # TracerWarnings on shape arithmetic that the dynamic axes cover
        warnings.simplefilter('ignore')
        torch.onnx.export(
            wrapper, (example, ),
            out,
            input_names=['input'],
            output_names=['logits'],
            opset_version=opset,
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
            dynamo=False)
    onnx_model = onnx.load(out)
    for key, value in (metadata or {}).items():
        prop = onnx_model.metadata_props.add()
        prop.key = str(key)
        prop.value = value if isinstance(value, str) else json.dumps(value)
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, out)
