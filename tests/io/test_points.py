"""pcseg.io.points: the dispatch by suffix; empty files, header-only files and missing
coordinate fields named."""

from __future__ import annotations

import numpy as np
import pytest

from pcseg.io.point_file import PointFileError
from pcseg.io.points import read_points


@pytest.mark.parametrize("name", ["a.las", "a.ply", "a.pcd", "a.npy", "a.txt", "a.bin"])
def test_empty_file_is_named(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(PointFileError, match="empty") as e:
        read_points(tmp_path / name)
    assert name in str(e.value)


def test_header_only_and_zero_points(tmp_path):
    (tmp_path / "h.csv").write_text("x,y,z\n")
    with pytest.raises(PointFileError, match="no points") as e:
        read_points(tmp_path / "h.csv")
    assert "h.csv" in str(e.value)


def test_missing_coordinate_field_lists_fields(tmp_path):
    arr = np.zeros(3, dtype=[("x", "f8"), ("y", "f8"), ("height", "f8")])
    np.save(tmp_path / "a.npy", arr)
    with pytest.raises(PointFileError) as e:
        read_points(tmp_path / "a.npy")
    msg = str(e.value)
    assert "a.npy" in msg and "'z'" in msg and "height" in msg
