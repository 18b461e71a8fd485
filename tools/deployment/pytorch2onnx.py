# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Export a segmentor (WS + BCN, GN, BN, ...) to ONNX, checked and timed.

    python tools/deployment/pytorch2onnx.py CONFIG CHECKPOINT --out FILE \
        [--shape H W] [--opset N] [--dynamic-shape] [--no-fold] [--no-verify]

The model is folded first (``mmseg_wsbcn.deploy.fold_bcn_ws``: WS into the
convs, BCN's batch step and BN into the convs, BCN -> GroupNorm) unless
``--no-fold``. The graph's input ``input`` is an already normalized float32
image ``(1, 3, H, W)``; its output ``logits`` is ``(1, num_classes, H, W)``.
The config's mean, std and channel order go into the ONNX metadata.

Unless ``--no-verify``, the file runs in ONNX Runtime on the bundled
Cityscapes frame, normalized as the config says, and is compared with the
unfolded PyTorch model: max abs difference of the logits and share of
pixels whose argmax agrees (fails over 1e-4 or under 99.9%); then the
median time per image of PyTorch before folding, after folding and ONNX
Runtime (interleaved runs on the same input). See docs/deployment.md.
"""
import copy
import os.path as osp
import sys

import numpy as np
import torch
from mmengine.config import Config

from mmseg_wsbcn.apis import init_model
from mmseg_wsbcn.deploy import count_layers, fold_bcn_ws
from mmseg_wsbcn.deploy.export import (DEFAULT_OPSET, SUPPORTED_OPSETS,
                                       SegLogits, export_onnx,
                                       preprocess_image, preprocess_meta)
from mmseg_wsbcn.engine import load_checkpoint_file
from mmseg_wsbcn.launch import OneLineErrorParser, exit_on_error
from mmseg_wsbcn.launch.build_checks import check_build_config
from mmseg_wsbcn.launch.parser import add_trust_argument
from mmseg_wsbcn.utils.errors import ToolError
from mmseg_wsbcn.utils.quiet import hide_known_warnings
from mmseg_wsbcn.utils.state_dict import compare_checkpoint
from mmseg_wsbcn.utils.timing import interleaved_medians

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_IMAGE = osp.join('demo', 'data', 'cityscapes_mini', 'leftImg8bit', 'val',
                      'frankfurt', 'frankfurt_000000_000294_leftImg8bit.png')
MAX_ABS_DIFF = 1e-4
MIN_AGREEMENT = 0.999


def parse_args(argv=None):
    parser = OneLineErrorParser(
        description='Export a segmentor to ONNX (folded WS + BCN).')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', required=True, help='ONNX file to write')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help='input size (default: the size of the bundled image, 128 256)')
    parser.add_argument(
        '--opset', type=int, default=DEFAULT_OPSET, help='ONNX opset')
    parser.add_argument(
        '--dynamic-shape',
        action='store_true',
        help='dynamic batch, height and width')
    parser.add_argument(
        '--no-fold', action='store_true', help='export the model unfolded')
    parser.add_argument(
        '--no-verify',
        action='store_true',
        help='skip the ONNX Runtime check and the timings')
    add_trust_argument(parser)
    parser.add_argument(
        '--runs',
        type=int,
        default=10,
        help='timed runs of each of the three models (default 10)')
    return parser.parse_args(argv)


def check_args(args) -> None:
    for what, path in (('config', args.config), ('checkpoint',
                                                 args.checkpoint)):
        if not osp.isfile(path):
            raise ToolError(f'{what} file not found: {path}')
    if args.opset not in SUPPORTED_OPSETS:
        raise ToolError(f'unsupported opset {args.opset}: use one of '
                        f'{SUPPORTED_OPSETS[0]}..{SUPPORTED_OPSETS[-1]}')
    if args.shape is not None and min(args.shape) < 1:
        raise ToolError(f'--shape must be positive, got {args.shape}')
    if args.runs < 1:
        raise ToolError(f'--runs must be >= 1, got {args.runs}')
    out_dir = osp.dirname(osp.abspath(args.out))
    if not osp.isdir(out_dir):
        raise ToolError(f'output folder not found: {out_dir}')


def check_checkpoint(cfg, path: str, trust: bool = False) -> None:
    """Raise ToolError when the checkpoint does not fit the config."""
    checkpoint = load_checkpoint_file(path, map_location='cpu', trust=trust)
    if not isinstance(checkpoint, dict):
        raise ToolError(f'checkpoint {path} holds a '
                        f'{type(checkpoint).__name__}, not a state dict')
    model = init_model(cfg, None, 'cpu')
    mismatch = compare_checkpoint(checkpoint, model)
    if mismatch:
        raise ToolError(f'checkpoint {path} does not match the config: '
                        f'{mismatch.summary()}')


def verify(args, cfg, reference, folded, shape) -> None:
    import onnxruntime as ort
    image = preprocess_image(
        osp.join(REPO_ROOT, DEMO_IMAGE), cfg.model.data_preprocessor, shape)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        args.out, options, providers=['CPUExecutionProvider'])
    feed = {'input': image.numpy()}
    ref_fn, fold_fn = SegLogits(reference), SegLogits(folded)
    with torch.no_grad():
        expected = ref_fn(image).numpy()
        folded_out = fold_fn(image).numpy()
    got = session.run(None, feed)[0]
    if got.shape != expected.shape:
        raise ToolError(f'ONNX Runtime logits have shape {got.shape}, '
                        f'PyTorch {expected.shape}')
    diff = float(np.abs(got - expected).max())
    fold_diff = float(np.abs(folded_out - expected).max())
    agree = float((got.argmax(1) == expected.argmax(1)).mean())
    print(f'parity on {DEMO_IMAGE} at {shape[0]}x{shape[1]}: max abs diff '
          f'of logits {diff:.3g} (ONNX Runtime vs PyTorch), {fold_diff:.3g} '
          f'(folded vs unfolded PyTorch); argmax agrees on '
          f'{100 * agree:.3f}% of pixels')
    if diff > MAX_ABS_DIFF or agree < MIN_AGREEMENT:
        raise ToolError(f'ONNX Runtime output differs from PyTorch: max abs '
                        f'diff {diff:.3g} (limit {MAX_ABS_DIFF}), argmax '
                        f'agreement {100 * agree:.3f}% (limit '
                        f'{100 * MIN_AGREEMENT}%)')
    with torch.no_grad():
        t_ref, t_fold, t_ort = interleaved_medians(
            dict(
                ref=lambda: ref_fn(image),
                fold=lambda: fold_fn(image),
                ort=lambda: session.run(None, feed)),
            warmup=1,
            repeats=args.runs,
            alternate=False).values()
    print(f'median time per image ({args.runs} interleaved runs, '
          f'{torch.get_num_threads()} threads): PyTorch unfolded '
          f'{1e3 * t_ref:.1f} ms, PyTorch folded {1e3 * t_fold:.1f} ms, '
          f'ONNX Runtime {1e3 * t_ort:.1f} ms')


def run(args) -> None:

    check_args(args)
    cfg = Config.fromfile(args.config)
    # mmseg's init_model builds in the config's scope, else mmseg's
    check_build_config(
        cfg, mode='model', scope=cfg.get('default_scope', 'mmseg'))
    check_checkpoint(cfg, args.checkpoint, args.trust_checkpoint)
    if not args.no_verify:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ToolError('verification needs onnxruntime (the optional '
                            '`deploy` extra); or pass --no-verify')
    reference = init_model(
        cfg, args.checkpoint, 'cpu', trust_checkpoint=args.trust_checkpoint)
    model = copy.deepcopy(reference)
    if not args.no_fold:
        report = fold_bcn_ws(model)
        print(report)
    print('layers after folding: ' +
          ', '.join(f'{k} {v}' for k, v in count_layers(model).items()))
    shape = tuple(args.shape) if args.shape else (128, 256)
    meta = preprocess_meta(cfg.model.data_preprocessor)
    meta.update(
        input_shape=[1, 3, *shape],
        dynamic_shape=args.dynamic_shape,
        num_classes=int(model.decode_head.out_channels),
        classes=list(
            (getattr(model, 'dataset_meta', None) or {}).get('classes', [])
            or []),
        folded=not args.no_fold)
    export_onnx(
        model,
        args.out,
        shape,
        opset=args.opset,
        dynamic=args.dynamic_shape,
        metadata=meta)
    print(f'wrote {args.out} (opset {args.opset}, input 1x3x{shape[0]}x'
          f'{shape[1]}{", dynamic shape" if args.dynamic_shape else ""})')
    if not args.no_verify:
        verify(args, cfg, reference, model, shape)


@exit_on_error('pytorch2onnx.py')
def main(argv=None) -> int:
    hide_known_warnings()
    run(parse_args(argv))
    return 0


if __name__ == '__main__':
    sys.exit(main())
