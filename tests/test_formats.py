"""pcseg.datasets.formats: each reader against files written by the reference library itself
(plyfile, laspy, open3d, numpy), fields and dtypes checked, and the writers' round trips."""

from __future__ import annotations

import numpy as np
import pytest

from pcseg.datasets import formats
from pcseg.datasets.formats import PointFileError, read_points, write_points

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
    lay = formats.ply_stream_layout(tmp_path / "m.ply")
    assert lay is not None and lay.rows == 1000 and formats.stream_count(tmp_path / "m.ply") == 1000
    ref = PlyData.read(str(tmp_path / "m.ply"))["vertex"].data
    assert lay.dtype == ref.dtype  # names, types and byte order as plyfile reads them
    chunks = list(formats.iter_chunks(tmp_path / "m.ply", 300))
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
    out = formats.write_streamed(
        tmp_path / "m.ply",
        tmp_path / "o" / "m.ply",
        300,
        dtypes,
        lambda c: ({k: f(c) for k, f in extra_of.items()}, None),
    )
    pf = read_points(tmp_path / "m.ply")
    whole = {k: f(formats.PointChunk(0, pf.xyz, [], None)) for k, f in extra_of.items()}
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
    assert formats.ply_stream_layout(tmp_path / "m.ply") is None
    with pytest.raises(PointFileError, match=r"m\.ply: this PLY is not streamed"):
        next(formats.iter_chunks(tmp_path / "m.ply", 10))


def test_truncated_or_foreign_ply_is_named(tmp_path):
    _mesh_ply(tmp_path / "m.ply", 1000)
    data = (tmp_path / "m.ply").read_bytes()
    (tmp_path / "cut.ply").write_bytes(data[: len(data) // 2])
    with pytest.raises(PointFileError, match=r"cut\.ply: truncated: 1000 points declared"):
        list(formats.iter_chunks(tmp_path / "cut.ply", 400))
    (tmp_path / "no.ply").write_bytes(b"this is not a ply file\n")
    with pytest.raises(PointFileError, match=r"no\.ply: not a readable PLY"):
        formats.ply_stream_layout(tmp_path / "no.ply")


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
    monkeypatch.setattr(formats, "_laz_backend_available", lambda: False)
    with pytest.raises(PointFileError) as e:
        read_points(tmp_path / "a.laz")
    assert "a.laz" in str(e.value) and "lazrs" in str(e.value)


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


def test_npy_npz_txt_bin(tmp_path):
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

    np.savez(tmp_path / "b.npz", xyz=r.random((N, 3)), intensity=r.random(N).astype(np.float32))
    pf = read_points(tmp_path / "b.npz")
    assert pf.fields["intensity"].dtype == np.float32 and pf.xyz.shape == (N, 3)

    lines = [
        f"{x:.3f},{y:.3f},{z:.3f},{int(c)}"
        for x, y, z, c in zip(r.random(N) + 1e6, r.random(N), r.random(N), r.integers(0, 3, N))
    ]
    (tmp_path / "c.csv").write_text("x,y,z,label\n" + "\n".join(lines) + "\n")
    pf = read_points(tmp_path / "c.csv")
    assert pf.fields["label"].dtype == np.int64 and pf.xyz[0, 0] == float(lines[0].split(",")[0])
    out = write_points(pf, tmp_path / "o.csv", {"pred_class": np.arange(N)})
    got = out.read_text().splitlines()
    assert got[0] == "x,y,z,label,pred_class"
    assert got[1] == lines[0] + ",0"  # the original line byte for byte + the new column

    (tmp_path / "d.txt").write_text("\n".join(ln.replace(",", " ") for ln in lines))
    pf = read_points(tmp_path / "d.txt", columns=["x", "y", "z", "cls"])
    assert "cls" in pf.fields

    pts = r.random((N, 4)).astype(np.float32)
    pts.tofile(tmp_path / "e.bin")
    pf = read_points(tmp_path / "e.bin")
    assert pf.fields["intensity"].dtype == np.float32
    out = write_points(
        pf, tmp_path / "out" / "e.bin", {"pred_class": np.arange(N)}, classification=np.arange(N)
    )
    assert out.read_bytes() == (tmp_path / "e.bin").read_bytes()
    np.testing.assert_array_equal(np.fromfile(out.with_suffix(".label"), "<u4"), np.arange(N))


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
