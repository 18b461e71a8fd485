# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Release a trained checkpoint (mmseg's ``tools/misc/publish_model.py``
arguments): drop the optimizer state, keep the rest plain data, and name
the file with the first 8 hex digits of its sha256, as mmseg's model zoo
does.

Example::

    python tools/misc/publish_model.py work_dirs/RUN/iter_80000.pth \
        releases/deeplabv3_bcn-ws_cityscapes.pth
    # -> releases/deeplabv3_bcn-ws_cityscapes-3f1c2a9b.pth

The input is read with ``weights_only=True`` (docs/train_test.md); see
``mmseg_wsbcn/engine/publish.py`` for why mmseg's own script is not used.
"""
import argparse
import os.path as osp

from mmseg_wsbcn.engine.publish import publish_checkpoint
from mmseg_wsbcn.launch import OneLineErrorParser, exit_on_error
from mmseg_wsbcn.utils.errors import ToolError

PROG = 'publish_model.py'


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineErrorParser(
        prog=PROG, description='Process a checkpoint to be published')
    parser.add_argument('in_file', help='input checkpoint filename')
    parser.add_argument('out_file', help='output checkpoint filename')
    return parser.parse_args(argv)


@exit_on_error(PROG)
def main(argv=None) -> str:
    """Run the tool; return the file it wrote."""
    args = parse_args(argv)
    if not osp.isfile(args.in_file):
        raise ToolError(f"checkpoint file '{args.in_file}' does not exist")
    if not args.out_file.endswith('.pth'):
        raise ToolError(f"output file '{args.out_file}' must end in .pth")
    folder = osp.dirname(osp.abspath(args.out_file))
    if not osp.isdir(folder):
        raise ToolError(f"output folder '{folder}' does not exist")
    final = publish_checkpoint(args.in_file, args.out_file)
    print(final)
    return final


if __name__ == '__main__':
    main()
