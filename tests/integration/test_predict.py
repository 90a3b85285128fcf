"""`pcseg prepare` / `train` / `predict` end to end on LAS files (pcseg.inference.files through
the command): the predicted file, a bad file reported while the others go on, ranks sharing
the files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from pcseg.benchmarks.predict import write_synthetic_las
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
