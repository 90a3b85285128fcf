"""pcseg predict: tiled == untiled (exact away from tile borders, stated tolerance at them),
LAS round trip keeping every original dimension and the integer X/Y/Z records, PLY added
properties, unlabelled files, bad files reported while the others go on, ranks sharing files,
and the end to end LAS -> prepare custom (1%) -> train -> predict -> laspy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from pcseg.benchmarks.predict import synthetic_outdoor, tiny_predictor, write_synthetic_las
from pcseg.cli.main import main
from pcseg.datasets.formats import PointFile
from pcseg.predict import (
    border_distance,
    make_tiles,
    predict_file,
    predict_files,
    receptive_field,
)
from pcseg.predict_stream import predict_file_streamed
from pcseg.readers.custom import point_features

#: at a tile border (overlap of 16 voxels, less than the receptive field) a voxel's
#: probabilities may differ from the untiled ones by at most this much (measured on this
#: network: about 1e-5) and its class for at most this share of voxels
BORDER_PROB_TOL = 1e-3
BORDER_CLASS_DISAGREEMENT = 0.01
#: float summation order only (a tile's voxels see all of their receptive field)
INTERIOR_PROB_TOL = 1e-5


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    return tiny_predictor(0.5, planes=8)


def _scene(n=12000, seed=0):
    d = synthetic_outdoor(n, seed)
    pf = PointFile(None, "las", d["xyz"], {"intensity": d["intensity"]})  # type: ignore[arg-type]
    return (d["xyz"] - d["xyz"].mean(axis=0)).astype(np.float32), pf


def test_tiles_cover_every_voxel_once_within_budget():
    vox = np.random.default_rng(0).integers(0, 200, (20000, 3))
    vox[:, 2] //= 20
    vox = np.unique(vox, axis=0)
    tiles = make_tiles(vox, 3000, 4)
    owner = np.zeros(len(vox), dtype=np.int64)
    for t in tiles:
        owner[t.index[t.core]] += 1
        assert len(t.index) <= 3000
    assert (owner == 1).all() and len(tiles) > 4


def test_tiled_equals_untiled(tiny):
    coords, pf = _scene()
    feats = point_features(pf, tiny.spec)
    full = tiny.predict_points(coords, feats, None, return_probs=True)
    assert full["tiles"] == 1
    rf = receptive_field(tiny.model, 1)
    assert rf > 16
    # overlap >= receptive field: every voxel sees all of its context -> equal everywhere
    tiled = tiny.predict_points(
        coords, feats, 2500, overlap=rf * tiny.voxel_size, return_probs=True
    )
    assert tiled["tiles"] > 1
    np.testing.assert_allclose(tiled["probs"], full["probs"], atol=INTERIOR_PROB_TOL)
    np.testing.assert_array_equal(tiled["pred"], full["pred"])
    # default overlap (16 voxels < receptive field): every voxel is within the receptive
    # field of a tile border here, so only the stated border tolerance holds
    tiled = tiny.predict_points(coords, feats, 1500, return_probs=True)
    assert tiled["tiles"] > 1 and tiled["margin_voxels"] == 16
    d = border_distance(tiled["voxel_coords"], tiled["tile_list"], tiled["margin_voxels"])
    assert np.isfinite(d).any() and d.min() >= 16  # a core voxel is >= the overlap inside
    diff = np.abs(tiled["probs"] - full["probs"]).max(axis=1)
    assert diff.max() <= BORDER_PROB_TOL
    agree = tiled["probs"].argmax(1) == full["probs"].argmax(1)
    assert 1 - agree.mean() <= BORDER_CLASS_DISAGREEMENT
    # the difference shrinks away from the border
    assert diff[d >= 32].mean() <= diff[d < 32].mean()


@pytest.mark.parametrize(
    "stream,suffix", [("never", ".las"), ("always", ".las"), ("always", ".laz")]
)
def test_las_round_trip_keeps_every_dimension_and_integer_records(tiny, tmp_path, stream, suffix):
    import laspy

    src = write_synthetic_las(tmp_path / "utm.las", 5000, seed=3)
    if suffix == ".laz":
        las = laspy.read(str(src))
        las.write(str(tmp_path / "utm.laz"))
        src = tmp_path / "utm.laz"
    r = predict_file(
        tiny, src, tmp_path / "out", voxel_budget=1500, stream=stream, chunk_points=1200
    )
    assert r["tiles"] > 1 and r["streamed"] == (stream == "always")
    assert r["output"].endswith(suffix)
    a, b = laspy.read(str(src)), laspy.read(r["output"])
    np.testing.assert_array_equal(b.header.offsets, a.header.offsets)
    np.testing.assert_array_equal(b.header.scales, a.header.scales)
    assert b.header.point_format.id == a.header.point_format.id
    for name in a.point_format.dimension_names:
        if name == "classification":
            continue
        np.testing.assert_array_equal(np.asarray(b[name]), np.asarray(a[name]), err_msg=name)
    for k in ("X", "Y", "Z"):
        assert np.asarray(b[k]).dtype == np.int32
        np.testing.assert_array_equal(np.asarray(b[k]), np.asarray(a[k]))
    pred = np.asarray(b.pred_class)
    assert len(pred) == len(a.points) and np.asarray(b.confidence).dtype == np.float32
    codes = np.array([2, 3, 5, 6])  # reverse of the map: class index -> ASPRS code
    np.testing.assert_array_equal(np.asarray(b.classification), codes[pred])
    assert abs(sum(r["class_shares"].values()) - 1) < 1e-9
    assert b.header.point_count == a.header.point_count
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def _read_scene(path):
    """The in-memory path's inputs of a file: local float32 coords and features."""
    from pcseg.datasets.formats import read_points
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
    mem = tiny.predict_points(coords, feats, 1500, boxes=boxes)
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
    full = tiny.predict_points(coords, point_features(pf, tiny.spec), None)
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


