# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""What tools/test.py writes, on the bundled Cityscapes frame: the metrics
JSON, the trainId PNGs of --out, the Cityscapes labelId PNGs of
--format-cityscapes scored by the real cityscapesScripts, and the painted
images of --show-dir.

The checkpoint is the tiny test config's model with only its classifier
(``decode_head.conv_seg``) fitted to the frame, in a few seconds, so that
the predictions hold several classes with IoUs between 0 and 1 and the
comparisons below mean something.
"""
import glob
import importlib
import json
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

CONFIG = 'tests/data/configs/deeplabv3_r18-d8_bn_1xb2-tiny_cityscapes-mini-64x64.py'  # noqa: E501
FRAME = 'frankfurt_000000_000294'
CITYSCAPES = 'demo/data/cityscapes_mini'
VAL = CITYSCAPES + '/{}/val/frankfurt/' + FRAME + '_{}.png'
IMAGE = VAL.format('leftImg8bit', 'leftImg8bit')
TRAIN_IDS = VAL.format('gtFine', 'gtFine_labelTrainIds')
LABEL_IDS = VAL.format('gtFine', 'gtFine_labelIds')


def fit_classifier(repo_root, checkpoint):
    """Build the config's model, fit its classifier to the val frame and
    save the checkpoint."""
    import torch.nn.functional as F
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS, MODELS

    import mmseg_wsbcn  # noqa: F401

    cfg = Config.fromfile(osp.join(repo_root, CONFIG))
    cfg.test_dataloader.dataset.data_root = osp.join(repo_root, CITYSCAPES)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
        dataset = DATASETS.build(cfg.test_dataloader.dataset)
    model.init_weights()
    model.eval()
    data = model.data_preprocessor(pseudo_collate([dataset[0]]), False)
    label = data['data_samples'][0].gt_sem_seg.data.long()
    head = model.decode_head
    with torch.no_grad():
        feats = head._forward_feature(model.extract_feat(data['inputs']))
    optim = torch.optim.Adam(head.conv_seg.parameters(), lr=0.05)
    for _ in range(150):
        logits = F.interpolate(
            head.conv_seg(feats),
            size=label.shape[-2:],
            mode='bilinear',
            align_corners=False)
        loss = F.cross_entropy(logits, label, ignore_index=255)
        optim.zero_grad()
        loss.backward()
        optim.step()
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)


@pytest.fixture(scope='module')
def tested(run_tool, repo_root, tmp_path_factory):
    """One tools/test.py run with every output option."""
    root = tmp_path_factory.mktemp('test_outputs')
    paths = {k: str(root / k) for k in ('work', 'out', 'cs', 'show')}
    paths['checkpoint'] = str(root / 'fitted.pth')
    fit_classifier(repo_root, paths['checkpoint'])
    args = [
        CONFIG, paths['checkpoint'], '--work-dir', paths['work'], '--out',
        paths['out'], '--show-dir', paths['show']
    ]
    try:
        importlib.import_module('cityscapesscripts.helpers.labels')
        args += ['--format-cityscapes', paths['cs']]
    except ImportError:
        paths['cs'] = None  # the Cityscapes test skips or fails itself
    proc = run_tool('test.py', *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    paths['stdout'] = proc.stdout + proc.stderr
    return paths


def read_png(path):
    return np.array(Image.open(path))


def metrics_json(work_dir):
    files = glob.glob(osp.join(work_dir, '*', 'metrics.json'))
    assert len(files) == 1, files
    with open(files[0]) as f:
        return json.load(f)


def class_ious(pred, label, num_classes=19):
    """mmseg's IoUMetric, per class (fractions, NaN where the union is 0)."""
    from mmseg.evaluation import IoUMetric
    areas = IoUMetric.intersect_and_union(
        torch.from_numpy(pred.astype(np.int64)),
        torch.from_numpy(label.astype(np.int64)), num_classes, 255)
    metrics = IoUMetric.total_area_to_metrics(*areas, ['mIoU'])
    return np.asarray(metrics['IoU'], dtype=float)


