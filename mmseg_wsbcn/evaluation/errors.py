# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The error type of the offline evaluation."""
from ..utils.errors import OneLineError


class EvaluationInputError(OneLineError, ValueError):
    """An input of the offline evaluation (a prediction file, a label file,
    the dataset of the config) cannot be scored as it is.

    The message names the file and what is wrong with it, in one line, so
    that a tool can print it as it is; nothing is resized, remapped or
    skipped to work around it.
    """
