# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Hide the library messages that every run prints and that say nothing
about the run, so that a tool's one-line error is the only line on stderr.

The tools call :func:`hide_known_warnings` first thing; importing this
package changes nothing.
"""
import warnings

#: ``UserWarning`` messages (regular expressions matched at the start).
KNOWN_WARNINGS = (
    # MMEngine 0.10.7 imports ``pkg_resources`` when it resolves
    # ``mmseg::`` config paths; setuptools (< 81 for the mmcv build) warns
    'pkg_resources is deprecated',
    # mmseg 1.2.2, while building any model and its hooks
    r'``build_loss`` would be deprecated',
    r'Default ``avg_non_ignore`` is False',
    r'The draw is False',
)


def hide_known_warnings() -> None:
    """Ignore :data:`KNOWN_WARNINGS` and OpenCV's own (C++) warnings, such
    as ``PNG input buffer is incomplete``, for the rest of the process: an
    image that does not decode is reported by the tools themselves, with
    the file and sample named."""
    for message in KNOWN_WARNINGS:
        warnings.filterwarnings(
            'ignore', message=message, category=UserWarning)
    import cv2
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
