# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""What tools/test.py writes (mmseg_wsbcn/cli/outputs.py): prediction paths,
label PNGs, the metrics JSON, the evaluator additions and the checks before
the run."""
import json
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from mmseg_wsbcn.engine.hooks.save_predictions_hook import (image_prefixes,
                                                            prediction_relpath,
                                                            write_label_png)
from mmseg_wsbcn.evaluation.test_outputs import (add_metric, check_output_dirs,
                                                 cityscapes_format_metric,
                                                 write_metrics_json)
from mmseg_wsbcn.launch import check_slide_inference
from mmseg_wsbcn.utils.errors import ToolError

CITY = 'data/cityscapes/leftImg8bit/val'


@pytest.mark.parametrize(
    'img_path, prefixes, expected',
    [
        (f'{CITY}/frankfurt/frankfurt_000000_000294_leftImg8bit.png', [
            (CITY, '_leftImg8bit.png')
        ], 'frankfurt/frankfurt_000000_000294.png'),
        ('data/VOC2012/JPEGImages/2007_000032.jpg', [
            ('data/VOC2012/JPEGImages', '.jpg')
        ], '2007_000032.png'),
        # a suffix that does not match: only the extension goes
        ('data/ade/images/validation/a.b.jpeg', [('data/ade/images', '.jpg')
                                                 ], 'validation/a.b.png'),
        # outside every prefix: the base name
        ('elsewhere/x_leftImg8bit.png', [(CITY, '_leftImg8bit.png')
                                         ], 'x_leftImg8bit.png'),
        # the longest matching prefix wins (ConcatDataset of nested roots)
        ('d/a/b/c.png', [('d', '.png'), ('d/a', '.png')], 'b/c.png'),
        # a prefix that is only a string prefix of the folder does not match
        ('d/ab/c.png', [('d/a', '.png')], 'c.png'),
    ])
def test_prediction_relpath(img_path, prefixes, expected):
    assert prediction_relpath(img_path, prefixes) == expected


def test_image_prefixes_of_wrapped_datasets():
    a = SimpleNamespace(data_prefix=dict(img_path='r1/img'), img_suffix='.jpg')
    b = SimpleNamespace(
        data_prefix=dict(img_path='r2/img'), img_suffix='_x.png')
    concat = SimpleNamespace(datasets=[a, SimpleNamespace(dataset=b)])
    assert image_prefixes(concat) == [('r1/img', '.jpg'), ('r2/img', '_x.png')]


def test_write_label_png_is_single_channel_uint8(tmp_path):
    label = np.array([[0, 1, 18], [255, 7, 0]], dtype=np.int64)
    out = str(tmp_path / 'a' / 'b.png')
    write_label_png(label, out)
    img = Image.open(out)
    assert img.mode == 'L' and img.size == (3, 2)
    np.testing.assert_array_equal(np.array(img), label)
    assert [p.name for p in (tmp_path / 'a').iterdir()] == ['b.png']
    with pytest.raises(ValueError, match='uint8'):
        write_label_png(np.array([[300]]), out)


def test_metrics_json_is_plain_json(tmp_path):
    out = write_metrics_json(
        str(tmp_path / 'ts' / 'metrics.json'), {
            'mIoU': np.float32(54.36),
            'aAcc': np.float64(92.125)
        },
        config='c.py',
        tta=False)
    with open(out) as f:
        record = json.load(f)
    assert record == {
        'metrics': {
            'mIoU': 54.36,
            'aAcc': 92.125
        },
        'config': 'c.py',
        'tta': False
    }


def test_add_metric_to_a_metric_a_list_and_an_evaluator():
    extra = dict(type='CityscapesMetric')
    cfg = Config(dict(test_evaluator=dict(type='IoUMetric')))
    add_metric(cfg, extra)
    assert [m['type']
            for m in cfg.test_evaluator] == ['IoUMetric', 'CityscapesMetric']
    add_metric(cfg, dict(type='Third'))
    assert len(cfg.test_evaluator) == 3
    cfg = Config(
        dict(
            test_evaluator=dict(
                type='Evaluator', metrics=dict(type='IoUMetric'))))
    add_metric(cfg, extra)
    assert [m['type'] for m in cfg.test_evaluator.metrics
            ] == ['IoUMetric', 'CityscapesMetric']


def test_output_dirs_must_be_separate(tmp_path):
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    check_output_dirs({'--out': a, '--format-cityscapes': b, '--x': None})
    with pytest.raises(ToolError, match='--out and --format-cityscapes'):
        check_output_dirs({'--out': a, '--format-cityscapes': a})
    with pytest.raises(ToolError, match='separate folders'):
        check_output_dirs({'--out': a, '--show-dir': osp.join(a, 'vis')})


def test_cityscapes_format_needs_the_cityscapes_classes(require_extra):
    require_extra('cityscapes', 'cityscapesscripts.helpers.labels')
    voc = Config(
        dict(test_dataloader=dict(dataset=dict(type='PascalVOCDataset'))))
    with pytest.raises(ToolError, match="'PascalVOCDataset' has 21 classes"):
        cityscapes_format_metric(voc, 'out')
    city = Config(
        dict(test_dataloader=dict(dataset=dict(type='CityscapesDataset'))))
    assert cityscapes_format_metric(city, 'out') == dict(
        type='CityscapesMetric',
        output_dir='out',
        format_only=True,
        keep_results=True)


@pytest.mark.parametrize('test_cfg, error', [
    (dict(mode='whole'), None),
    (dict(mode='slide', crop_size=(769, 769), stride=(513, 513)), None),
    (dict(mode='slide', crop_size=(1024, 1024), stride=(768, 768)), None),
    (dict(mode='slide', crop_size=(512, 1024), stride=(768, 768)),
     r'stride \(768, 768\) is larger than crop_size \(512, 1024\) in height'
     r'.*model.test_cfg.stride="\(512, 768\)"'),
    (dict(mode='slide', crop_size=(512, 512)), 'needs crop_size and stride'),
])
def test_slide_windows_must_not_leave_gaps(test_cfg, error):
    cfg = Config(dict(model=dict(test_cfg=test_cfg)))
    if error is None:
        check_slide_inference(cfg)
    else:
        with pytest.raises(ToolError, match=error):
            check_slide_inference(cfg)
