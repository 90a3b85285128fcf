"""pcseg.io.pcd: a PCD written by open3d's tensor API read with its extra fields, written back."""

from __future__ import annotations

import numpy as np
import pytest

from pcseg.io.points import read_points, write_points

N = 50


def _rng():
    return np.random.default_rng(0)


def test_pcd_keeps_extra_fields(tmp_path):
    o3d = pytest.importorskip("open3d")
    r = _rng()
    pcd = o3d.t.geometry.PointCloud()
    pts = r.random((N, 3)).astype(np.float32)
    pcd.point.positions = o3d.core.Tensor(pts)
    pcd.point.intensity = o3d.core.Tensor(r.random((N, 1)).astype(np.float32))
    pcd.point.label = o3d.core.Tensor(r.integers(0, 5, (N, 1)).astype(np.int32))
    o3d.t.io.write_point_cloud(str(tmp_path / "a.pcd"), pcd)
    pf = read_points(tmp_path / "a.pcd")
    assert pf.fields["intensity"].dtype == np.float32 and pf.fields["label"].dtype == np.int32
    np.testing.assert_array_equal(pf.fields["label"], pcd.point.label.numpy()[:, 0])
    np.testing.assert_array_equal(pf.xyz, pts.astype(np.float64))
    out = write_points(pf, tmp_path / "o.pcd", {"pred_class": np.ones(N, np.int32)})
    back = o3d.t.io.read_point_cloud(str(out))
    np.testing.assert_array_equal(back.point.label.numpy()[:, 0], pf.fields["label"])
    np.testing.assert_array_equal(back.point.pred_class.numpy()[:, 0], np.ones(N))
