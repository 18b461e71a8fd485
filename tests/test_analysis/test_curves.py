# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""mmseg_wsbcn.analysis.curves on small hand-written work dirs (the
real-log end-to-end test is tests/test_tools/test_plot_curves.py)."""
import json
import os
import time

import pytest

from mmseg_wsbcn.analysis import (AnalysisError, config_name, load_run,
                                  load_runs, merge_runs, place_records,
                                  plot_curves, read_scalars, save_figure,
                                  scalars_files)


def train(it, loss):
    return dict(lr=0.01, loss=loss, time=0.5, iter=it, step=it)


def val(step, miou):
    return dict(aAcc=50.0, mIoU=miou, time=0.1, step=step)


def make_work_dir(root, runs, config='my_config'):
    """``runs``: {timestamp: [records]}; returns the work dir."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f'{config}.py').write_text('# dumped config\n')
    for stamp, records in runs.items():
        vis = root / stamp / 'vis_data'
        vis.mkdir(parents=True)
        (vis / 'scalars.json').write_text(''.join(
            json.dumps(r) + '\n' for r in records))
    return str(root)


def test_scalars_files_skip_runs_without_scalars_and_other_folders(tmp_path):
    work_dir = make_work_dir(tmp_path / 'w', {
        '20240102_000000': [train(3, 1.0)],
        '20240101_000000': [train(1, 2.0)]
    })
    (tmp_path / 'w' / '20240103_000000' / 'vis_data').mkdir(parents=True)
    (tmp_path / 'w' / 'not_a_run' / 'vis_data').mkdir(parents=True)
    files = scalars_files(work_dir)
    assert [f.split(os.sep)[-3] for f in files] == \
        ['20240101_000000', '20240102_000000']


def test_resumed_runs_are_joined_and_the_newest_run_wins(tmp_path):
    # run 1 logged up to 8 but its last checkpoint was 5: run 2 resumes at 6
    run1 = [train(i, 10.0 + i) for i in range(1, 9)]
    run1.insert(4, val(4, 1.0))
    run1.append(val(8, 2.0))
    run2 = [train(i, 20.0 + i) for i in range(6, 11)]
    run2.insert(3, val(8, 3.0))
    run2.append(val(10, 4.0))
    run = load_run(
        make_work_dir(tmp_path / 'w', {
            '20240101_000000': run1,
            '20240102_000000': run2
        }))
    assert run.series('loss') == (list(range(
        1, 11)), [11.0, 12.0, 13.0, 14.0, 15.0, 26.0, 27.0, 28.0, 29.0, 30.0])
    assert run.series('mIoU') == ([4, 8, 10], [1.0, 3.0, 4.0])
    assert len(run.files) == 2


def test_a_run_trained_again_from_scratch_replaces_the_old_one():
    old = place_records([train(1, 5.0), train(2, 4.0), val(2, 1.0)])
    new = place_records([train(1, 3.0), train(2, 2.0)])
    assert [p.record['loss'] for p in merge_runs([old, new])
            if p.train] == [3.0, 2.0]


def test_validation_logged_by_epoch_is_placed_at_the_last_iteration():
    # log_metric_by_epoch=True: MMEngine writes step=epoch (0 in an
    # iteration-based loop) for the validation line
    points = place_records([train(1, 2.0), train(2, 1.5), val(0, 7.0)])
    assert [(p.iteration, p.train) for p in points] == [(1, True), (2, True),
                                                        (2, False)]


def test_training_keys_come_from_training_lines_only(tmp_path):
    # 'time' is in both kinds of line; as a training key it is per iteration
    run = load_run(
        make_work_dir(tmp_path / 'w',
                      {'20240101_000000': [train(1, 2.0),
                                           val(1, 3.0)]}))
    assert run.series('time') == ([1], [0.5])
    assert run.series('aAcc') == ([1], [50.0])
    assert run.series('nope') == ([], [])
    assert 'mIoU' in run.keys() and 'step' not in run.keys()


