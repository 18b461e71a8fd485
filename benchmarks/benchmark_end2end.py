# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""What each normalization costs in a real model: DeepLabv3-R50-D8.

Not a test. In one run, on the same inputs, for the norm variants of
``configs/_base_/models/deeplabv3_r50-d8_{variant}.py`` (``bn``, ``gn``,
``gn-ws``, ``bcn-ws`` with estimated statistics, ``bcnbatch-ws`` and the
normalization zoo: ``frn``, ``evonorm-s0``, ``evonorm-b0``, ``mabn``,
``frozenbn``; docs/norms.md):

- **training iteration**: mmseg's ``train_step`` (data preprocessor, loss,
  backward, SGD step), after warm-up, median over repeats, the variants
  interleaved (their order reversed every other repeat);
- **eval forward**: ``test_step`` in eval mode (``torch.no_grad``), timed
  the same way;
- **peak memory** of a training iteration: on CPU the growth of the
  resident set (``VmHWM`` after resetting it, minus ``VmRSS`` before) of a
  fresh process per variant, with glibc told to return freed blocks at
  once so that the resident set follows live memory; on CUDA
  ``torch.cuda.max_memory_allocated`` growth;
- **layer ratios**: ``benchmark_layers.py`` re-run (BCN, WS conv, eval
  forwards), so that one command gives everything.

It prints tables of ratios of every variant against ``bn`` and ``gn`` (and
``bcn-ws`` against ``bcnbatch-ws``) and writes a JSON file with the
machine, threads, versions, arguments and every median, so that runs can
be compared over time.

Example::

    python benchmarks/benchmark_end2end.py                 # CPU defaults
    python benchmarks/benchmark_end2end.py --device cuda --crop 512 1024
    python benchmarks/benchmark_end2end.py --device cuda --amp
    python benchmarks/benchmark_end2end.py --quick --out /tmp/quick.json
