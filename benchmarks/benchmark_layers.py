# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Forward + backward time of WSConv2d and BCN against their baselines.

Not a test: it prints one table of median times and ratios, every ratio
measured in the same run, at ResNet-50 stage shapes (batch 2 by default):

======  =========================  ==================
shape   conv                       norm input
======  =========================  ==================
s1      64 -> 64, 3x3, 128x128     (N, 64, 128, 128)
s2      256 -> 512, 1x1, 64x64     (N, 512, 64, 64)
s3      512 -> 512, 3x3, 32x32     (N, 512, 32, 32)
======  =========================  ==================

Rows (``ratio = layer / baseline``, lower is faster):

- ``WSConv2d`` (``mode='var'`` and ``'std'``) / ``nn.Conv2d`` and / mmcv
  ``ConvWS2d``.
- ``BCN`` (``estimate=False`` and ``True``) / the authors' composition,
  written below after ``BCNorm`` and ``EstBN`` of
  ``joe-siyuan-qiao/Batch-Channel-Normalization``: a BatchNorm step, a
  reshape to ``(1, N * G, -1)``, ``torch.batch_norm`` in training mode
  without running statistics, a reshape back and a ``(1, G, 1)`` group
  affine. ``EstBN`` is kept op for op, except that its update rate is a
  Python float ``momentum`` (0.1, as :class:`BCN`) instead of a buffer
  read with ``.item()`` that the authors leave at 0 (estimates that never
  move would do less work than the real layer).
- ``BCN`` / ``nn.GroupNorm(32, C)`` and / ``nn.BatchNorm2d(C)``.
- The weight step alone, ``weight_standardize`` (both modes) / the weight
  step of mmcv's ``conv_ws_2d``, on the conv's weight. This is the part
  in which WS convs differ; the conv itself dominates the layer.
- ``nn.Conv2d`` and ``nn.BatchNorm2d`` against identical copies (A/A).
- ``zoo``: the norm of every DeepLabv3-R50-D8 model base config
  (:func:`zoo_layers`: BCN, FRN+TLU, EvoNorm-S0/B0, MABN, ...), built from
  the backbone's ``norm_cfg`` by mmcv's ``build_norm_layer`` as the config
  builds it, / ``nn.GroupNorm(32, C)`` and / ``nn.BatchNorm2d(C)``; and
  each other conv layer (``CenConv2d``, MABN's) / ``nn.Conv2d`` (the WS
  convs are in ``conv``).

Every layer is in training mode; one step is ``out = layer(x)`` then
``out.backward(grad)`` with ``x.requires_grad`` (as inside a network) and
gradients cleared before each step. Within a repeat the layers of one row
group are timed back to back, in turn (the order reversed every other
repeat), so that load from other processes hits layer and baseline alike;
the table gives medians over the repeats. The A/A rows time a layer
against an identical copy: their distance from 1 is the noise floor.

Example::

    python benchmarks/benchmark_layers.py --threads 1
    python benchmarks/benchmark_layers.py --shapes s1 --layers norm
    python benchmarks/benchmark_layers.py --layers zoo
