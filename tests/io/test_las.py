"""pcseg.io.las: LAS/LAZ written by laspy read with every dimension in its dtype and float64
coordinates; a LAZ without a backend says what to install."""

from __future__ import annotations

import numpy as np
import pytest

from pcseg.io import las as las_io
from pcseg.io.point_file import PointFileError
from pcseg.io.points import read_points

N = 50


def _rng():
    return np.random.default_rng(0)


def _las(path, offsets=(2_445_000.0, 2_445_000.0, 100.0), fmt=3, n=N):
    import laspy

    r = _rng()
    h = laspy.LasHeader(point_format=fmt, version="1.2")
    h.scales = np.array([0.01, 0.01, 0.01])
    h.offsets = np.asarray(offsets)
    h.add_extra_dim(laspy.ExtraBytesParams(name="amplitude", type=np.float32))
    las = laspy.LasData(h)
    las.x = offsets[0] + r.random(n) * 500
    las.y = offsets[1] + r.random(n) * 500
    las.z = offsets[2] + r.random(n) * 20
    las.intensity = r.integers(0, 65535, n)
    las.return_number = r.integers(1, 3, n)
    las.number_of_returns = np.full(n, 3)
    las.classification = r.choice([1, 2, 5, 6], n)
    las.red = r.integers(0, 65535, n)
    las.green = r.integers(0, 65535, n)
    las.blue = r.integers(0, 65535, n)
    las.amplitude = r.random(n).astype(np.float32)
    las.write(str(path))
    return laspy.read(str(path))


@pytest.mark.parametrize("suffix", [".las", ".laz"])
def test_las_laz_fields_and_float64_coordinates(tmp_path, suffix):
    ref = _las(tmp_path / f"a{suffix}")
    pf = read_points(tmp_path / f"a{suffix}")
    assert pf.format == "las"
    assert pf.xyz.dtype == np.float64
    np.testing.assert_array_equal(pf.xyz[:, 0], np.asarray(ref.x))
    np.testing.assert_array_equal(pf.fields["X"], np.asarray(ref.X))
    for name in ref.point_format.dimension_names:
        assert pf.fields[name].dtype == np.asarray(ref[name]).dtype, name
        np.testing.assert_array_equal(pf.fields[name], np.asarray(ref[name]))
    assert pf.fields["intensity"].dtype == np.uint16
    assert pf.fields["amplitude"].dtype == np.float32


def test_laz_without_backend_says_what_to_install(tmp_path, monkeypatch):
    _las(tmp_path / "a.laz")
    monkeypatch.setattr(las_io, "laz_backend_available", lambda: False)
    with pytest.raises(PointFileError) as e:
        read_points(tmp_path / "a.laz")
    assert "a.laz" in str(e.value) and "lazrs" in str(e.value)
