# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
r"""PreciseBN: recompute the population statistics before each validation.

Y. Wu and J. Johnson, *Rethinking "Batch" in BatchNorm*, arXiv:2105.07576
(2021), Sec. 3; the reference implementation is fvcore's
``fvcore/nn/precise_bn.py`` (``update_bn_stats``), run by detectron2's
``PreciseBN`` hook (mmpretrain has a ``PreciseBNHook`` as well).

During training a BatchNorm's ``running_mean`` / ``running_var`` are an
exponential moving average (EMA) of per-batch statistics taken while the
weights were changing, dominated by the last ``~1 / momentum`` batches.
PreciseBN recomputes them with the weights fixed: ``num_iters`` training
batches go through the model in training mode, without gradients, and
every batch gets the same weight::

    running_mean = (1 / N) * sum_b mean_b           (per channel)
    running_var  = (1 / N) * sum_b var_b            (var_b unbiased, as BN
                                                     stores it)

where ``mean_b, var_b`` are the statistics the layer itself computes on
batch ``b`` (for ``SyncBatchNorm`` and a synchronized BCN: over the global
batch of all ranks). In a distributed run the ranks then average their
sums (one all-reduce in float64), so every rank ends with the same
statistics: the equal-weight average over all ranks' batches.

Which layers (found through :func:`~mmseg_wsbcn.models.layers.
named_layers`, so the layer protocol decides):

- the BatchNorms (``nn.BatchNorm1d/2d/3d``, ``nn.SyncBatchNorm``, mmcv's
  ``SyncBN``, mmengine's ``_BatchNormXd``: kinds ``'bn'`` and
  ``'syncbn'``) that are in training mode once ``model.train()`` has run
  and that track running statistics. A BatchNorm kept in eval mode, e.g.
  by mmseg's ``norm_eval=True`` (FrozenBN), is not touched;
- BCN's batch step (``BCN.pbn``), when it is in training mode:

  - ``estimate=False`` (batch statistics): exactly as a BatchNorm: the
    average of its per-batch means and unbiased variances;
  - ``estimate=True`` (the paper's estimated statistics ``mu_hat,
    var_hat``, which BCN uses in training as well as in eval): the layer
    keeps normalizing with its current estimates during the passes (so
    the layers after it see what training produces), and the new estimates
    are the statistics of its input over the ``N`` batches, each batch
    weighted equally::

        mu_hat  = (1 / N) * sum_b m_b
        var_hat = (1 / N) * sum_b mean_b((x - mu_hat) ** 2)
                = (1 / N) * sum_b (s_b + (m_b - mu_hat) ** 2)

    with ``m_b, s_b`` the batch's mean and biased variance over ``(N, H,
    W)``. ``var_hat`` is the spread about the one precise mean, not the
    average within-batch variance: BCN's own update measures each batch
    about the previous estimate ``mu_hat``, so its ``var_hat`` estimates
    the population variance including the batch-to-batch spread of the
    means, and that is what it is recomputed as (for batches of one size,
    the plain variance of all their values).

What does not change: the parameters (no backward pass, no optimizer
step), the layers' ``momentum`` (restored), every other buffer of the
model (``num_batches_tracked``, other stateful layers such as MABN's: all
restored), each module's training flag, and training's data and
randomness: the batches come from a **separate** ``DataLoader`` over the
training dataset (same batch size, ``collate_fn`` and workers; an
``InfiniteSampler`` seeded with the runner's seed plus the iteration, so
each rank draws its own shard), never from the training loader's iterator
(``iter()`` on a loader with ``persistent_workers`` would reset the very
iterator training reads from), and the Python, NumPy and torch (CPU, and
CUDA once initialized) random states are restored afterwards. A forward
pass that fails puts the statistics back as they were.

When: in ``after_train_iter`` of the iteration after which the train loop
validates (the loop's own rule: ``val_begin``, ``val_interval`` and its
dynamic intervals, and the last iteration), and after the last iteration
even without a validation loop; ``after_train_epoch`` likewise for an
epoch-based loop. Not ``before_val_epoch``: the ``CheckpointHook`` saves
that iteration's checkpoint in ``after_train_iter``, before the loop
validates, so the checkpoint would miss the statistics the validation
used. The priority ``ABOVE_NORMAL`` puts the hook before the
``CheckpointHook`` (``VERY_LOW``) and mmengine's ``EMAHook`` (``NORMAL``,
which by default then copies these buffers into the averaged model: the
statistics are those of the raw weights), after the NaN-loss stop
listed before it. ``runner.val()`` / ``runner.test()`` alone never run
it: they evaluate a checkpoint as saved.

Cost: ``num_iters`` forward passes (no backward pass) and their data at
each validation, roughly the time of ``num_iters / 3`` training
iterations, and one all-reduce of ``2 C + 1`` (``3 C + 1`` for BCN's
estimates) float64 values per layer; the logged time of that iteration
includes it. Memory: a training forward pass
without the activations kept for backward.
"""
import bisect
import contextlib
import itertools
import random
import time
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Optional,
                    Tuple, Union)

