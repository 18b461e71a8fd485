# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""An exception's message, cut to what fits in a one-line error."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type name when it has
    none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def first_sentence(exc: BaseException) -> str:
    """``'<type>: <first sentence of the first line>'``, e.g.
    ``'RuntimeError: PytorchStreamReader failed reading zip archive:
    failed finding central directory'``; just the type name when the
    message is empty."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ''
    first = first.split('. ')[0].rstrip('.')
    return f'{type(exc).__name__}: {first}' if first else type(exc).__name__
