"""pcseg.inference.streamed: the out-of-core path equals the in-memory one with the same tile
cores, and the untiled one within the border tolerance; bad input named (file, field,
point) with nothing half-written; a binary mesh PLY streamed with its faces kept."""

from __future__ import annotations

import numpy as np
import pytest

from pcseg.benchmarks.predict import synthetic_outdoor, write_synthetic_las
from pcseg.inference.files import predict_file
from pcseg.inference.memory import predict_points
from pcseg.inference.streamed import predict_file_streamed
from pcseg.inference.tiling import receptive_field
from pcseg.readers.custom import point_features

#: the border tolerance of the in-memory tiled path (tests/inference/test_memory.py)
BORDER_PROB_TOL = 1e-3
BORDER_CLASS_DISAGREEMENT = 0.01
#: float summation order only (a tile's voxels see all of their receptive field)
INTERIOR_PROB_TOL = 1e-5


def _read_scene(path):
    """The in-memory path's inputs of a file: local float32 coords and features."""
    from pcseg.io.points import read_points
    from pcseg.readers.custom import scene_origin

    pf = read_points(path)
    coords = (pf.xyz - scene_origin(pf.xyz)).astype(np.float32)
    return coords, pf


def test_streaming_equals_in_memory_tiled_with_the_same_tiles(tiny, tmp_path):
    import laspy

    src = write_synthetic_las(tmp_path / "s.las", 12000, seed=5)
    # chunks of 2,500 points, grid tiles of <= 5,000 points each split to <= 1,500 voxels
    r = predict_file_streamed(
        tiny, src, tmp_path / "out", voxel_budget=1500, chunk_points=2500, tile_points=5000
    )
    assert r["grid_tiles"] > 4 and r["tiles"] > r["grid_tiles"]
    assert r["max_tile_points"] <= 5000  # (a core no wider than the overlap is not split)
    coords, pf = _read_scene(src)
    feats = point_features(pf, tiny.spec)
    boxes = [(np.array(lo), np.array(hi)) for lo, hi in r["boxes"]]
    mem = predict_points(tiny, coords, feats, 1500, boxes=boxes)
    assert mem["tiles"] == r["tiles"] and mem["voxels"] == r["voxels"]
    assert abs(mem["overlap_cost"] - r["overlap_cost"]) < 1e-3
    out = laspy.read(r["output"])
    np.testing.assert_array_equal(np.asarray(out.pred_class), mem["pred"])
    np.testing.assert_allclose(
        np.asarray(out.confidence), mem["confidence"], atol=INTERIOR_PROB_TOL
    )


def test_streaming_vs_untiled(tiny, tmp_path):
    import laspy

    src = write_synthetic_las(tmp_path / "u.las", 6000, seed=2)
    coords, pf = _read_scene(src)
    full = predict_points(tiny, coords, point_features(pf, tiny.spec), None)
    rf = receptive_field(tiny.model, 1)
    # overlap >= receptive field: equal to untiled everywhere
    r = predict_file_streamed(
        tiny,
        src,
        tmp_path / "a",
        voxel_budget=1500,
        chunk_points=2000,
        tile_points=2500,
        overlap=rf * tiny.voxel_size,
    )
    assert r["tiles"] > 1
    out = laspy.read(r["output"])
    np.testing.assert_array_equal(np.asarray(out.pred_class), full["pred"])
    np.testing.assert_allclose(
        np.asarray(out.confidence), full["confidence"], atol=INTERIOR_PROB_TOL
    )
    # default overlap (16 voxels): the border tolerance of the in-memory tiled path
    r = predict_file_streamed(
        tiny, src, tmp_path / "b", voxel_budget=800, chunk_points=2000, tile_points=2500
    )
    assert r["tiles"] > 1 and r["margin_voxels"] == 16
    out = laspy.read(r["output"])
    assert np.abs(np.asarray(out.confidence) - full["confidence"]).max() <= BORDER_PROB_TOL
    agree = np.asarray(out.pred_class) == full["pred"]
    assert 1 - agree.mean() <= BORDER_CLASS_DISAGREEMENT


