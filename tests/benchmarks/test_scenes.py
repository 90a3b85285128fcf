"""pcseg.benchmarks.scenes: where the real scan is looked for, and the scan's voxels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pcseg.benchmarks import scenes


def test_real_data_folder_comes_from_the_option_or_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(scenes.REAL_DATA_ENV, raising=False)
    assert scenes.default_real_data() is None
    monkeypatch.setenv(scenes.REAL_DATA_ENV, "")
    assert scenes.default_real_data() is None
    monkeypatch.setenv(scenes.REAL_DATA_ENV, str(tmp_path))
    assert scenes.default_real_data() == tmp_path
    assert scenes.kitti_scan_path(None) is None
    assert scenes.kitti_scan_path(tmp_path) == tmp_path / scenes.KITTI_SCAN
    assert scenes.kitti_scan_path(tmp_path, Path("x.bin")) == Path("x.bin")  # --kitti wins


def test_missing_scan_reason(tmp_path):
    assert "--real-data DIR or $PCSEG_REAL_DATA" in scenes.missing_scan_reason(None)
    scan = tmp_path / "a.bin"
    assert scenes.missing_scan_reason(scan) == f"{scan} not found"
    scan.write_bytes(np.zeros(8, "<f4").tobytes())
    assert scenes.missing_scan_reason(scan) is None


def test_kitti_scene_voxels_at_5_cm_keep_the_first_points_remission(tmp_path):
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.uniform(0, 0.2, (300, 3)), rng.uniform(0, 1, (300, 1))], 1)
    pts = pts.astype("<f4")
    pts.tofile(tmp_path / "s.bin")
    coords, feats, src = scenes.kitti_scene(tmp_path / "s.bin")
    assert coords.dtype == np.int32 and feats.dtype == np.float32 and "300 points" in src
    fl = np.floor(pts[:, :3].astype(np.float64) / 0.05).astype(np.int64)
    vox, first = np.unique(fl, axis=0, return_index=True)
    assert len(coords) == len(vox) < 300
    got = {tuple(c): float(f[0]) for c, f in zip(coords.tolist(), feats)}
    want = {tuple(v): float(pts[i, 3]) for v, i in zip(vox.tolist(), first)}
    assert got == pytest.approx(want)


def test_with_batch_column():
    c = np.arange(6, dtype=np.int32).reshape(2, 3)
    assert scenes.with_batch_column(c).tolist() == [[0, 0, 1, 2], [0, 3, 4, 5]]
