# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Read a checkpoint without running code from it.

``torch.load(weights_only=True)`` unpickles only tensors, containers,
numbers, strings and the globals on an allow-list, and never calls
anything else. This module gives it the allow-list that OpenMMLab
checkpoints need, and a second, partial read for the files that hold more.

- :data:`CHECKPOINT_GLOBALS` allows exactly what MMEngine / mmseg / mmdet
  checkpoints hold beyond torch's own list: numpy arrays, scalars and
  dtypes (a ``meta`` or message-hub value). Nothing on it calls a name it
  reads from the file: ``builtins.getattr``, ``builtins.eval``, any module
  function are never allowed.
- :func:`safe_load` loads a file with that list. When the file names other
  globals (MMEngine's ``HistoryBuffer`` pickles its statistics methods
  through ``builtins.getattr``; a crafted file names ``builtins.exec`` or
  ``os.system``), it reads the file again with every such name replaced by
  :class:`Unread`, an inert placeholder class whose construction ignores
  its arguments: the unpickler calls the placeholder, never the named
  function. :func:`prune_unread` then drops every value that holds a
  placeholder and reports where it was.
"""
import pickle
from collections import OrderedDict
from typing import Any, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
import torch.serialization as serialization


#: The numpy dtypes whose arrays and scalars a checkpoint may hold.
NUMPY_DTYPES = ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16',
                'uint32', 'uint64', 'float16', 'float32', 'float64')


def _numpy_globals() -> List[Any]:
    """numpy's reconstruction helpers: arrays (``_reconstruct``,
    ``ndarray``, ``dtype``), scalars (``scalar``) and the class of each
    numeric dtype (whose state a dtype's unpickling sets). They build a
    numpy value from bytes and call nothing named in the file. Both module
    names are allowed for the helpers: numpy >= 2 writes
    ``numpy._core.multiarray``, numpy 1 (every older checkpoint)
    ``numpy.core.multiarray``."""
    core = getattr(np, '_core', None) or np.core
    helpers = [(getattr(core.multiarray, name), f'{module}.{name}')
               for name in ('_reconstruct', 'scalar')
               for module in ('numpy._core.multiarray',
                              'numpy.core.multiarray')]
    return helpers + [np.ndarray, np.dtype] + [
        type(np.dtype(name)) for name in NUMPY_DTYPES
    ]


#: Globals, beyond torch's own allow-list, that OpenMMLab checkpoints hold.
CHECKPOINT_GLOBALS: List[Any] = _numpy_globals()


class Unread:
    """Stand-in for a global the safe loader does not read.

    Unpickling *calls* a global (``REDUCE``) or makes an instance of it
    (``NEWOBJ``) and sets its state (``BUILD``); for this class all three
    ignore their arguments, so nothing named in the file runs.
    """

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        pass


class SafeLoadResult(NamedTuple):
    """What :func:`safe_load` read.

    Attributes:
        checkpoint: The unpickled object; values that held an unread global
            are :class:`Unread` instances or classes (see
            :func:`prune_unread`).
        unsafe_globals (list[str]): The globals the file names that were not
            read, e.g. ``['builtins.getattr']``; empty for a whole read.
    """
    checkpoint: Any
    unsafe_globals: List[str]


def _stand_ins(names: List[str]) -> List[Tuple[type, str]]:
    """One :class:`Unread` subclass per name, in ``safe_globals``' form."""
    return [(type('Unread', (Unread, ), {'global_name': name}), name)
            for name in names]


def safe_load(filename: str, map_location=None) -> SafeLoadResult:
    """Load ``filename`` with ``weights_only=True``, never running code.

    Args:
        filename (str): A ``torch.save`` file.
        map_location: As for ``torch.load``.

    Returns:
        SafeLoadResult: The object and the globals that were left unread
        (an :class:`Unread` instance as the object when nothing could be
        read without them).

    Raises:
        pickle.UnpicklingError: The file is damaged.
        Exception: What ``torch.load`` raises for a file that is not a
            checkpoint (``RuntimeError``, ``EOFError``, ...).
    """
    with serialization.safe_globals(CHECKPOINT_GLOBALS):
        try:
            return SafeLoadResult(
                torch.load(
                    filename, map_location=map_location, weights_only=True),
                [])
        except pickle.UnpicklingError:
            unsafe = _unsafe_globals(filename)
            if not unsafe:
                raise
        with serialization.safe_globals(_stand_ins(unsafe)):
            try:
                checkpoint = torch.load(
                    filename, map_location=map_location, weights_only=True)
            except pickle.UnpicklingError:
                # the file calls what a stand-in returned (e.g. the result
                # of getattr): nothing of it can be read without running it
                checkpoint = Unread()
    return SafeLoadResult(checkpoint, sorted(unsafe))


def _unsafe_globals(filename: str) -> List[str]:
    """The globals the file names that are not allowed (empty for a file
    in torch's legacy, non-zip format, which this cannot list)."""
    try:
        return serialization.get_unsafe_globals_in_checkpoint(filename)
    except (ValueError, RuntimeError):
        return []


def _holds_unread(value: Any) -> bool:
    if isinstance(value, Unread) or (isinstance(value, type)
                                     and issubclass(value, Unread)):
        return True
    if isinstance(value, dict):
        return any(_holds_unread(v) for v in value.values())
    if isinstance(value, (list, tuple, set)):
        return any(_holds_unread(v) for v in value)
    return False


def prune_unread(obj: Any,
                 where: str = '') -> Tuple[Optional[Any], List[str]]:
    """Drop every value that holds an :class:`Unread` stand-in.

    Dicts are pruned entry by entry; a list, tuple or set that holds one is
    dropped whole.

    Args:
        obj: What :func:`safe_load` returned.
        where (str): The key path of ``obj``, for the report.

    Returns:
        tuple: The pruned object (``None`` when ``obj`` itself is dropped)
        and the key paths that were dropped, e.g.
        ``['message_hub.log_scalars.train/loss']``.
    """
    if isinstance(obj, dict):
        kept = OrderedDict() if isinstance(obj, OrderedDict) else {}
        dropped: List[str] = []
        for key, value in obj.items():
            path = f'{where}.{key}' if where else str(key)
            value, lost = prune_unread(value, path)
            dropped += lost
            if value is not None or path not in lost:
                kept[key] = value
        if hasattr(obj, '_metadata'):  # a state dict's version records
            kept._metadata = obj._metadata
        return kept, dropped
    if _holds_unread(obj):
        return None, [where or '<checkpoint>']
    return obj, []


def is_under(path: str, key: str) -> bool:
    """Whether the key path ``path`` is ``key`` or inside it."""
    return path == key or path.startswith(key + '.')
