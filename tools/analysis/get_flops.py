# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""FLOPs and parameters of a config's segmentor, with mmseg's arguments
(``config``, ``--shape``, ``--cfg-options``) and output format; works with
WS / BCN models and on both OpenMMLab stacks (mmseg 1.2.2's own
``get_flops.py`` stops at its ``input_shape`` + ``inputs`` call). See
docs/analysis.md.

    python tools/analysis/get_flops.py CONFIG [--shape H [W]] \
        [--cfg-options ...]
"""
from mmengine.config import DictAction
from mmengine.registry import init_default_scope

from mmseg_wsbcn.analysis.complexity import (input_shape_of,
                                             segmentor_complexity)
from mmseg_wsbcn.launch import (OneLineErrorParser, exit_on_error,
                                prepare_config)
from mmseg_wsbcn.utils.errors import ToolError
from mmseg_wsbcn.utils.quiet import hide_known_warnings

PROG = 'get_flops.py'


@exit_on_error(PROG)
def main(argv=None) -> dict:
    """Run the tool; return :func:`segmentor_complexity`'s dict with
    ``input_shape``."""
    parser = OneLineErrorParser(
        prog=PROG, description='Get the FLOPs of a segmentor')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--shape', type=int, nargs='+', default=[2048, 1024],
        help='input image size: H [W] (default: 2048 1024, as mmseg)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, as in mmseg\'s tools')
    args = parser.parse_args(argv)
    hide_known_warnings()
    try:
        input_shape = input_shape_of(args.shape)
    except ValueError as e:
        raise ToolError(str(e)) from e
    cfg = prepare_config(args.config, 'test', cfg_options=args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    from mmseg.registry import MODELS
    cfg.model.pop('pretrained', None)
    model = MODELS.build(cfg.model)
    result = segmentor_complexity(model, input_shape)
    line = '=' * 30
    print(f'{line}\nCompute type: direct: randomly generate a picture\n'
          f'Input shape: {input_shape[-2:]}\n'
          f'Flops: {result["flops_str"]}\n'
          f'Params: {result["params_str"]}\n{line}')
    return dict(result, input_shape=input_shape)


if __name__ == '__main__':
    main()
