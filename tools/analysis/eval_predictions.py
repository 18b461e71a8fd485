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
from typing import Iterator, Tuple

import numpy as np
from mmengine.config import DictAction
from mmengine.logging import MMLogger

from mmseg_wsbcn.evaluation import (build_label_loader, build_seg_dataset,
                                    check_cityscapes_classes, check_prediction,
                                    cityscapes_labels, data_infos,
                                    evaluate_iou, find_prediction,
                                    flat_name_counts, label_id_lut,
                                    label_ids_to_train_ids, load_label,
                                    prediction_stem, read_prediction)
from mmseg_wsbcn.launch import (OneLineErrorParser, exit_on_error,
                                prepare_config)
from mmseg_wsbcn.launch.quiet import hide_known_warnings
from mmseg_wsbcn.utils.errors import ToolError

# MMEngine 0.10.7 imports ``pkg_resources`` lazily when it resolves
# ``mmseg::`` config paths; setuptools (pinned < 81 for the mmcv build) then
# warns on every use, burying the tool's own messages. Harmless: hide it.

PROG = 'eval_predictions.py'


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineErrorParser(
        prog=PROG,
        description='Score saved predictions (PNG class indices) against '
        "the ground truth of a config's dataset with mmseg's IoUMetric")
    parser.add_argument('config', help='config file whose dataset is scored')
    parser.add_argument(
        'pred_dir',
        help='folder of predictions, laid out like the image folder '
        '(tools/test.py --out) or flat')
    parser.add_argument(
        '--pred-suffix',
        default='.png',
        metavar='SUFFIX',
        help='what follows the image name (minus img_suffix) in a '
        "prediction's file name (default: .png)")
    parser.add_argument(
        '--label-ids',
        action='store_true',
        help='predictions hold Cityscapes labelIds (0-33), mapped to '
        "trainIds with cityscapesScripts' table (needs cityscapesscripts)")
    parser.add_argument(
        '--split',
        choices=['test', 'val'],
        default='test',
        help='score the test_dataloader (default) or val_dataloader dataset')
    parser.add_argument(
        '--out-json',
        metavar='FILE',
        help='write aAcc, mIoU, mAcc and per-class IoU/Acc (percent) here')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file, e.g. '
        'test_dataloader.dataset.data_root=data/cityscapes/')
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


def scored_pairs(dataset, infos, loader, args,
                 lut) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Yield each image's checked ``(prediction, label)``, both (H, W).

    Args:
        dataset (BaseSegDataset): The ground-truth dataset.
        infos (list[dict]): Its ``data_list`` entries.
        loader (LoadAnnotations): Reads the labels.
        args (argparse.Namespace): ``pred_dir`` and ``pred_suffix``.
        lut (np.ndarray, optional): labelId -> trainId table
            (``--label-ids``), or None for trainId predictions.

    Raises:
        EvaluationInputError: A prediction or label is missing or unusable.
    """
    img_prefix = dataset.data_prefix.get('img_path', '')
    stems = [
        prediction_stem(info['img_path'], img_prefix, dataset.img_suffix)
        for info in infos
    ]
    counts = flat_name_counts(stems, args.pred_suffix)
    num_classes = len(dataset.metainfo['classes'])
    for info, stem in zip(infos, stems):
        label = load_label(info, loader)
        path = find_prediction(args.pred_dir, stem, args.pred_suffix, counts)
        pred = read_prediction(path)
        if lut is not None:
            pred = label_ids_to_train_ids(pred, lut, path)
        check_prediction(pred, label.shape, num_classes, dataset.ignore_index,
                         path)
        yield pred, label


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
    dataset_cfg = (cfg.get(f'{args.split}_dataloader') or {}).get('dataset')
    if dataset_cfg is None:
        raise ToolError(f"config '{args.config}' has no {where}")
    root = dataset_cfg.get('data_root')
    if root and '://' not in str(root) and not osp.isdir(root):
        raise ToolError(
            f"data folder '{root}' ({where}.data_root) does not exist; "
            f'point the config at it, e.g. --cfg-options '
            f'{where}.data_root=PATH')
    logger = _logger()
    dataset = build_seg_dataset(dataset_cfg)
    loader = build_label_loader(dataset_cfg.get('pipeline'))
    lut = None
    if args.label_ids:
        labels = cityscapes_labels()
        check_cityscapes_classes(dataset.metainfo['classes'], labels)
        lut = label_id_lut(labels, dataset.ignore_index)
    infos = data_infos(dataset)
    logger.info(f'scoring {_images(len(infos))}: predictions in '
                f"'{args.pred_dir}' against {where} "
                f"('{dataset.data_prefix.get('seg_map_path')}')")
    metrics = evaluate_iou(
        scored_pairs(dataset, infos, loader, args, lut), dataset.metainfo,
        dataset.ignore_index)
    summary = '  '.join(f'{key}: {_fmt(metrics[key])}'
                        for key in ('aAcc', 'mIoU', 'mAcc'))
    logger.info(f'{summary}  ({_images(len(infos))})')
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
