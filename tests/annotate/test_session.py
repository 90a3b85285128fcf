"""pcseg annotate on a user's raw file (pcseg.annotate.session): it starts from the file's own
classes (the ``given`` labels of ``pcseg prepare custom``), its brush starts at a few point
spacings, and its working folder stays out of the raw folder, or is skipped where it is in one,
so that ``pcseg predict DIR`` and ``pcseg prepare custom --raw DIR`` see each tile once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.paths import REPO

from pcseg.annotate.session import open_session
from pcseg.annotate.state import AnnotationError
from pcseg.cli.main import main
from pcseg.data import processed

#: the shipped class file for tiles coded 1 (non-ground) / 2 (ground)
GROUND = REPO / "configs" / "custom" / "classes_ground_nonground.yaml"


def _tile(path: Path, n: int = 2000, seed: int = 0, spacing: float = 0.5) -> np.ndarray:
    """An airborne-like LAS 1.2 tile on a jittered grid of ``spacing`` m: ground (2) and
    roofs / trees left unclassified (1), a few noise (7) and water (9) points. Returns the
    codes, in point order."""
    import laspy

    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    gx, gy = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    xy = np.stack([gx.ravel(), gy.ravel()], 1)[:n] * spacing
    xy = xy + rng.uniform(-0.05, 0.05, xy.shape) * spacing
    code = np.where(xy[:, 0] < side * spacing / 2, 2, 1).astype(np.uint8)
    code[rng.random(n) < 0.03] = 7
    code[rng.random(n) < 0.03] = 9
    header = laspy.LasHeader(point_format=1, version="1.2")
    header.scales, header.offsets = [0.01, 0.01, 0.01], [600000.0, 5000000.0, 0.0]
    las = laspy.LasData(header)
    las.x, las.y = xy[:, 0] + 600000.0, xy[:, 1] + 5000000.0
    las.z = np.where(code == 1, 6.0, 0.0) + rng.random(n) * 0.1
    las.classification = code
    las.intensity = rng.integers(100, 2000, n).astype(np.uint16)
    las.return_number = np.ones(n, np.uint8)
    las.number_of_returns = np.ones(n, np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    las.write(str(path))
    return code


def test_a_classified_file_starts_from_its_own_classes(tmp_path):
    """The LAS classification through the CLASSES.yaml map (1 -> non_ground, 2 -> ground;
    7 / 9 ignored) is the starting labels, saved at once, editable, resumed next time; with
    start='empty' there are none."""
    code = _tile(tmp_path / "tiles" / "t1.las")
    s = open_session(tmp_path / "tiles" / "t1.las", GROUND, work=tmp_path / "work")
    want = np.select([code == 1, code == 2], [0, 1], -1)
    np.testing.assert_array_equal(s.state.labels, want)
    assert s.from_file == int((want >= 0).sum()) and s.resumed == 0
    assert "started from the file's own classes" in s.start_message()
    saved = np.load(s.label_path)  # written at once: it trains as it is
    np.testing.assert_array_equal(saved[:, 0], np.flatnonzero(want >= 0))
    np.testing.assert_array_equal(saved[:, 1], want[want >= 0])
    # editable like clicked labels: relabel a roof point as ground, undo, redo
    roof = int(np.flatnonzero(code == 1)[0])
    assert s.state.add([roof], 1) == 1 and s.state.undo() and s.state.labels[roof] == 0
    assert s.state.redo()
    again = open_session(tmp_path / "tiles" / "t1.las", GROUND, work=tmp_path / "work")
    assert again.resumed == s.from_file and again.from_file == 0
    assert again.state.labels[roof] == 1  # the edit, not the file's class
    # start empty: a fresh label spec opens with no label at all
    empty = open_session(
        tmp_path / "tiles" / "t1.las",
        GROUND,
        work=tmp_path / "work",
        spec="import:fresh",
        start="empty",
    )
    assert empty.state.num_labelled == 0 and not empty.label_path.exists()
    with pytest.raises(AnnotationError, match="--start 'all'"):
        open_session(tmp_path / "tiles" / "t1.las", GROUND, work=tmp_path / "work", start="all")


def test_brush_radius_defaults_to_a_few_point_spacings():
    """0.1 m was less than one point spacing of airborne data: the brush took one point."""
    from pcseg.annotate.web import BRUSH_SPACINGS, default_brush_radius

    rng = np.random.default_rng(0)
    for spacing in (0.05, 0.5, 2.0):
        g = np.arange(60) * spacing
        gx, gy = np.meshgrid(g, g, indexing="ij")
        coords = np.stack([gx.ravel(), gy.ravel(), rng.random(gx.size) * 1e-3], 1)
        assert default_brush_radius(coords) == pytest.approx(BRUSH_SPACINGS * spacing, rel=1e-3)
    assert BRUSH_SPACINGS == 3.0
    # at most a quarter of the diagonal (the slider's end) on a tiny scene
    tiny = np.array([[0, 0, 0], [1.0, 0, 0], [2.0, 0, 0]])
    assert default_brush_radius(tiny) == 0.5


def test_the_front_end_starts_with_that_brush(tmp_path):
    pytest.importorskip("viser", reason="viser not installed (pip install 'pcseg[annotate]')")
    import socket

    from pcseg.annotate.web import WebAnnotator

    _tile(tmp_path / "t.las", n=900, spacing=0.5)
    s = open_session(tmp_path / "t.las", GROUND, work=tmp_path / "work")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = WebAnnotator(s, port=port)
    try:
        from scipy.spatial import cKDTree

        d, _ = cKDTree(s.view.coords).query(s.view.coords, k=2)  # every point: exact
        assert app.g_brush.value == pytest.approx(3 * np.median(d[:, 1]), abs=1e-3)
        assert 1.35 < app.g_brush.value < 1.55  # about 3 x the 0.5 m grid
        assert "started from the file's own classes" in app.last_message
        app.set_tool("brush")
        app.set_class(1)
        centre = 22 * 30 + 15  # inside the roof half of the 30 x 30 grid
        app.click_point(centre)
        d = np.linalg.norm(s.view.coords - s.view.coords[centre], axis=1)
        assert (s.state.labels[d <= app.g_brush.value - 0.01] == 1).all()
        assert int((d <= app.g_brush.value - 0.01).sum()) >= 15  # 0.1 m took one point
    finally:
        app.server.stop()


def test_the_working_folder_is_outside_the_raw_folder(tmp_path, monkeypatch):
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    _tile(tmp_path / "tiles" / "a.las", seed=0)
    before = sorted(p.name for p in (tmp_path / "tiles").iterdir())
    s = open_session(tmp_path / "tiles" / "a.las", GROUND)
    assert s.processed == Path("annotations") / "a" and s.scene == "a"
    assert (tmp_path / "project" / "annotations" / "a" / "scenes" / "a.npz").is_file()
    assert sorted(p.name for p in (tmp_path / "tiles").iterdir()) == before
    # another a.las elsewhere does not open the first one's scene
    _tile(tmp_path / "other" / "a.las", seed=5)
    with pytest.raises(AnnotationError, match="working folder of another file") as e:
        open_session(tmp_path / "other" / "a.las", GROUND)
    assert str(tmp_path / "tiles" / "a.las") in str(e.value) and "--work" in str(e.value)
    # a working folder left half-made (raw/ created, nothing in it) is taken up again
    _tile(tmp_path / "tiles" / "b.las", seed=1)
    (tmp_path / "project" / "annotations" / "b" / "raw").mkdir(parents=True)
    assert open_session(tmp_path / "tiles" / "b.las", GROUND).scene == "b"


def test_an_annotated_raw_folder_is_predicted_and_prepared_once_per_tile(tmp_path, monkeypatch):
    """A working folder inside the raw folder (annotate run from there) broke `pcseg predict
    DIR` (two outputs named a.las, exit 2) and `pcseg prepare custom --raw DIR` (the tile
    prepared twice, the scenes' .npz read as scans and failed): both skip it now."""
    raw = tmp_path / "tiles"
    _tile(raw / "a.las", seed=0)
    _tile(raw / "b.las", seed=1)
    monkeypatch.chdir(raw)  # the default working folder lands in the raw folder
    s = open_session(raw / "a.las", GROUND)
    s.state.add([0, 1, 2], 1)
    assert (raw / "annotations" / "a" / "labels" / "import_annotate" / "a.npy").is_file()
    monkeypatch.chdir(tmp_path)
    argv = ["prepare", "custom", "--raw", str(raw), "--classes", str(GROUND)]
    assert main([*argv, "--out", str(tmp_path / "proc")]) == 0
    summary = json.loads((tmp_path / "proc" / "summary.json").read_text())
    assert summary["scenes"] == 2 and summary["failed"] == 0
    assert sorted(p.stem for p in (tmp_path / "proc" / "scenes").glob("*.npz")) == ["a", "b"]
    cfg = {
        "_base_": str(REPO / "configs" / "custom" / "supervised.yaml"),
        "data": {"root": str(tmp_path / "proc"), "max_voxels": 600, "batch_size": 1,
                 "num_workers": 0, "voxel_size": 1.0},
        "model": {"name": "MinkUNet14A", "planes": [8] * 8, "init_dim": 8},
        "train": {"iterations": 2, "scheduler": "constant", "log_every": 2, "progress": False,
                  "device": "cpu", "threads": 1, "val_every": 0, "checkpoint_every": 2},
        "run_dir": str(tmp_path / "run"),
    }  # fmt: skip
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "cfg.yaml")]) == 0
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    out = tmp_path / "labelled"
    assert main(["predict", "--checkpoint", str(ckpt), str(raw), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.rglob("*.las")) == ["a.las", "b.las"]
    pred = json.loads((out / "predict_summary.json").read_text())
    assert len(pred["files"]) == 2
    # the annotation is still there, untouched by both
    assert processed.load_label_file(
        raw / "annotations" / "a" / "labels" / "import_annotate" / "a.npy", 2000, 2
    ).tolist()[:3] == [[0, 1], [1, 1], [2, 1]]


def test_annotate_command_takes_work_and_start(tmp_path, capsys):
    """`pcseg annotate FILE --work DIR [--start empty]` (served for a moment)."""
    pytest.importorskip("viser", reason="viser not installed (pip install 'pcseg[annotate]')")
    import socket

    code = _tile(tmp_path / "tiles" / "t.las", n=900)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    argv = ["annotate", str(tmp_path / "tiles" / "t.las"), "--classes", str(GROUND)]
    argv += ["--work", str(tmp_path / "w"), "--port", port, "--exit-after", "0.3"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    n = int(np.isin(code, [1, 2]).sum())
    assert f"started from the file's own classes: {n:,d} labelled points" in out
    saved = tmp_path / "w" / "labels" / "import_annotate" / "t.npy"
    assert len(np.load(saved)) == n
    assert main([*argv, "--labels", "import:mine", "--start", "empty"]) == 0
    assert "labels go to" in capsys.readouterr().out
    assert not (tmp_path / "w" / "labels" / "import_mine" / "t.npy").exists()
