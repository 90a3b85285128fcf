"""pcseg.io.kitti_bin: a KITTI .bin read as float32 x, y, z, intensity; written back
unchanged with a SemanticKITTI ``.label`` file next to it."""

from __future__ import annotations

import numpy as np

from pcseg.io.points import read_points, write_points

N = 50


def test_bin_copied_with_label_file(tmp_path):
    pts = np.random.default_rng(0).random((N, 4)).astype(np.float32)
    pts.tofile(tmp_path / "e.bin")
    pf = read_points(tmp_path / "e.bin")
    assert pf.fields["intensity"].dtype == np.float32
    np.testing.assert_array_equal(pf.xyz, pts[:, :3].astype(np.float64))
    out = write_points(
        pf, tmp_path / "out" / "e.bin", {"pred_class": np.arange(N)}, classification=np.arange(N)
    )
    assert out.read_bytes() == (tmp_path / "e.bin").read_bytes()
    np.testing.assert_array_equal(np.fromfile(out.with_suffix(".label"), "<u4"), np.arange(N))
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "e.pred_class.npy"), np.arange(N))
