# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Read a prediction file and check it against its label.

A prediction is a single-channel image (PNG) of class indices, the size of
its label. Anything else is an error naming the file: a prediction is
never resized, its channels never merged, its values never clipped.
"""
import numpy as np
from PIL import Image

from .errors import EvaluationInputError


def read_prediction(path: str) -> np.ndarray:
    """Read a single-channel prediction as it is stored.

    Args:
        path (str): The prediction file.

    Returns:
        np.ndarray: Shape (H, W), an integer dtype (uint8 for 8-bit files;
        palette (``P``) images give their indices).

    Raises:
        EvaluationInputError: The file is not a readable image, has more
            than one channel or holds floating-point values.
    """
    try:
        with Image.open(path) as img:
            bands = img.getbands()
            mode = img.mode
            if len(bands) != 1:
                raise EvaluationInputError(
                    f"prediction '{path}' has {len(bands)} channels "
                    f"({mode}); expected a single-channel image of class "
                    'indices')
            pred = np.array(img)
    except (OSError, SyntaxError) as e:
        raise EvaluationInputError(
            f"cannot read prediction '{path}': {e}") from e
    if pred.dtype == bool:
        pred = pred.astype(np.uint8)
    if pred.ndim != 2 or not np.issubdtype(pred.dtype, np.integer):
        raise EvaluationInputError(
            f"prediction '{path}' holds {pred.dtype} values of shape "
            f'{pred.shape}; expected integer class indices of shape (H, W)')
    return pred


def check_prediction(pred: np.ndarray, label_shape: tuple, num_classes: int,
                     ignore_index: int, path: str) -> None:
    """Check a prediction's size and values.

    Args:
        pred (np.ndarray): The prediction, shape (H, W).
        label_shape (tuple): Its label's shape (H, W).
        num_classes (int): The dataset's number of classes.
        ignore_index (int): The one value besides ``0 .. num_classes - 1``
            a prediction may hold (scored as a wrong prediction wherever the
            label is a class, as mmseg's ``IoUMetric`` does).
        path (str): The prediction file, for the message.

    Raises:
        EvaluationInputError: The size differs from the label's, or a value
            is neither a class index nor ``ignore_index``.
    """
    if tuple(pred.shape) != tuple(label_shape):
        h, w = pred.shape[:2]
        lh, lw = label_shape[:2]
        raise EvaluationInputError(
            f"prediction '{path}' is {w}x{h} (WxH) but its label is "
            f'{lw}x{lh}; predictions are scored at the label size, never '
            'resized')
    values = np.unique(pred)
    bad = values[((values < 0) | (values >= num_classes))
                 & (values != ignore_index)]
    if bad.size:
        shown = ', '.join(str(v) for v in bad[:5])
        more = f' (and {bad.size - 5} more)' if bad.size > 5 else ''
        raise EvaluationInputError(
            f"prediction '{path}' holds value(s) {shown}{more} outside the "
            f'{num_classes} classes (0-{num_classes - 1}) and the ignore '
            f'index {ignore_index}')
