# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Test (evaluate) a checkpoint (mmseg 1.x's ``tools/test.py``).

Examples::

    python tools/test.py CONFIG work_dirs/CONFIG_NAME/iter_200.pth
    python tools/test.py CONFIG CHECKPOINT --show-dir vis --out preds
    torchrun --nproc_per_node=2 tools/test.py CONFIG CHECKPOINT \
        --launcher pytorch
"""
import argparse
import os
import sys
import warnings

from mmengine.config import DictAction

from mmseg_wsbcn.cli import (OneLineErrorParser, ToolError, build_runner,
                             check_paths, prepare_config, run_and_finish)

# MMEngine 0.10.7 imports ``pkg_resources`` lazily when it resolves
# ``mmseg::`` config paths; setuptools (pinned < 81 for the mmcv build) then
# warns on every use, burying the tool's own messages. Harmless: hide it.
warnings.filterwarnings(
    'ignore', message='pkg_resources is deprecated', category=UserWarning)


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineErrorParser(
        description='MMSeg test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help=('if specified, the evaluation metric results will be dumped'
              'into the directory as json'))
    parser.add_argument(
        '--out',
        type=str,
        help='The directory to save output prediction for offline '
        'evaluation')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved. '
        'If specified, it will be automatically saved '
        'to the work_dir/timestamp/show_dir')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file. If the value to '
        'be overwritten is a list, it should be like key="[a,b]" or key=a,b '
        'It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]" '
        'Note that the quotation marks are necessary and that no white space '
        'is allowed.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument(
        '--tta', action='store_true', help='Test time augmentation')
    # When using PyTorch version >= 2.0.0, the `torch.distributed.launch`
    # will pass the `--local-rank` parameter to `tools/train.py` instead
    # of `--local_rank`.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def trigger_visualization_hook(cfg, args) -> None:
    default_hooks = cfg.default_hooks
    if 'visualization' not in default_hooks:
        raise ToolError(
            'VisualizationHook must be included in default_hooks to use '
            "--show or --show-dir; add `visualization=dict(type="
            "'SegVisualizationHook')` to default_hooks in your config")
    visualization_hook = default_hooks['visualization']
    # Turn on visualization
    visualization_hook['draw'] = True
    if args.show:
        visualization_hook['show'] = True
        visualization_hook['wait_time'] = args.wait_time
    if args.show_dir:
        visualizer = cfg.visualizer
        visualizer['save_dir'] = args.show_dir


def main(argv=None) -> dict:
    """Run the test and return the metrics dict (e.g. ``{'mIoU': 61.2}``)."""
    args = parse_args(argv)
    try:
        cfg = prepare_config(
            args.config,
            mode='test',
            work_dir=args.work_dir,
            cfg_options=args.cfg_options,
            launcher=args.launcher)
        cfg.load_from = args.checkpoint
        if args.show or args.show_dir:
            trigger_visualization_hook(cfg, args)
        if args.tta:
            if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
                raise ToolError(
                    '--tta needs `tta_model` and `tta_pipeline` in the '
                    f"config '{args.config}'")
            cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
            cfg.tta_model.module = cfg.model
            cfg.model = cfg.tta_model
        # add output_dir in metric
        if args.out is not None:
            cfg.test_evaluator['output_dir'] = args.out
            cfg.test_evaluator['keep_results'] = True
        check_paths(cfg, mode='test')
        runner = build_runner(cfg)
    except ToolError as e:
        sys.exit(f'test.py: error: {e}')
    return run_and_finish('test.py', runner.test, cfg,
                          lambda: 'while testing')


if __name__ == '__main__':
    main()
