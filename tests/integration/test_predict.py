"""`pcseg prepare` / `train` / `predict` end to end on LAS files (pcseg.inference.files through
the command): the predicted file, a bad file reported while the others go on, ranks sharing
the files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from pcseg.benchmarks.predict import synthetic_outdoor, write_synthetic_las
from pcseg.cli.main import main
from pcseg.inference.files import predict_files

pytestmark = pytest.mark.integration


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
        "_base_": str(Path(__file__).parents[2] / "configs" / "custom" / "erda.yaml"),
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


def test_the_checkpoint_keeps_the_fingerprint_and_predict_checks_the_class_file(
    trained, tmp_path, capsys
):
    """A CLASSES.yaml with ASPRS 2 and 3 swapped given to predict is a one-line error
    before any file is read (it would write every ground point back as 3); the training
    file itself is accepted."""
    import torch

    from pcseg.data import processed

    ckpt = trained / "run" / "checkpoints" / "best.pt"
    state = torch.load(ckpt, weights_only=False)
    assert state["data_meta"]["fingerprint"] == processed.read_meta(trained / "proc")["fingerprint"]
    spec = yaml.safe_load((trained / "classes.yaml").read_text())
    spec["map"] = {**spec["map"], 2: "low_vegetation", 3: "ground"}
    swapped = tmp_path / "swapped.yaml"
    swapped.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    argv = ["predict", "--checkpoint", str(ckpt), str(trained / "raw"), "--out", str(out)]
    capsys.readouterr()
    assert main([*argv, "--classes", str(swapped), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and not out.exists()
    assert "map: 2->ground became 2->low_vegetation, 3->low_vegetation became 3->ground" in err[0]
    tile = trained / "raw" / "tile_a.las"
    argv = ["predict", "--checkpoint", str(ckpt), str(tile), "--out", str(out)]
    assert main([*argv, "--classes", str(trained / "classes.yaml"), "--no-progress"]) == 0


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


def test_ranks_share_files(trained, tmp_path, monkeypatch):
    ckpt = trained / "run" / "checkpoints" / "best.pt"
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    s = predict_files(ckpt, [trained / "raw"], tmp_path, progress=False)
    assert [f["file"] for f in s["files"]] == [str(trained / "raw" / "tile_b.las")]
    assert (tmp_path / "predict_summary.rank1.json").is_file()
    assert not (tmp_path / "tile_a.las").exists()


FOOT_WKT = (
    'PROJCS["NAD83 / Ohio North (ft)",GEOGCS["NAD83",DATUM["D",SPHEROID["GRS 1980",6378137,'
    '298.257222101]],UNIT["degree",0.0174532925199433]],UNIT["foot",0.3048],'
    'AXIS["Easting",EAST],AXIS["Northing",NORTH]]'
)
AIRBORNE = {
    "names": ["ground", "low_vegetation", "high_vegetation", "building"],
    "label_field": "classification",
    "map": {2: "ground", 3: "low_vegetation", 5: "high_vegetation", 6: "building"},
    "ignore": [0, 1, 9, 12],
    "features": ["intensity", "return_number", "number_of_returns", "height_above_ground"],
    "voxel_size": 1.0,
}


def _airborne(path, n, seed, foot=True, intensity_gain=1.0):
    """A LAS 1.2 format 1 tile of synthetic_outdoor (feet + WKT VLR, or metres without a
    CRS) with water (9), overlap (12) and unclassified (1) codes on 5 % of points each."""
    import laspy
    from laspy.vlrs.known import WktCoordinateSystemVlr

    d = synthetic_outdoor(n, seed, side=50.0)
    rng = np.random.default_rng([seed, 3])
    unit = 0.3048 if foot else 1.0
    h = laspy.LasHeader(point_format=1, version="1.2")
    h.scales = np.array([0.01, 0.01, 0.01])
    h.offsets = np.array([1_500_000.0, 600_000.0, 0.0])
    if foot:
        h.vlrs.append(WktCoordinateSystemVlr(FOOT_WKT))
    las = laspy.LasData(h)
    xyz = d["xyz"] / unit + h.offsets
    las.x, las.y, las.z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    cls = d["classification"].copy()
    u = rng.random(n)
    cls[u < 0.05], cls[(u >= 0.05) & (u < 0.1)], cls[(u >= 0.1) & (u < 0.15)] = 9, 12, 1
    las.classification = cls
    las.intensity = np.clip(d["intensity"] * intensity_gain, 0, 65535).astype(np.uint16)
    las.number_of_returns = rng.integers(1, 3, n).astype(np.uint8)
    las.return_number = np.ones(n, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    las.write(str(path))
    return path


@pytest.fixture(scope="module")
def trained_feet(tmp_path_factory):
    """Airborne LAS in feet -> prepare custom with four features -> a 4-iteration train;
    the processed folder is then moved away (predict reads the checkpoint alone)."""
    root = tmp_path_factory.mktemp("feet")
    _airborne(root / "raw" / "a.las", 3000, 0)
    _airborne(root / "raw" / "b.las", 3000, 1)
    (root / "classes.yaml").write_text(yaml.safe_dump(AIRBORNE))
    argv = ["prepare", "custom", "--raw", str(root / "raw"), "--classes"]
    assert main([*argv, str(root / "classes.yaml"), "--out", str(root / "proc")]) == 0
    cfg = {
        "_base_": str(Path(__file__).parents[2] / "configs" / "custom" / "supervised.yaml"),
        "data": {"root": str(root / "proc"), "label_spec": "given", "max_voxels": 600,
                 "batch_size": 1, "num_workers": 0, "voxel_size": 1.0},
        "model": {"name": "MinkUNet14A", "planes": [8] * 8, "init_dim": 8},
        "train": {"iterations": 2, "scheduler": "constant", "log_every": 2, "progress": False,
                  "device": "cpu", "threads": 1, "val_every": 0, "checkpoint_every": 2},
        "run_dir": str(root / "run"),
    }  # fmt: skip
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(root / "cfg.yaml")]) == 0
    (root / "proc").rename(root / "proc_moved")
    return root


def _predict(root, inputs, out, *flags):
    ckpt = root / "run" / "checkpoints" / "last.pt"
    argv = ["predict", "--checkpoint", str(ckpt), *map(str, inputs), "--out", str(out)]
    assert main([*argv, "--no-progress", *flags]) == 0
    return json.loads((out / "predict_summary.json").read_text())


@pytest.mark.integration
@pytest.mark.parametrize("stream", ["never", "always"])
def test_codes_kept_units_and_training_range(trained_feet, tmp_path, capsys, stream):
    import laspy
    import torch

    root = trained_feet
    state = torch.load(root / "run" / "checkpoints" / "last.pt", weights_only=False)
    assert state["in_channels"] == 4
    assert state["data_meta"]["inputs"]["normalisation"]["channels"] == AIRBORNE["features"]
    src = root / "raw" / "a.las"
    old = np.asarray(laspy.read(str(src)).classification)
    codes = np.array([2, 3, 5, 6])
    outs = {}
    for name, flags in [
        ("all", []),
        ("keep", ["--keep-codes"]),
        ("only", ["--only-unclassified"]),
        ("only9", ["--only-unclassified", "9", "1"]),
    ]:
        s = _predict(root, [src], tmp_path / name, "--stream", stream, *flags)
        assert s["files"][0]["units"].startswith("x/y foot (0.3048 m)")
        assert s["files"][0]["notes"] == []  # a training tile: same CRS, same range
        b = laspy.read(str(tmp_path / name / "a.las"))
        np.testing.assert_array_equal(np.asarray(b.X), np.asarray(laspy.read(str(src)).X))
        outs[name] = (np.asarray(b.classification), codes[np.asarray(b.pred_class)])
    new, pred = outs["all"]
    np.testing.assert_array_equal(new, pred)  # every code overwritten, 9 and 12 too
    assert set(np.unique(old)) >= {1, 9, 12}
    new, pred = outs["keep"]
    kept = np.isin(old, [9, 12])
    np.testing.assert_array_equal(new[kept], old[kept])
    np.testing.assert_array_equal(new[~kept], pred[~kept])
    new, pred = outs["only"]
    unc = np.isin(old, [0, 1])
    np.testing.assert_array_equal(new[unc], pred[unc])
    np.testing.assert_array_equal(new[~unc], old[~unc])
    new, pred = outs["only9"]
    sel = np.isin(old, [9, 1])
    np.testing.assert_array_equal(new[sel], pred[sel])
    np.testing.assert_array_equal(new[~sel], old[~sel])
    # a tile in metres without a CRS, and one with ~12x the intensity: warnings naming both
    metres = _airborne(tmp_path / "in" / "m.las", 2000, 5, foot=False)
    bright = _airborne(tmp_path / "in" / "bright.las", 2000, 6, intensity_gain=12.0)
    capsys.readouterr()
    s = _predict(root, [metres, bright], tmp_path / "w", "--stream", stream)
    err = capsys.readouterr().err
    notes = {Path(f["file"]).name: " ".join(f["notes"]) for f in s["files"]}
    assert "x/y metre (1 m)" in notes["m.las"] and "x/y foot (0.3048 m)" in notes["m.las"]
    assert "NAD83 / Ohio North (ft)" in notes["m.las"]
    assert "'intensity'" in notes["bright.las"] and "far outside the training range" in err
    assert "intensity" not in notes["m.las"]
