# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Training time of one process against several, on the same global batch.

Not a test (``tests/test_distributed`` checks that the two runs train the
same model): it trains a config twice, both in this run,

- 1 process with ``--batch`` images per step (``tools/train.py``), and
- ``--nproc`` processes with ``--batch / --nproc`` images each
  (``tools/dist_train.sh``),

and prints, per run, the wall time (process start and the final validation
included) and the median iteration time from the run's own log (rank 0's),
with the ratio ``several / one``. By default on the CPU (``gloo``), with
``--threads`` threads per process; ``--device cuda`` leaves the GPUs
visible (one per process).

Example::

    python benchmarks/benchmark_dist_train.py
    python benchmarks/benchmark_dist_train.py --iters 50 --nproc 4 --batch 4
"""
import argparse
import glob
import json
import os
import os.path as osp
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_CONFIG = ('configs/demo/'
                  'deeplabv3_r18-d8_bcn-ws_1xb2-200iters_cityscapes-mini-'
                  '128x128.py')


def free_port() -> int:
    """A TCP port that is free right now."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def tool_env(args: argparse.Namespace) -> Dict[str, str]:
    """The environment of the tools: this one, without inherited rank
    variables, with ``--threads`` threads per process."""
    env = dict(os.environ)
    for key in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR',
                'MASTER_PORT', 'NNODES', 'NODE_RANK'):
        env.pop(key, None)
    env.update(
        OMP_NUM_THREADS=str(args.threads),
        MKL_NUM_THREADS=str(args.threads),
        PYTHON=sys.executable,
        PORT=str(free_port()))
    if args.device == 'cpu':
        env['CUDA_VISIBLE_DEVICES'] = ''
    return env


def train(command: List[str], work_dir: str, batch: int,
          args: argparse.Namespace) -> Tuple[float, float]:
    """Run ``command`` (a tool and its config) with ``batch`` images per
    process; return its wall time and median iteration time in seconds."""
    options = [
        f'train_dataloader.batch_size={batch}',
        f'train_cfg.max_iters={args.iters}',
        f'train_cfg.val_interval={args.iters}',
        # log every iteration's own time
        'default_hooks.logger.interval=1',
        'log_processor.window_size=1'
    ]
    start = time.perf_counter()
    proc = subprocess.run(
        command + ['--work-dir', work_dir, '--cfg-options', *options],
        cwd=REPO_ROOT,
        env=tool_env(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f'{" ".join(command)} failed:\n{proc.stdout[-3000:]}')
    logs = sorted(
        glob.glob(osp.join(work_dir, '2*', 'vis_data', 'scalars.json')))
    with open(logs[-1]) as f:
        times = [
            r['time'] for r in map(json.loads, f)
            if 'loss' in r and 'time' in r
        ]
    return seconds, statistics.median(times)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Training time of 1 process x BATCH images against '
        'NPROC processes x BATCH/NPROC images per step.')
    parser.add_argument(
        '--config', default=DEFAULT_CONFIG, help='config to train')
    parser.add_argument(
        '--iters', type=int, default=20, help='training iterations')
    parser.add_argument(
        '--batch', type=int, default=2, help='global images per step')
    parser.add_argument(
        '--nproc', type=int, default=2, help='processes of the second run')
    parser.add_argument(
        '--threads', type=int, default=1, help='threads per process')
    parser.add_argument(
        '--device',
        choices=('cpu', 'cuda'),
        default='cpu',
        help="'cpu' (gloo, default) or 'cuda' (one GPU per process)")
    args = parser.parse_args(argv)
    if args.batch % args.nproc:
        parser.error(f'--batch {args.batch} is not a multiple of --nproc '
                     f'{args.nproc}')
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    per_rank = args.batch // args.nproc

    def images(n):
        return f'{n} image' + ('s' if n != 1 else '')

    runs = [
        (f'1 process x {images(args.batch)}',
         [sys.executable, 'tools/train.py', args.config], args.batch),
        (f'{args.nproc} processes x {images(per_rank)}',
         ['tools/dist_train.sh', args.config,
          str(args.nproc)], per_rank),
    ]
    print(f'{args.config}: {args.iters} iterations, {args.device}, '
          f'{args.threads} threads per process')
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, command, batch) in enumerate(runs):
            work_dir = osp.join(tmp, str(i))
            results.append((name, *train(command, work_dir, batch, args)))
    (_, wall1, iter1), (_, wall2, iter2) = results
    width = max(len(name) for name, _, _ in results)
    print(f'{"run".ljust(width)}  wall s  median iteration s')
    for name, wall, iter_s in results:
        print(f'{name.ljust(width)}  {wall:6.1f}  {iter_s:18.3f}')
    print(f'{"ratio".ljust(width)}  {wall2 / wall1:6.3f}  '
          f'{iter2 / iter1:18.3f}')


if __name__ == '__main__':
    main()
