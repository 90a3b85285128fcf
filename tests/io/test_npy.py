"""pcseg.io.npy: a structured .npy keeps its column dtypes through a round trip; an .npz with
an (N, 3) ``xyz`` array and named columns."""

from __future__ import annotations

import numpy as np
import pytest

from pcseg.io.points import read_points, write_points

N = 50


def _rng():
    return np.random.default_rng(0)


def test_npy_keeps_column_dtypes(tmp_path):
    r = _rng()
    arr = np.zeros(N, dtype=[("x", "f8"), ("y", "f8"), ("z", "f4"), ("label", "u2")])
    arr["x"], arr["y"], arr["z"] = r.random(N), r.random(N), r.random(N)
    arr["label"] = r.integers(0, 3, N)
    np.save(tmp_path / "a.npy", arr)
    pf = read_points(tmp_path / "a.npy")
    assert pf.fields["label"].dtype == np.uint16 and pf.fields["z"].dtype == np.float32
    out = write_points(pf, tmp_path / "o.npy", {"pred_class": np.zeros(N, np.uint8)})
    back = np.load(out)
    assert back.dtype["label"] == np.uint16 and back.dtype["pred_class"] == np.uint8
    np.testing.assert_array_equal(back["x"], arr["x"])


def test_npz_xyz_array_and_columns(tmp_path):
    r = _rng()
    xyz = r.random((N, 3))
    np.savez(tmp_path / "b.npz", xyz=xyz, intensity=r.random(N).astype(np.float32))
    pf = read_points(tmp_path / "b.npz")
    assert pf.fields["intensity"].dtype == np.float32 and pf.xyz.shape == (N, 3)
    np.testing.assert_array_equal(pf.xyz, xyz)
    out = write_points(pf, tmp_path / "o.npz", {"pred_class": np.arange(N, dtype=np.uint8)})
    with np.load(out) as z:
        assert sorted(z.files) == ["intensity", "pred_class", "xyz"]
        np.testing.assert_array_equal(z["xyz"], xyz)
        np.testing.assert_array_equal(z["pred_class"], np.arange(N))


def test_hostile_npy_shape_fails_before_numpy_allocates(tmp_path, monkeypatch):
    from pcseg.io.point_file import PointFileError

    a = np.zeros(100, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    path = tmp_path / "h.npy"
    np.save(path, a)
    raw = path.read_bytes()
    hostile = raw.replace(b"'shape': (100,), }" + b" " * 7, b"'shape': (9999999999,), }")
    assert hostile != raw and len(hostile) == len(raw)  # the header keeps its 128 bytes
    path.write_bytes(hostile)
    size = path.stat().st_size

    def boom(*args, **kw):
        raise AssertionError("numpy was asked to load a hostile header")

    monkeypatch.setattr(np, "load", boom)
    with pytest.raises(PointFileError) as e:
        read_points(path)
    assert str(e.value) == (
        f"{path}: damaged .npy header: shape (9999999999,) of 12-byte records needs "
        f"119,999,999,988 bytes, but 1,200 follow the header (file size {size:,} bytes)"
    )
