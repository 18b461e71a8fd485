# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Convert one of the authors' ImageNet WS backbones (GN+WS or BCN+WS,
ResNet-50/101, ResNeXt-50/101 32x4d) to the keys of mmseg's and mmdet's
``ResNet`` / ``ResNeXt``.

Example::

    python tools/model_converters/wsbcn2mmseg.py \
        rn101_bcn_ws.pth checkpoints/wsbcn/rn101_bcn_ws_mmseg.pth

It prints the layout it detected and the backbone config the weights need
(the WS form they were trained with), and stores both in the checkpoint's
``meta``. On any problem it exits with one line and writes no file.
"""
import os.path as osp
import time

import torch

from mmseg_wsbcn.engine import (CheckpointLoadError, UntrustedCheckpointError,
                                load_checkpoint_file)
from mmseg_wsbcn.launch import OneLineErrorParser, exit_on_error
from mmseg_wsbcn.models.utils.ckpt_convert import (ConversionError,
                                                   convert_wsbcn_state_dict,
                                                   unwrap_state_dict)
from mmseg_wsbcn.utils.atomic import atomic_path

PROG = 'wsbcn2mmseg.py'


def load(src: str) -> object:
    """Read ``src`` with ``weights_only=True``
    (:func:`~mmseg_wsbcn.engine.load_checkpoint_file`); one-line errors."""
    if not osp.isfile(src):
        raise ConversionError('no such file')
    try:
        return load_checkpoint_file(src, map_location='cpu')
    except (CheckpointLoadError, UntrustedCheckpointError) as e:
        raise ConversionError(
            'not a checkpoint that torch.load(weights_only=True) can read '
            f'({e.reason})') from e


def save(obj: dict, dst: str) -> None:
    """Write ``obj`` to ``dst`` atomically, so that ``dst`` is either
    complete or absent."""
    with atomic_path(dst) as tmp:
        torch.save(obj, tmp)


def _as_config(value) -> str:
    """``value`` as written in an OpenMMLab config (``dict(k=v)``)."""
    if isinstance(value, dict):
        return 'dict(' + ', '.join(f'{k}={_as_config(v)}'
                                   for k, v in value.items()) + ')'
    return repr(value)


@exit_on_error(PROG)
def main(argv=None) -> None:
    # mmseg's tools/model_converters build their parser in main()
    parser = OneLineErrorParser(
        prog=PROG,
        description="Convert the authors' GN+WS / BCN+WS ImageNet "
        "backbones to mmseg's (and mmdet's) ResNet / ResNeXt keys")
    parser.add_argument('src', help="the authors' checkpoint file")
    parser.add_argument('dst', help='the converted checkpoint to write')
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        if osp.abspath(args.src) == osp.abspath(args.dst):
            raise ConversionError('SRC and DST are the same file; the '
                                  'authors\' file is never overwritten')
        state_dict, layout = convert_wsbcn_state_dict(
            unwrap_state_dict(load(args.src)))
    except ConversionError as e:
        raise ConversionError(f'{args.src}: {e}') from e
    backbone = layout.backbone_cfg()
    meta = dict(
        wsbcn_converter=dict(
            source=osp.basename(args.src),
            layout=layout.name,
            official_file=layout.official_file,
            backbone=backbone,
            conv_cfg=layout.conv_cfg(),
            norm_cfg=layout.norm_cfg()))
    save(dict(state_dict=state_dict, meta=meta), args.dst)
    official = f" (the authors' {layout.official_file})" \
        if layout.official_file else ''
    print(f'Detected {layout.name}{official}: {len(state_dict)} backbone '
          'tensors, fc dropped.')
    print('Build the backbone (mmseg or mmdet) with:')
    init = dict(type='Pretrained', checkpoint=args.dst)
    print('  backbone=dict(')
    for key, value in dict(backbone, init_cfg=init).items():
        print(f'      {key}={_as_config(value)},')
    print('  )')
    print(f"  WS form '{layout.conv_cfg()['mode']}': the form these weights "
          'were trained with; another form changes every conv.')
    if layout.family == 'bcn-ws':
        print('  BCN: estimate=False uses batch statistics (large batches); '
              'estimate=True (micro-batch) starts its estimates from the '
              'checkpoint\'s running statistics.')
    size = osp.getsize(args.dst) / 2**20
    print(f'Saved {args.dst} ({size:.1f} MiB) in '
          f'{time.perf_counter() - start:.1f} s.')


if __name__ == '__main__':
    main()