def test_npy_streamed_keeps_columns_and_auto_threshold(tiny, tmp_path):
    d = synthetic_outdoor(5000, 4)
    v = np.zeros(
        5000, dtype=[("x", "f8"), ("y", "f8"), ("z", "f8"), ("intensity", "u2"), ("tag", "i4")]
    )
    v["x"], v["y"], v["z"] = d["xyz"].T + 300_000
    v["intensity"], v["tag"] = d["intensity"], np.arange(5000)
    np.save(tmp_path / "p.npy", v)
    # auto: streamed when the file holds more than one chunk
    r = predict_file(tiny, tmp_path / "p.npy", tmp_path / "o", voxel_budget=1500, chunk_points=1500)
    assert r["streamed"] and r["tiles"] > 1
    small = predict_file(
        tiny, tmp_path / "p.npy", tmp_path / "o2", voxel_budget=1500, chunk_points=10_000
    )
    assert not small["streamed"]
    a, b = np.load(r["output"]), np.load(small["output"])
    assert a.dtype == b.dtype and a.dtype.names[:5] == v.dtype.names
    for k in v.dtype.names:
        np.testing.assert_array_equal(a[k], v[k])
    assert a["pred_class"].dtype == np.uint8 and a["pred_class"].max() < 4


def test_streaming_bad_input_names_file_and_field(tiny, tmp_path):
    from pcseg.datasets.formats import PointFileError

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


