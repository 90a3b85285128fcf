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


# ------------------------------------------------------------------ hostile header (issue 25)
def _pcd(path, **kw):
    o3d = pytest.importorskip("open3d")
    pcd = o3d.t.geometry.PointCloud()
    pcd.point.positions = o3d.core.Tensor(_rng().random((N, 3)).astype(np.float32))
    pcd.point.intensity = o3d.core.Tensor(_rng().random((N, 1)).astype(np.float32))
    o3d.t.io.write_point_cloud(str(path), pcd, **kw)
    return path


def _patch(path, pairs):
    raw = path.read_bytes()
    for old, new in pairs:
        assert raw.count(old) == 1, old
        raw = raw.replace(old, new)
    path.write_bytes(raw)
    return len(raw), raw.index(b"\nDATA ") + raw[raw.index(b"\nDATA ") + 1 :].index(b"\n") + 2


@pytest.fixture
def no_open3d_reads(monkeypatch):
    o3d = pytest.importorskip("open3d")

    def boom(*a, **k):
        raise AssertionError("open3d was asked to read a hostile header")

    monkeypatch.setattr(o3d.t.io, "read_point_cloud", boom)


HUGE = [(b"WIDTH 50\n", b"WIDTH 2000000000\n"), (b"POINTS 50\n", b"POINTS 2000000000\n")]


def test_hostile_binary_points_fail_before_open3d(tmp_path, no_open3d_reads):
    from pcseg.io.point_file import PointFileError

    path = _pcd(tmp_path / "b.pcd")
    size, offset = _patch(path, HUGE)
    with pytest.raises(PointFileError) as e:
        read_points(path)
    assert str(e.value) == (
        f"{path}: damaged PCD header: POINTS 2,000,000,000 (records of 16 bytes) but the "
        f"{size - offset:,} bytes after the header hold at most {(size - offset) // 16:,} "
        f"(file size {size:,} bytes)"
    )
    assert (size - offset) // 16 == N


def test_hostile_compressed_ascii_and_inconsistent_headers(tmp_path, no_open3d_reads):
    from pcseg.io.point_file import PointFileError

    comp = _pcd(tmp_path / "c.pcd", compressed=True)
    _patch(comp, HUGE)
    asc = _pcd(tmp_path / "a.pcd", write_ascii=True)
    _patch(asc, HUGE)
    wh = _pcd(tmp_path / "wh.pcd")
    _patch(wh, [(b"HEIGHT 1\n", b"HEIGHT 7\n")])
    fields = _pcd(tmp_path / "f.pcd")
    _patch(fields, [(b"SIZE 4 4 4 4\n", b"SIZE 4 4 4\n")])
    nodata = tmp_path / "n.pcd"
    nodata.write_bytes(b"VERSION 0.7\nFIELDS x y z\n")
    with pytest.raises(
        PointFileError,
        match=r"c\.pcd: .* compressed block claims [\d,]+ bytes "
        rf"\([\d,]+ follow\) that unpack to {N * 16:,} \(32,000,000,000 needed",
    ):
        read_points(comp)
    with pytest.raises(
        PointFileError,
        match=rf"a\.pcd: .*the file has {N} lines after the "
        "header, one per point",
    ):
        read_points(asc)
    with pytest.raises(PointFileError, match=r"POINTS 50 but WIDTH x HEIGHT = 50 x 7 = 350"):
        read_points(wh)
    with pytest.raises(PointFileError, match=r"FIELDS \(4\), SIZE \(3\), TYPE \(4\) and COUNT"):
        read_points(fields)
    with pytest.raises(PointFileError, match=r"n\.pcd: not a readable PCD file: no DATA line"):
        read_points(nodata)


@pytest.mark.parametrize("kw", [{}, {"write_ascii": True}, {"compressed": True}])
def test_sane_pcd_headers_pass_the_check(tmp_path, kw):
    from pcseg.io.pcd import check_pcd_header

    path = _pcd(tmp_path / "ok.pcd", **kw)
    assert check_pcd_header(path) == N
    assert len(read_points(path).xyz) == N
