# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Fill a metafile's ``Results`` (and ``Weights``) from trained runs.

Example::

    python tools/misc/update_metafile.py work_dirs/bcn-ws work_dirs/gn-ws \
        --metafile configs/deeplabv3/metafile.yaml \
        --publish-dir releases --weights-url https://example.org/wsbcn

Each work dir is read as ``tools/analysis/results_grid.py`` reads it (its
dumped config, the newest ``metrics.json`` or the last validation) and
fills the metafile entry of the same name. With ``--publish-dir``, the
run's newest checkpoint is released there
(``tools/misc/publish_model.py``: ``<config name>-<sha256[:8]>.pth``) and
``Weights`` set to ``<--weights-url>/<that file>``. Only entries of runs
that were made are touched; the file's leading comment is kept.
"""
import argparse
import os.path as osp

import yaml

from mmseg_wsbcn.analysis.metafile import fill_metafile
from mmseg_wsbcn.analysis.results_grid import results_grid
from mmseg_wsbcn.engine.checkpoint_files import resume_candidates
from mmseg_wsbcn.engine.publish import publish_checkpoint
from mmseg_wsbcn.launch import OneLineErrorParser, exit_on_error
from mmseg_wsbcn.utils.atomic import atomic_open
from mmseg_wsbcn.utils.errors import ToolError

PROG = 'update_metafile.py'


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineErrorParser(
        prog=PROG, description="Fill a metafile's Results from runs")
    parser.add_argument(
        'work_dirs', nargs='+', metavar='WORK_DIR', help='training work dirs')
    parser.add_argument(
        '--metafile', required=True, help='the metafile.yaml to update')
    parser.add_argument(
        '--publish-dir', help='release each run\'s newest checkpoint here')
    parser.add_argument(
        '--weights-url',
        help='the URL the released files will be served under (Weights)')
    return parser.parse_args(argv)


def _leading_comment(text: str) -> str:
    lines = []
    for line in text.splitlines(keepends=True):
        if not line.startswith('#'):
            break
        lines.append(line)
    return ''.join(lines)


@exit_on_error(PROG)
def main(argv=None) -> list:
    """Run the tool; return the names of the entries it filled."""
    args = parse_args(argv)
    if not osp.isfile(args.metafile):
        raise ToolError(f"metafile '{args.metafile}' does not exist")
    if bool(args.publish_dir) != bool(args.weights_url):
        raise ToolError('--publish-dir and --weights-url go together')
    if args.publish_dir and not osp.isdir(args.publish_dir):
        raise ToolError(f"--publish-dir '{args.publish_dir}' does not exist")
    runs = results_grid(args.work_dirs)
    weights = {}
    for run in runs if args.publish_dir else []:
        candidates = [p for p in resume_candidates(run.work_dir)
                      if osp.isfile(p)]
        if not candidates:
            raise ToolError(f"work dir '{run.work_dir}' has no checkpoint "
                            'to publish')
        final = publish_checkpoint(
            candidates[0], osp.join(args.publish_dir, f'{run.config}.pth'))
        weights[run.config] = \
            f"{args.weights_url.rstrip('/')}/{osp.basename(final)}"
        print(f'published {final}')
    with open(args.metafile) as f:
        text = f.read()
    meta = yaml.safe_load(text)
    filled = fill_metafile(meta, runs, weights)
    with atomic_open(args.metafile) as f:
        f.write(_leading_comment(text))
        yaml.safe_dump(meta, f, sort_keys=False, allow_unicode=True)
    for name in filled:
        print(f'filled {name}')
    return filled


if __name__ == '__main__':
    main()