"""
import argparse
import functools
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from common import add_timing_arguments, apply_timing_arguments
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmcv.cnn.bricks.conv_ws import ConvWS2d
from torch import Tensor
from torch.nn.parameter import Parameter

from mmseg_wsbcn.models.layers import BCN, WSConv2d, weight_standardize
from mmseg_wsbcn.utils.timing import interleaved_medians

GROUPS = 32
MODEL_BASES = Path(__file__).resolve().parents[1] / 'configs' / '_base_' \
    / 'models'
#: Layer types the other row groups time already (or the baselines).
_BASELINE_TYPES = ('BN', 'SyncBN', 'GN', 'WSConv2d', None)


def zoo_layers() -> Tuple[Dict[str, dict], Dict[str, dict]]:
    """The norm and conv layers of the DeepLabv3-R50-D8 model base configs
    (``configs/_base_/models/deeplabv3_r50-d8_<variant>.py``), as their
    backbones build them: ``({variant: norm_cfg}, {variant: conv_cfg})``,
    leaving out the baseline types. A new norm's base config adds its row,
    as in ``benchmark_end2end.py``."""
    from mmengine.config import Config
    norms, convs = {}, {}
    for path in sorted(MODEL_BASES.glob('deeplabv3_r50-d8_*.py')):
        backbone = Config.fromfile(
            str(path), import_custom_modules=False,
            format_python_code=False).model.backbone
        variant = path.stem[len('deeplabv3_r50-d8_'):]
        norm, conv = backbone.get('norm_cfg'), backbone.get('conv_cfg')
        if norm and norm.get('type') not in _BASELINE_TYPES:
            norms[variant] = dict(norm)
        if conv and conv.get('type') not in _BASELINE_TYPES:
            convs[variant] = dict(conv)
    return norms, convs


# name -> (conv in, conv out, kernel, size), norm channels
SHAPES: Dict[str, Tuple[Tuple[int, int, int, int], int]] = {
    's1': ((64, 64, 3, 128), 64),
    's2': ((256, 512, 1, 64), 512),
    's3': ((512, 512, 3, 32), 512),
    'tiny': ((32, 64, 3, 8), 64),  # a smoke-test shape, not ResNet's
}


# --------------------------------------------- the authors' composition
class AuthorsEstBN(nn.Module):
    """``EstBN`` of the authors' code, with a float update rate.

    Args:
        num_features (int): Channels ``C``.
        momentum (float): Update rate of the estimates. Defaults to 0.1.

    Shapes:
        Input and output: ``(N, C, H, W)``.
    """

    def __init__(self, num_features: int, momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features = num_features
        self.momentum = momentum
        self.weight = Parameter(torch.ones(num_features))
        self.bias = Parameter(torch.zeros(num_features))
        self.register_buffer('running_mean', torch.zeros(num_features))
        self.register_buffer('running_var', torch.ones(num_features))

    def forward(self, inp: Tensor) -> Tensor:
        ms = self.momentum
        if self.training:
            with torch.no_grad():
                inp_t = inp.transpose(0, 1).contiguous().view(
                    self.num_features, -1)
                running_mean = inp_t.mean(dim=1)
                inp_t = inp_t - self.running_mean.view(-1, 1)
                running_var = torch.mean(inp_t * inp_t, dim=1)
                self.running_mean.mul_(1 - ms).add_(ms * running_mean)
                self.running_var.mul_(1 - ms).add_(ms * running_var)
        out = inp - self.running_mean.view(1, -1, 1, 1)
        out = out / torch.sqrt(self.running_var + 1e-5).view(1, -1, 1, 1)
        weight = self.weight.view(1, -1, 1, 1)
        bias = self.bias.view(1, -1, 1, 1)
        return weight * out + bias


class AuthorsBCN(nn.Module):
    """``BCNorm`` of the authors' code.

    Args:
        num_channels (int): Channels ``C``.
        num_groups (int): Groups ``G``.
        eps (float): Epsilon of the channel step. Defaults to 1e-5.
        estimate (bool): Use :class:`AuthorsEstBN` instead of
            ``nn.BatchNorm2d`` for the batch step. Defaults to False.

    Shapes:
        Input and output: ``(N, C, H, W)``.
    """

    def __init__(self,
                 num_channels: int,
                 num_groups: int,
                 eps: float = 1e-5,
                 estimate: bool = False) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.num_groups = num_groups
        self.eps = eps
        self.weight = Parameter(torch.ones(1, num_groups, 1))
        self.bias = Parameter(torch.zeros(1, num_groups, 1))
        self.bn = (
            AuthorsEstBN(num_channels)
            if estimate else nn.BatchNorm2d(num_channels))

    def forward(self, inp: Tensor) -> Tensor:
        out = self.bn(inp)
        out = out.view(1, inp.size(0) * self.num_groups, -1)
        out = torch.batch_norm(out, None, None, None, None, True, 0, self.eps,
                               True)
        out = out.view(inp.size(0), self.num_groups, -1)
        out = self.weight * out + self.bias
        return out.view_as(inp)


def mmcv_standardize(weight: Tensor, eps: float = 1e-5) -> Tensor:
    """The weight step of mmcv's ``conv_ws_2d``, op for op.

    Args:
        weight (Tensor): Shape ``(O, I, kh, kw)``.
        eps (float): Added to the unbiased std. Defaults to 1e-5.

    Returns:
        Tensor: The standardized weight, same shape.
    """
    c_out = weight.size(0)
    weight_flat = weight.view(c_out, -1)
    mean = weight_flat.mean(dim=1, keepdim=True).view(c_out, 1, 1, 1)
    std = weight_flat.std(dim=1, keepdim=True).view(c_out, 1, 1, 1)
    return (weight - mean) / (std + eps)


class Fn(nn.Module):
    """A parameter-free module calling ``fn`` (to time a function)."""

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


# ------------------------------------------------------------ timing
def _step(layer: nn.Module, x: Tensor, grad: Tensor) -> None:
    """One forward + backward of ``layer``."""
    layer(x).backward(grad)


def time_group(layers: Dict[str, nn.Module], x: Tensor, grad: Tensor,
               warmup: int, repeats: int) -> Dict[str, float]:
    """Median milliseconds of each layer, timed in turn per repeat.

    The layers run one after the other within a repeat, in forward order
    on even repeats and in reverse order on odd ones.

    Args:
        layers (dict[str, nn.Module]): Layers mapping ``x`` to a tensor of
            ``grad``'s shape.
        x (Tensor): Input, ``requires_grad=True``.
        grad (Tensor): Gradient of the output.
        warmup (int): Untimed steps per layer first.
        repeats (int): Timed steps per layer.

    Returns:
        dict[str, float]: Median time in ms per layer name.
    """

    def clear(name: str) -> None:
        layers[name].zero_grad(set_to_none=True)
        x.grad = None

    steps = {
        name: functools.partial(_step, layer, x, grad)
        for name, layer in layers.items()
    }
    seconds = interleaved_medians(
        steps, warmup, repeats, x.device, setup=clear)
    return {name: 1e3 * t for name, t in seconds.items()}


# ------------------------------------------------------------ rows
# (layer, shape, baseline, ms of the layer, ms of the baseline)
Row = Tuple[str, str, str, float, float]


def conv_rows(shape: str, batch: int, device: torch.device, warmup: int,
              repeats: int) -> List[Row]:
    """Time the WS convs and their baselines at ``shape``."""
    (c_in, c_out, k, size), _ = SHAPES[shape]
    args = (c_in, c_out, k)
    kwargs = dict(padding=k // 2, bias=False)
    torch.manual_seed(0)
    base = nn.Conv2d(*args, **kwargs)
    layers = {
        'WSConv2d(var)': WSConv2d(*args, **kwargs, mode='var'),
        'WSConv2d(std)': WSConv2d(*args, **kwargs, mode='std'),
        'Conv2d': nn.Conv2d(*args, **kwargs),
        'ConvWS2d': ConvWS2d(*args, **kwargs),
        'Conv2d (A/A)': nn.Conv2d(*args, **kwargs),
    }
    for layer in layers.values():
        layer.load_state_dict(base.state_dict())
        layer.to(device).train()
    x = torch.randn(batch, c_in, size, size, device=device, requires_grad=True)
    grad = torch.randn(batch, c_out, size, size, device=device)
    ms = time_group(layers, x, grad, warmup, repeats)
    label = f'{c_in}->{c_out} {k}x{k} @{size}'
    rows = []
    for mode in ('var', 'std'):
        name = f'WSConv2d({mode})'
        for baseline in ('Conv2d', 'ConvWS2d'):
            rows.append((name, label, baseline, ms[name], ms[baseline]))
    rows.append(
        ('Conv2d', label, 'Conv2d (A/A)', ms['Conv2d'], ms['Conv2d (A/A)']))

    # the weight step alone: what WS adds to a conv
    weight = torch.randn(c_out, c_in, k, k, device=device, requires_grad=True)
    steps = {
        'WS step(var)': Fn(lambda w: weight_standardize(w, mode='var')),
        'WS step(std)': Fn(lambda w: weight_standardize(w, mode='std')),
        'mmcv WS step': Fn(mmcv_standardize),
    }
    ms = time_group(steps, weight, torch.randn_like(weight), warmup, repeats)
    label = f'({c_out}, {c_in}, {k}, {k})'
    for mode in ('var', 'std'):
        name = f'WS step({mode})'
        rows.append(
            (name, label, 'mmcv WS step', ms[name], ms['mmcv WS step']))
    return rows


def norm_rows(shape: str,
              batch: int,
              device: torch.device,
              warmup: int,
              repeats: int,
              impls: Sequence[str] = ('eager', )) -> List[Row]:
    """Time BCN (each tier of ``impls``) and its baselines at ``shape``."""
    (_, _, _, size), channels = SHAPES[shape]
    layers = {}
    for impl in impls:
        for est in (False, True):
            layers[_bcn_name(est, impl)] = BCN(
                channels, GROUPS, estimate=est, impl=impl)
    layers.update({
        'authors(est=False)':
        AuthorsBCN(channels, GROUPS, estimate=False),
        'authors(est=True)':
        AuthorsBCN(channels, GROUPS, estimate=True),
        'GroupNorm':
        nn.GroupNorm(GROUPS, channels),
        'BatchNorm2d':
        nn.BatchNorm2d(channels),
        'BatchNorm2d (A/A)':
        nn.BatchNorm2d(channels),
    })
    for layer in layers.values():
        layer.to(device).train()
    torch.manual_seed(0)
    x = torch.randn(
        batch, channels, size, size, device=device, requires_grad=True)
    grad = torch.randn_like(x)
    ms = time_group(layers, x, grad, warmup, repeats)
    label = f'({batch}, {channels}, {size}, {size})'
    rows = []
    for impl in impls:
        for est in (False, True):
            name = _bcn_name(est, impl)
            baselines = ('GroupNorm', ) if impl != 'eager' else (
                f'authors(est={est})', 'GroupNorm', 'BatchNorm2d')
            for baseline in baselines:
                rows.append((name, label, baseline, ms[name], ms[baseline]))
    rows.append(('BatchNorm2d', label, 'BatchNorm2d (A/A)', ms['BatchNorm2d'],
                 ms['BatchNorm2d (A/A)']))
    return rows


def zoo_rows(shape: str, batch: int, device: torch.device, warmup: int,
             repeats: int) -> List[Row]:
    """Time the norm of every model base config (:func:`zoo_layers`)
    against GroupNorm and BatchNorm2d at ``shape``, and its other conv
    layers against Conv2d, in one interleaved group each."""
    (c_in, c_out, k, size), channels = SHAPES[shape]
    zoo_norms, zoo_convs = zoo_layers()
    layers = {
        name: build_norm_layer(cfg, channels)[1]
        for name, cfg in zoo_norms.items()
    }
    layers.update({
        'GroupNorm': nn.GroupNorm(GROUPS, channels),
        'BatchNorm2d': nn.BatchNorm2d(channels)
    })
    for layer in layers.values():
        layer.to(device).train()
    torch.manual_seed(0)
    x = torch.randn(
        batch, channels, size, size, device=device, requires_grad=True)
    ms = time_group(layers, x, torch.randn_like(x), warmup, repeats)
    label = f'({batch}, {channels}, {size}, {size})'
    rows = [(name, label, baseline, ms[name], ms[baseline])
            for name in zoo_norms for baseline in ('GroupNorm', 'BatchNorm2d')]
    kwargs = dict(padding=k // 2, bias=False)
    convs = {
        f'{name} conv': build_conv_layer(cfg, c_in, c_out, k, **kwargs)
        for name, cfg in zoo_convs.items()
    }
    convs['Conv2d'] = nn.Conv2d(c_in, c_out, k, **kwargs)
    for conv in convs.values():
        conv.to(device).train()
    x = torch.randn(batch, c_in, size, size, device=device, requires_grad=True)
    grad = torch.randn(batch, c_out, size, size, device=device)
    ms = time_group(convs, x, grad, warmup, repeats)
    rows += [(name, f'{c_in}->{c_out} {k}x{k} @{size}', 'Conv2d', ms[name],
              ms['Conv2d']) for name in convs if name != 'Conv2d']
    return rows


def _bcn_name(estimate: bool, impl: str) -> str:
    return (f'BCN(est={estimate})'
            if impl == 'eager' else f'BCN(est={estimate}, {impl})')


def time_forward(layers: Dict[str, nn.Module], x: Tensor, warmup: int,
                 repeats: int) -> Dict[str, float]:
    """Median milliseconds of an eval forward (no grad), interleaved."""
    steps = {
        name: functools.partial(layer, x)
        for name, layer in layers.items()
    }
    with torch.no_grad():
        seconds = interleaved_medians(steps, warmup, repeats, x.device)
    return {name: 1e3 * t for name, t in seconds.items()}


def eval_rows(shape: str, batch: int, device: torch.device, warmup: int,
              repeats: int) -> List[Row]:
    """Eval-mode forwards (no grad): BCN against GroupNorm, and WS convs
    (standardizing at every call) against ``nn.Conv2d``."""
    (c_in, c_out, k, size), channels = SHAPES[shape]
    torch.manual_seed(0)
    bcn = BCN(channels, GROUPS, estimate=True)
    with torch.no_grad():  # running statistics of a trained layer
        bcn.pbn.running_mean.normal_()
        bcn.pbn.running_var.uniform_(0.5, 2)
    norms = {'BCN eval': bcn, 'GroupNorm eval': nn.GroupNorm(GROUPS, channels)}
    for layer in norms.values():
        layer.to(device).eval()
    x = torch.randn(batch, channels, size, size, device=device)
    ms = time_forward(norms, x, warmup, repeats)
    label = f'({batch}, {channels}, {size}, {size})'
    rows = [('BCN eval', label, 'GroupNorm eval', ms['BCN eval'],
             ms['GroupNorm eval'])]

    args = (c_in, c_out, k)
    kwargs = dict(padding=k // 2, bias=False)
    base = nn.Conv2d(*args, **kwargs)
    convs = {
        'WSConv2d(var) eval': WSConv2d(*args, **kwargs, mode='var'),
        'WSConv2d(std) eval': WSConv2d(*args, **kwargs, mode='std'),
        'Conv2d eval': nn.Conv2d(*args, **kwargs),
    }
    for layer in convs.values():
        layer.load_state_dict(base.state_dict())
        layer.to(device).eval()
    x = torch.randn(batch, c_in, size, size, device=device)
    ms = time_forward(convs, x, warmup, repeats)
    label = f'{c_in}->{c_out} {k}x{k} @{size}'
    for mode in ('var', 'std'):
        name = f'WSConv2d({mode}) eval'
        rows.append((name, label, 'Conv2d eval', ms[name], ms['Conv2d eval']))
    return rows


def _ms(t: float) -> str:
    """Milliseconds with 3 significant digits at least."""
    return f'{t:.2f}' if t >= 1 else f'{t:.3f}'


def format_table(rows: Sequence[Row]) -> str:
    """The result table, one line per row."""
    header = ('layer', 'shape', 'baseline', 'ms layer', 'ms base', 'ratio')
    lines = [(name, shape, base, _ms(t_layer), _ms(t_base),
              f'{t_layer / t_base:.3f}')
             for name, shape, base, t_layer, t_base in rows]
    widths = [
        max(len(str(line[i])) for line in [header] + lines)
        for i in range(len(header))
    ]

    def fmt(line):
        return '  '.join(
            str(cell).rjust(w) if i in (3, 4, 5) else str(cell).ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths))).rstrip()

    rule = '  '.join('-' * w for w in widths)
    return '\n'.join([fmt(header), rule] + [fmt(line) for line in lines])


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Forward + backward time of WSConv2d and BCN against '
        'their baselines at ResNet-50 stage shapes.')
    add_timing_arguments(parser, repeats=20, warmup=3, what='layer')
    parser.add_argument(
        '--shapes',
        nargs='+',
        choices=sorted(SHAPES),
        default=['s1', 's2', 's3'],
        help="which stage shapes to run (default: s1 s2 s3; 'tiny' is a "
        'smoke-test shape)')
    parser.add_argument(
        '--layers',
        nargs='+',
        choices=('conv', 'norm', 'eval', 'zoo'),
        default=('conv', 'norm', 'eval', 'zoo'),
        help='which row groups to run: training conv and norm layers, '
        'eval forwards, the normalization zoo (default: all)')
    parser.add_argument(
        '--impls',
        nargs='+',
        choices=('eager', 'compile'),
        default=('eager', ),
        help="BCN's tiers to time (default: eager; 'compile' is the fused "
        'tier, torch.compile)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    device = apply_timing_arguments(args)
    print(f'torch {torch.__version__}, device {device}, '
          f'{torch.get_num_threads()} threads, batch {args.batch}, '
          f'{args.warmup} warmup + {args.repeats} timed steps, '
          'forward + backward, median ms')
    rows: List[Row] = []
    for shape in args.shapes:
        common = (shape, args.batch, device, args.warmup, args.repeats)
        if 'conv' in args.layers:
            rows += conv_rows(*common)
        if 'norm' in args.layers:
            rows += norm_rows(*common, impls=args.impls)
        if 'eval' in args.layers:
            rows += eval_rows(*common)
        if 'zoo' in args.layers:
            rows += zoo_rows(*common)
    print(format_table(rows))


if __name__ == '__main__':
    main()
