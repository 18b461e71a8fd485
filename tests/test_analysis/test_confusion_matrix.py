# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""mmseg_wsbcn.analysis.confusion_matrix: int64 counting (mmseg
1.2.2's tool wraps at 256), IoUMetric's metrics from the matrix, and the
command line (tools/analysis/confusion_matrix.py) on real tools/test.py
--out predictions of the bundled
Cityscapes mini set."""
import glob
import importlib.util
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmseg.evaluation.metrics import IoUMetric
from PIL import Image

from mmseg_wsbcn.analysis.confusion_matrix import (build_dataset,
                                                   confusion_matrix,
                                                   dataset_confusion_matrix,
                                                   matrix_metrics)

CONFIG = 'tests/data/configs/deeplabv3_r18-d8_bn_1xb2-tiny_cityscapes-mini-64x64.py'  # noqa: E501
VAL_LABEL = ('demo/data/cityscapes_mini/gtFine/val/frankfurt/'
             'frankfurt_000000_000294_gtFine_labelTrainIds.png')
# where tools/test.py --out writes the prediction of the bundled val image
PRED_PATH = 'frankfurt/frankfurt_000000_000294.png'
TOOL = 'analysis/confusion_matrix.py'


def test_high_classes_are_counted_in_their_own_cells():
    # 19 * 18 + 18 = 360: a uint8 bin index would wrap to 104 = (5, 9)
    gt = np.array([[18, 14, 0, 255]], np.uint8)
    pred = np.array([[18, 14, 0, 3]], np.uint8)
    m = confusion_matrix(gt, pred, 19)
    assert m.dtype == np.int64
    assert m[18, 18] == m[14, 14] == m[0, 0] == 1
    assert m.sum() == 3  # the ignored pixel is not counted


def test_out_of_range_labels_are_not_counted():
    m = confusion_matrix(np.array([0, 1, 7]), np.array([1, 9, 1]), 3)
    assert m.sum() == 1 and m[0, 1] == 1


def test_metrics_equal_mmseg_iou_metric():
    rng = np.random.default_rng(0)
    n = 19
    gt = rng.integers(0, n, size=(64, 64))
    gt[rng.random((64, 64)) < 0.1] = 255
    gt[gt == 7] = 3  # class 7 absent from the label
    pred = rng.integers(0, n, size=(64, 64))
    pred[pred == 11] = 2  # class 11 never predicted
    m = matrix_metrics(confusion_matrix(gt, pred, n))

    areas = IoUMetric.intersect_and_union(
        torch.from_numpy(pred), torch.from_numpy(gt), n, 255)
    ref = IoUMetric.total_area_to_metrics(*areas, ['mIoU'])
    assert m['aAcc'] == pytest.approx(float(ref['aAcc']) * 100)
    np.testing.assert_allclose(m['IoU'], ref['IoU'] * 100)
    np.testing.assert_allclose(m['Acc'], ref['Acc'] * 100)
    assert m['mIoU'] == pytest.approx(np.nanmean(ref['IoU']) * 100)


@pytest.fixture
def in_repo(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)  # the config's data_root is relative
    return repo_root


def test_the_label_map_itself_scores_100(in_repo, tmp_path):
    """The bundled val label as the prediction: a diagonal matrix (its
    'car' pixels, class 13, are where a uint8 index 19 * 13 + 13 wraps)."""
    (tmp_path / 'frankfurt').mkdir()
    Image.open(VAL_LABEL).save(tmp_path / PRED_PATH)
    matrix, unscored = dataset_confusion_matrix(*build_dataset(CONFIG),
                                                str(tmp_path))
    label = np.asarray(Image.open(VAL_LABEL))
    assert unscored == 0
    assert matrix.sum() == (label != 255).sum()
    assert np.count_nonzero(matrix - np.diag(np.diag(matrix))) == 0
    assert matrix[13, 13] == (label == 13).sum() > 0
    assert matrix_metrics(matrix)['mIoU'] == 100


def test_mmseg_tool_miscounts_the_same_input(in_repo):
    """Why this module exists: mmseg 1.2.2's confusion_matrix.py, given the
    bundled val label as the prediction, puts pixels off the diagonal
    (uint8 overflow, open-mmlab/mmsegmentation#3583)."""
    import mmseg
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    path = osp.join(
        osp.dirname(mmseg.__file__), '.mim', 'tools', 'analysis_tools',
        'confusion_matrix.py')
    if not osp.isfile(path):
        pytest.skip("mmseg's confusion_matrix.py is not in this install")
    spec = importlib.util.spec_from_file_location('mmseg_cm', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # the dataset as that tool builds it (with the test pipeline)
    init_default_scope('mmseg')
    dataset = DATASETS.build(Config.fromfile(CONFIG).test_dataloader.dataset)
    label = np.asarray(Image.open(VAL_LABEL))
    theirs = module.calculate_confusion_matrix(dataset, [label])
    assert theirs.sum() == (label != 255).sum()
    assert np.trace(theirs) < theirs.sum()  # a perfect prediction, yet
    assert theirs[13, 13] == 0  # the car pixels landed in other cells


@pytest.fixture(scope='module')
def predictions(run_tool, tmp_path_factory):
    """A 1-iteration checkpoint, its tools/test.py metrics and --out
    predictions."""
    work_dir = tmp_path_factory.mktemp('cm_train')
    proc = run_tool('train.py', CONFIG, '--work-dir', str(work_dir),
                    '--cfg-options', 'train_cfg.max_iters=1')
    assert proc.returncode == 0, proc.stderr[-3000:]
    test_dir = tmp_path_factory.mktemp('cm_test')
    pred_dir = str(test_dir / 'preds')
    proc = run_tool('test.py', CONFIG, str(work_dir / 'iter_1.pth'),
                    '--work-dir', str(test_dir), '--out', pred_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (metrics, ) = glob.glob(str(test_dir / '2*' / '2*.json'))
    with open(metrics) as f:
        return pred_dir, json.load(f)


def test_command_line_reproduces_the_test_tool_metrics(call_tool, predictions,
                                                       tmp_path):
    pred_dir, test_metrics = predictions
    out = str(tmp_path / 'cm.png')
    proc = call_tool(TOOL, CONFIG, pred_dir, '--out', out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (f"aAcc {test_metrics['aAcc']:.2f}  mIoU "
            f"{test_metrics['mIoU']:.2f}  mAcc {test_metrics['mAcc']:.2f}"
            ) in proc.stdout
    with Image.open(out) as png:
        png.load()
        assert png.format == 'PNG'


def test_missing_prediction_is_one_line(call_tool, assert_one_line_error,
                                        tmp_path):
    proc = call_tool(TOOL, CONFIG, str(tmp_path), '--out',
                     str(tmp_path / 'cm.png'))
    assert_one_line_error(proc, 'confusion_matrix.py: error:', PRED_PATH,
                          'does not exist')
    assert not (tmp_path / 'cm.png').exists()
