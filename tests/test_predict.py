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

from pcseg.cli.main import main
from pcseg.datasets.custom import point_features
from pcseg.datasets.formats import PointFile
from pcseg.predict import (
    border_distance,
    make_tiles,
    predict_file,
    predict_files,
    receptive_field,
)
from pcseg.predict_bench import _tiny_predictor, synthetic_outdoor, write_synthetic_las

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
    return _tiny_predictor(0.5, planes=8)


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
    tiled = tiny.predict_points(coords, feats, 2500, overlap=rf * tiny.voxel_size,
                                return_probs=True)
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


def test_las_round_trip_keeps_every_dimension_and_integer_records(tiny, tmp_path):
    import laspy

    src = write_synthetic_las(tmp_path / "utm.las", 5000, seed=3)
    r = predict_file(tiny, src, tmp_path / "out", voxel_budget=1500)
    assert r["tiles"] > 1
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


def test_ply_unlabelled_file_gets_added_properties(tiny, tmp_path):
    from plyfile import PlyData, PlyElement

    d = synthetic_outdoor(3000, 1)
    v = np.zeros(3000, dtype=[("x", "f8"), ("y", "f8"), ("z", "f8"), ("intensity", "u2"),
                              ("scalar_Foo", "f4")])
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


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """ASPRS LAS -> pcseg prepare custom with 1% labels -> a 4-iteration pcseg train."""
    root = tmp_path_factory.mktemp("custom")
    write_synthetic_las(root / "raw" / "tile_a.las", 4000, seed=0)
    write_synthetic_las(root / "raw" / "tile_b.las", 4000, seed=1)
    classes = root / "classes.yaml"
    classes.write_text(yaml.safe_dump({
        "names": ["ground", "low_vegetation", "high_vegetation", "building"],
        "label_field": "classification",
        "map": {2: "ground", 3: "low_vegetation", 5: "high_vegetation", 6: "building"},
        "ignore": [0, 1], "features": ["intensity"], "voxel_size": 0.5}))
    assert main(["prepare", "custom", "--raw", str(root / "raw"), "--classes", str(classes),
                 "--out", str(root / "proc"), "--labels", "1%"]) == 0
    cfg = {
        "_base_": str(__import__("pathlib").Path(__file__).parents[1]
                       / "configs" / "custom" / "erda.yaml"),
        "data": {"root": str(root / "proc"), "label_spec": "1%", "max_voxels": 600,
                 "batch_size": 1, "num_workers": 0},
        "model": {"name": "MinkUNet14A", "planes": [8] * 8, "init_dim": 8},
        "method": {"momentum": 0.5},
        "train": {"iterations": 4, "scheduler": "constant", "log_every": 2, "progress": False,
                  "device": "cpu", "threads": 1, "val_every": 0, "checkpoint_every": 4},
        "run_dir": str(root / "run"),
    }
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(root / "cfg.yaml")]) == 0
    return root


@pytest.mark.integration
def test_end_to_end_las_prepare_train_predict(trained, tmp_path):
    import laspy

    ckpt = trained / "run" / "checkpoints" / "best.pt"
    rc = main(["predict", "--checkpoint", str(ckpt), str(trained / "raw"), "--out",
               str(tmp_path), "--no-progress", "--voxel-budget", "2000"])
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
    assert not any(p.name.startswith("broken") or p.name.startswith(".broken")
                   for p in (tmp_path / "out").iterdir())
    assert main(["predict", "--checkpoint", str(ckpt), str(bad), "--out", str(tmp_path / "o2"),
                 "--no-progress"]) == 1
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
