"""pcseg.io.stream: binary PLY read chunk by chunk exactly as plyfile reads it whole, written
back chunk by chunk equal to the whole-file writer; PLYs that cannot stream, truncated or
foreign files named; a LAZ without backend refused by the streaming reader too."""

from __future__ import annotations

import numpy as np
import pytest

from pcseg.io import las, stream
from pcseg.io.point_file import PointFileError
from pcseg.io.points import read_points, write_points

N = 50


def _rng():
    return np.random.default_rng(0)


def _mesh_ply(path, n, byte_order="<", text=False, list_vertex_prop=False, face_first=False):
    """A PLY written by plyfile: n vertices (a uchar first, so the byte order is not in the first
    field, float64 xyz, uchar rgb, a float32 and an int32 property), two faces after them,
    comments; returns the vertex array."""
    from plyfile import PlyData, PlyElement

    r = _rng()
    descr = [("flag", "u1"), ("x", "f8"), ("y", "f8"), ("z", "f8"), ("red", "u1"), ("green", "u1")]
    descr += [("blue", "u1"), ("scalar_Foo", "f4"), ("tag", "i4")]
    if list_vertex_prop:
        descr.append(("nbrs", object))
    v = np.empty(n, dtype=descr)
    for k in "xyz":
        v[k] = r.random(n) * 100 + 2_445_000
    for k in ("red", "green", "blue"):
        v[k] = r.integers(0, 255, n)
    v["scalar_Foo"], v["tag"], v["flag"] = r.random(n), np.arange(n), np.arange(n) % 3
    if list_vertex_prop:
        for i in range(n):
            v["nbrs"][i] = np.array([i], dtype=np.int32)
    faces = np.array([([0, 1, 2],), ([1, 2, 3],)], dtype=[("vertex_indices", "i4", (3,))])
    els = [PlyElement.describe(v, "vertex"), PlyElement.describe(faces, "face")]
    PlyData(
        els[::-1] if face_first else els,
        text=text,
        byte_order=byte_order,
        comments=["made by plyfile"],
        obj_info=["pcseg test"],
    ).write(str(path))
    return v


@pytest.mark.parametrize("byte_order", ["<", ">"])
def test_binary_ply_streams_like_plyfile_reads_it(tmp_path, byte_order):
    from plyfile import PlyData

    v = _mesh_ply(tmp_path / "m.ply", 1000, byte_order)
    lay = stream.ply_stream_layout(tmp_path / "m.ply")
    assert lay is not None and lay.rows == 1000 and stream.stream_count(tmp_path / "m.ply") == 1000
    ref = PlyData.read(str(tmp_path / "m.ply"))["vertex"].data
    assert lay.dtype == ref.dtype  # names, types and byte order as plyfile reads them
    chunks = list(stream.iter_chunks(tmp_path / "m.ply", 300))
    assert [c.start for c in chunks] == [0, 300, 600, 900]
    np.testing.assert_array_equal(
        np.concatenate([c.xyz for c in chunks]), np.column_stack([v["x"], v["y"], v["z"]])
    )
    for k in v.dtype.names:
        np.testing.assert_array_equal(np.concatenate([c.fields([k])[k] for c in chunks]), v[k])
    # written chunk by chunk == written whole by write_points (plyfile), read back by plyfile
    extra_of = {
        "pred_class": lambda c: (np.arange(c.start, c.start + len(c.xyz)) % 7).astype(np.uint8),
        "confidence": lambda c: (c.xyz[:, 0] % 1).astype(np.float32),
        "tag": lambda c: np.full(len(c.xyz), -5, np.int32),  # an existing property is replaced
    }
    dtypes = {"pred_class": np.uint8, "confidence": np.float32, "tag": np.int32}
    out = stream.write_streamed(
        tmp_path / "m.ply",
        tmp_path / "o" / "m.ply",
        300,
        dtypes,
        lambda c: ({k: f(c) for k, f in extra_of.items()}, None),
    )
    pf = read_points(tmp_path / "m.ply")
    whole = {k: f(stream.PointChunk(0, pf.xyz, [], None)) for k, f in extra_of.items()}
    mem = write_points(pf, tmp_path / "w" / "m.ply", whole)
    a, b = PlyData.read(str(out)), PlyData.read(str(mem))
    assert [e.name for e in a.elements] == ["vertex", "face"]
    assert a.comments == b.comments == ["made by plyfile"] and a.obj_info == ["pcseg test"]
    assert a.byte_order == b.byte_order and not a.text
    assert a["vertex"].data.dtype.names == b["vertex"].data.dtype.names
    for k in a["vertex"].data.dtype.names:
        np.testing.assert_array_equal(a["vertex"][k], b["vertex"][k])
        assert a["vertex"][k].dtype.newbyteorder("=") == b["vertex"][k].dtype.newbyteorder("=")
    assert (a["vertex"]["tag"] == -5).all()
    np.testing.assert_array_equal(
        np.stack(a["face"]["vertex_indices"]), np.stack(b["face"]["vertex_indices"])
    )
    assert not list((tmp_path / "o").glob(".*"))  # no temporary file left


