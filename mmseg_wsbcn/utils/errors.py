# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The one error type a user sees as one line, and how to cut a library's
message down to a line.

Every error the toolkit raises for a cause it knows (a bad path, a
checkpoint that does not fit, a sample that does not load, a dead peer)
derives from :class:`OneLineError`. It is raised where the cause is known,
with the whole message, and caught in one place: the tools'
:func:`~mmseg_wsbcn.launch.run.run_and_finish` and
:func:`~mmseg_wsbcn.launch.run.exit_on_error`, which print
``<tool>: error: <message>`` and exit 1 (or the error's ``exit_status``).
"""


class OneLineError(Exception):
    """An error whose message is one self-contained line for the user: what
    is wrong, with the bad value, file or key, and what is allowed.

    Subclasses take a single message argument (PyTorch's DataLoader
    re-raises an error of a worker as ``type(e)(text)``).

    Attributes:
        exit_status (int): The status a tool exits with when this error
            ends a run (1; a subclass may name a status that scripts act
            on, e.g. :data:`~mmseg_wsbcn.engine.hooks.
            PREEMPTED_EXIT_STATUS`).
    """

    exit_status: int = 1


class ToolError(OneLineError):
    """A bad argument, path or value found by a tool or a config check."""


class LayerArgumentError(OneLineError, ValueError):
    """A layer was given an argument value it does not allow (e.g. a
    ``num_groups`` that does not divide the channels); the message names
    the layer, the argument and what is allowed."""


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


def one_line_message(exc: BaseException) -> str:
    """The message of a :class:`OneLineError`, also when a DataLoader worker
    re-raised it.

    PyTorch re-raises a worker's error as ``type(e)(text)``, where ``text``
    is ``Caught <Type> in DataLoader worker ...`` and the worker's formatted
    traceback. Our messages are one line by contract, so a message of
    several lines is such a re-raise, and its last line is Python's
    ``<module>.<Type>: <our message>``.
    """
    lines = str(exc).strip().splitlines()
    if len(lines) > 1:
        return lines[-1].split(': ', 1)[-1].strip()
    return lines[0] if lines else type(exc).__name__
