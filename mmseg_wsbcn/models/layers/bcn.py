# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
r"""Batch-Channel Normalization (BCN).

Paper: S. Qiao, H. Wang, C. Liu, W. Shen and A. Yuille, *Micro-Batch
Training with Batch-Channel Normalization and Weight Standardization*,
arXiv:1903.10520. Authors' code: ``joe-siyuan-qiao/Batch-Channel-
Normalization`` on GitHub (the layer is the class ``GN`` of
``imagenet/models/layers.py``).

For an input ``x`` of shape ``(N, C, H, W)`` whose channels form ``G``
groups of ``C // G`` channels, BCN runs three steps::

    batch step    y[n, c] = gamma[c] * (x[n, c] - m[c]) / sqrt(v[c] + eps)
                            + beta[c]
    channel step  z[n, g] = (y[n, g] - mean(y[n, g])) / sqrt(var(y[n, g])
                            + eps)
    group affine  out[n, g] = a[g] * z[n, g] + b[g]

where ``y[n, g]`` holds the ``(C // G) * H * W`` values of sample ``n`` in
group ``g`` and ``var`` is biased. The channel step is group normalization
without affine; it always uses per-sample statistics. The batch step's
``m, v`` are:

- ``estimate=False`` (large batches): in training, the batch mean and biased
  variance over ``(N, H, W)`` with gradient through them, exactly as
  BatchNorm; the running statistics are updated with ``momentum`` (the
  running variance takes the unbiased batch variance) and used in eval.
- ``estimate=True`` (micro-batches, the paper's *estimated statistics*):
  buffers ``mu_hat, var_hat`` (initially 0 and 1). In training, without
  gradient, with ``r = momentum``::

      m = mean(x)                   over (N, H, W)
      s = mean((x - mu_hat) ** 2)   over (N, H, W), about the OLD mu_hat
      mu_hat  <- (1 - r) * mu_hat  + r * m
      var_hat <- (1 - r) * var_hat + r * s

  and the step normalizes with the just-updated ``mu_hat, var_hat``; in eval
  it uses them unchanged. No gradient ever flows through them. The authors'
  code leaves the update rate at 0, so its estimates never move; here the
  rate is ``momentum`` (default 0.1).

In a multi-process run (``sync=True``, world size > 1) the training
statistics cover the global batch: the ranks all-reduce per-channel sums
and element counts, so unequal per-rank batch sizes, 0 included, give the
exact global statistics. An empty batch gives an empty output and, in one
process, leaves the statistics unchanged, as ``nn.BatchNorm2d``.

The definition is :func:`.bcn_function.bcn_reference` (plain ops,
autograd); both tiers (``impl``) compute it in the closed form of
:class:`.bcn_function.BCNFunction`, which saves only the input for the
backward pass: the eager tier in eager PyTorch, the fused tier
(:mod:`.bcn_compiled`) with its stages compiled by ``torch.compile``.
"""
from typing import ClassVar, Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.dist import get_world_size
from mmengine.registry import MODELS
from torch import Tensor

from ...utils.errors import LayerArgumentError
from .bcn_compiled import FUSED, IMPLS, select_impl
from .bcn_function import BCNFunction
from .channel_affine import ChannelAffine, batch_norm_affine
from .layer_kind import LayerKind


def _empty_output(x: Tensor, *params: Optional[Tensor]) -> Tensor:
    """An empty output that autograd connects to ``x`` and the parameters
    (their gradients are zeros), for a batch of 0 samples."""
    out = x * 0
    for p in params:
        if p is not None:
            out = out + p.sum().to(x.dtype) * 0
    return out