def test_a_truncated_last_line_is_dropped_a_bad_middle_line_is_an_error(
        tmp_path):
    path = tmp_path / 'scalars.json'
    path.write_text(json.dumps(train(1, 2.0)) + '\n{"loss": 1.')
    assert read_scalars(str(path)) == [train(1, 2.0)]
    path.write_text('{"loss": 1.\n' + json.dumps(train(1, 2.0)) + '\n')
    with pytest.raises(AnalysisError, match='line 1 is not JSON'):
        read_scalars(str(path))


def test_labels_are_config_names_disambiguated_by_work_dir(tmp_path):
    runs = {'20240101_000000': [train(1, 1.0)]}
    a = make_work_dir(tmp_path / 'a', runs, config='cfg_bn')
    b = make_work_dir(tmp_path / 'b', runs, config='cfg_bn')
    c = make_work_dir(tmp_path / 'c', runs, config='cfg_bcn-ws')
    assert [r.label for r in load_runs([a, c])] == ['cfg_bn', 'cfg_bcn-ws']
    assert [r.label for r in load_runs([a, b, c])] == \
        ['cfg_bn (a)', 'cfg_bn (b)', 'cfg_bcn-ws']
    assert [r.label for r in load_runs([a, b], ['x', 'y'])] == ['x', 'y']
    with pytest.raises(AnalysisError, match='1 label'):
        load_runs([a, b], ['x'])


def test_config_name_newest_dump_or_work_dir_name(tmp_path):
    work_dir = tmp_path / 'exp1'
    work_dir.mkdir()
    assert config_name(str(work_dir)) == 'exp1'
    (work_dir / 'old_cfg.py').write_text('')
    past = time.time() - 100
    os.utime(work_dir / 'old_cfg.py', (past, past))
    (work_dir / 'new_cfg.py').write_text('')
    assert config_name(str(work_dir)) == 'new_cfg'


def test_missing_inputs_are_errors_naming_them(tmp_path):
    with pytest.raises(AnalysisError, match="'.*nope' does not exist"):
        load_run(str(tmp_path / 'nope'))
    with pytest.raises(AnalysisError, match='no <timestamp>/vis_data'):
        load_run(str(tmp_path))


def test_plot_skips_runs_without_the_key_and_rejects_keys_in_no_run(tmp_path):
    with_val = make_work_dir(
        tmp_path / 'a',
        {'20240101_000000': [train(
            1, 2.0), train(2, 1.0), val(2, 5.0)]},
        config='a')
    train_only = make_work_dir(
        tmp_path / 'b',
        {'20240101_000000': [train(1, 3.0), train(2, 2.5)]},
        config='b')
    runs = load_runs([with_val, train_only])
    fig = plot_curves(runs, ['loss', 'mIoU'])
    loss_ax, miou_ax = fig.axes[:2]
    assert [ln.get_label() for ln in loss_ax.get_lines()] == ['a', 'b']
    assert [ln.get_label() for ln in miou_ax.get_lines()] == ['a']
    assert list(miou_ax.get_lines()[0].get_ydata()) == [5.0]
    # the same run keeps its colour in every panel
    assert loss_ax.get_lines()[0].get_color() == \
        miou_ax.get_lines()[0].get_color()
    with pytest.raises(AnalysisError, match="key 'mIOU' is in none"):
        plot_curves(runs, ['loss', 'mIOU'])


def test_save_figure_checks_the_extension_and_creates_the_folder(tmp_path):
    run = load_run(
        make_work_dir(tmp_path / 'w', {'20240101_000000': [train(1, 1.0)]}))
    fig = plot_curves([run], ['loss'])
    with pytest.raises(AnalysisError, match='extension'):
        save_figure(fig, str(tmp_path / 'curves.xyz'))
    out = tmp_path / 'new' / 'curves.png'
    save_figure(fig, str(out))
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