def test_metrics_json_is_written_in_the_run_folder(tested):
    record = metrics_json(tested['work'])
    assert set(record['metrics']) == {'aAcc', 'mIoU', 'mAcc'}
    assert record['config'] == CONFIG
    assert record['checkpoint'] == tested['checkpoint']
    assert record['num_images'] == 1 and record['tta'] is False
    assert record['out'] == tested['out']
    # the same figures as the log line, and as MMEngine's own json
    logged = re.findall(r'mIoU: ([0-9.]+)', tested['stdout'])[-1]
    assert record['metrics']['mIoU'] == pytest.approx(float(logged))
    folder = osp.dirname(
        glob.glob(osp.join(tested['work'], '*', 'metrics.json'))[0])
    with open(osp.join(folder, osp.basename(folder) + '.json')) as f:
        mmengine_record = json.loads(f.readline())
    assert mmengine_record['mIoU'] == pytest.approx(
        record['metrics']['mIoU'], abs=1e-4)
    assert 10 < record['metrics']['mIoU'] < 100  # the fitted classifier


def test_out_writes_the_model_predictions_as_train_ids(tested, repo_root):
    files = sorted(
        osp.relpath(p, tested['out'])
        for p in glob.glob(osp.join(tested['out'], '**', '*'), recursive=True)
        if osp.isfile(p))
    assert files == [f'frankfurt/{FRAME}.png']
    png = Image.open(osp.join(tested['out'], files[0]))
    assert png.mode == 'L'  # single channel, uint8
    pred = np.array(png)
    label = read_png(osp.join(repo_root, TRAIN_IDS))
    assert pred.shape == label.shape == (128, 256)
    assert pred.max() < 19 and len(np.unique(pred)) > 3

    # exactly what the model predicts for the image (mmseg's inference API)
    from mmseg.apis import inference_model

    from mmseg_wsbcn.apis import init_model
    model = init_model(
        osp.join(repo_root, CONFIG), tested['checkpoint'], device='cpu')
    result = inference_model(model, osp.join(repo_root, IMAGE))
    np.testing.assert_array_equal(
        pred, result.pred_sem_seg.data[0].numpy().astype(np.uint8))

    # and scored against the labels, the tool's mIoU
    ious = class_ious(pred, label)
    record = metrics_json(tested['work'])
    assert round(float(np.nanmean(ious)) * 100,
                 2) == pytest.approx(record['metrics']['mIoU'])


def score_with_eval_predictions(run_tool, repo_root, out_json, *args):
    if not osp.isfile(
            osp.join(repo_root, 'tools', 'analysis', 'eval_predictions.py')):
        pytest.skip('tools/analysis/eval_predictions.py is not there yet')
    proc = run_tool('analysis/eval_predictions.py', CONFIG, *args,
                    '--out-json', out_json)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out_json) as f:
        return json.load(f)


def test_eval_predictions_gives_back_the_same_miou(tested, run_tool, repo_root,
                                                   tmp_path):
    """The round trip: --out, then tools/analysis/eval_predictions.py."""
    scored = score_with_eval_predictions(run_tool, repo_root,
                                         str(tmp_path / 'scored.json'),
                                         tested['out'])
    record = metrics_json(tested['work'])['metrics']
    for key in ('aAcc', 'mIoU', 'mAcc'):
        assert scored[key] == pytest.approx(record[key], abs=0.01), key


def test_eval_predictions_of_the_cityscapes_export_too(tested, run_tool,
                                                       repo_root, tmp_path,
                                                       require_extra):
    """--format-cityscapes, read back as labelIds: the same mIoU again."""
    require_extra('cityscapes', 'cityscapesscripts.helpers.labels')
    scored = score_with_eval_predictions(run_tool, repo_root,
                                         str(tmp_path / 'scored.json'),
                                         tested['cs'], '--label-ids',
                                         '--pred-suffix', '_leftImg8bit.png')
    assert scored['mIoU'] == pytest.approx(
        metrics_json(tested['work'])['metrics']['mIoU'], abs=0.01)


def label_ids_to_train_ids(label_ids, labels):
    lut = np.full(256, 255, np.uint8)
    for label in labels:
        if 0 <= label.id < 256 and 0 <= label.trainId < 255:
            lut[label.id] = label.trainId
    return lut[label_ids]