def batch_channel_norm(input: Tensor,
                       num_groups: int,
                       running_mean: Tensor,
                       running_var: Tensor,
                       weight: Optional[Tensor] = None,
                       bias: Optional[Tensor] = None,
                       batch_weight: Optional[Tensor] = None,
                       batch_bias: Optional[Tensor] = None,
                       training: bool = False,
                       estimate: bool = False,
                       momentum: float = 0.1,
                       eps: float = 1e-5,
                       sync: bool = True,
                       impl: str = 'auto') -> Tensor:
    """Batch-Channel Normalization, functional form.

    In eval (``training=False``) the batch step normalizes with
    ``running_mean, running_var``; in training, ``estimate=False`` uses the
    batch statistics (as ``F.batch_norm``) and ``estimate=True`` first
    updates the estimates without gradient, then normalizes with them. The
    buffers are updated in place. With ``sync`` and several processes,
    every rank must call this the same number of times in the same order
    (with ``estimate=False`` also its backward pass).

    Args:
        input (Tensor): ``(N, C, H, W)``, any memory format.
        num_groups (int): ``G``, must divide ``C``.
        running_mean, running_var (Tensor): ``(C,)``; ``mu_hat, var_hat``
            when ``estimate``.
        weight, bias (Tensor, optional): Group affine ``a, b``, ``(G,)``.
        batch_weight, batch_bias (Tensor, optional): Batch-step ``gamma,
            beta``, ``(C,)``.
        training (bool): Whether the batch step trains. Defaults to False.
        estimate (bool): Use the estimated statistics. Defaults to False.
        momentum (float): Update rate of the statistics. Defaults to 0.1.
        eps (float): Added to both variances. Defaults to 1e-5.
        sync (bool): Synchronize the training statistics across processes.
            Defaults to True.
        impl (str): ``'eager'``, ``'compile'`` or ``'auto'`` (compile on
            CUDA with Triton); see :func:`.bcn_compiled.select_impl`.

    Returns:
        Tensor: Shape, dtype and memory format of ``input``.

    Raises:
        ValueError: With ``estimate=False`` in training, when the (global)
            batch has exactly one value per channel (BatchNorm's message).
    """
    distributed = training and sync and get_world_size() > 1
    mode = 'eval' if not training else ('estimate' if estimate else 'batch')
    if input.size(0) == 0 and not distributed:
        return _empty_output(input, weight, bias, batch_weight, batch_bias)
    args = (weight, bias, batch_weight, batch_bias, running_mean, running_var,
            num_groups, mode, momentum, eps, distributed)
    if select_impl(impl, input) == 'eager':
        return BCNFunction.apply(input, *args, None)
    # the compiled stages see (N, C, H * W): a view for contiguous and
    # channels-last inputs alike, viewed back outside the autograd function
    n, c = input.shape[:2]
    flat = input.reshape(n, c, -1)
    return BCNFunction.apply(flat, *args, FUSED).view(input.shape)


def _check_args(num_features, num_groups, eps, momentum, estimate, sync,
                impl) -> None:
    """Validate :class:`BCN`'s arguments, naming the culprit."""

    def check_type(name, value, types, what):
        if isinstance(value,
                      bool) != (types is bool) or not isinstance(value, types):
            raise TypeError(f'BCN: {name} must be {what}, got {value!r} '
                            f'({type(value).__name__})')

    for name, value in (('num_features', num_features), ('num_groups',
                                                         num_groups)):
        check_type(name, value, int, 'an int')
        if value <= 0:
            raise LayerArgumentError(
                f'BCN: {name} must be a positive int, got '
                f'{value}')
    if num_features % num_groups != 0:
        raise LayerArgumentError(f'BCN: num_groups={num_groups} must divide '
                                 f'num_features={num_features}')
    for name, value in (('eps', eps), ('momentum', momentum)):
        check_type(name, value, (int, float), 'a float')
    if not eps > 0:
        raise LayerArgumentError(f'BCN: eps must be > 0, got {eps}')
    if not 0 <= momentum <= 1:
        raise LayerArgumentError(
            f'BCN: momentum must be in [0, 1], got {momentum}')
    for name, value in (('estimate', estimate), ('sync', sync)):
        check_type(name, value, bool, 'a bool')
    if impl not in IMPLS:
        raise LayerArgumentError(
            f'BCN: impl must be one of {IMPLS}, got {impl!r}')


class _BatchStep(nn.BatchNorm2d):
    """BCN's batch-step parameters and statistics, as a plain
    ``nn.BatchNorm2d`` whose ``forward`` is never called: OpenMMLab's tools
    treat it as one (``norm_eval``, ``norm_decay_mult``,
    ``convert_sync_batchnorm`` / ``revert_sync_batchnorm``)."""


