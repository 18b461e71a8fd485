# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Check every image/label pair of a config's dataset before a long run.

Example::

    python tools/misc/check_dataset.py CONFIG --split train

For each pair it checks that both files exist and decode, that their sizes
match, and that the label values lie in ``[0, num_classes)`` or equal the
ignore index (after ``reduce_zero_label``). It shows a progress bar, prints
a per-class pixel count table and, when there are problems, lists every one
(file, kind, values) and exits with status 1.
"""
import argparse
import sys
from typing import List, Tuple

import numpy as np
from mmengine.utils import ProgressBar
from prettytable import PrettyTable

from mmseg_wsbcn.evaluation.arguments import add_dataset_arguments
from mmseg_wsbcn.evaluation.errors import EvaluationInputError
from mmseg_wsbcn.evaluation.ground_truth import (build_label_loader,
                                                 build_seg_dataset, data_infos,
                                                 load_label)
from mmseg_wsbcn.launch import (OneLineErrorParser, exit_on_error,
                                prepare_config)
from mmseg_wsbcn.launch.build_checks import check_dataset_config
from mmseg_wsbcn.launch.config import iter_dataset_cfgs
from mmseg_wsbcn.utils.errors import ToolError
from mmseg_wsbcn.utils.quiet import hide_known_warnings
from mmseg_wsbcn.utils.sample_checks import SampleProblem, check_sample

PROG = 'check_dataset.py'


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineErrorParser(
        prog=PROG, description="Check a config's images and labels")
    add_dataset_arguments(
        parser,
        'config file path',
        splits=('train', 'val', 'test'),
        what='check')
    return parser.parse_args(argv)


def check(dataset_cfg: dict
          ) -> Tuple[List[SampleProblem], np.ndarray, List[str], int]:
    """Check one dataset; returns (problems, pixels per class, classes,
    number of pairs)."""
    dataset = build_seg_dataset(dataset_cfg)
    classes = list(dataset.metainfo['classes'])
    ignore = dataset.ignore_index
    loader = build_label_loader(dataset_cfg.get('pipeline'))
    counts = np.zeros(len(classes), dtype=np.int64)
    problems: List[SampleProblem] = []
    infos = data_infos(dataset)
    bar = ProgressBar(len(infos))
    for info in infos:
        labels = []

        def read(info=info):
            labels.append(load_label(info, loader))
            return labels[-1]

        try:
            problems += check_sample(info['img_path'],
                                     info.get('seg_map_path'), read,
                                     len(classes), ignore)
        except EvaluationInputError as e:
            problems.append(
                SampleProblem(
                    info.get('seg_map_path') or info['img_path'],
                    'undecodable', str(e)))
        for label in labels:
            valid = label[label < len(classes)]
            counts += np.bincount(valid.ravel(), minlength=len(classes))
        bar.update()
    sys.stdout.write('\n')
    return problems, counts, classes, len(infos)


@exit_on_error(PROG)
def main(argv=None) -> None:
    hide_known_warnings()
    args = parse_args(argv)
    cfg = prepare_config(args.config, 'test', None, args.cfg_options)
    loader = cfg.get(f'{args.split}_dataloader')
    if not loader:
        raise ToolError(f"the config has no {args.split}_dataloader; "
                        'choose --split train, val or test')
    # build_seg_dataset builds in mmseg's scope
    check_dataset_config(cfg, f'{args.split}_dataloader', scope='mmseg')
    results = [
        check(d) for _, d in iter_dataset_cfgs(loader['dataset'], '')
        if not d.get('datasets') and not isinstance(d.get('dataset'), dict)
    ]
    problems = [p for r in results for p in r[0]]
    table = PrettyTable(['Class', 'Pixels', '%'])
    classes = results[0][2]
    counts = sum(r[1] for r in results)
    total = max(int(counts.sum()), 1)
    for name, n in zip(classes, counts):
        table.add_row([name, int(n), f'{100 * n / total:.2f}'])
    pairs = sum(r[3] for r in results)
    print(f'{args.split} split: {pairs} image/label pairs, '
          f'{len(classes)} classes')
    print(table.get_string())
    if problems:
        print(f'{len(problems)} problems:')
        for p in problems:
            print(f'  {p.file}: {p.kind}: {p.detail}')
        sys.exit(1)
    print('No problems found.')


if __name__ == '__main__':
    main()