import numpy as np
import torch
import torch.nn as nn
from mmengine.dataset import InfiniteSampler
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import AmpOptimWrapper
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop
from torch import Tensor
from torch.utils.data import DataLoader

from ...models.layers import named_layers
from ...models.layers.layer_kind import BATCH_NORM_NAMES

__all__ = ['PreciseBNHook', 'update_precise_statistics']

DATA_BATCH = Optional[Union[dict, tuple, list]]


def _reduced_dims(x: Tensor) -> List[int]:
    """Every dimension of ``(N, C, *)`` but the channels."""
    return [0] + list(range(2, x.dim()))


class _BatchStatistics:
    """A layer that normalizes with batch statistics and stores their EMA
    (a BatchNorm, BCN with ``estimate=False``): with ``momentum`` 1 its
    buffers hold the last batch's mean and unbiased variance after each
    call, and their sums are kept in float64."""

    def __init__(self, name: str, layer: nn.Module, bn: nn.Module) -> None:
        self.name, self.layer, self.bn = name, layer, bn
        zeros = torch.zeros_like(bn.running_mean, dtype=torch.float64)
        # sum of means, sum of variances, count
        self.sums = [zeros, zeros.clone()]
        self.count = 0
        self._momentum = bn.momentum
        self._handle = None

    def start(self) -> None:
        self.bn.momentum = 1.0
        # with momentum 1 the old values are multiplied by 0: a non-finite
        # one would survive as NaN. (Finite ones stay: BCN computes its
        # batch variance about the running mean.)
        with torch.no_grad():
            self.bn.running_mean.nan_to_num_(0.0, 0.0, 0.0)
            self.bn.running_var.nan_to_num_(1.0, 1.0, 1.0)
        self._handle = self.layer.register_forward_hook(self._after)

    def _after(self, module: nn.Module, args: Tuple, output: Any) -> None:
        if not args or not isinstance(args[0], Tensor) or \
                args[0].numel() == 0:
            return
        self.sums[0] += self.bn.running_mean.detach().double()
        self.sums[1] += self.bn.running_var.detach().double()
        self.count += 1

    def stop(self) -> None:
        self.bn.momentum = self._momentum
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def packed(self) -> Tensor:
        return torch.cat(self.sums + [self.sums[0].new_tensor([self.count])])

    def size(self) -> int:
        return len(self.sums) * self.sums[0].numel() + 1

    def unpack(self, flat: Tensor) -> None:
        c = self.sums[0].numel()
        self.sums = list(flat[:-1].split(c))
        self.count = int(round(float(flat[-1])))

    def result(self) -> Tuple[Tensor, Tensor]:
        return self.sums[0] / self.count, self.sums[1] / self.count