@MODELS.register_module('BCN')
class BCN(nn.GroupNorm):
    """Batch-Channel Normalization (Qiao et al., arXiv:1903.10520).

    Input: ``(N, C, H, W)``; output: same shape and dtype. A per-channel
    batch step, then per-sample group normalization over ``num_groups``
    groups, then one affine per group (see the module docstring for the
    formulas). ``2 * C + 2 * G`` parameters.

    Built by ``mmcv.cnn.build_norm_layer`` as
    ``norm_cfg=dict(type='BCN', num_groups=32, estimate=True)``; its
    abbreviation is ``'bn'``, so in mmseg's ``ResNet`` the layers are named
    ``bn1``, ``bn2``, ... State-dict keys (the names used by the authors'
    BCN+WS ImageNet checkpoints)::

        weight                   (G,)  group affine a, init 1
        bias                     (G,)  group affine b, init 0
        pbn.weight               (C,)  batch-step gamma, init 1
        pbn.bias                 (C,)  batch-step beta, init 0
        pbn.running_mean         (C,)  running mean, or mu_hat (init 0)
        pbn.running_var          (C,)  running var, or var_hat (init 1)
        pbn.num_batches_tracked  ()    training steps seen

    The authors store ``weight`` and ``bias`` with shape ``(1, G, 1)``;
    loading accepts that shape and reshapes it to ``(G,)``.

    It subclasses ``nn.GroupNorm`` (without its ``__init__``), so that
    ``norm_decay_mult`` and mmseg's default init reach the group affine.
    Whether the batch step trains is read from ``pbn.training``, so
    ``norm_eval=True`` freezes BCN's statistics. ``zero_init_residual``
    zeros the whole layer; :meth:`init_weights`, which MMEngine calls right
    after, then restores ``pbn.weight`` to 1 so that the layer can learn.

    Args:
        num_features (int): ``C``, the number of channels.
        num_groups (int): ``G``, the number of channel groups; must divide
            ``num_features``. Defaults to 32.
        eps (float): Added to the variances of both steps. Defaults to 1e-5.
        momentum (float): Update rate of the running statistics (or of the
            estimates, when ``estimate``), in ``[0, 1]``. Defaults to 0.1.
        estimate (bool): Use the estimated statistics of the paper (for
            micro-batches; works at batch 1 and 1x1 maps) instead of batch
            statistics. Defaults to False.
        sync (bool): Compute the training statistics over the global batch
            when ``torch.distributed`` runs several processes. Defaults to
            True.
        impl (str): ``'auto'`` (default), ``'eager'`` or ``'compile'``;
            see :func:`batch_channel_norm`. Not in the state dict.
        device (torch.device, optional): Device of the parameters.
        dtype (torch.dtype, optional): Dtype of the parameters.

    Example:
        >>> from mmcv.cnn import build_norm_layer
        >>> name, layer = build_norm_layer(
        ...     dict(type='BCN', num_groups=2, estimate=True), 8)
        >>> name
        'bn'
        >>> layer(torch.randn(1, 8, 1, 1)).shape
        torch.Size([1, 8, 1, 1])
    """

    _abbr_ = 'bn'
    #: The allowed values of the arguments with a fixed set, checked in the
    #: config before the model is built (``launch/build_checks.py``).
    argument_choices: ClassVar[Dict[str, Tuple[str, ...]]] = {'impl': IMPLS}

    def __init__(self,
                 num_features: int,
                 num_groups: int = 32,
                 eps: float = 1e-5,
                 momentum: float = 0.1,
                 estimate: bool = False,
                 sync: bool = True,
                 impl: str = 'auto',
                 device=None,
                 dtype=None) -> None:
        _check_args(num_features, num_groups, eps, momentum, estimate, sync,
                    impl)
        # nn.GroupNorm.__init__ would create (C,)-shaped affine parameters
        nn.Module.__init__(self)
        factory_kwargs = {'device': device, 'dtype': dtype}
        self.num_groups = num_groups
        self.num_channels = num_features
        self.eps = eps
        self.affine = True
        self.estimate = estimate
        self.sync = sync
        self.impl = impl
        self.weight = nn.Parameter(torch.empty(num_groups, **factory_kwargs))
        self.bias = nn.Parameter(torch.empty(num_groups, **factory_kwargs))
        self.pbn = _BatchStep(
            num_features, eps=eps, momentum=momentum, **factory_kwargs)
        self.reset_parameters()

    @property
    def num_features(self) -> int:
        """int: The number of channels ``C`` (alias of ``num_channels``)."""
        return self.num_channels

    @property
    def momentum(self) -> Optional[float]:
        """float: The update rate, read from ``pbn.momentum``."""
        return self.pbn.momentum

    def reset_parameters(self) -> None:
        """Group affine to 1, 0; batch step to BatchNorm's initial state."""
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)
        self.pbn.reset_parameters()

    def init_weights(self) -> None:
        """Undo the zeroing of ``pbn.weight`` by ``zero_init_residual``:
        when the group affine weight and ``gamma`` are both all zero,
        ``gamma`` goes back to 1 (the output stays 0 at the start, yet the
        group affine can learn). Any other state is left alone."""
        pbn_weight = getattr(self.pbn, 'weight', None)
        if pbn_weight is None:
            return
        with torch.no_grad():
            if not self.weight.any() and not pbn_weight.any():
                pbn_weight.fill_(1.0)

    def forward(self, input: Tensor) -> Tensor:
        """Normalize ``input`` of shape ``(N, C, H, W)`` (same shape out).
        """
        if input.dim() != 4:
            raise ValueError('BCN expects a 4-D input (N, C, H, W), got a '
                             f'{input.dim()}-D input of size '
                             f'{tuple(input.shape)}')
        if input.size(1) != self.num_channels:
            raise ValueError(f'BCN was built for num_features='
                             f'{self.num_channels} channels, got an input '
                             f'with {input.size(1)} channels (size '
                             f'{tuple(input.shape)})')
        pbn = self.pbn
        training = pbn.training
        momentum = pbn.momentum
        if training and (input.size(0) > 0 or get_world_size() > 1):
            tracked = pbn.num_batches_tracked
            if tracked is not None:
                tracked.add_(1)
            if momentum is None:  # cumulative moving average, as BatchNorm
                momentum = 1.0 / float(tracked)
        return batch_channel_norm(input, self.num_groups, pbn.running_mean,
                                  pbn.running_var, self.weight, self.bias,
                                  pbn.weight, pbn.bias, training,
                                  self.estimate,
                                  0.0 if momentum is None else momentum,
                                  self.eps, self.sync, self.impl)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                              missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # the authors' checkpoints store the group affine as (1, G, 1)
        for name in ('weight', 'bias'):
            key = prefix + name
            value = state_dict.get(key)
            shape = getattr(self, name).shape
            if isinstance(value, Tensor) and self.accepts_checkpoint_shape(
                    name, value.shape, shape):
                state_dict[key] = value.reshape(shape)
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)

    # -- the layer protocol (layer_kind.py) ------------------------------
    def layer_kind(self) -> LayerKind:
        """``LayerKind('norm', 'bcn', 'BCN(G=32, estimated stats)')`` (or
        ``batch stats`` when not ``estimate``)."""
        form = 'estimated' if self.estimate else 'batch'
        return LayerKind('norm', 'bcn',
                         f'BCN(G={self.num_groups}, {form} stats)')

    def inner_modules(self) -> Tuple[nn.Module, ...]:
        """``(pbn, )``: the batch step is part of the layer."""
        return (self.pbn, )

    def split_eval_affine(self) -> Tuple[Tensor, Tensor, nn.GroupNorm]:
        """The layer in eval as ``rest(x * scale + shift)``.

        Returns:
            tuple[Tensor, Tensor, nn.GroupNorm]: The batch step's
            per-channel ``scale = gamma / sqrt(v + eps)`` and ``shift =
            beta - scale * m`` (float64, ``(C,)``), and ``rest``: the
            channel step and group affine as ``nn.GroupNorm(G, C)``, whose
            per-channel affine is the group affine repeated ``C / G``
            times (eval mode).
        """
        scale, shift = batch_norm_affine(self.pbn)
        repeats = self.num_channels // self.num_groups
        weight, bias = self.weight.detach(), self.bias.detach()
        gn = nn.GroupNorm(
            self.num_groups,
            self.num_channels,
            eps=self.eps,
            device=weight.device,
            dtype=weight.dtype)
        with torch.no_grad():
            gn.weight.copy_(weight.reshape(-1).repeat_interleave(repeats))
            gn.bias.copy_(bias.reshape(-1).repeat_interleave(repeats))
        return scale, shift, gn.eval()

    def eval_form(self) -> nn.Sequential:
        """The layer in eval as ``Sequential(ChannelAffine, GroupNorm)``
        (see :meth:`split_eval_affine`; the affine in the layer's dtype).
        """
        scale, shift, gn = self.split_eval_affine()
        dtype = self.weight.dtype
        return nn.Sequential(
            ChannelAffine(scale.to(dtype), shift.to(dtype)), gn).eval()

    def accepts_checkpoint_shape(self, name: str, ckpt_shape: Sequence[int],
                                 model_shape: Sequence[int]) -> bool:
        """Whether loading converts ``name`` of ``ckpt_shape``: the group
        affine (``weight``, ``bias``, ``(G,)``) in the authors' ``(1, G,
        1)``.

        Args:
            name (str): The tensor's name in this layer.
            ckpt_shape (Sequence[int]): Its shape in the checkpoint.
            model_shape (Sequence[int]): Its shape in this layer.

        Returns:
            bool: True when the loader reshapes it.
        """
        g = self.num_groups
        return (name in ('weight', 'bias') and tuple(ckpt_shape) == (1, g, 1)
                and tuple(model_shape) == (g, ))

    def extra_repr(self) -> str:
        return (f'{self.num_channels}, num_groups={self.num_groups}, '
                f'eps={self.eps}, momentum={self.momentum}, '
                f'estimate={self.estimate}, sync={self.sync}, '
                f'impl={self.impl!r}')
