# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Why an optional OpenMMLab project cannot be used here, in one line."""
import importlib
from typing import Optional

from .errors import first_line

#: The known reason mmpretrain's models do not import on a CPU-only torch.
MMPRETRAIN_CPU_REASON = (
    'mmpretrain 1.2.0 imports torchvision at module level '
    '(mmpretrain/evaluation/metrics/visual_grounding_eval.py), and the '
    'torchvision wheel that matches torch 2.13 (0.28.0) does not load '
    'against the CPU build of torch')


def mmpretrain_unavailable() -> Optional[str]:
    """``None`` when ``mmpretrain.models`` imports, else why not.

    Returns:
        str, optional: ``'mmpretrain is not installed ...'``, or the known
        torchvision reason followed by the first line of the error.
    """
    try:
        importlib.import_module('mmpretrain.models')
    except ModuleNotFoundError as e:
        if e.name == 'mmpretrain':
            return ('mmpretrain is not installed (the mmpretrain extra: '
                    'TORCH_VERSION=2.14.1 EXTRAS=mmpretrain bash '
                    'tools/setup_env.sh)')
        return f'{MMPRETRAIN_CPU_REASON} ({type(e).__name__}: {e})'
    except Exception as e:  # OSError / RuntimeError from torchvision's ops
        return f'{MMPRETRAIN_CPU_REASON} ({type(e).__name__}: ' \
            f'{first_line(e)})'
    return None
