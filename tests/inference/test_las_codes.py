"""pcseg.inference.las_codes: predicted classes as raw codes (the reverse of ``map``), LAS
classification codes keeping the old code where a class has none, and the notes on a
point format whose codes do not fit."""

from __future__ import annotations

import numpy as np

from pcseg.datasets.custom import ClassesSpec
from pcseg.inference.las_codes import (
    classification_codes,
    classification_notes,
    label_codes,
    las_classification,
)
from pcseg.io.point_file import PointFile


def _spec(mapping):
    return ClassesSpec(
        names=["ground", "tree", "roof"],
        voxel_size=0.5,
        features=["intensity"],
        label_field="classification",
        map=mapping,
    )


def test_codes_are_the_reverse_of_map():
    spec = _spec({2: "ground", 5: "tree", 6: "roof"})
    pred = np.array([0, 1, 2, 2, 0])
    np.testing.assert_array_equal(label_codes(spec, pred), [2, 5, 6, 6, 2])
    codes = classification_codes(spec, pred, None)
    assert codes.dtype == np.uint8
    np.testing.assert_array_equal(codes, [2, 5, 6, 6, 2])
    assert classification_notes(spec, np.array([0, 1, 2]), 31) == []


def test_a_class_without_code_keeps_the_old_classification():
    spec = _spec({2: "ground", 6: "roof"})  # no raw code for 'tree'
    pred = np.array([0, 1, 2, 1])
    np.testing.assert_array_equal(label_codes(spec, pred), [2, -1, 6, -1])
    old = np.array([9, 3, 9, 4])
    np.testing.assert_array_equal(classification_codes(spec, pred, old), [2, 3, 6, 4])
    np.testing.assert_array_equal(classification_codes(spec, pred, None), [2, 1, 6, 1])
    notes = classification_notes(spec, np.array([1]), 31)
    assert len(notes) == 1 and "keep the file's classification" in notes[0]


def test_codes_above_the_point_formats_limit_leave_classification_unchanged():
    spec = _spec({2: "ground", 40: "tree", 6: "roof"})
    assert any("left unchanged" in n for n in classification_notes(spec, np.array([1]), 31))
    assert classification_notes(spec, np.array([1]), 255) == []
    xyz = np.zeros((3, 3))
    pf = PointFile(None, "npy", xyz, {})  # type: ignore[arg-type]
    # converted to LAS (point format 6+, limit 255): the codes are written
    cls, notes = las_classification(pf, spec, np.array([0, 1, 2]), "las")
    np.testing.assert_array_equal(cls, [2, 40, 6])
    assert notes == []
    # not a LAS / .bin output: nothing to set
    assert las_classification(pf, spec, np.array([0, 1, 2]), "ply") == (None, [])
    # a KITTI .bin gets the raw codes for its .label file
    pf_bin = PointFile(None, "bin", xyz, {})  # type: ignore[arg-type]
    cls, _ = las_classification(pf_bin, spec, np.array([2, 1, 0]), "same")
    np.testing.assert_array_equal(cls, [6, 40, 2])