@pytest.mark.parametrize(
    "kw", [{"text": True}, {"list_vertex_prop": True}, {"face_first": True}], ids=str
)
def test_ply_that_cannot_stream_is_read_whole(tmp_path, kw):
    _mesh_ply(tmp_path / "m.ply", 20, **kw)
    assert stream.ply_stream_layout(tmp_path / "m.ply") is None
    with pytest.raises(PointFileError, match=r"m\.ply: this PLY is not streamed"):
        next(stream.iter_chunks(tmp_path / "m.ply", 10))


def test_truncated_or_foreign_ply_is_named(tmp_path):
    _mesh_ply(tmp_path / "m.ply", 1000)
    data = (tmp_path / "m.ply").read_bytes()
    (tmp_path / "cut.ply").write_bytes(data[: len(data) // 2])
    with pytest.raises(  # the header check sees it before a chunk is read
        PointFileError, match=r"cut\.ply: damaged PLY header: element 'vertex' claims 1,000 rec"
    ):
        list(stream.iter_chunks(tmp_path / "cut.ply", 400))
    (tmp_path / "no.ply").write_bytes(b"this is not a ply file\n")
    with pytest.raises(PointFileError, match=r"no\.ply: not a readable PLY"):
        stream.ply_stream_layout(tmp_path / "no.ply")


def test_laz_without_backend_is_refused_by_the_streaming_reader_and_writer(tmp_path, monkeypatch):
    import laspy

    h = laspy.LasHeader(point_format=3, version="1.2")
    data = laspy.LasData(h)
    data.x, data.y, data.z = np.arange(5.0), np.arange(5.0), np.arange(5.0)
    data.write(str(tmp_path / "a.laz"))
    assert [len(c.xyz) for c in stream.iter_chunks(tmp_path / "a.laz", 3)] == [3, 2]
    monkeypatch.setattr(las, "laz_backend_available", lambda: False)
    with pytest.raises(PointFileError, match=r"a\.laz: LAZ file but no LAZ backend.*lazrs"):
        next(stream.iter_chunks(tmp_path / "a.laz", 3))
    with pytest.raises(PointFileError, match=r"o\.laz: writing LAZ needs a LAZ backend"):
        stream.write_streamed(tmp_path / "a.laz", tmp_path / "o.laz", 3, {}, lambda c: ({}, None))


def test_streamed_las_checks_the_header_before_laspy(tmp_path, monkeypatch):
    import struct

    import laspy

    h = laspy.LasHeader(point_format=3, version="1.2")
    data = laspy.LasData(h)
    data.x, data.y, data.z = np.arange(300.0), np.arange(300.0), np.arange(300.0)
    path = tmp_path / "hostile.las"
    data.write(str(path))
    raw = bytearray(path.read_bytes())
    struct.pack_into("<I", raw, 100, 1_069_128_089)
    path.write_bytes(bytes(raw))

    def boom(*a, **k):
        raise AssertionError("laspy was asked to read a hostile header")

    monkeypatch.setattr(laspy, "open", boom)
    with pytest.raises(PointFileError, match=r"number of VLRs claims 1,069,128,089"):
        stream.stream_count(path)
    with pytest.raises(PointFileError, match=r"hostile\.las: damaged LAS header"):
        next(stream.iter_chunks(path, 100))


def test_a_truncated_laz_is_named_by_the_streaming_reader(tmp_path):
    import laspy

    h = laspy.LasHeader(point_format=3, version="1.2")
    data = laspy.LasData(h)
    rng = np.random.default_rng(0)
    data.x, data.y, data.z = (rng.random(5000) * 100 for _ in range(3))
    data.write(str(tmp_path / "full.laz"))
    raw = (tmp_path / "full.laz").read_bytes()
    (tmp_path / "cut.laz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(PointFileError) as e:
        list(stream.iter_chunks(tmp_path / "cut.laz", 1000))
    assert str(e.value).startswith(
        f"{tmp_path / 'cut.laz'}: not a readable LAS file (truncated or damaged from point "
    )
    assert not str(e.value).rstrip().endswith(":")
