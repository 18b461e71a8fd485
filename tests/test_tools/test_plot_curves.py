# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""tools/analysis/plot_curves.py on real training logs: a BN run (trained
4 iterations, then resumed to 6) and a BCN+WS run (4 iterations), both
validated every 2 iterations. The figure is checked from its plotted data:
one line per run per panel, carrying exactly the values of the runs'
scalars.json and the config names as labels."""
import glob
import importlib.util
import json
import os.path as osp

import pytest
from PIL import Image

BN = 'tests/data/configs/deeplabv3_r18-d8_bn_1xb2-tiny_cityscapes-mini-64x64.py'  # noqa: E501
BCN_WS = 'configs/demo/deeplabv3_r18-d8_bcn-ws_1xb2-200iters_cityscapes-mini-128x128.py'  # noqa: E501
SHORT = ['train_cfg.val_interval=2', 'default_hooks.logger.interval=1']


def config_name(config):
    return osp.splitext(osp.basename(config))[0]


def logged(work_dir):
    """All records of all scalars.json files of ``work_dir``, oldest run
    first, read independently of the code under test."""
    records = []
    for path in sorted(
            glob.glob(osp.join(work_dir, '2*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            records += [json.loads(line) for line in f]
    return records


def train_xy(records):
    return ([r['iter'] for r in records
             if 'loss' in r], [r['loss'] for r in records if 'loss' in r])


def val_xy(records):
    return ([r['step'] for r in records
             if 'mIoU' in r], [r['mIoU'] for r in records if 'mIoU' in r])


@pytest.fixture(scope='module')
def work_dirs(run_tool, tmp_path_factory):
    bn = str(tmp_path_factory.mktemp('bn'))
    bcn_ws = str(tmp_path_factory.mktemp('bcn_ws'))
    for config, work_dir, extra in [
        (BN, bn, ['train_cfg.max_iters=4']),
        (BN, bn, ['train_cfg.max_iters=6', '--resume']),
        (BCN_WS, bcn_ws, ['train_cfg.max_iters=4']),
    ]:
        resume = [a for a in extra if a == '--resume']
        options = [a for a in extra if a != '--resume']
        proc = run_tool('train.py', config, '--work-dir', work_dir, *resume,
                        '--cfg-options', *SHORT, *options)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return bn, bcn_ws


@pytest.fixture(scope='module')
def tool(repo_root):
    """tools/analysis/plot_curves.py as a module (its main() returns the
    Figure it wrote)."""
    path = osp.join(repo_root, 'tools', 'analysis', 'plot_curves.py')
    spec = importlib.util.spec_from_file_location('plot_curves', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_logs_are_what_the_tests_assume(work_dirs):
    bn, bcn_ws = work_dirs
    assert len(glob.glob(osp.join(bn, '2*', 'vis_data', 'scalars.json'))) == 2
    assert train_xy(logged(bn))[0] == [1, 2, 3, 4, 5, 6]
    assert val_xy(logged(bn))[0] == [2, 4, 6]
    assert train_xy(logged(bcn_ws))[0] == [1, 2, 3, 4]
    assert val_xy(logged(bcn_ws))[0] == [2, 4]


def test_figure_has_one_line_per_run_with_the_logged_values(
        tool, work_dirs, tmp_path):
    bn, bcn_ws = work_dirs
    out = str(tmp_path / 'curves.png')
    fig = tool.main([bn, bcn_ws, '--out', out])

    loss_ax, miou_ax = fig.axes[:2]
    assert loss_ax.get_title() == 'loss'
    assert miou_ax.get_title() == 'mIoU'
    labels = [config_name(BN), config_name(BCN_WS)]
    for ax, xy in [(loss_ax, train_xy), (miou_ax, val_xy)]:
        lines = ax.get_lines()
        assert [ln.get_label() for ln in lines] == labels
        for line, work_dir in zip(lines, work_dirs):
            xs, ys = xy(logged(work_dir))
            assert list(line.get_xdata()) == xs
            assert list(line.get_ydata()) == ys
    # the PNG exists and decodes to the figure's size
    with Image.open(out) as png:
        png.load()
        assert png.format == 'PNG'
        assert png.size == tuple(round(v) for v in fig.get_size_inches() * 120)


def test_labels_and_keys_options(tool, work_dirs, tmp_path):
    out = str(tmp_path / 'curves.png')
    fig = tool.main([
        *work_dirs, '--out', out, '--keys', 'decode.loss_ce', 'aAcc',
        '--labels', 'BN', 'BCN+WS'
    ])
    assert [ax.get_title()
            for ax in fig.axes[:2]] == ['decode.loss_ce', 'aAcc']
    for ax in fig.axes[:2]:
        assert [ln.get_label() for ln in ax.get_lines()] == ['BN', 'BCN+WS']
    ce = [r['decode.loss_ce'] for r in logged(work_dirs[1]) if 'iter' in r]
    assert list(fig.axes[0].get_lines()[1].get_ydata()) == ce


def test_command_line_writes_the_png(call_tool, work_dirs, tmp_path):
    out = str(tmp_path / 'sub' / 'curves.png')
    proc = call_tool('analysis/plot_curves.py', *work_dirs, '--out', out)
    assert proc.returncode == 0, proc.stderr
    assert '2 runs joined' in proc.stdout  # the resumed BN work dir
    with Image.open(out) as png:
        png.verify()


def test_missing_work_dir_is_one_line(call_tool, assert_one_line_error,
                                      work_dirs, tmp_path):
    missing = str(tmp_path / 'nope')
    proc = call_tool('analysis/plot_curves.py', work_dirs[0], missing, '--out',
                     str(tmp_path / 'c.png'))
    assert_one_line_error(proc, 'plot_curves.py: error:', missing,
                          'does not exist')


def test_work_dir_without_scalars_is_one_line(call_tool, assert_one_line_error,
                                              tmp_path):
    (tmp_path / '20240101_000000' / 'vis_data').mkdir(parents=True)
    proc = call_tool('analysis/plot_curves.py', str(tmp_path), '--out',
                     str(tmp_path / 'c.png'))
    assert_one_line_error(proc, str(tmp_path), 'scalars.json')


def test_key_in_no_run_is_one_line(call_tool, assert_one_line_error, work_dirs,
                                   tmp_path):
    proc = call_tool('analysis/plot_curves.py', *work_dirs, '--keys', 'loss',
                     'mIoU_typo', '--out', str(tmp_path / 'c.png'))
    assert_one_line_error(proc, "key 'mIoU_typo'", 'mIoU,')
    assert not (tmp_path / 'c.png').exists()
