# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Hide the library messages that every run prints and that say nothing
about the run, so that a tool's one-line error is the only line on stderr.

The tools call :func:`hide_known_warnings` first thing; importing this
package changes nothing.
"""
import warnings

#: The modules whose ``UserWarning``s every run shows (mmseg 1.2.2, while
#: building any model and its hooks: ``build_loss`` deprecated, default
#: ``avg_non_ignore``, ``draw`` is False), filtered by module, not by text.
QUIET_MODULES = ('mmseg.models.builder',
                 'mmseg.models.losses.cross_entropy_loss',
                 'mmseg.engine.hooks.visualization_hook')

#: The one warning filtered by its text: setuptools warns that
#: ``pkg_resources is deprecated`` when MMEngine 0.10.7 resolves ``mmseg::``
#: config paths, and attributes the warning to ``importlib`` (its
#: ``stacklevel``), so neither its category nor its module tells it apart.
PKG_RESOURCES_WARNING = 'pkg_resources is deprecated'


def hide_known_warnings() -> None:
    """Ignore the warnings of :data:`QUIET_MODULES` and
    :data:`PKG_RESOURCES_WARNING`, and OpenCV's own (C++) warnings, such as
    ``PNG input buffer is incomplete``, for the rest of the process: an
    image that does not decode is reported by the tools themselves, with
    the file and sample named."""
    for module in QUIET_MODULES:
        warnings.filterwarnings(
            'ignore', category=UserWarning, module=module.replace('.', r'\.'))
    warnings.filterwarnings(
        'ignore', message=PKG_RESOURCES_WARNING, category=UserWarning)
    quiet_opencv()


#: OpenCV's log level for errors only (``cv::utils::logging::LOG_LEVEL_ERROR``;
#: the same number in OpenCV 4 and 5).
OPENCV_LOG_LEVEL_ERROR = 2


def quiet_opencv() -> None:
    """Let OpenCV's C++ code log errors only. OpenCV 5 has the
    ``cv2.utils.logging`` module; OpenCV 4 (which the fork's mmdet pins,
    < 4.13) has only ``cv2.setLogLevel``."""
    import cv2
    logging = getattr(cv2.utils, 'logging', None)
    if logging is not None:
        logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    elif hasattr(cv2, 'setLogLevel'):
        cv2.setLogLevel(OPENCV_LOG_LEVEL_ERROR)