def test_streaming_bad_input_names_file_and_field(tiny, tmp_path):
    from pcseg.io.point_file import PointFileError

    v = np.zeros(3000, dtype=[("x", "f8"), ("y", "f8"), ("z", "f8"), ("intensity", "u2")])
    v["x"] = np.arange(3000)
    v["z"][2500] = np.nan
    np.save(tmp_path / "nan.npy", v)
    with pytest.raises(PointFileError, match=r"nan\.npy.*'z'.*point 2500"):
        predict_file_streamed(tiny, tmp_path / "nan.npy", tmp_path / "o", 1500, chunk_points=1000)
    w = np.zeros(3000, dtype=[("x", "f8"), ("y", "f8"), ("z", "f8")])
    np.save(tmp_path / "nofeat.npy", w)
    with pytest.raises(PointFileError, match=r"nofeat\.npy.*'intensity'"):
        predict_file_streamed(
            tiny, tmp_path / "nofeat.npy", tmp_path / "o", 1500, chunk_points=1000
        )
    # nothing half-written: no output, no temporary folder left
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_binary_ply_streamed_equals_in_memory(tiny, tmp_path):
    # a binary mesh PLY (faces after the vertices) of more than one chunk: streamed with the
    # in-memory path's classes (same tile cores), faces and comments kept; auto streams it
    from plyfile import PlyData, PlyElement

    d = synthetic_outdoor(9000, 3)
    v = np.zeros(9000, dtype=[("x", "f8"), ("y", "f8"), ("z", "f8"), ("intensity", "u2")])
    v["x"], v["y"], v["z"] = d["xyz"].T + 500_000
    v["intensity"] = d["intensity"]
    faces = np.array([([0, 1, 2],)], dtype=[("vertex_indices", "i4", (3,))])
    els = [PlyElement.describe(v, "vertex"), PlyElement.describe(faces, "face")]
    PlyData(els, text=False, comments=["scanner X"]).write(str(tmp_path / "m.ply"))
    r = predict_file_streamed(tiny, tmp_path / "m.ply", tmp_path / "s", 1500, chunk_points=2500)
    assert r["tiles"] > 1
    coords, pf = _read_scene(tmp_path / "m.ply")
    boxes = [(np.array(lo), np.array(hi)) for lo, hi in r["boxes"]]
    mem = predict_points(tiny, coords, point_features(pf, tiny.spec), 1500, boxes=boxes)
    back = PlyData.read(r["output"])
    assert [e.name for e in back.elements] == ["vertex", "face"] and back.comments == ["scanner X"]
    for k in v.dtype.names:
        np.testing.assert_array_equal(back["vertex"][k], v[k])
    np.testing.assert_array_equal(back["vertex"]["pred_class"], mem["pred"])
    np.testing.assert_allclose(back["vertex"]["confidence"], mem["confidence"], atol=1e-5)
    r = predict_file(tiny, tmp_path / "m.ply", tmp_path / "o", voxel_budget=1500, chunk_points=2500)
    assert r["streamed"]
    # the same vertices as ASCII PLY cannot be read at offsets: the in-memory path takes it
    PlyData(els, text=True).write(str(tmp_path / "a.ply"))
    ra = predict_file(
        tiny, tmp_path / "a.ply", tmp_path / "o", voxel_budget=1500, chunk_points=2500
    )
    assert not ra["streamed"] and len(PlyData.read(ra["output"])["vertex"].data) == 9000


def test_points_thousands_of_km_apart_are_refused_before_a_dense_grid(tiny, tmp_path):
    """Two outliers 5,000 km off a 40 m tile (as in laspy's append-bug test file): the
    streamed path names the file, its extent and the way out instead of allocating a
    histogram of terabytes; the in-memory path labels it."""
    import laspy

    from pcseg.inference.streamed import COARSE_CELL_VOXELS, MAX_HISTOGRAM_CELLS
    from pcseg.io.point_file import PointFileError

    src = write_synthetic_las(tmp_path / "spread.las", 3000, seed=5)
    las = laspy.read(str(src))
    x, y = np.asarray(las.x), np.asarray(las.y)
    x[:2], y[:2] = x[2] + 3_000_000.0, y[2] + 5_000_000.0
    h = laspy.LasHeader(point_format=las.header.point_format, version=las.header.version)
    h.scales, h.offsets = las.header.scales, las.header.offsets
    out = laspy.LasData(h)
    out.points = las.points
    out.x, out.y = x, y
    out.write(str(src))
    ext = np.ptp(np.column_stack([x, y]), axis=0)
    cell = COARSE_CELL_VOXELS * tiny.voxel_size
    assert (ext[0] // cell) * (ext[1] // cell) > MAX_HISTOGRAM_CELLS
    with pytest.raises(PointFileError) as e:
        predict_file_streamed(tiny, src, tmp_path / "out", 1500, chunk_points=1000)
    assert str(e.value).startswith(
        f"{src}: the points spread over {ext[0]:,.0f} x {ext[1]:,.0f} m, "
    )
    assert "(--stream never)" in str(e.value) and not list((tmp_path / "out").glob(".*"))
    r = predict_file(tiny, src, tmp_path / "mem", voxel_budget=1500, stream="never")
    assert r["points"] == 3000