class _EstimatedStatistics(_BatchStatistics):
    """BCN with ``estimate=True``: its batch step runs in eval mode (it
    normalizes with the fixed estimates, updates nothing and
    communicates nothing) while a pre-hook sums each batch's mean ``m_b``,
    biased variance ``s_b`` and ``m_b ** 2``."""

    def __init__(self, name: str, layer: nn.Module, bn: nn.Module) -> None:
        super().__init__(name, layer, bn)
        self.sums.append(torch.zeros_like(self.sums[0]))

    def start(self) -> None:
        self.bn.train(False)
        self._handle = self.layer.register_forward_pre_hook(self._before)

    def _before(self, module: nn.Module, args: Tuple) -> None:
        if not args or not isinstance(args[0], Tensor) or \
                args[0].numel() == 0:
            return
        x = args[0].detach()
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        var, mean = torch.var_mean(x, dim=_reduced_dims(x), correction=0)
        mean = mean.double()
        self.sums[0] += mean
        self.sums[1] += var.double()
        self.sums[2] += mean.square()
        self.count += 1

    def result(self) -> Tuple[Tensor, Tensor]:
        n = self.count
        mean = self.sums[0] / n
        var = self.sums[1] / n + (self.sums[2] / n - mean.square())
        return mean, var.clamp_min(0)


_Statistics = Union[_BatchStatistics, _EstimatedStatistics]


def _statistics_layers(model: nn.Module) -> List[_Statistics]:
    """The layers whose statistics PreciseBN recomputes (in training mode
    now, tracking running statistics), in the model's order."""
    found: List[_Statistics] = []
    for name, layer, kind in named_layers(model):
        if kind.role != 'norm':
            continue
        if kind.name in BATCH_NORM_NAMES:
            bn = layer
            estimate = False
        elif kind.name == 'bcn':
            bn = layer.pbn
            estimate = bool(getattr(layer, 'estimate', False))
        else:
            continue
        if not bn.training or getattr(bn, 'running_mean', None) is None \
                or getattr(bn, 'running_var', None) is None:
            continue
        cls = _EstimatedStatistics if estimate else _BatchStatistics
        found.append(cls(name, layer, bn))
    return found


@contextlib.contextmanager
def _random_state_kept() -> Iterator[None]:
    """Restore the Python, NumPy and torch random states on exit (CUDA's
    only when CUDA is initialized: reading them would initialize it)."""
    py, npy, cpu = random.getstate(), np.random.get_state(), \
        torch.get_rng_state()
    cuda = (
        torch.cuda.get_rng_state_all()
        if torch.cuda.is_available() and torch.cuda.is_initialized() else None)
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


@contextlib.contextmanager
def _model_state_kept(model: nn.Module) -> Iterator[None]:
    """Restore every module's training flag and every buffer on exit (the
    caller writes the new statistics after this context)."""
    modes = [(m, m.training) for m in model.modules()]
    buffers = {
        name: buf.detach().clone()
        for name, buf in model.named_buffers()
    }
    try:
        yield
    finally:
        current = dict(model.named_buffers())
        with torch.no_grad():
            for name, saved in buffers.items():
                if name in current:
                    current[name].copy_(saved)
        for module, mode in modes:
            module.training = mode


