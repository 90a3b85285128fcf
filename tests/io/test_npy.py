"""pcseg.io.npy: a structured .npy keeps its column dtypes through a round trip; an .npz with
an (N, 3) ``xyz`` array and named columns."""

from __future__ import annotations

import numpy as np

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
