# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Train a segmentor from a config file (mmseg 1.x's ``tools/train.py``).

Examples::

    python tools/train.py configs/demo/deeplabv3_r18-d8_bcn-ws_1xb2-200iters_cityscapes-mini-128x128.py  # noqa: E501
    python tools/train.py CONFIG --work-dir work_dirs/exp1 --resume
    torchrun --nproc_per_node=2 tools/train.py CONFIG --launcher pytorch
    tools/dist_train.sh CONFIG 2   # the same, with NNODES/NODE_RANK/PORT

Without CUDA the processes use the ``gloo`` backend on CPU.
"""
import argparse


from mmseg_wsbcn.launch import (OneLineErrorParser, add_run_arguments,
                                build_runner, check_paths, exit_on_error,
                                parse_run_args, prepare_config, run_and_finish)
from mmseg_wsbcn.launch.build_checks import check_build_config
from mmseg_wsbcn.utils.errors import ToolError
from mmseg_wsbcn.utils.quiet import hide_known_warnings


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineErrorParser(description='Train a segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        action='store_true',
        default=False,
        help='resume from the latest checkpoint in the work_dir '
        'automatically')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training')
    add_run_arguments(parser)
    return parse_run_args(parser, argv)


def enable_amp(cfg) -> None:
    """``--amp``: switch the config's ``OptimWrapper`` to
    ``AmpOptimWrapper`` with a dynamic loss scale (as mmseg's tool does)."""
    optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if optim_wrapper == 'AmpOptimWrapper':
        print('AMP training is already enabled in your config.')
        return
    if optim_wrapper != 'OptimWrapper':
        raise ToolError(
            f"--amp needs optim_wrapper.type 'OptimWrapper' (it becomes "
            f"'AmpOptimWrapper'), but the config sets '{optim_wrapper}'; "
            'drop --amp or set optim_wrapper.type=OptimWrapper')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'


@exit_on_error('train.py')
def main(argv=None):
    hide_known_warnings()
    args = parse_args(argv)
    cfg = prepare_config(
        args.config,
        mode='train',
        work_dir=args.work_dir,
        cfg_options=args.cfg_options,
        launcher=args.launcher)
    if args.trust_checkpoint:
        cfg.trust_checkpoint = True
    if args.amp:
        enable_amp(cfg)
    cfg.resume = args.resume
    check_paths(cfg, mode='train')
    check_build_config(cfg, mode='train')
    runner = build_runner(cfg)
    run_and_finish('train.py', runner.train, cfg,
                   lambda: f'at iteration {runner.iter + 1}')
    return runner


if __name__ == '__main__':
    main()