def test_cityscapes_export_scored_by_cityscapesscripts(tested, repo_root,
                                                       tmp_path,
                                                       require_extra):
    """--format-cityscapes writes what the official evaluation finds and
    scores; its class IoUs equal IoUMetric's on the same predictions.

    Like with like: cityscapesScripts scores against the labelIds file, so
    IoUMetric is given the trainIds derived from that file (the bundled
    labelTrainIds file differs from that mapping in 77 of 32,768 pixels).
    """
    labels = require_extra('cityscapes',
                           'cityscapesscripts.helpers.labels').labels
    require_extra(
        'cityscapes',
        'cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling')
    if not hasattr(np, 'in1d'):
        pytest.fail(f'numpy {np.__version__} has no in1d, which '
                    'cityscapesScripts calls; install with '
                    '-c requirements/constraints.txt (numpy<2.4)')
    assert tested['cs'] is not None
    files = os.listdir(tested['cs'])
    assert files == [f'{FRAME}_leftImg8bit.png']
    exported = read_png(osp.join(tested['cs'], files[0]))
    pred = read_png(osp.join(tested['out'], 'frankfurt', f'{FRAME}.png'))
    # the export is the trainId prediction in labelIds
    np.testing.assert_array_equal(
        label_ids_to_train_ids(exported, labels), pred)

    # the official evaluation, finding the prediction itself (getPrediction)
    export_dir = tmp_path / 'cs_eval'
    export_dir.mkdir()
    script = ('import cityscapesscripts.evaluation.'
              'evalPixelLevelSemanticLabeling as ev\n'
              'ev.args.evalInstLevelScore = False  # no instanceIds here\n'
              'ev.args.colorized = False\n'
              'ev.main()\n')
    env = dict(
        os.environ,
        CITYSCAPES_DATASET=osp.join(repo_root, CITYSCAPES),
        CITYSCAPES_RESULTS=tested['cs'],
        CITYSCAPES_EXPORT_DIR=str(export_dir))
    proc = subprocess.run([sys.executable, '-c', script],
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert 'Evaluating 1 pairs of images' in proc.stdout
    with open(export_dir / 'resultPixelLevelSemanticLabeling.json') as f:
        official = json.load(f)['classScores']

    gt = label_ids_to_train_ids(
        read_png(osp.join(repo_root, LABEL_IDS)), labels)
    mmseg_ious = class_ious(pred, gt)
    names = {lab.trainId: lab.name for lab in labels if 0 <= lab.trainId < 19}
    theirs = np.array([official[names[i]] for i in range(19)], float)
    np.testing.assert_array_equal(np.isnan(theirs), np.isnan(mmseg_ious))
    assert np.nanmax(np.abs(theirs - mmseg_ious)) < 1e-4
    assert np.sum(theirs > 0) >= 5  # several classes actually overlap


def test_show_dir_paints_one_image_per_test_image(tested, repo_root):
    files = glob.glob(osp.join(tested['show'], '**', '*.png'), recursive=True)
    # one file, named by mmseg's SegVisualizationHook: test_<image>_<step>
    # (the step is runner.iter upstream, a test index from 1 in the fork)
    assert len(files) == 1, files
    assert re.fullmatch(
        re.escape(f'vis_data/vis_image/test_{FRAME}_leftImg8bit.png_') +
        r'\d+\.png', osp.relpath(files[0], tested['show'])), files
    painted = read_png(files[0])
    image = np.array(Image.open(osp.join(repo_root, IMAGE)).convert('RGB'))
    h, w = image.shape[:2]
    # ground truth | prediction, each over the image
    assert painted.shape == (h, 2 * w, 3)
    gt_half, pred_half = painted[:, :w], painted[:, w:]
    assert np.abs(gt_half.astype(int) - image).mean() > 10
    assert np.abs(pred_half.astype(int) - image).mean() > 10
    assert not np.array_equal(gt_half, pred_half)


@pytest.mark.parametrize('extra, needles', [
    (['--out', 'same', '--format-cityscapes', 'same'
      ], ['--out and --format-cityscapes must be separate folders']),
    ([
        '--cfg-options', "model.test_cfg.mode='slide'",
        'model.test_cfg.crop_size="(512,1024)"',
        'model.test_cfg.stride="(768,768)"'
    ], ['stride (768, 768) is larger than crop_size (512, 1024)']),
])
def test_output_and_window_mistakes_are_one_line(run_tool,
                                                 assert_one_line_error,
                                                 tmp_path, extra, needles):
    extra = [str(tmp_path / a) if a == 'same' else a for a in extra]
    proc = run_tool('test.py', CONFIG, 'ckpt_not_read.pth', '--work-dir',
                    str(tmp_path), *extra)
    assert_one_line_error(proc, 'test.py: error:', *needles)