def update_precise_statistics(model: nn.Module,
                              batches: Iterable,
                              num_iters: int,
                              forward: Callable[[Any], Any],
                              sync: bool = True
                              ) -> Tuple[List[str], List[str]]:
    """Recompute the statistics of ``model``'s BN-family layers (PreciseBN).

    See the module docstring for which layers and what they get. The model
    is put in training mode (``model.train()``, so ``norm_eval`` still
    freezes what it freezes) and ``forward(batch)`` runs under
    ``torch.no_grad()`` for each of the first ``num_iters`` batches; then
    the layers' running statistics are set to the equal-weight averages
    (averaged over the ranks when ``sync`` and several processes run; every
    rank must then call this with the same ``num_iters``). Every other
    buffer, the layers' momentum and each module's training flag are as
    before; on an error the statistics too.

    Args:
        model (nn.Module): The model (not a DDP wrapper: call its
            ``module``).
        batches (Iterable): At least ``num_iters`` batches.
        num_iters (int): How many batches to average over.
        forward (Callable): Runs the model on one batch, e.g. the data
            preprocessor then ``model(..., mode='loss')``.
        sync (bool): All-reduce the sums across processes. Defaults to
            True.

    Returns:
        tuple[list[str], list[str]]: The names of the layers updated, and
        of those found but never called on a non-empty input (left as they
        were).

    Raises:
        ValueError: If ``batches`` holds fewer than ``num_iters`` batches.
    """
    with _model_state_kept(model), _random_state_kept():
        model.train()
        layers = _statistics_layers(model)
        if not layers:
            return [], []
        done = 0
        try:
            for layer in layers:
                layer.start()
            with torch.no_grad():
                for batch in itertools.islice(batches, num_iters):
                    forward(batch)
                    done += 1
        finally:
            for layer in layers:
                layer.stop()
        if done < num_iters:
            raise ValueError(
                f'PreciseBN needs {num_iters} batches, the data gave '
                f'{done}')
    # the context restored every buffer; now the new statistics
    if sync and get_world_size() > 1:
        device = layers[0].bn.running_mean.device
        flat = torch.cat([layer.packed().to(device) for layer in layers])
        all_reduce(flat, op='sum')
        offset = 0
        for layer in layers:
            layer.unpack(flat[offset:offset + layer.size()])
            offset += layer.size()
    updated, unused = [], []
    with torch.no_grad():
        for layer in layers:
            if layer.count == 0:
                unused.append(layer.name)
                continue
            mean, var = layer.result()
            layer.bn.running_mean.copy_(mean)
            layer.bn.running_var.copy_(var)
            updated.append(layer.name)
    return updated, unused


