# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Score saved predictions against a config's dataset (offline mIoU).

Reads one single-channel PNG of class indices (trainIds) per image of the
config's test (or val) dataset, at
``PRED_DIR/<image path relative to data_prefix.img_path, minus
img_suffix><SUFFIX>`` (what ``tools/test.py CONFIG CKPT --out PRED_DIR``
writes), or directly in ``PRED_DIR`` for a flat folder, and scores them at
the labels' own size with mmseg's ``IoUMetric``: intersections and unions
summed over the dataset, per-class table, aAcc / mIoU / mAcc.

Examples::

    python tools/analysis/eval_predictions.py CONFIG preds/
    python tools/analysis/eval_predictions.py CONFIG preds/ --split val \
        --out-json miou.json
    # Cityscapes benchmark files (labelIds, ``*_leftImg8bit.png``)
    python tools/analysis/eval_predictions.py CONFIG results/ --label-ids \
        --pred-suffix _leftImg8bit.png
"""
import argparse
import json
import os
import os.path as osp

from mmengine.logging import MMLogger

from mmseg_wsbcn.evaluation import (build_label_loader, build_seg_dataset,
                                    check_cityscapes_classes,
                                    cityscapes_labels, evaluate_iou,
                                    label_id_lut, prediction_label_pairs,
                                    split_dataset_cfg)
from mmseg_wsbcn.evaluation.arguments import (add_dataset_arguments,
                                              add_prediction_arguments)
from mmseg_wsbcn.launch import (OneLineErrorParser, exit_on_error,
                                prepare_config)
from mmseg_wsbcn.utils.errors import ToolError
from mmseg_wsbcn.utils.quiet import hide_known_warnings

# MMEngine 0.10.7 imports ``pkg_resources`` lazily when it resolves
# ``mmseg::`` config paths; setuptools (pinned < 81 for the mmcv build) then
# warns on every use, burying the tool's own messages. Harmless: hide it.

PROG = 'eval_predictions.py'


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineErrorParser(
        prog=PROG,
        description='Score saved predictions (PNG class indices) against '
        "the ground truth of a config's dataset with mmseg's IoUMetric")
    add_dataset_arguments(
        parser, 'config file whose dataset is scored', what='score')
    add_prediction_arguments(parser)
    parser.add_argument(
        '--label-ids',
        action='store_true',
        help='predictions hold Cityscapes labelIds (0-33), mapped to '
        "trainIds with cityscapesScripts' table (needs cityscapesscripts)")
    parser.add_argument(
        '--out-json',
        metavar='FILE',
        help='write aAcc, mIoU, mAcc and per-class IoU/Acc (percent) here')
    return parser.parse_args(argv)


def _logger() -> MMLogger:
    """The tool's logger, made MMEngine's current one so that
    ``IoUMetric`` prints its per-class table through it."""
    if MMLogger.check_instance_created(PROG):
        return MMLogger.get_instance(PROG)
    return MMLogger.get_instance(PROG, log_level='INFO')


def _fmt(value) -> str:
    return 'nan' if value is None else f'{value:.2f}'


def _images(n: int) -> str:
    return f'{n} image' + ('' if n == 1 else 's')


@exit_on_error(PROG)
def main(argv=None) -> dict:
    """Score the predictions and return the metrics (``aAcc``, ``mIoU``,
    ``mAcc``, ``IoU`` and ``Acc`` per class, in percent)."""
    hide_known_warnings()
    args = parse_args(argv)
    if not osp.isdir(args.pred_dir):
        raise ToolError(f"prediction folder '{args.pred_dir}' does not exist")
    cfg = prepare_config(
        args.config, mode='test', cfg_options=args.cfg_options)
    where = f'{args.split}_dataloader.dataset'
    dataset_cfg = split_dataset_cfg(cfg, args.split, args.config)
    logger = _logger()
    dataset = build_seg_dataset(dataset_cfg)
    loader = build_label_loader(dataset_cfg.get('pipeline'))
    lut = None
    if args.label_ids:
        labels = cityscapes_labels()
        check_cityscapes_classes(dataset.metainfo['classes'], labels)
        lut = label_id_lut(labels, dataset.ignore_index)
    logger.info(f'scoring {_images(len(dataset))}: predictions in '
                f"'{args.pred_dir}' against {where} "
                f"('{dataset.data_prefix.get('seg_map_path')}')")
    metrics = evaluate_iou(
        prediction_label_pairs(dataset, loader, args.pred_dir,
                               args.pred_suffix, lut), dataset.metainfo,
        dataset.ignore_index)
    summary = '  '.join(f'{key}: {_fmt(metrics[key])}'
                        for key in ('aAcc', 'mIoU', 'mAcc'))
    logger.info(f'{summary}  ({_images(len(dataset))})')
    if args.out_json:
        out_dir = osp.dirname(osp.abspath(args.out_json))
        os.makedirs(out_dir, exist_ok=True)
        with open(args.out_json, 'w') as f:
            json.dump(metrics, f, indent=2)
            f.write('\n')
        logger.info(f"metrics written to '{args.out_json}'")
    return metrics


if __name__ == '__main__':
    main()