"""
import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from common import add_timing_arguments, apply_timing_arguments

from mmseg_wsbcn.utils.timing import interleaved_medians

REPO = Path(__file__).resolve().parents[1]
MODEL_BASES = REPO / 'configs' / '_base_' / 'models'
#: One variant per DeepLabv3-R50-D8 model base config
#: (``deeplabv3_r50-d8_<variant>.py``), so a new norm's base config adds its
#: row; BN first. SyncBN is left out: in one process it is BN.
VARIANTS = tuple(
    sorted((p.stem[len('deeplabv3_r50-d8_'):]
            for p in MODEL_BASES.glob('deeplabv3_r50-d8_*.py')
            if p.stem != 'deeplabv3_r50-d8_syncbn'),
           key=lambda v: (v != 'bn', v)))
# (variant, baseline) pairs of the ratio tables: every variant against BN
# and GN, and BCN's two forms against each other
PAIRS = [(v, 'bn') for v in VARIANTS if v != 'bn'] + [
    (v, 'gn') for v in VARIANTS if v not in ('bn', 'gn')
] + [('bcn-ws', 'bcnbatch-ws')]


def _config_path(variant: str) -> Path:
    return MODEL_BASES / f'deeplabv3_r50-d8_{variant}.py'


def build(variant: str, crop: Sequence[int], device: torch.device,
          impl: Optional[str], amp: bool):
    """DeepLabv3-R50-D8 of ``variant`` and its SGD optimizer wrapper.

    SyncBN is reverted to BatchNorm (one process). ``impl`` overrides
    BCN's tier when given.
    """
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import AmpOptimWrapper, OptimWrapper
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import mmseg_wsbcn  # noqa: F401  (registers the layers)
    from mmseg_wsbcn.models.layers import BCN

    init_default_scope('mmseg')
    # the init report of every parameter is not this script's output
    MMLogger.get_current_instance().setLevel(logging.WARNING)
    cfg = Config.fromfile(str(_config_path(variant)))
    cfg.model.data_preprocessor.size = tuple(crop)
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.init_weights()
    if impl is not None:
        for module in model.modules():
            if isinstance(module, BCN):
                module.impl = impl
    model.to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)
    wrapper = (
        AmpOptimWrapper(optimizer=optimizer) if amp else OptimWrapper(
            optimizer=optimizer))
    return model, wrapper


def make_batch(crop: Sequence[int], batch: int, num_classes: int = 19):
    """A fixed batch: uint8 images and label maps with some ignored pixels.
    """
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    gen = torch.Generator().manual_seed(1)
    h, w = crop
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(
            torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8))
        label = torch.randint(0, num_classes, (1, h, w), generator=gen)
        label[:, :h // 8] = 255
        sample = SegDataSample(
            metainfo=dict(
                img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
        sample.gt_sem_seg = PixelData(data=label)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _train_step(model, wrapper, data):

    def step():
        model.train()
        model.train_step(data, wrapper)

    return step


def _eval_step(model, data):

    def step():
        model.eval()
        with torch.no_grad():
            model.test_step(data)

    return step


# ------------------------------------------------------------ memory
def _status_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise KeyError(field)


def memory_of(variant: str, args: argparse.Namespace) -> float:
    """Peak memory growth of one training iteration, in MiB (in this
    process)."""
    device = torch.device(args.device)
    model, wrapper = build(variant, args.crop, device, args.impl, args.amp)
    data = make_batch(args.crop, args.batch)
    step = _train_step(model, wrapper, data)
    step()  # the first step allocates the optimizer state
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset VmHWM to the current resident set
    before = _status_kib('VmRSS')
    step()
    return (_status_kib('VmHWM') - before) / 1024


def measure_memory(variants: Sequence[str],
                   args: argparse.Namespace) -> Dict[str, float]:
    """:func:`memory_of` each variant; on CPU in a fresh process each."""
    if args.device != 'cpu':
        return {v: memory_of(v, args) for v in variants}
    if not Path('/proc/self/clear_refs').exists():
        print('peak memory: skipped (needs Linux /proc)')
        return {}
    env = dict(
        os.environ, MALLOC_MMAP_THRESHOLD_='65536', MALLOC_TRIM_THRESHOLD_='0')
    result = {}
    for variant in variants:
        cmd = [sys.executable, __file__, '--memory-of', variant] + sys.argv[1:]
        out = subprocess.run(
            cmd, env=env, capture_output=True, text=True, check=True)
        result[variant] = float(out.stdout.strip().splitlines()[-1])
    return result


# ------------------------------------------------------------ output
def ratio_table(title: str, values: Dict[str, float], unit: str,
                scale: float) -> List[str]:
    lines = [
        f'{title}', f'  {"variant":<14} {unit:>10}  ' +
        '  '.join(f'{"/ " + base:>14}' for base in ('bn', 'gn', 'bcnbatch-ws'))
    ]
    for variant in VARIANTS:
        if variant not in values:
            continue
        cells = []
        for base in ('bn', 'gn', 'bcnbatch-ws'):
            show = (variant, base) in PAIRS or variant == base
            cells.append(f'{values[variant] / values[base]:>14.3f}'
                         if show and base in values else f'{"":>14}')
        lines.append(f'  {variant:<14} {values[variant] * scale:>10.1f}  ' +
                     '  '.join(cells).rstrip())
    return lines


def ratios(values: Dict[str, float]) -> Dict[str, float]:
    return {
        f'{v}/{b}': values[v] / values[b]
        for v, b in PAIRS if v in values and b in values
    }


def versions() -> Dict[str, str]:
    import mmcv
    import mmengine
    import mmseg
    return dict(
        python=platform.python_version(),
        torch=torch.__version__,
        mmcv=mmcv.__version__,
        mmengine=mmengine.__version__,
        mmseg=mmseg.__version__)


def machine(device: torch.device) -> Dict[str, object]:
    info = dict(
        platform=platform.platform(),
        processor=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(),
        threads=torch.get_num_threads())
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
    return info


def layer_rows(args: argparse.Namespace) -> List[tuple]:
    """The layer benchmark's rows at the chosen repeats."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import benchmark_layers as layers
    device = torch.device(args.device)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.layer_threads)
    print(f'layer rows: {torch.get_num_threads()} thread(s), '
          f'{args.layer_repeats} timed steps')
    rows = []
    impls = ['eager'] + (['compile'] if args.layer_compile else [])
    for shape in args.layer_shapes:
        rows += layers.norm_rows(shape, args.batch, device, args.warmup,
                                 args.layer_repeats, impls)
        rows += layers.conv_rows(shape, args.batch, device, args.warmup,
                                 args.layer_repeats)
        rows += layers.eval_rows(shape, args.batch, device, args.warmup,
                                 args.layer_repeats)
    print(layers.format_table(rows))
    torch.set_num_threads(threads)
    return rows


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Training-iteration, eval-forward and memory cost of '
        'the DeepLabv3-R50-D8 norm variants, as ratios measured in one run.')
    parser.add_argument(
        '--crop',
        type=int,
        nargs=2,
        default=[256, 256],
        metavar=('H', 'W'),
        help='input crop (default 256 256)')
    add_timing_arguments(parser, repeats=5, warmup=2, what='variant')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='train with AmpOptimWrapper (float16 autocast)')
    parser.add_argument(
        '--impl',
        choices=('auto', 'eager', 'compile'),
        default=None,
        help="BCN's tier (default: the configs', i.e. 'auto')")
    parser.add_argument(
        '--variants',
        nargs='+',
        choices=VARIANTS,
        default=list(VARIANTS),
        help='which variants (default: all)')
    parser.add_argument(
        '--layer-shapes',
        nargs='*',
        default=['s1', 's2', 's3'],
        help="the layer benchmark's shapes (none: skip it)")
    parser.add_argument(
        '--layer-repeats', type=int, default=10, help='timed steps per layer')
    parser.add_argument(
        '--layer-threads',
        type=int,
        default=1,
        help='torch threads for the layer rows (default 1, as the layer '
        "benchmark's figures)")
    parser.add_argument(
        '--layer-compile',
        action='store_true',
        help="also time BCN's fused tier (torch.compile) in the layer rows")
    parser.add_argument(
        '--no-memory', action='store_true', help='skip the memory part')
    parser.add_argument(
        '--quick',
        action='store_true',
        help='a smoke run: 64x64 crop, 1 warm-up and 2 timed steps, tiny '
        'layer shapes')
    parser.add_argument(
        '--out',
        default=str(REPO / 'work_dirs' / 'benchmark_end2end.json'),
        help='JSON result file')
    parser.add_argument('--memory-of', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.crop, args.repeats, args.warmup = [64, 64], 2, 1
        args.layer_repeats = 2
        args.layer_shapes = [s for s in args.layer_shapes if s == 'tiny'
                             ] or ['tiny']
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    device = apply_timing_arguments(args)
    if args.memory_of is not None:
        print(memory_of(args.memory_of, args))
        return
    print(f'torch {torch.__version__}, device {device}, '
          f'{torch.get_num_threads()} threads, crop {args.crop}, batch '
          f'{args.batch}, {args.warmup} warm-up + {args.repeats} timed '
          f'steps{", AMP" if args.amp else ""}')
    data = make_batch(args.crop, args.batch)
    models = {
        v: build(v, args.crop, device, args.impl, args.amp)
        for v in args.variants
    }
    train = interleaved_medians(
        {
            v: _train_step(m, w, data)
            for v, (m, w) in models.items()
        }, args.warmup, args.repeats, device)
    evals = interleaved_medians(
        {
            v: _eval_step(m, data)
            for v, (m, _) in models.items()
        }, args.warmup, args.repeats, device)
    del models
    memory = {} if args.no_memory else measure_memory(args.variants, args)

    lines = ratio_table('training iteration (median)', train, 'ms', 1e3)
    lines += ratio_table('eval forward (median)', evals, 'ms', 1e3)
    if memory:
        lines += ratio_table('peak memory growth of a training iteration',
                             memory, 'MiB', 1.0)
    print('\n'.join(lines))
    rows = layer_rows(args) if args.layer_shapes else []

    result = dict(
        machine=machine(device),
        versions=versions(),
        args={
            k: v
            for k, v in vars(args).items() if k != 'memory_of'
        },
        train_ms={
            k: 1e3 * v
            for k, v in train.items()
        },
        eval_ms={
            k: 1e3 * v
            for k, v in evals.items()
        },
        memory_mib=memory,
        ratios=dict(
            train=ratios(train), eval=ratios(evals), memory=ratios(memory)),
        layers=[
            dict(
                layer=r[0],
                shape=r[1],
                baseline=r[2],
                ms=r[3],
                baseline_ms=r[4],
                ratio=r[3] / r[4]) for r in rows
        ],
        date=time.strftime('%Y-%m-%d %H:%M:%S'))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + '\n')
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
