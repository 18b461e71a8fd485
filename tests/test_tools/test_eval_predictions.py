# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""tools/analysis/eval_predictions.py on real Cityscapes-format data,
against a numpy confusion-matrix reference written here.

The reference sums each class's intersection, prediction and label areas
over all images (the benchmarks' dataset-level IoU), leaves out classes
absent from both predictions and labels, and treats a prediction equal to
the ignore index as no class (a miss wherever the label is a class).
"""
import importlib.util
import json
import os
import os.path as osp
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

CONFIG = 'configs/demo/deeplabv3_r18-d8_bcn-ws_1xb2-200iters_cityscapes-mini-128x128.py'  # noqa: E501
FRAME = 'frankfurt_000000_000294'
VAL = 'demo/data/cityscapes_mini/{}/val/frankfurt/' + FRAME + '_{}.png'
LABEL = VAL.format('gtFine', 'gtFine_labelTrainIds')
LABEL_IDS = VAL.format('gtFine', 'gtFine_labelIds')
IMAGE = VAL.format('leftImg8bit', 'leftImg8bit')
# Reference: cityscapesscripts' labels.py, the 19 trainId classes in order.
CLASSES = ('road', 'sidewalk', 'building', 'wall', 'fence', 'pole',
           'traffic light', 'traffic sign', 'vegetation', 'terrain', 'sky',
           'person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle',
           'bicycle')
NUM_CLASSES, IGNORE = len(CLASSES), 255


# ---------------------------------------------------------------- reference
def confusion(pred: np.ndarray, label: np.ndarray) -> tuple:
    """``(confusion matrix (label x pred) over the classes, label area)``
    of one image; ignored label pixels left out."""
    valid = label != IGNORE
    lab = label[valid].astype(np.int64)
    prd = pred[valid].astype(np.int64)
    label_area = np.bincount(lab, minlength=NUM_CLASSES)[:NUM_CLASSES]
    known = prd < NUM_CLASSES  # a predicted ignore index is no class
    cm = np.bincount(
        lab[known] * NUM_CLASSES + prd[known],
        minlength=NUM_CLASSES * NUM_CLASSES).reshape(NUM_CLASSES, NUM_CLASSES)
    return cm, label_area


def reference(pairs) -> dict:
    """Dataset-level aAcc / mIoU / mAcc and per-class IoU / Acc (percent,
    NaN where undefined) of ``[(pred, label), ...]``."""
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    label_area = np.zeros(NUM_CLASSES, np.int64)
    for pred, label in pairs:
        c, a = confusion(pred, label)
        cm += c
        label_area += a
    inter = np.diag(cm).astype(float)
    union = label_area + cm.sum(0) - inter
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = np.where(union > 0, inter / union, np.nan) * 100
        acc = np.where(label_area > 0, inter / label_area, np.nan) * 100
    return dict(
        aAcc=inter.sum() / label_area.sum() * 100,
        mIoU=np.nanmean(iou),
        mAcc=np.nanmean(acc),
        IoU=dict(zip(CLASSES, iou)),
        Acc=dict(zip(CLASSES, acc)))


def assert_matches(metrics: dict, ref: dict) -> None:
    for key in ('aAcc', 'mIoU', 'mAcc'):
        assert metrics[key] == pytest.approx(ref[key], abs=0.01), key
    for key in ('IoU', 'Acc'):
        assert list(metrics[key]) == list(CLASSES)
        for name in CLASSES:
            if np.isnan(ref[key][name]):
                assert metrics[key][name] is None, (key, name)
            else:
                assert metrics[key][name] == pytest.approx(
                    ref[key][name], abs=0.01), (key, name)


# ------------------------------------------------------------- predictions
def read(path: str) -> np.ndarray:
    return np.array(Image.open(path))


def all_road(label: np.ndarray) -> np.ndarray:
    return np.zeros_like(label)  # trainId 0 = road


def shifted(label: np.ndarray, px: int = 8) -> np.ndarray:
    """The label moved ``px`` pixels right, its first column repeated."""
    return np.concatenate(
        [np.repeat(label[:, :1], px, axis=1), label[:, :-px]], axis=1)


def to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """TrainIds back to labelIds with cityscapesScripts' table."""
    labels = pytest.importorskip('cityscapesscripts.helpers.labels')
    out = np.zeros_like(train_ids)
    for t in np.unique(train_ids):
        out[train_ids == t] = labels.trainId2label[int(t)].id
    return out


def write(path: str, array: np.ndarray) -> str:
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


# ------------------------------------------------------------------ runners
@pytest.fixture(scope='module')
def eval_tool(repo_root):
    """The tool's module, to call ``main(argv)`` in this process (the
    subprocess runs below cover the command line itself)."""
    spec = importlib.util.spec_from_file_location(
        'eval_predictions_tool',
        osp.join(repo_root, 'tools', 'analysis', 'eval_predictions.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def in_repo(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)  # the config's data_root is relative


@pytest.fixture(scope='module')
def label(repo_root):
    return read(osp.join(repo_root, LABEL))


# -------------------------------------------------------- the bundled frame
def test_perfect_prediction_gives_100(run_tool, label, tmp_path):
    pred_dir = tmp_path / 'preds'
    write(str(pred_dir / 'frankfurt' / f'{FRAME}.png'), label)
    out = tmp_path / 'metrics.json'
    proc = run_tool('analysis/eval_predictions.py', CONFIG, str(pred_dir),
                    '--out-json', str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    # mmseg's per-class table and the summary reach the user
    assert 'per class results' in proc.stdout
    assert '|      road     | 100.0 | 100.0 |' in proc.stdout
    assert 'aAcc: 100.00  mIoU: 100.00  mAcc: 100.00' in proc.stdout
    metrics = json.loads(out.read_text())
    assert set(metrics) == {'aAcc', 'mIoU', 'mAcc', 'IoU', 'Acc'}
    assert metrics['mIoU'] == 100.0 and metrics['aAcc'] == 100.0
    assert_matches(metrics, reference([(label, label)]))
    present = set(np.unique(label)) - {IGNORE}
    assert {c for c, v in metrics['IoU'].items() if v is not None} == \
        {CLASSES[i] for i in present}


@pytest.mark.parametrize('make', [all_road, shifted], ids=['road', 'shift'])
@pytest.mark.parametrize('label_ids', [False, True], ids=['trainIds', 'ids'])
def test_frame_matches_numpy_reference(make, label_ids, eval_tool, in_repo,
                                       label, tmp_path):
    pred = make(label)
    stored = to_label_ids(pred) if label_ids else pred
    write(str(tmp_path / 'frankfurt' / f'{FRAME}.png'), stored)
    out = tmp_path / 'm.json'
    argv = [CONFIG, str(tmp_path), '--split', 'val', '--out-json', str(out)]
    metrics = eval_tool.main(argv + (['--label-ids'] if label_ids else []))
    ref = reference([(pred, label)])
    assert_matches(metrics, ref)
    assert_matches(json.loads(out.read_text()), ref)
    assert metrics['mIoU'] < 100


def test_bundled_label_ids_file_scores_as_its_mapping(eval_tool, in_repo,
                                                      label, tmp_path):
    """The bundled labelIds file, scored with --label-ids, gives the
    numbers of its cityscapesScripts mapping (77 pixels differ from the
    labelTrainIds file, demo/data/README.md)."""
    labels = pytest.importorskip('cityscapesscripts.helpers.labels')
    ids = read(LABEL_IDS)
    shutil.copy(LABEL_IDS, tmp_path / f'{FRAME}.png')
    mapped = np.vectorize(lambda i: labels.id2label[int(i)].trainId % 256)(
        ids)  # trainId -1 or 255 -> 255
    assert (mapped != label).sum() == 77
    metrics = eval_tool.main([CONFIG, str(tmp_path), '--label-ids'])
    assert_matches(metrics, reference([(mapped, label)]))
    assert metrics['mIoU'] < 100


def test_label_ids_without_cityscapesscripts(eval_tool, in_repo, label,
                                             tmp_path, monkeypatch):
    write(str(tmp_path / f'{FRAME}.png'), label)
    for name in ('cityscapesscripts', 'cityscapesscripts.helpers',
                 'cityscapesscripts.helpers.labels'):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.raises(SystemExit) as e:
        eval_tool.main([CONFIG, str(tmp_path), '--label-ids'])
    message = str(e.value.code)
    assert message.startswith(
        'eval_predictions.py: error: --label-ids needs cityscapesScripts')
    assert "-e '.[cityscapes]'" in message
    assert '\n' not in message


@pytest.mark.parametrize(
    'name, suffix',
    [
        (f'frankfurt/{FRAME}.png', None),
        (f'{FRAME}.png', None),
        # mmseg's own IoUMetric(output_dir=...) names: flat, image basename
        (f'{FRAME}_leftImg8bit.png', '_leftImg8bit.png'),
    ],
    ids=['nested', 'flat', 'flat-mmseg-names'])
def test_nested_and_flat_prediction_folders(name, suffix, eval_tool, in_repo,
                                            label, tmp_path):
    pred = shifted(label)
    write(str(tmp_path / name), pred)
    argv = [CONFIG, str(tmp_path)]
    metrics = eval_tool.main(argv +
                             (['--pred-suffix', suffix] if suffix else []))
    assert_matches(metrics, reference([(pred, label)]))


# ------------------------------------------------------- several images
@pytest.fixture
def three_image_set(repo_root, tmp_path):
    """Three real crops of the frame (different sizes and content) in
    mmseg's CityscapesDataset layout, and the predictions: perfect on the
    left half, all road on the right half, shifted on the bottom strip."""
    image = read(osp.join(repo_root, IMAGE))
    full = read(osp.join(repo_root, LABEL))
    crops = {
        'left': (slice(None), slice(0, 128)),
        'right': (slice(None), slice(128, 256)),
        'bottom': (slice(64, 128), slice(None)),
    }
    predict = {'left': lambda x: x, 'right': all_road, 'bottom': shifted}
    root = tmp_path / 'data'
    pairs = []
    for name, crop in crops.items():
        stem = f'city/{name}_000000_000000'
        write(
            str(root / 'leftImg8bit' / 'val' / f'{stem}_leftImg8bit.png'),
            image[crop])
        lab = full[crop]
        write(
            str(root / 'gtFine' / 'val' / f'{stem}_gtFine_labelTrainIds.png'),
            lab)
        pred = predict[name](lab)
        write(str(tmp_path / 'preds' / f'{stem}.png'), pred)
        pairs.append((pred, lab))
    return str(root), str(tmp_path / 'preds'), pairs


def test_several_images_give_the_dataset_level_miou(run_tool, three_image_set,
                                                    tmp_path):
    root, preds, pairs = three_image_set
    dataset_ref = reference(pairs)
    per_image_mean = np.mean([reference([p])['mIoU'] for p in pairs])
    # the two definitions really differ on this set
    assert abs(dataset_ref['mIoU'] - per_image_mean) > 1
    out = tmp_path / 'm.json'
    proc = run_tool('analysis/eval_predictions.py', CONFIG, preds,
                    '--out-json', str(out), '--cfg-options',
                    f'test_dataloader.dataset.data_root={root}')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '(3 images)' in proc.stdout
    metrics = json.loads(out.read_text())
    assert_matches(metrics, dataset_ref)
    assert abs(metrics['mIoU'] - per_image_mean) > 1


# ---------------------------------------------------------- bad predictions
def bad_prediction(kind: str, label: np.ndarray, path: str) -> list:
    """Write a bad prediction at ``path`` (or none); return the needles of
    the expected message besides the path."""
    if kind == 'missing':
        os.makedirs(osp.dirname(path))
        return ['does not exist']
    if kind == 'wrong-size':
        write(path, label[:, :200])
        return ['200x128', '256x128', 'never resized']
    if kind == 'out-of-range':
        pred = label.copy()
        pred[:4, :4] = NUM_CLASSES  # 19: one past the last class
        write(path, pred)
        return ['19', '0-18', 'ignore index 255']
    assert kind == 'rgb'
    os.makedirs(osp.dirname(path))
    Image.fromarray(np.stack([label] * 3, axis=-1)).save(path)
    return ['3 channels', 'RGB']


@pytest.mark.parametrize('kind',
                         ['missing', 'wrong-size', 'out-of-range', 'rgb'])
def test_bad_prediction_is_one_line_naming_the_file(kind, run_tool, label,
                                                    tmp_path,
                                                    assert_one_line_error):
    path = str(tmp_path / 'preds' / 'frankfurt' / f'{FRAME}.png')
    needles = bad_prediction(kind, label, path)
    out = tmp_path / 'm.json'
    proc = run_tool('analysis/eval_predictions.py', CONFIG,
                    str(tmp_path / 'preds'), '--out-json', str(out))
    assert_one_line_error(proc, 'eval_predictions.py: error: ', f"'{path}'",
                          *needles)
    assert not out.exists()


# ------------------------------------------- round trip with tools/test.py
TINY = 'tests/data/configs/deeplabv3_r18-d8_bn_1xb2-tiny_cityscapes-mini-64x64.py'  # noqa: E501


def online_metrics(log: str) -> dict:
    """aAcc / mIoU / mAcc of MMEngine's ``Iter(test)`` summary line."""
    line = [
        ln for ln in log.splitlines() if 'Iter(test)' in ln and 'mIoU' in ln
    ][-1]
    return {
        key: float(line.split(f'{key}: ')[1].split()[0])
        for key in ('aAcc', 'mIoU', 'mAcc')
    }


def test_scores_test_tool_outputs_as_the_online_metric(run_tool, eval_tool,
                                                       tmp_path, in_repo):
    """``tools/test.py --out`` (trainIds, nested) and ``--format-cityscapes``
    (labelIds, flat ``*_leftImg8bit.png``) predictions of a randomly
    initialized model, scored offline, give the numbers mmseg's IoUMetric
    gave during the test run."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(TINY).model)  # random weights
    ckpt = str(tmp_path / 'init.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    preds, cs = tmp_path / 'preds', tmp_path / 'cs'
    with_cs = importlib.util.find_spec('cityscapesscripts') is not None
    proc = run_tool('test.py', TINY, ckpt, '--work-dir',
                    str(tmp_path / 'work'), '--out', str(preds),
                    *(['--format-cityscapes', str(cs)] if with_cs else []))
    assert proc.returncode == 0, proc.stderr[-3000:]
    online = online_metrics(proc.stdout + proc.stderr)
    assert (preds / 'frankfurt' / f'{FRAME}.png').is_file()
    runs = [(preds, [])]
    if with_cs:
        assert (cs / f'{FRAME}_leftImg8bit.png').is_file()
        runs.append((cs, ['--label-ids', '--pred-suffix', '_leftImg8bit.png']))
    for pred_dir, extra in runs:
        offline = eval_tool.main([TINY, str(pred_dir), *extra])
        for key, value in online.items():
            assert offline[key] == pytest.approx(value, abs=0.01), (extra, key)