@HOOKS.register_module()
class PreciseBNHook(Hook):
    """Recompute the BN-family statistics before each validation
    (PreciseBN; see the module docstring for what, when and why).

    Add it to a config's ``custom_hooks`` (extending the runtime base's, so
    that the NaN-loss stop stays first)::

        custom_hooks = _base_.custom_hooks + [
            dict(type='PreciseBNHook', num_iters=200)]

    or, for one run, ``--cfg-options`` cannot append to a list: use a
    two-line config with ``_base_ = ['the_config.py']`` and the line above.

    Args:
        num_iters (int): Training batches (per rank) to average over.
            Defaults to 200, fvcore's and detectron2's default (their
            paper's ImageNet setting uses ~10^4 images in all).
        num_workers (int, optional): ``DataLoader`` workers for those
            batches; ``None`` (default) takes the training loader's.
    """

    # before CheckpointHook (VERY_LOW) and EMAHook (NORMAL)
    priority = 'ABOVE_NORMAL'

    def __init__(self,
                 num_iters: int = 200,
                 num_workers: Optional[int] = None) -> None:
        if isinstance(num_iters, bool) or not isinstance(num_iters, int) \
                or num_iters < 1:
            raise ValueError('PreciseBNHook: num_iters must be an int >= 1, '
                             f'got {num_iters!r}')
        if num_workers is not None and (isinstance(num_workers, bool)
                                        or not isinstance(num_workers, int)
                                        or num_workers < 0):
            raise ValueError('PreciseBNHook: num_workers must be None or an '
                             f'int >= 0, got {num_workers!r}')
        self.num_iters = num_iters
        self.num_workers = num_workers
        self._warned_empty = False

    # -- when ------------------------------------------------------------
    @staticmethod
    def _validates_after(runner, step: int, last: int) -> bool:
        """Whether the train loop validates once its counter is ``step``
        (the loop's own rule), or ``step`` ends training."""
        if step >= last:
            return True
        loop = runner.train_loop
        if runner.val_loop is None:
            return False
        interval = getattr(loop, 'val_interval', None)
        milestones = getattr(loop, 'dynamic_milestones', None)
        intervals = getattr(loop, 'dynamic_intervals', None)
        if milestones and intervals:
            interval = intervals[bisect.bisect(milestones, step + 1) - 1]
        if not interval:
            return False
        return step >= getattr(loop, 'val_begin', 1) and step % interval == 0

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: DATA_BATCH = None,
                         outputs: Optional[dict] = None) -> None:
        if isinstance(runner.train_loop, EpochBasedTrainLoop):
            return
        if self._validates_after(runner, runner.iter + 1, runner.max_iters):
            self.update(runner)

    def after_train_epoch(self, runner) -> None:
        loop = runner.train_loop
        if isinstance(loop, EpochBasedTrainLoop) and self._validates_after(
                runner, runner.epoch + 1, loop.max_epochs):
            self.update(runner)

    # -- what ------------------------------------------------------------
    def _loader(self, runner) -> DataLoader:
        """A new ``DataLoader`` over the training dataset (see the module
        docstring), never the training loader's iterator."""
        train = runner.train_dataloader
        batch_size = train.batch_size
        if batch_size is None:  # a batch sampler
            batch_size = getattr(train.batch_sampler, 'batch_size', 1)
        num_workers = (
            train.num_workers
            if self.num_workers is None else self.num_workers)
        seed = (runner.seed or 0) + runner.iter
        kwargs: Dict[str, Any] = dict(
            batch_size=batch_size,
            sampler=InfiniteSampler(train.dataset, shuffle=True, seed=seed),
            num_workers=num_workers,
            collate_fn=train.collate_fn,
            pin_memory=train.pin_memory,
            worker_init_fn=train.worker_init_fn,
            persistent_workers=False)
        if num_workers > 0:
            kwargs.update(
                prefetch_factor=train.prefetch_factor,
                multiprocessing_context=train.multiprocessing_context)
        return DataLoader(train.dataset, **kwargs)

    @staticmethod
    def _forward(runner, model: nn.Module) -> Callable[[Any], Any]:
        """The training step's forward pass, without its backward pass
        and optimizer step: data preprocessor (training), then
        ``mode='loss'`` (every head that trains runs), under the training's
        autocast."""
        wrapper = getattr(runner, 'optim_wrapper', None)
        if isinstance(wrapper, AmpOptimWrapper):
            from mmengine.runner.amp import autocast

            def context():
                return autocast(dtype=wrapper.cast_dtype)
        else:
            context = contextlib.nullcontext
        preprocess = getattr(model, 'data_preprocessor', None)

        def forward(batch):
            if preprocess is not None:
                batch = preprocess(batch, True)
            with context():  # unpacked as BaseModel.train_step does
                if isinstance(batch, dict):
                    return model(**batch, mode='loss')
                return model(*batch, mode='loss')

        return forward

    def update(self, runner) -> List[str]:
        """Recompute the statistics now (see
        :func:`update_precise_statistics`).

        Returns:
            list[str]: The names of the layers updated.
        """
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        start = time.perf_counter()
        loader = self._loader(runner)
        # creating the iterator draws its workers' base seed from torch's
        # generator: inside the kept random state too
        with _random_state_kept():
            batches = iter(loader)
            try:
                updated, unused = update_precise_statistics(
                    model, batches, self.num_iters,
                    self._forward(runner, model))
            finally:
                del batches  # ends its workers
        if not updated and not unused:
            if not self._warned_empty:
                runner.logger.warning(
                    'PreciseBNHook: the model has no BatchNorm / BCN batch '
                    'step in training mode; nothing to recompute')
                self._warned_empty = True
            return updated
        runner.logger.info(
            f'PreciseBNHook: recomputed the statistics of {len(updated)} '
            f'layers over {self.num_iters} batches of '
            f'{loader.batch_size} per rank in '
            f'{time.perf_counter() - start:.1f} s')
        if unused:
            runner.logger.warning(
                'PreciseBNHook: not called in the training forward pass, '
                f'statistics left as they were: {", ".join(unused)}')
        return updated
