# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Cityscapes labelIds -> trainIds through cityscapesScripts' table."""
import sys

import numpy as np
import pytest
from mmseg.datasets import CityscapesDataset, PascalVOCDataset

from mmseg_wsbcn.evaluation import (EvaluationInputError,
                                    check_cityscapes_classes,
                                    cityscapes_labels, label_id_lut,
                                    label_ids_to_train_ids)

pytest.importorskip('cityscapesscripts.helpers.labels')

# Reference: the Cityscapes label definition (labels.py), by hand:
# labelId -> trainId, None = no trainId (ignored in evaluation).
KNOWN = {
    0: None,
    1: None,
    6: None,
    7: 0,
    8: 1,
    9: None,
    11: 2,
    14: None,
    17: 5,
    21: 8,
    23: 10,
    24: 11,
    26: 13,
    29: None,
    30: None,
    31: 16,
    33: 18
}


def test_lut_follows_the_label_table():
    lut = label_id_lut(cityscapes_labels(), ignore_index=255)
    for label_id, train_id in KNOWN.items():
        assert lut[label_id] == (255 if train_id is None else train_id)
    assert (lut[34:] == -1).all()  # not labelIds
    assert sorted(set(lut[:34]) - {255}) == list(range(19))


def test_map_and_refuse_unknown_ids():
    lut = label_id_lut(cityscapes_labels(), ignore_index=250)
    ids = np.array([[7, 8, 0], [26, 33, 9]], dtype=np.uint8)
    assert label_ids_to_train_ids(ids, lut, 'p.png').tolist() == \
        [[0, 1, 250], [13, 18, 250]]
    with pytest.raises(EvaluationInputError) as e:
        label_ids_to_train_ids(np.array([[7, 34, 200]]), lut, 'p.png')
    assert "'p.png' holds value(s) 34, 200" in str(e.value)
    assert '(0-33)' in str(e.value)


def test_classes_must_be_the_19_trainid_classes():
    labels = cityscapes_labels()
    check_cityscapes_classes(CityscapesDataset.METAINFO['classes'], labels)
    with pytest.raises(EvaluationInputError, match='21 classes'):
        check_cityscapes_classes(PascalVOCDataset.METAINFO['classes'], labels)


def test_missing_cityscapesscripts_says_how_to_install(monkeypatch):
    for name in ('cityscapesscripts', 'cityscapesscripts.helpers',
                 'cityscapesscripts.helpers.labels'):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(EvaluationInputError) as e:
        cityscapes_labels()
    assert "pip install -c requirements/constraints.txt -e '.[cityscapes]'" \
        in str(e.value)
    assert '\n' not in str(e.value)
