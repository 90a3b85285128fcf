"""Image prediction pieces: the overlay blend, the image files of the inputs."""

from __future__ import annotations

import numpy as np
import pytest

from pcseg.inference.images import list_image_files, overlay


def test_overlay_is_the_half_blend():
    image = np.array([[[100, 0, 200], [10, 20, 30]]], dtype=np.uint8)
    pred = np.array([[1, 0]])
    palette = np.array([[0, 0, 0], [200, 100, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(overlay(image, pred, palette), [[[150, 50, 100], [5, 10, 15]]])


def test_list_image_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / ".cache").mkdir()
    for rel in ("a/x.PNG", "a/y.jpg", "a/z.txt", ".cache/w.png", "a/.v.png"):
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "one.png").write_bytes(b"")
    files = list_image_files([tmp_path / "a", tmp_path / "one.png"])
    assert [p.name for p in files] == ["x.PNG", "y.jpg", "one.png"]
    with pytest.raises(FileNotFoundError, match="missing"):
        list_image_files([tmp_path / "missing"])
