# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The results grid, the metafile filler and the publish step, on real
runs of ``tools/train.py`` (two norms on the bundled Cityscapes set) and on
the repository's configs."""
import glob
import hashlib
import json
import os.path as osp
import shutil

import pytest
import torch
import yaml
from mmengine.config import Config

from mmseg_wsbcn.analysis import AnalysisError
from mmseg_wsbcn.analysis.results_grid import (dataset_label, norm_label,
                                               results_grid)

TINY = 'tests/data/configs/deeplabv3_r18-d8_bn_1xb2-tiny_cityscapes-mini-64x64.py'  # noqa: E501


@pytest.mark.parametrize('config, label', [
    ('configs/demo/deeplabv3_r18-d8_bn_1xb2-200iters_cityscapes-mini-128x128.py',  # noqa: E501
     'BN'),
    ('configs/demo/deeplabv3_r18-d8_bcn-ws_1xb2-200iters_cityscapes-mini-128x128.py',  # noqa: E501
     'BCN+WS'),
    ('configs/deeplabv3/deeplabv3_r50-d8_gn-ws_8xb1-80k_voc12aug-512x512.py',
     'GN+WS'),
    ('configs/deeplabv3/deeplabv3_r50-d8_gn_8xb1-80k_cityscapes-512x1024.py',
     'GN'),
    ('configs/deeplabv3/deeplabv3_r50-d8_bcnbatch-ws_4xb2-80k_cityscapes-512x1024.py',  # noqa: E501
     'BCN(batch)+WS'),
    ('configs/deeplabv3/deeplabv3_r50-d8_syncbn_4xb2-80k_cityscapes-512x1024.py',  # noqa: E501
     'SyncBN'),
])
def test_norm_and_dataset_labels_of_the_configs(repo_root, config, label):
    cfg = Config.fromfile(
        osp.join(repo_root, config),
        import_custom_modules=False,
        format_python_code=False)
    assert norm_label(cfg) == label
    expected = 'VOC 2012' if 'voc12aug' in config else 'Cityscapes'
    assert dataset_label(cfg) == expected


@pytest.fixture(scope='module')
def two_runs(run_tool, tmp_path_factory):
    """The tiny BN config and its BCN+WS variant, trained to their one
    validation (10 iterations)."""
    root = tmp_path_factory.mktemp('runs')
    runs = {}
    for name, options in (('bn', []), ('bcn-ws', [
            'model.backbone.conv_cfg.type=WSConv2d',
            'model.backbone.norm_cfg.type=BCN',
            'model.backbone.norm_cfg.num_groups=32',
            'model.backbone.norm_cfg.estimate=True'
    ])):
        work_dir = str(root / name)
        proc = run_tool('train.py', TINY, '--work-dir', work_dir,
                        *(['--cfg-options', *options] if options else []))
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = work_dir
    return runs


def last_validation_miou(work_dir):
    """The mIoU of the last validation line MMEngine logged, read here."""
    (path, ) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r['mIoU'] for r in records if 'mIoU' in r][-1]


