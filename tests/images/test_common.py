"""pcseg.images.common: label values of each PNG mode, value maps against a brute-force
lookup, the checks that name a damaged file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pcseg.images.common import (
    DamagedImageError,
    check_same_size,
    lookup_table,
    map_values,
    read_label_values,
    read_rgb,
)


def test_label_values_of_each_png_mode(tmp_path):
    v8 = np.array([[0, 3, 255], [7, 7, 1]], np.uint8)
    Image.fromarray(v8).save(tmp_path / "l.png")
    p = Image.fromarray(v8)
    p.putpalette([0, 0, 0] * 256)  # a palette of one colour: values are indices, not colours
    p.save(tmp_path / "p.png")
    v16 = np.array([[0, 1000, 65535], [26001, 3, 2]], np.uint16)
    Image.fromarray(v16).save(tmp_path / "i16.png")
    Image.fromarray(v8 > 5).save(tmp_path / "b.png")
    assert read_label_values(tmp_path / "l.png").tolist() == v8.tolist()
    assert read_label_values(tmp_path / "p.png").tolist() == v8.tolist()
    assert read_label_values(tmp_path / "i16.png").tolist() == v16.tolist()
    assert read_label_values(tmp_path / "b.png").tolist() == (255 * (v8 > 5)).tolist()
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(DamagedImageError, match="rgb.png: a RGB picture"):
        read_label_values(tmp_path / "rgb.png")
    assert read_rgb(tmp_path / "p.png").shape == (2, 3, 3)  # palette -> RGB
    assert read_rgb(tmp_path / "l.png")[0, 1].tolist() == [3, 3, 3]


def test_truncated_and_missing_files(tmp_path):
    Image.fromarray(
        np.arange(64 * 64 * 3, dtype=np.uint32).reshape(64, 64, 3).astype(np.uint8)
    ).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(data[: len(data) - 100])
    with pytest.raises(DamagedImageError, match="a.png: unreadable image"):
        read_rgb(tmp_path / "a.png")
    with pytest.raises(DamagedImageError, match="b.png does not exist"):
        read_rgb(tmp_path / "b.png")


def test_map_values_against_a_dictionary():
    rng = np.random.default_rng(0)
    mapping, ignore = {0: 0, 10: 1, 20: 2, 300: 1}, [255, 999]
    lut = lookup_table(mapping, ignore, 1000)
    values = rng.choice([0, 10, 20, 300, 255, 999], size=(5, 6))
    got = map_values(values, lut, Path("m.png"), "test")
    want = np.vectorize(lambda v: mapping.get(int(v), 255))(values)
    assert got.dtype == np.uint8 and np.array_equal(got, want)
    values[1, 2], values[3, 3] = 11, 5000
    with pytest.raises(
        DamagedImageError,
        match=r"m.png: mask values 11, 5000 not in the map "
        r"\(test\); 2 pixels",
    ):
        map_values(values, lut, Path("m.png"), "test")
    with pytest.raises(DamagedImageError, match=r"m.png: 3x2 pixels, its image i.jpg 4x2"):
        check_same_size(np.zeros((2, 4, 3)), np.zeros((2, 3)), Path("i.jpg"), Path("m.png"))
