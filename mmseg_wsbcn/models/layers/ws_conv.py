# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Weight Standardization (WS) for 2-D convolutions.

Paper: "Micro-Batch Training with Batch-Channel Normalization and Weight
Standardization", Siyuan Qiao, Huiyu Wang, Chenxi Liu, Wei Shen and Alan
Yuille, arXiv:1903.10520. Authors' code:
https://github.com/joe-siyuan-qiao/WeightStandardization

A conv weight ``W`` of shape ``(O, I / groups, kh, kw)`` is standardized per
output channel ``o`` over its ``n = (I / groups) * kh * kw`` fan-in elements,
and the convolution runs with ``W_hat`` in place of ``W``::

    mu_o  = sum(W[o]) / n
    var_o = sum((W[o] - mu_o) ** 2) / (n - 1)        # unbiased variance

    'std' form:  W_hat[o] = (W[o] - mu_o) / (sqrt(var_o) + eps)
    'var' form:  W_hat[o] = (W[o] - mu_o) / sqrt(var_o + eps)    # default

The ``std`` form is the one of the WS README and of the authors' GN+WS
ImageNet, COCO and DeepLab code (and of mmcv's ``ConvWS2d``); the ``var``
form is the one of the authors' BCN+WS ImageNet models. The bias is never
standardized and there is no gain.

Contents, top-down: :func:`weight_standardize` (the pure function), the
registered module :class:`WSConv2d` (``conv_cfg=dict(type='WSConv2d')``),
then the deploy helpers :meth:`WSConv2d.to_conv2d` and :func:`fold_ws_conv`
that turn WS convs into plain ``nn.Conv2d`` holding ``W_hat``.
"""
import contextlib
import math
import threading
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable
from torch.nn.common_types import _size_2_t

__all__ = ['weight_standardize', 'WSConv2d', 'fold_ws_conv']

_MODES = ('std', 'var')


def _check_eps_mode(eps: float, mode: str) -> None:
    """Raise ``ValueError`` unless ``eps`` is a finite number > 0 and
    ``mode`` is one of ``('std', 'var')``."""
    if mode not in _MODES:
        raise ValueError(f'mode must be one of {_MODES}, got mode={mode!r}')
    if (isinstance(eps, bool) or not isinstance(eps, (int, float))
            or not 0 < eps < math.inf):
        raise ValueError(f'eps must be a finite number > 0, got eps={eps!r}')


def _check_fan_in(shape: torch.Size) -> int:
    """Return the fan-in ``n`` of a weight of ``shape``; raise
    ``ValueError`` when it is below 2 (unbiased variance undefined)."""
    if len(shape) < 2:
        raise ValueError(
            'weight_standardize expects a weight of shape '
            f'(O, I / groups, *kernel_size), got shape {tuple(shape)}')
    n = math.prod(shape[1:])
    if n < 2:
        raise ValueError(
            f'Weight Standardization needs a fan-in of at least 2 '
            f'elements per output channel, but the weight of shape '
            f'{tuple(shape)} has n = (in_channels / groups) * kh * kw = '
            f'{n}; the unbiased variance over n - 1 = {n - 1} is undefined. '
            f'Use a plain nn.Conv2d for this layer.')
    return n


def _autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """A context that disables autocast on ``device_type`` (if it has
    autocast at all)."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def _centre(w: Tensor, mean: Tensor, out: Optional[Tensor]) -> Tensor:
    """``w - mean``, into ``out`` when given."""
    return w - mean if out is None else torch.sub(w, mean, out=out)


def _standardize_rows(w: Tensor,
                      eps: float,
                      mode: str,
                      out: Optional[Tensor] = None
                      ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """``W_hat`` of a ``(O, n)`` weight, and the per-row statistics.

    Args:
        w (Tensor): The weight as ``(O, n)``.
        eps (float): See :func:`weight_standardize`.
        mode (str): ``'var'`` or ``'std'``.
        out (Tensor, optional): Where to write ``W_hat`` (shape of ``w``);
            a new tensor when None.

    Returns:
        tuple: ``W_hat``, the row means, the row scales ``r`` (``1 / (std +
        eps)`` or ``1 / sqrt(var + eps)``) and the row stds, each
        ``(O, 1)``; ``W_hat = (w - mean) * r``.
    """
    n = w.size(1)
    mean = w.mean(1, keepdim=True)
    centred = _centre(w, mean, out)
    std = torch.linalg.vector_norm(
        centred, dim=1, keepdim=True) / math.sqrt(n - 1)
    if mode == 'var':
        scale = torch.rsqrt(std.square() + eps)
    else:
        scale = (std + eps).reciprocal()
    return centred.mul_(scale), mean, scale, std


def _standardize_backward_(grad: Tensor, w_hat: Tensor, scale: Tensor,
                           std: Tensor, mode: str) -> Tensor:
    """The gradient of ``W`` from that of ``W_hat``, written over ``grad``
    (``(O, n)``, a tensor the caller owns); see :class:`_Standardize`."""
    n = w_hat.size(1)
    k = torch.linalg.vecdot(grad, w_hat, dim=1).unsqueeze(1) / (n - 1)
    if mode == 'std':
        k = torch.where(std > 0, k / (scale * std), 0.)
    grad.sub_(grad.mean(1, keepdim=True))
    return grad.addcmul_(w_hat, k, value=-1).mul_(scale)


class _Standardize(Function):
    """``W_hat = (W - mu) * r`` per row of a ``(O, n)`` weight, with
    ``r = 1 / (std + eps)`` (``'std'``) or ``1 / sqrt(var + eps)``
    (``'var'``), and the backward pass written out.

    With ``g`` the gradient of ``W_hat``, ``g_bar`` its row mean and
    ``k = sum(g * W_hat) / (n - 1)`` per row, the gradient of ``W`` is::

        'var':  r * (g - g_bar - W_hat * k)
        'std':  r * (g - g_bar - W_hat * k * (std + eps) / std)

    (the ``mu`` term vanishes because ``W_hat`` has zero row mean). For a
    constant row (``std = 0``) the ``'std'`` correction is taken as 0, its
    limit, so the gradient is the finite ``(g - g_bar) / eps``.
    """

    @staticmethod
    def forward(ctx, w: Tensor, eps: float, mode: str) -> Tensor:
        w_hat, _, scale, std = _standardize_rows(w, eps, mode)
        ctx.save_for_backward(w_hat, scale, std)
        ctx.mode = mode
        return w_hat

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        w_hat, scale, std = ctx.saved_tensors
        grad_w = _standardize_backward_(grad.clone(), w_hat, scale, std,
                                        ctx.mode)
        return grad_w, None, None


_scratch_buffers = threading.local()


def _scratch(weight: Tensor, dtype: torch.dtype) -> Optional[Tensor]:
    """A reusable buffer for a transient ``W_hat`` on the CPU, or None.

    Training standardizes every conv weight twice per step (forward, and
    again in the backward pass) into a tensor that lives only until the
    conv has run. On the CPU each such tensor would be fresh memory, and
    the page faults of ~2x the model's weights per step cost more than the
    standardization itself (glibc returns large freed blocks to the OS).
    One buffer per thread, as large as the largest WS conv weight seen,
    serves them all: the autograd function uses it and is done with it
    before it returns. On CUDA the caching allocator already reuses
    memory, so no buffer is kept.
    """
    if weight.device.type != 'cpu':
        return None
    numel = weight.numel()
    buffers = _scratch_buffers.__dict__.setdefault('by_dtype', {})
    buf = buffers.get(dtype)
    if buf is None or buf.numel() < numel:
        buf = buffers[dtype] = torch.empty(numel, dtype=dtype)
    return buf[:numel].view(weight.size(0), -1)


def _calc_dtype(weight: Tensor) -> torch.dtype:
    """Float64 for a float64 weight, else float32."""
    return torch.float64 if weight.dtype == torch.float64 else torch.float32


class _WSConv2dFunction(Function):
    """WS then ``conv2d``, keeping only the input, the raw weight and the
    per-row statistics for the backward pass.

    The forward pass standardizes the weight, convolves and frees
    ``W_hat``; the backward pass recomputes ``W_hat`` from the saved row
    means and scales (bitwise the same values), runs the convolution's
    backward, and turns the gradient of ``W_hat`` into that of ``W`` in
    place. Training then holds no second copy of the conv weights. Under
    autocast the conv runs in the autocast dtype, as ``F.conv2d`` would,
    and the standardization in float32.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor],
                eps: float, mode: str, stride, padding, dilation,
                groups: int) -> Tensor:
        device_type = x.device.type
        cast = (
            torch.get_autocast_dtype(device_type)
            if torch.is_autocast_enabled(device_type) else None)
        bias_dtype = None if bias is None else bias.dtype
        with _autocast_off(device_type):
            w = weight.to(_calc_dtype(weight)).reshape(weight.size(0), -1)
            w_hat, mean, scale, std = _standardize_rows(
                w, eps, mode, _scratch(weight, w.dtype))
            w_hat = w_hat.view(
                weight.shape).to(weight.dtype if cast is None else cast)
            if cast is not None:
                x = x.to(cast)
                bias = None if bias is None else bias.to(cast)
            out = F.conv2d(x, w_hat, bias, stride, padding, dilation, groups)
        ctx.save_for_backward(x, weight, mean, scale, std)
        ctx.conf = (mode, stride, padding, dilation, groups, cast, bias_dtype)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, weight, mean, scale, std = ctx.saved_tensors
        mode, stride, padding, dilation, groups, cast, bias_dtype = ctx.conf
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        with _autocast_off(x.device.type):
            w = weight.to(_calc_dtype(weight)).reshape(weight.size(0), -1)
            w_hat = _centre(w, mean, _scratch(weight, w.dtype)).mul_(scale)
            conv_w = w_hat.view(
                weight.shape).to(weight.dtype if cast is None else cast)
            grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad.to(x.dtype), x, conv_w,
                None if bias_dtype is None else [weight.size(0)], list(stride),
                list(padding), list(dilation), False, [0, 0], groups,
                [need_x, need_w, need_b and bias_dtype is not None])
            if need_w:
                grad_w = grad_w.to(w_hat.dtype).reshape(w_hat.shape)
                grad_w = _standardize_backward_(grad_w, w_hat, scale, std,
                                                mode)
                grad_w = grad_w.view(weight.shape).to(weight.dtype)
            if grad_b is not None:
                grad_b = grad_b.to(bias_dtype)
        return (grad_x, grad_w, grad_b, None, None, None, None, None, None)


def weight_standardize(weight: Tensor,
                       eps: float = 1e-5,
                       mode: str = 'var') -> Tensor:
    """Standardize a conv weight per output channel.

    See the module docstring for the two forms. Both run as one autograd
    function over the weight viewed as ``(O, n)``: the forward pass centres
    the rows (one new tensor, then scaled in place), takes the unbiased std
    from the row norms of the centred weight (no cancellation), and saves
    only ``W_hat`` and two per-row numbers; the backward pass is the closed
    form of :class:`_Standardize`, two row reductions and one elementwise
    pass. For a constant filter (zero variance) the gradient is the finite
    ``(g - mean(g)) / eps`` (``std``) or ``(g - mean(g)) / sqrt(eps)``
    (``var``), not ``NaN``.

    The statistics are always computed in float32 (float64 for a float64
    weight) with autocast disabled, so mixed precision training sees the
    same ``W_hat`` as float32 training; the result is cast back to the
    weight's own dtype (under autocast the weight is a float32 parameter,
    so ``W_hat`` is float32 and the conv casts it as usual).

    Args:
        weight (Tensor): Conv weight of shape ``(O, I / groups, kh, kw)``
            (any ``(O, ...)`` shape works; any memory format, e.g.
            channels-last).
        eps (float): Added to the unbiased std (``std``) or variance
            (``var``). Must be > 0. Defaults to 1e-5.
        mode (str): ``'var'`` (default, BCN+WS) or ``'std'`` (GN+WS, as
            mmcv ``ConvWS2d``).

    Returns:
        Tensor: ``W_hat``, same shape and dtype as ``weight`` (contiguous),
        differentiable with respect to ``weight``.

    Raises:
        ValueError: If ``mode`` is not ``'std'``/``'var'``, ``eps <= 0``, or
            the fan-in ``n`` is below 2.
    """
    _check_eps_mode(eps, mode)
    n = _check_fan_in(weight.shape)
    out_dtype = weight.dtype
    with _autocast_off(weight.device.type):
        w = weight.to(_calc_dtype(weight)).reshape(weight.shape[0], n)
        w_hat = _Standardize.apply(w, eps, mode)
    return w_hat.reshape(weight.shape).to(out_dtype)


@MODELS.register_module('WSConv2d')
class WSConv2d(nn.Conv2d):
    """Conv2d with Weight Standardization (Qiao et al., arXiv:1903.10520).

    Convolves with :func:`weight_standardize` of ``self.weight``; the bias
    (if any) is used as is. In training ``W_hat`` is computed at every
    forward; in eval mode without a gradient to the weight it is cached
    until the weight changes (:meth:`standardized_weight`), so evaluation
    costs what a plain conv costs. The
    signature mirrors ``nn.Conv2d`` plus the keyword-only ``eps`` and
    ``mode``, so ``mmcv.cnn.build_conv_layer(dict(type='WSConv2d'), ...)``
    swaps it in for any conv. Parameters and state-dict keys are those of
    ``nn.Conv2d`` (``weight``, ``bias``): the raw, unstandardized weight is
    stored, as in the authors' and mmcv's checkpoints.

    Put it on convs followed by a norm layer; keep classifier convs plain.

    Shapes:
        - Input: ``(N, in_channels, H, W)``
        - Output: ``(N, out_channels, H_out, W_out)`` as ``nn.Conv2d``.

    Args:
        in_channels (int): Channels of the input.
        out_channels (int): Channels of the output.
        kernel_size (int | tuple[int, int]): Kernel size.
        stride (int | tuple[int, int]): Stride. Defaults to 1.
        padding (int | tuple[int, int] | str): Padding. Defaults to 0.
        dilation (int | tuple[int, int]): Dilation. Defaults to 1.
        groups (int): Groups. Defaults to 1.
        bias (bool): Whether to add a learnable bias. Defaults to True.
        padding_mode (str): ``'zeros'``, ``'reflect'``, ``'replicate'`` or
            ``'circular'``. Defaults to ``'zeros'``.
        device (torch.device, optional): Device of the parameters.
        dtype (torch.dtype, optional): Dtype of the parameters.
        eps (float): Keyword-only. See :func:`weight_standardize`.
            Defaults to 1e-5.
        mode (str): Keyword-only. ``'var'`` (default) or ``'std'``. See
            :func:`weight_standardize`.

    Raises:
        ValueError: If ``mode``/``eps`` are invalid or the fan-in
            ``(in_channels / groups) * kh * kw`` is 1 (e.g. a depthwise
            1x1 conv), for which the unbiased variance is undefined.

    Example:
        >>> from mmcv.cnn import build_conv_layer
        >>> conv = build_conv_layer(dict(type='WSConv2d'), 16, 32, 3)
        >>> conv(torch.randn(2, 16, 8, 8)).shape
        torch.Size([2, 32, 6, 6])
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: _size_2_t,
                 stride: _size_2_t = 1,
                 padding: Union[str, _size_2_t] = 0,
                 dilation: _size_2_t = 1,
                 groups: int = 1,
                 bias: bool = True,
                 padding_mode: str = 'zeros',
                 device: Optional[torch.device] = None,
                 dtype: Optional[torch.dtype] = None,
                 *,
                 eps: float = 1e-5,
                 mode: str = 'var') -> None:
        _check_eps_mode(eps, mode)
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            padding_mode=padding_mode,
            device=device,
            dtype=dtype)
        _check_fan_in(self.weight.shape)
        self.eps = eps
        self.mode = mode
        # (key, W_hat) of the last eval-mode call; see standardized_weight
        self._ws_cache: Optional[Tuple[tuple, Tensor]] = None

    def forward(self, x: Tensor) -> Tensor:
        """Convolve ``x`` with the standardized weight.

        Args:
            x (Tensor): Input of shape ``(N, in_channels, H, W)``.

        Returns:
            Tensor: Output of shape ``(N, out_channels, H_out, W_out)``.
        """
        if x.dim() != 4:
            raise ValueError(
                f'{self.__class__.__name__} expects a 4-D input of shape '
                f'(N, C, H, W), got shape {tuple(x.shape)}')
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f'{self.__class__.__name__} expected in_channels='
                f'{self.in_channels}, got an input with {x.shape[1]} '
                f'channels (shape {tuple(x.shape)})')
        weight = self.weight
        if self.training or (torch.is_grad_enabled() and weight.requires_grad):
            self._ws_cache = None
            if not isinstance(self.padding, str):
                return self._ws_conv_forward(x)
        return self._conv_forward(x, self.standardized_weight(), self.bias)

    def _ws_conv_forward(self, x: Tensor) -> Tensor:
        """Training: :class:`_WSConv2dFunction` (no ``W_hat`` kept)."""
        padding = self.padding
        if self.padding_mode != 'zeros':
            x = F.pad(
                x,
                self._reversed_padding_repeated_twice,
                mode=self.padding_mode)
            padding = (0, 0)
        return _WSConv2dFunction.apply(x, self.weight, self.bias, self.eps,
                                       self.mode, self.stride, padding,
                                       self.dilation, self.groups)

    def standardized_weight(self) -> Tensor:
        """``W_hat``, from the cache when no gradient can reach the weight.

        In training mode, or whenever autograd records the weight (grad
        mode on and ``weight.requires_grad``), ``W_hat`` is computed at
        every call. Otherwise (eval and inference) the last ``W_hat`` is
        reused as long as the weight is the same tensor, unchanged:
        the cache is keyed by the parameter object, its storage, dtype,
        device and shape, and its version counter, which every in-place
        change through the parameter bumps (``weight.mul_()``,
        ``weight.copy_()``, ``load_state_dict``, optimizer steps). Changes
        through ``weight.data`` bypass version counters (PyTorch's own
        rule), so after such an edit call ``train()`` (then ``eval()``),
        which clears the cache.

        Returns:
            Tensor: The standardized weight, shape of ``self.weight``.
        """
        weight = self.weight
        if self.training or (torch.is_grad_enabled() and weight.requires_grad):
            self._ws_cache = None
            return weight_standardize(weight, self.eps, self.mode)
        key = (id(weight), weight.data_ptr(), weight._version, weight.dtype,
               weight.device, weight.shape, self.eps, self.mode,
               torch.is_inference_mode_enabled())
        cache = self.__dict__.get('_ws_cache')
        if cache is None or cache[0] != key:
            with torch.no_grad():
                cache = (key, weight_standardize(weight, self.eps, self.mode))
            self._ws_cache = cache
        return cache[1]

    def train(self, mode: bool = True) -> 'WSConv2d':
        """Set the mode (``nn.Module.train``); entering training mode drops
        the cached ``W_hat``, which training never uses."""
        if mode:
            self._ws_cache = None
        return super().train(mode)

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, eps={self.eps}, mode={self.mode!r}'

    def to_conv2d(self) -> nn.Conv2d:
        """Return a plain ``nn.Conv2d`` computing the same outputs.

        The new conv has the same hyper-parameters (stride, padding,
        dilation, groups, padding mode, bias or not), device, dtype and
        ``requires_grad`` flags; its weight is a copy of the standardized
        weight ``W_hat`` and its bias a copy of ``self.bias``. Hooks
        registered on this module are not carried over.

        Returns:
            nn.Conv2d: The deploy-time conv (``self`` is unchanged).
        """
        conv = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            bias=self.bias is not None,
            padding_mode=self.padding_mode,
            device=self.weight.device,
            dtype=self.weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(
                weight_standardize(self.weight, self.eps, self.mode))
            conv.weight.requires_grad_(self.weight.requires_grad)
            if self.bias is not None:
                conv.bias.copy_(self.bias)
                conv.bias.requires_grad_(self.bias.requires_grad)
        conv.train(self.training)
        return conv


