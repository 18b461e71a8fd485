# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""BCN's fused tier: the closed form's stages compiled by ``torch.compile``.

:class:`.bcn_function.BCNFunction` runs four stages over the full-size
tensors (moments; normalize; backward reductions; input gradient). The
fused tier compiles each once with dynamic shapes: TorchInductor fuses each
into a reduction or an elementwise kernel (Triton on CUDA, C++ on CPU) that
reads half-precision inputs directly. The number of graphs does not grow
with a model's channel counts or image sizes: sizes 0 and 1 are
specialized, so a stage may need one graph for batch 1 beside larger
batches and one for ``C == G`` (dtype and memory format count too);
inputs with an empty batch or a side of 1 (ASPP's image-pooling branch)
run the eager stages. The statistics and their all-reduce run between the
stages, so synchronized BCN is served too. A compiler error, in forward or
backward, switches the fused tier to the eager stages for the rest of the
process, with one warning; any other exception is raised as it is.
"""
import warnings
from functools import lru_cache
from importlib.util import find_spec
from typing import Callable, Dict

import torch
from torch import Tensor

from .bcn_function import bcn_reference

__all__ = ['IMPLS', 'FusedStages', 'select_impl', 'is_compiler_error']

IMPLS = ('auto', 'eager', 'compile')

# The whole layer as one plain-ops function, for compiling it in one piece
# (e.g. to compare static- and dynamic-shape kernels).
closed_form = bcn_reference


def is_compiler_error(err: BaseException) -> bool:
    """Whether ``err`` is the compiler's failure rather than the program's.

    True for dynamo's and inductor's own exceptions, except an error that
    fake-tensor tracing raised for the inputs (``TorchRuntimeError``) and
    anything caused by running out of memory.
    """
    import torch._dynamo.exc as dynamo_exc
    import torch._inductor.exc as inductor_exc
    types = (dynamo_exc.TorchDynamoException,
             getattr(inductor_exc, 'InductorError',
                     dynamo_exc.TorchDynamoException))
    if not isinstance(err, types) or isinstance(err,
                                                dynamo_exc.TorchRuntimeError):
        return False
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, torch.OutOfMemoryError):
            return False
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return True


class FusedStages:
    """Runs :class:`.bcn_function.BCNFunction`'s stages compiled.

    ``stages(stage, *args)`` calls the compiled ``stage`` (compiled on first
    use, ``dynamic=True``) or, after a compiler error, the plain one.

    Args:
        backend (str | Callable): The ``torch.compile`` backend. Defaults
            to ``'inductor'``.
    """

    def __init__(self, backend='inductor') -> None:
        self.backend = backend
        self.state = {'failed': None}  # the compiler error, once one came
        self._compiled: Dict[Callable, Callable] = {}

    def __call__(self, stage: Callable, *args):
        if self.state['failed'] is None:
            fn = self._compiled.get(stage)
            if fn is None:
                fn = self._compiled[stage] = torch.compile(
                    stage, dynamic=True, backend=self.backend)
            try:
                return fn(*args)
            except Exception as err:  # noqa: B902 - sorted below
                if not is_compiler_error(err):
                    raise
                self.state['failed'] = err
                warnings.warn(
                    'BCN: torch.compile failed, so BCN runs its eager tier '
                    f'from now on: {type(err).__name__}: '
                    f'{(str(err).splitlines() or [""])[0]}')
        return stage(*args)


FUSED = FusedStages()
_state = FUSED.state  # the process-wide record of a compiler error


@lru_cache(maxsize=None)
def _triton_available() -> bool:
    return find_spec('triton') is not None


def select_impl(impl: str, x: Tensor) -> str:
    """The tier that runs a call on ``x``: ``'eager'`` or ``'compile'``.

    ``'auto'`` means ``'compile'`` for CUDA inputs when Triton is
    importable. Either way, inputs the compiled stages do not take (an
    empty batch, a side of 1) and a process whose compiler failed get
    ``'eager'``.
    """
    if impl == 'auto' and not (x.is_cuda and _triton_available()):
        return 'eager'
    if (impl == 'eager' or FUSED.state['failed'] is not None or x.size(0) == 0
            or min(x.shape[2:]) <= 1):
        return 'eager'
    return 'compile'
