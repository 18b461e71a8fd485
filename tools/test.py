# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Test (evaluate) a checkpoint (mmseg 1.x's ``tools/test.py``).

Examples::

    python tools/test.py CONFIG work_dirs/CONFIG_NAME/iter_200.pth
    python tools/test.py CONFIG CHECKPOINT --show-dir vis --out preds
    python tools/test.py CONFIG CHECKPOINT --format-cityscapes cs_results
    torchrun --nproc_per_node=2 tools/test.py CONFIG CHECKPOINT \
        --launcher pytorch

Writes the metrics to ``<work_dir>/<timestamp>/metrics.json``; a checkpoint
whose keys or shapes do not match the config's model stops the tool with one
line (``--allow-partial-load`` loads the matching keys instead).
"""
import argparse
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.logging import print_log

from mmseg_wsbcn.engine.hooks import CheckpointMatchHook, SavePredictionsHook
from mmseg_wsbcn.evaluation.test_outputs import (METRICS_FILE, add_metric,
                                                 check_output_dirs,
                                                 cityscapes_format_metric,
                                                 write_metrics_json)
from mmseg_wsbcn.launch import (OneLineErrorParser, add_run_arguments,
                                build_runner, check_paths,
                                check_slide_inference, exit_on_error,
                                parse_run_args, prepare_config, run_and_finish)
from mmseg_wsbcn.launch.build_checks import check_build_config
from mmseg_wsbcn.utils.errors import ToolError
from mmseg_wsbcn.utils.quiet import hide_known_warnings


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineErrorParser(description='MMSeg test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory for the log and the metrics: '
        f'<work_dir>/<timestamp>/{METRICS_FILE} (default: the config\'s '
        'work_dir, else ./work_dirs/<config name>)')
    parser.add_argument(
        '--out',
        type=str,
        help='directory for one single-channel uint8 PNG of class indices '
        '(trainIds) per image, at the original size, named '
        '<image path relative to the img prefix, minus img_suffix>.png, '
        'for offline evaluation (tools/analysis/eval_predictions.py)')
    parser.add_argument(
        '--format-cityscapes',
        metavar='DIR',
        help='also write Cityscapes labelId PNGs '
        '(<city>_<seq>_<frame>_leftImg8bit.png) for the Cityscapes server '
        'or cityscapesScripts\' evalPixelLevelSemanticLabeling; needs the '
        'cityscapes extra')
    parser.add_argument(
        '--allow-partial-load',
        action='store_true',
        help='load only the checkpoint keys that match the model (warns '
        'once) instead of stopping when keys or shapes differ')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory for the painted images, one per image (image + '
        'ground truth | image + prediction, dataset palette): '
        'DIR/vis_data/vis_image/test_<image file name>_0.png')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--tta', action='store_true', help='Test time augmentation')
    add_run_arguments(parser)
    return parse_run_args(parser, argv)


def trigger_visualization_hook(cfg, args) -> None:
    default_hooks = cfg.default_hooks
    if 'visualization' not in default_hooks:
        raise ToolError(
            'VisualizationHook must be included in default_hooks to use '
            "--show or --show-dir; add `visualization=dict(type="
            "'SegVisualizationHook')` to default_hooks in your config")
    visualization_hook = default_hooks['visualization']
    # Turn on visualization, for every image (mmseg's default interval of 50
    # draws only every 50th test image, none of a set of fewer than 50)
    visualization_hook['draw'] = True
    visualization_hook['interval'] = 1
    if args.show:
        visualization_hook['show'] = True
        visualization_hook['wait_time'] = args.wait_time
    if args.show_dir:
        visualizer = cfg.visualizer
        visualizer['save_dir'] = args.show_dir


def run_and_record(runner, args) -> dict:
    """``runner.test()``, then write the metrics JSON (rank 0)."""
    metrics = runner.test()
    if is_main_process():
        filename = write_metrics_json(
            osp.join(runner.log_dir, METRICS_FILE),
            metrics,
            config=args.config,
            checkpoint=args.checkpoint,
            tta=bool(args.tta),
            num_images=len(runner.test_dataloader.dataset),
            out=args.out,
            format_cityscapes=args.format_cityscapes)
        print_log(f'metrics written to {filename}', logger='current')
        if args.out:
            print_log(
                f'trainId predictions written to {args.out}', logger='current')
        if args.format_cityscapes:
            print_log(
                'Cityscapes labelId predictions written to '
                f'{args.format_cityscapes}',
                logger='current')
    return metrics


@exit_on_error('test.py')
def main(argv=None) -> dict:
    """Run the test and return the metrics dict (e.g. ``{'mIoU': 61.2}``)."""
    hide_known_warnings()
    args = parse_args(argv)
    check_output_dirs({
        '--out': args.out,
        '--format-cityscapes': args.format_cityscapes,
        '--show-dir': args.show_dir
    })
    cfg = prepare_config(
        args.config,
        mode='test',
        work_dir=args.work_dir,
        cfg_options=args.cfg_options,
        launcher=args.launcher)
    if args.trust_checkpoint:
        cfg.trust_checkpoint = True
    cfg.load_from = args.checkpoint
    check_slide_inference(cfg)
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
    if args.format_cityscapes:
        add_metric(cfg, cityscapes_format_metric(cfg, args.format_cityscapes))
    check_paths(cfg, mode='test')
    check_build_config(cfg, mode='test')
    runner = build_runner(cfg)
    runner.register_hook(
        CheckpointMatchHook(
            args.checkpoint,
            allow_partial=args.allow_partial_load,
            hint='was it trained with this config? Test it with its own '
            'config, or pass --allow-partial-load to load only the matching '
            'keys'))
    if args.out:
        runner.register_hook(SavePredictionsHook(args.out))
    return run_and_finish('test.py', lambda: run_and_record(runner, args), cfg,
                          lambda: 'while testing')


if __name__ == '__main__':
    main()