def fold_ws_conv(model: nn.Module) -> nn.Module:
    """Replace every :class:`WSConv2d` in ``model`` by its plain conv.

    For inference or export: each WS conv (including subclasses) becomes
    the ``nn.Conv2d`` of :meth:`WSConv2d.to_conv2d`, so outputs are
    unchanged and no standardization runs at test time. The model is
    modified in place (recursively, through ``Sequential``, ``ModuleList``,
    ``ModuleDict`` and any other container) and returned; a WS conv that
    is shared by several parents is replaced by one shared plain conv.

    Args:
        model (nn.Module): Any module. If it is itself a :class:`WSConv2d`,
            it cannot be changed in place, so the new conv is returned.

    Returns:
        nn.Module: ``model`` with no :class:`WSConv2d` left, or the plain
        conv when ``model`` is a :class:`WSConv2d`.

    Example:
        >>> model = nn.Sequential(WSConv2d(3, 8, 3), nn.BatchNorm2d(8))
        >>> model = fold_ws_conv(model.eval())
        >>> type(model[0]).__name__
        'Conv2d'
    """
    return _fold(model, {})


# id of a folded WS conv -> (that WS conv, its plain conv)
_FoldMemo = Dict[int, Tuple[nn.Module, nn.Conv2d]]


def _fold(module: nn.Module, memo: _FoldMemo) -> nn.Module:
    """Recursive worker of :func:`fold_ws_conv`; ``memo`` maps the id of
    each WS conv already folded to the pair (WS conv, plain conv)."""
    if isinstance(module, WSConv2d):
        if id(module) not in memo:
            # keep ``module`` alive so that its id cannot be reused
            memo[id(module)] = (module, module.to_conv2d())
        return memo[id(module)][1]
    # ``_modules`` rather than ``named_children()``, which skips a child
    # registered under a second name.
    for name, child in list(module._modules.items()):
        if child is None:
            continue
        new_child = _fold(child, memo)
        if new_child is not child:
            setattr(module, name, new_child)
    return module
