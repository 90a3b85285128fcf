"""The README's label-efficient loop on an unlabelled scan, command by command: prepare custom
-> annotate (the tool's state, as the browser front end drives it) -> train on the clicks ->
test for per-point predictions -> annotate again with suggestions -> predict the raw file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.paths import REPO
from plyfile import PlyData, PlyElement

from pcseg.annotate.session import open_session
from pcseg.annotate.suggest import suggest_spots, uncertainty
from pcseg.cli.main import main
from pcseg.readers.synthetic import make_s3dis_room

pytestmark = pytest.mark.integration

CLASSES = {"names": ["floor", "wall", "other"], "features": ["rgb"], "voxel_size": 0.1}


def _unlabelled_ply(path: Path) -> np.ndarray:
    """A synthetic room as an unlabelled PLY (x, y, z, red, green, blue); returns the true
    class of every point (floor 0, wall 1, everything else 2) for the simulated user."""
    objs = make_s3dis_room(np.random.default_rng(0), size=(3.0, 3.5, 2.6), spacing=0.1)
    xyz = np.concatenate([o.points for o in objs])
    rgb = np.concatenate([o.colors for o in objs]).astype(np.uint8)
    truth = np.concatenate(
        [np.full(len(o.points), {"floor": 0, "wall": 1}.get(o.class_name, 2)) for o in objs]
    )
    v = np.empty(
        len(xyz),
        dtype=[
            ("x", "f8"),
            ("y", "f8"),
            ("z", "f8"),
            ("red", "u1"),
            ("green", "u1"),
            ("blue", "u1"),
        ],
    )
    for i, c in enumerate("xyz"):
        v[c] = xyz[:, i]
    for i, c in enumerate(("red", "green", "blue")):
        v[c] = rgb[:, i]
    path.parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(v, "vertex")], text=False).write(str(path))
    return truth


def test_readme_loop_on_an_unlabelled_scan(tmp_path):
    truth = _unlabelled_ply(tmp_path / "scans" / "room.ply")
    cls = tmp_path / "classes.yaml"
    cls.write_text(yaml.safe_dump(CLASSES))
    proc, run = tmp_path / "mine", tmp_path / "run"
    assert (
        main(
            [
                "prepare",
                "custom",
                "--raw",
                str(tmp_path / "scans"),
                "--classes",
                str(cls),
                "--out",
                str(proc),
            ]
        )
        == 0
    )
    # annotate: five clicks per class, saved (autosaved) as [point index, class] rows
    s = open_session(proc, cls, scene_id="room")
    assert (s.view.semantic < 0).all()  # nobody labelled this scan
    rng = np.random.default_rng(0)
    for k in range(3):
        for i in rng.choice(np.flatnonzero(truth == k), 5, replace=False):
            s.state.add([int(i)], k)
    assert s.label_path.is_file() and s.state.num_labelled == 15
    cfg = str(REPO / "configs" / "custom" / "supervised.yaml")
    sets = [
        "--set",
        f"data.root={proc}",
        "data.label_spec=import:annotate",
        "data.voxel_size=0.1",
        "data.max_voxels=600",
        "data.num_workers=0",
        "model.name=MinkUNet14A",
        "model.planes=[8,8,8,8,8,8,8,8]",
        "model.init_dim=8",
        "train.iterations=2",
        "train.progress=false",
        f"run_dir={run}",
    ]
    assert main(["train", cfg, *sets]) == 0
    last = str(run / "checkpoints" / "last.pt")
    assert main(["test", cfg, *sets, "--checkpoint", last, "--no-progress"]) == 0
    # annotate again: the run's predictions are there, the labels reopen, spots are proposed
    s2 = open_session(proc, cls, scene_id="room", run=run)
    assert s2.resumed == 15 and s2.view.pred is not None
    scores = uncertainty(s2.view.entropy, 3, s2.view.pred, s2.view.pseudo)
    spots = suggest_spots(s2.view.coords, scores, k=4, cell=0.5, labelled=s2.state.labels >= 0)
    assert len(spots) == 4
    # predict the raw file: every point gets a class and a confidence, fields kept
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                last,
                str(tmp_path / "scans" / "room.ply"),
                "--out",
                str(tmp_path / "labelled"),
                "--no-progress",
            ]
        )
        == 0
    )
    out = PlyData.read(str(tmp_path / "labelled" / "room.ply"))["vertex"]
    assert len(out["pred_class"]) == len(truth) and set(np.unique(out["pred_class"])) <= {0, 1, 2}
    assert np.array_equal(
        out["red"], PlyData.read(str(tmp_path / "scans" / "room.ply"))["vertex"]["red"]
    )


def test_annotate_opens_a_raw_file(tmp_path, monkeypatch):
    """`pcseg annotate scan.ply --classes CLASSES.yaml`: the raw file is prepared once into
    annotations/scan/ of the current directory (the CLASSES.yaml of `pcseg prepare custom`),
    the labels land there."""
    ply = tmp_path / "scans" / "scan.ply"
    ply.parent.mkdir()
    truth = _unlabelled_ply(ply)
    cls = tmp_path / "classes.yaml"
    cls.write_text(yaml.safe_dump(CLASSES))
    monkeypatch.chdir(tmp_path)
    s = open_session(ply, cls)
    work = Path("annotations") / "scan"
    assert s.processed == work and s.scene == "scan"
    assert s.view.num_points == len(truth)
    s.state.add([0, 1, 2], 1)
    assert s.label_path == work / "labels" / "import_annotate" / "scan.npy"
    assert [p.name for p in ply.parent.iterdir()] == ["scan.ply"]
    again = open_session(ply, cls)  # reused, not prepared again; the labels reopen
    assert again.resumed == 3
    from pcseg.annotate.state import AnnotationError

    with pytest.raises(AnnotationError, match="nosuch.yaml"):
        open_session(ply, tmp_path / "nosuch.yaml")