def test_grid_of_two_real_runs(call_tool, two_runs, tmp_path):
    out = str(tmp_path / 'grid.png')
    proc = call_tool('analysis/results_grid.py', two_runs['bn'],
                     two_runs['bcn-ws'], '--out', out, '--json',
                     str(tmp_path / 'grid.json'))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == '| norm | Cityscapes, 2 img/GPU |'
    bn = last_validation_miou(two_runs['bn'])
    bcn = last_validation_miou(two_runs['bcn-ws'])
    assert lines[2] == f'| BN | {bn:.2f} |'
    assert lines[3] == f'| BCN+WS | {bcn:.2f} |'
    with open(out, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    with open(tmp_path / 'grid.json') as f:
        runs = json.load(f)
    assert [r['norm'] for r in runs] == ['BN', 'BCN+WS']


def test_metrics_json_of_test_py_wins(run_tool, two_runs, tmp_path):
    work_dir = str(tmp_path / 'bn')
    shutil.copytree(two_runs['bn'], work_dir)
    checkpoint = osp.join(work_dir, 'iter_10.pth')
    proc = run_tool('test.py', TINY, checkpoint, '--work-dir', work_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path, ) = glob.glob(osp.join(work_dir, '*', 'metrics.json'))
    with open(path) as f:
        tested = json.load(f)['metrics']['mIoU']
    (run, ) = results_grid([work_dir])
    assert run.metrics['mIoU'] == tested and run.source == path


def test_one_line_errors(call_tool, two_runs, tmp_path,
                         assert_one_line_error):
    proc = call_tool('analysis/results_grid.py', str(tmp_path / 'none'))
    assert_one_line_error(proc, 'does not exist', 'none')
    proc = call_tool('analysis/results_grid.py', two_runs['bn'],
                     two_runs['bn'])
    assert_one_line_error(proc, 'both BN on Cityscapes at 2 images per GPU')
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(AnalysisError, match='no config dumped'):
        results_grid([str(empty)])


def test_publish_names_the_release_by_its_sha256(call_tool, two_runs,
                                                 tmp_path):
    checkpoint = osp.join(two_runs['bn'], 'iter_10.pth')
    proc = call_tool('misc/publish_model.py', checkpoint,
                     str(tmp_path / 'bn_depth.pth'))
    assert proc.returncode == 0, proc.stderr
    final = proc.stdout.strip().splitlines()[-1]
    with open(final, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    # the name keeps its trailing 'h' (mmseg's rstrip('.pth') would not)
    assert osp.basename(final) == f'bn_depth-{digest[:8]}.pth'
    assert not osp.exists(tmp_path / 'bn_depth.pth')
    released = torch.load(final, map_location='cpu', weights_only=True)
    original = torch.load(checkpoint, map_location='cpu', weights_only=True)
    assert 'optimizer' not in released and 'optimizer' in original
    for key, value in original['state_dict'].items():
        assert torch.equal(released['state_dict'][key], value)


def test_update_metafile_fills_results_and_weights(call_tool, two_runs,
                                                   repo_root, tmp_path):
    metafile = tmp_path / 'metafile.yaml'
    shutil.copy(osp.join(repo_root, 'configs/deeplabv3/metafile.yaml'),
                metafile)
    with open(metafile) as f:
        meta = yaml.safe_load(f)
    name = osp.basename(TINY)[:-3]
    meta['Models'].append({'Name': name, 'Config': TINY})
    before = {m['Name']: m for m in meta['Models']}
    with open(metafile, 'w') as f:
        f.write('# a comment that stays\n')
        yaml.safe_dump(meta, f, sort_keys=False)
    publish = tmp_path / 'releases'
    publish.mkdir()
    proc = call_tool('misc/update_metafile.py', two_runs['bn'], '--metafile',
                     str(metafile), '--publish-dir', str(publish),
                     '--weights-url', 'https://example.org/wsbcn/')
    assert proc.returncode == 0, proc.stderr
    text = metafile.read_text()
    assert text.startswith('# a comment that stays\n')
    after = {m['Name']: m for m in yaml.safe_load(text)['Models']}
    entry = after.pop(name)
    (release, ) = glob.glob(str(publish / f'{name}-*.pth'))
    assert entry['Weights'] == \
        f'https://example.org/wsbcn/{osp.basename(release)}'
    assert entry['Results'] == [{
        'Task': 'Semantic Segmentation',
        'Dataset': 'Cityscapes',
        'Metrics': {
            'mIoU': round(last_validation_miou(two_runs['bn']), 2),
            'aAcc': entry['Results'][0]['Metrics']['aAcc'],
            'mAcc': entry['Results'][0]['Metrics']['mAcc'],
        }
    }]
    before.pop(name)
    assert after == before  # the other entries are untouched
