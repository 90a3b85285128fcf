"""pcseg.io.ply: a PLY written by plyfile (ASCII and binary, faces, comments) read with every
vertex property in its dtype, and written back with added properties."""

from __future__ import annotations

import numpy as np
import pytest

from pcseg.io.points import read_points, write_points

N = 50


def _rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("text", [False, True])
def test_ply_any_vertex_properties(tmp_path, text):
    from plyfile import PlyData, PlyElement

    r = _rng()
    v = np.empty(
        N,
        dtype=[
            ("x", "f8"),
            ("y", "f8"),
            ("z", "f8"),
            ("red", "u1"),
            ("green", "u1"),
            ("blue", "u1"),
            ("scalar_Intensity", "f4"),
            ("label", "i4"),
        ],
    )
    for k in ("x", "y", "z"):
        v[k] = r.random(N) * 1000 + 2_445_000
    for k in ("red", "green", "blue"):
        v[k] = r.integers(0, 255, N)
    v["scalar_Intensity"] = r.random(N)
    v["label"] = r.integers(-1, 4, N)
    faces = np.array([([0, 1, 2],)], dtype=[("vertex_indices", "i4", (3,))])
    path = tmp_path / "a.ply"
    PlyData(
        [PlyElement.describe(v, "vertex"), PlyElement.describe(faces, "face")],
        text=text,
        comments=["made by plyfile"],
    ).write(str(path))
    pf = read_points(path)
    assert pf.format == "ply" and pf.num_points == N
    assert {k: pf.fields[k].dtype for k in pf.fields} == {k: v.dtype[k] for k in v.dtype.names}
    np.testing.assert_array_equal(pf.xyz, np.column_stack([v["x"], v["y"], v["z"]]))
    out = write_points(
        pf,
        tmp_path / "o.ply",
        {"pred_class": np.arange(N, dtype=np.uint8), "confidence": np.full(N, 0.5, np.float32)},
    )
    back = PlyData.read(str(out))
    assert back.text == text and [e.name for e in back.elements] == ["vertex", "face"]
    assert "made by plyfile" in back.comments
    bv = back["vertex"].data
    for k in v.dtype.names:
        assert bv[k].dtype == v[k].dtype
        np.testing.assert_array_equal(bv[k], v[k])
    np.testing.assert_array_equal(bv["pred_class"], np.arange(N))
    assert bv["confidence"].dtype == np.float32


# ------------------------------------------------------------------ hostile header (issue 25)
def _mesh(path, text=False, n=400):
    """A PLY of ``n`` float32 xyz + uchar label vertices and one triangle; returns the
    vertex record size (13 bytes)."""
    from plyfile import PlyData, PlyElement

    v = np.zeros(n, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("label", "u1")])
    v["x"] = np.arange(n)
    faces = np.array([([0, 1, 2],)], dtype=[("vertex_indices", "i4", (3,))])
    els = [PlyElement.describe(v, "vertex"), PlyElement.describe(faces, "face")]
    PlyData(els, text=text).write(str(path))
    return v.dtype.itemsize


def _patch(path, old: bytes, new: bytes):
    raw = path.read_bytes()
    assert raw.count(old) == 1
    path.write_bytes(raw.replace(old, new))
    end = path.read_bytes().index(b"end_header\n") + len(b"end_header\n")
    return path.stat().st_size, end


def _no_plyfile_reads(monkeypatch):
    import plyfile

    def boom(*a, **k):
        raise AssertionError("plyfile was asked to read a hostile header")

    monkeypatch.setattr(plyfile.PlyData, "read", boom)


def test_hostile_binary_vertex_count_fails_before_plyfile(tmp_path, monkeypatch):
    from pcseg.io.point_file import PointFileError
    from pcseg.io.stream import stream_count

    path = tmp_path / "hostile.ply"
    rec = _mesh(path)
    size, end = _patch(path, b"element vertex 400\n", b"element vertex 1069128089\n")
    _no_plyfile_reads(monkeypatch)
    want = (
        f"{path}: damaged PLY header: element 'vertex' claims 1,069,128,089 records of {rec} "
        f"bytes, but the {size - end:,} bytes after the header hold at most "
        f"{(size - end) // rec:,} (file size {size:,} bytes)"
    )
    for reader in (read_points, stream_count):
        with pytest.raises(PointFileError) as e:
            reader(path)
        assert str(e.value) == want


def test_hostile_face_count_and_truncation_are_named(tmp_path, monkeypatch):
    from pcseg.io.point_file import PointFileError

    faces = tmp_path / "faces.ply"
    _mesh(faces)
    _patch(faces, b"element face 1\n", b"element face 99999999999\n")
    trunc = tmp_path / "trunc.ply"
    rec = _mesh(trunc)
    trunc.write_bytes(
        trunc.read_bytes()[: -(13 + 3 * rec)]
    )  # the face (1 + 3 x 4 bytes), 3 vertices
    _no_plyfile_reads(monkeypatch)
    with pytest.raises(
        PointFileError,
        match=r"element 'face' claims 99,999,999,999 records of "
        r"at least 1 bytes",
    ):
        read_points(faces)
    with pytest.raises(PointFileError) as e:
        read_points(trunc)
    assert f"element 'vertex' claims 400 records of {rec} bytes" in str(e.value)
    assert f"hold at most {400 - 3:,}" in str(e.value) and str(trunc) in str(e.value)


def test_hostile_ascii_count_and_bad_headers(tmp_path, monkeypatch):
    from pcseg.io.point_file import PointFileError

    path = tmp_path / "a.ply"
    _mesh(path, text=True, n=50)
    _patch(path, b"element vertex 50\n", b"element vertex 5000000000000\n")
    bad_line = tmp_path / "b.ply"
    _mesh(bad_line, n=10)
    _patch(bad_line, b"element vertex 10\n", b"element vertex -10\n")
    bad_fmt = tmp_path / "c.ply"
    _mesh(bad_fmt, n=10)
    _patch(bad_fmt, b"format binary_little_endian 1.0", b"format zipped 1.0")
    not_ply = tmp_path / "d.ply"
    not_ply.write_bytes(b"hello")
    _no_plyfile_reads(monkeypatch)
    with pytest.raises(PointFileError) as e:
        read_points(path)
    # 50 vertices + 1 face: 51 lines after the header, 5e12 + 1 records claimed
    assert str(e.value).startswith(
        f"{path}: damaged ASCII PLY: the header claims 5,000,000,000,001 records (vertex "
        "5,000,000,000,000, face 1), one per line, but the file has 51 lines after the header"
    )
    with pytest.raises(PointFileError, match=r"b\.ply: damaged PLY header line 3: 'element "):
        read_points(bad_line)
    with pytest.raises(PointFileError, match=r"c\.ply: damaged PLY header: format line "):
        read_points(bad_fmt)
    with pytest.raises(PointFileError, match=r"d\.ply: not a readable PLY file: no 'ply'"):
        read_points(not_ply)


@pytest.mark.parametrize("text", [False, True])
def test_sane_ply_headers_pass_the_check(tmp_path, text):
    from pcseg.io.ply import check_ply_header

    path = tmp_path / "ok.ply"
    _mesh(path, text=text, n=30)
    h = check_ply_header(path)
    assert [(e.name, e.count) for e in h.elements] == [("vertex", 30), ("face", 1)]
    assert len(read_points(path).xyz) == 30
