# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The error type of the analysis helpers."""
from ..utils.errors import OneLineError


class AnalysisError(OneLineError, ValueError):
    """Bad input to the curve or confusion-matrix helpers (a missing work
    dir, no ``scalars.json``, an unknown key, a missing prediction file).

    The message is one line that names the offending input; the tools print
    it as their one-line error.
    """