def test_ply_unlabelled_file_gets_added_properties(tiny, tmp_path):
    from plyfile import PlyData, PlyElement

    d = synthetic_outdoor(3000, 1)
    v = np.zeros(
        3000,
        dtype=[("x", "f8"), ("y", "f8"), ("z", "f8"), ("intensity", "u2"), ("scalar_Foo", "f4")],
    )
    v["x"], v["y"], v["z"] = d["xyz"].T + 500_000
    v["intensity"] = d["intensity"]
    PlyData([PlyElement.describe(v, "vertex")], text=True).write(str(tmp_path / "s.ply"))
    r = predict_file(tiny, tmp_path / "s.ply", tmp_path / "out")
    back = PlyData.read(r["output"])
    assert back.text
    bv = back["vertex"].data
    for k in v.dtype.names:
        np.testing.assert_array_equal(bv[k], v[k])
    assert bv["pred_class"].dtype == np.uint8 and len(bv) == 3000


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
    mem = tiny.predict_points(coords, point_features(pf, tiny.spec), 1500, boxes=boxes)
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


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """ASPRS LAS -> pcseg prepare custom with 1% labels -> a 4-iteration pcseg train."""
    root = tmp_path_factory.mktemp("custom")
    write_synthetic_las(root / "raw" / "tile_a.las", 4000, seed=0)
    write_synthetic_las(root / "raw" / "tile_b.las", 4000, seed=1)
    classes = root / "classes.yaml"
    classes.write_text(
        yaml.safe_dump(
            {
                "names": ["ground", "low_vegetation", "high_vegetation", "building"],
                "label_field": "classification",
                "map": {2: "ground", 3: "low_vegetation", 5: "high_vegetation", 6: "building"},
                "ignore": [0, 1],
                "features": ["intensity"],
                "voxel_size": 0.5,
            }
        )
    )
    assert (
        main(
            [
                "prepare",
                "custom",
                "--raw",
                str(root / "raw"),
                "--classes",
                str(classes),
                "--out",
                str(root / "proc"),
                "--labels",
                "1%",
            ]
        )
        == 0
    )
    cfg = {
        "_base_": str(
            __import__("pathlib").Path(__file__).parents[1] / "configs" / "custom" / "erda.yaml"
        ),
        "data": {
            "root": str(root / "proc"),
            "label_spec": "1%",
            "max_voxels": 600,
            "batch_size": 1,
            "num_workers": 0,
        },
        "model": {"name": "MinkUNet14A", "planes": [8] * 8, "init_dim": 8},
        "method": {"momentum": 0.5},
        "train": {
            "iterations": 4,
            "scheduler": "constant",
            "log_every": 2,
            "progress": False,
            "device": "cpu",
            "threads": 1,
            "val_every": 0,
            "checkpoint_every": 4,
        },
        "run_dir": str(root / "run"),
    }
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(root / "cfg.yaml")]) == 0
    return root


@pytest.mark.integration
def test_end_to_end_las_prepare_train_predict(trained, tmp_path):
    import laspy

    ckpt = trained / "run" / "checkpoints" / "best.pt"
    rc = main(
        [
            "predict",
            "--checkpoint",
            str(ckpt),
            str(trained / "raw"),
            "--out",
            str(tmp_path),
            "--no-progress",
            "--voxel-budget",
            "2000",
        ]
    )
    assert rc == 0
    for name in ("tile_a", "tile_b"):
        src = laspy.read(str(trained / "raw" / f"{name}.las"))
        out = laspy.read(str(tmp_path / f"{name}.las"))
        pred = np.asarray(out.pred_class)
        assert len(pred) == len(src.points) and pred.max() < 4
        np.testing.assert_array_equal(np.asarray(out.X), np.asarray(src.X))
    summary = json.loads((tmp_path / "predict_summary.json").read_text())
    assert [f["points"] for f in summary["files"]] == [4000, 4000]
    assert summary["failures"] == []


@pytest.mark.integration
def test_bad_file_reported_others_go_on(trained, tmp_path, capsys):
    ckpt = trained / "run" / "checkpoints" / "best.pt"
    bad = tmp_path / "in" / "broken.las"
    bad.parent.mkdir()
    bad.write_bytes(b"not a las file at all")
    good = trained / "raw" / "tile_a.las"
    s = predict_files(ckpt, [bad, good], tmp_path / "out", progress=False)
    assert [f["file"] for f in s["failures"]] == [str(bad)]
    assert "broken.las" in s["failures"][0]["error"]
    assert (tmp_path / "out" / "tile_a.las").is_file()
    assert not any(
        p.name.startswith("broken") or p.name.startswith(".broken")
        for p in (tmp_path / "out").iterdir()
    )
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(ckpt),
                str(bad),
                "--out",
                str(tmp_path / "o2"),
                "--no-progress",
            ]
        )
        == 1
    )
    assert "broken.las" in capsys.readouterr().err


@pytest.mark.integration
def test_ranks_share_files(trained, tmp_path, monkeypatch):
    ckpt = trained / "run" / "checkpoints" / "best.pt"
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    s = predict_files(ckpt, [trained / "raw"], tmp_path, progress=False)
    assert [f["file"] for f in s["files"]] == [str(trained / "raw" / "tile_b.las")]
    assert (tmp_path / "predict_summary.rank1.json").is_file()
    assert not (tmp_path / "tile_a.las").exists()
