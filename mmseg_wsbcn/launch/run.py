# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Build MMEngine's ``Runner`` for the tools and run it to the end.

:func:`build_runner` builds exactly the config the tool loaded, with one
exception: on a machine without CUDA, a distributed launch needs three
changes that MMEngine 0.10.7 does not make by itself, and they are logged
once, in plain words:

- the process group is initialized with ``gloo``
  (:func:`~mmseg_wsbcn.engine.dist.init_cpu_distributed`);
- the DDP wrapper gets ``device_ids=None`` (MMEngine passes
  ``[LOCAL_RANK]``, a CUDA device);
- ``SyncBN`` layers are built as ``BN`` (``SyncBatchNorm`` has no CPU
  kernel).

With CUDA, or in one process, the config is used as it is.
"""
import functools
import sys
from typing import Any, Callable, List, NoReturn, Optional

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..engine import SafeCheckpointRunner
from ..engine.dist import (adapt_to_cpu_distributed,
                           distributed_failure_message, finish_distributed)
from ..utils.errors import (LayerArgumentError, OneLineError, ToolError,
                            first_line, one_line_message)


def build_runner(cfg: Config) -> Runner:
    """Build the runner for ``cfg`` the way mmseg's tools do
    (``RUNNERS.build`` when the config sets ``runner_type``, else
    :class:`~mmseg_wsbcn.engine.SafeCheckpointRunner`).

    Without CUDA, a distributed launch is first adapted by
    :func:`adapt_to_cpu_distributed`, and what changed is logged once.

    Args:
        cfg (Config): A config prepared by
            :func:`~mmseg_wsbcn.launch.config.prepare_config`.

    Returns:
        Runner: The runner, not yet started.
    """
    if cfg.get('launcher', 'none') != 'none' \
            and not torch.cuda.is_available():
        changes = adapt_to_cpu_distributed(cfg)
        print_log(
            'No CUDA on this machine, so the distributed run is adapted: ' +
            '; '.join(changes) + '.',
            logger='current')
    if getattr(cfg, 'trust_checkpoint', False):
        print_log(
            'trust_checkpoint: the checkpoints of this run are unpickled '
            'fully (weights_only=False)',
            logger='current')
    try:
        if 'runner_type' not in cfg:
            return SafeCheckpointRunner.from_cfg(cfg)
        return RUNNERS.build(cfg)
    except ValueError as e:
        message = model_config_error(e, cfg)
        if message is None:
            raise
        raise ToolError(message) from e


def _num_groups_keys(node: Any, where: str) -> List[str]:
    """``key=value`` for every ``num_groups`` set in a config subtree."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            path = f'{where}.{key}'
            if key == 'num_groups':
                found.append(f'{path}={value}')
            else:
                found += _num_groups_keys(value, path)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            found += _num_groups_keys(value, f'{where}.{i}')
    return found


def model_config_error(exc: ValueError, cfg: Config) -> Optional[str]:
    """One line for a model that cannot be built because a layer argument
    is not allowed; ``None`` for other errors.

    The toolkit's layers raise
    :class:`~mmseg_wsbcn.utils.errors.LayerArgumentError`. PyTorch's
    ``nn.GroupNorm`` raises a plain ``ValueError`` (``num_channels must be
    divisible by num_groups``), and the channel count is only known inside
    the backbone's constructor, so that one case is told by its text. For
    ``num_groups`` the line also names the config keys that set it.
    """
    text = str(exc)
    if not isinstance(exc, LayerArgumentError) and \
            'divisible by num_groups' not in text:
        return None
    first = first_line(exc)
    keys = _num_groups_keys(cfg.get('model'), 'model') \
        if 'num_groups' in text else []
    if not keys:
        return f'cannot build the model: {first}'
    where = f" (set by {', '.join(keys[:4])}" + (', ...)'
                                                 if len(keys) > 4 else ')')
    return (f'cannot build the model: {first}{where}; num_groups must '
            'divide the channels of every normalized layer, e.g. 32 (or 16, '
            '8) for ResNet backbones and DeepLabv3 heads')


def _exit_with(message: str, status: int) -> NoReturn:
    """Exit with ``message`` on stderr and ``status``: ``sys.exit(message)``
    for status 1, as for every one-line error; for another status (a run
    stopped by a signal, :class:`~mmseg_wsbcn.engine.hooks.
    TrainingPreempted`), the message, then that status."""
    if status == 1:
        sys.exit(message)
    print(message, file=sys.stderr, flush=True)
    sys.exit(status)


def exit_on_error(prog: str) -> Callable[[Callable], Callable]:
    """Decorate a tool's ``main``: a
    :class:`~mmseg_wsbcn.utils.errors.OneLineError` it raises exits with
    ``<prog>: error: <message>`` (status 1, or the error's
    ``exit_status``), the one way the tools report one.

    Example:
        >>> @exit_on_error('train.py')
        ... def main(argv=None): ...
    """

    def decorate(main: Callable) -> Callable:

        @functools.wraps(main)
        def wrapped(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except OneLineError as e:
                _exit_with(f'{prog}: error: {one_line_message(e)}',
                           e.exit_status)

        return wrapped

    return decorate


def run_and_finish(prog: str, stage: Callable[[], Any], cfg: Config,
                   where: Callable[[], str]) -> Any:
    """Run ``stage`` (``runner.train``/``runner.test``), then tear down the
    process group; report the expected failures in one line.

    A :class:`~mmseg_wsbcn.utils.errors.OneLineError` raised while running
    (a non-finite loss, a checkpoint that does not match the model or
    cannot be read, a sample that does not load) and a peer that died or
    hangs (:func:`~mmseg_wsbcn.engine.dist.distributed_failure_message`)
    exit with ``<prog>: error: <message>`` (status 1, or the error's
    ``exit_status``: 75 for a run that a signal stopped after saving its
    checkpoint); anything else is re-raised.

    Args:
        prog (str): The tool's name for the message, e.g. ``'train.py'``.
        stage (callable): What to run.
        cfg (Config): The run's config.
        where (callable): Returns where the run stopped, e.g.
            ``'at iteration 3'`` (called only on failure).

    Returns:
        Whatever ``stage`` returns.
    """
    try:
        result = stage()
    except OneLineError as e:
        # the NaN hook stops every rank; a bad checkpoint or sample fails on
        # every rank that meets it
        finish_distributed(wait=False)
        _exit_with(f'{prog}: error: {one_line_message(e)}', e.exit_status)
    except BaseException as e:
        msg = distributed_failure_message(e, cfg, where())
        finish_distributed(wait=False)
        if msg is None:
            raise
        sys.exit(f'{prog}: error: {msg}')
    finish_distributed()
    return result
