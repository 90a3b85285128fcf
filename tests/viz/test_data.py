"""pcseg.viz.data: loading a processed folder, a run or a file into a view; errors name the
files; weak labels read by the processed reader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from pcseg.io.atomic import atomic_save_npy, atomic_save_npz
from pcseg.viz.data import load_view_data, open_source


# ----------------------------------------------------------------------------- loading
@pytest.mark.timeout(60)
def test_load_view_data_sources(room: dict):
    ref = room["scenes"]["room_1"]
    n = len(ref["coords"])
    v = load_view_data(room["proc"])  # single spec in meta.json -> used
    assert v.name == "room_1" and v.num_points == n and v.label_spec == "1%"
    np.testing.assert_array_equal(np.flatnonzero(v.labelled), ref["idx"])
    assert v.pred is None
    v = load_view_data(room["proc"] / "scenes" / "room_2.npz")
    assert v.name == "room_2"
    v = load_view_data(room["run"], scene="room_1")
    np.testing.assert_array_equal(v.pred, ref["pred"])
    np.testing.assert_array_equal(v.pseudo, ref["pseudo"])
    np.testing.assert_allclose(v.confidence, ref["conf"])
    np.testing.assert_array_equal(v.semantic, ref["sem"])
    assert open_source(room["run"]).scenes == ["room_1", "room_2"]


@pytest.mark.timeout(60)
def test_viewer_takes_the_colours_of_the_class_spec(room: dict, tmp_path: Path):
    # a `pcseg prepare custom` folder keeps its CLASSES.yaml in meta.json; its colours are used
    proc = tmp_path / "proc_custom"
    shutil.copytree(room["proc"], proc)
    meta = json.loads((proc / "meta.json").read_text())
    first = meta["class_names"][0]
    meta["classes"] = {"colors": {first: [12, 34, 56]}}
    (proc / "meta.json").write_text(json.dumps(meta))
    v = load_view_data(proc)
    assert tuple(int(c) for c in v.palette[0]) == (12, 34, 56)
    np.testing.assert_array_equal(v.palette[1:], load_view_data(room["proc"]).palette[1:])


@pytest.mark.timeout(60)
def test_load_errors_name_the_files(room: dict):
    run, proc = room["run"], room["proc"]
    with pytest.raises(ValueError, match="room_9"):
        load_view_data(run, scene="room_9")
    with pytest.raises(FileNotFoundError, match="available: 1pct"):
        load_view_data(proc, label_spec="0.1%")
    atomic_save_npz(run / "test" / "predictions" / "room_2.npz", pred=np.zeros(5, np.int64))
    with pytest.raises(ValueError, match=r"room_2\.npz: pred has shape \(5,\)"):
        load_view_data(run, scene="room_2")
    (proc / "labels" / "1pct" / "room_1.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"1pct/room_1\.npy"):
        load_view_data(run, scene="room_1")
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"root": "nowhere"}}))
    with pytest.raises(FileNotFoundError, match="config.yaml: data.root 'nowhere'"):
        load_view_data(run)
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {}}))
    with pytest.raises(ValueError, match="data.root"):
        load_view_data(run)


def test_weak_labels_are_read_by_the_processed_reader(tmp_path: Path):
    """The viewer reads label files with pcseg.data.processed.load_label_file: both forms,
    and the same refusals (another scene's indices, a class off the list, unsorted rows)."""
    from pcseg.viz.data import load_weak_labels

    folder = tmp_path / "labels" / "import_annotate"
    folder.mkdir(parents=True)
    atomic_save_npy(folder / "s.npy", np.array([[1, 2], [4, 0]], np.int64))
    mask, cls, path = load_weak_labels(tmp_path, "import:annotate", "s", 6, 3)
    assert path == folder / "s.npy" and mask.tolist() == [0, 1, 0, 0, 1, 0]
    assert cls.tolist() == [-1, 2, -1, -1, 0, -1]
    atomic_save_npy(folder / "s.npy", np.array([3, 5], np.int64))
    mask, cls, _ = load_weak_labels(tmp_path, "import:annotate", "s", 6, 3)
    assert mask.tolist() == [0, 0, 0, 1, 0, 1] and cls is None
    for rows, match in (
        ([[1, 0], [6, 1]], "out of range for a scene of 6 points"),
        ([[1, 3]], r"class column .*\[0, 2\]"),
        ([[4, 0], [1, 1]], "sorted, unique"),
    ):
        atomic_save_npy(folder / "s.npy", np.array(rows, np.int64))
        with pytest.raises(ValueError, match=match):
            load_weak_labels(tmp_path, "import:annotate", "s", 6, 3)
    with pytest.raises(FileNotFoundError, match="no label folder for spec '1pt'"):
        load_weak_labels(tmp_path, "1pt", "s", 6, 3)


@pytest.mark.timeout(60)
def test_a_pcseg_test_out_folder(room: dict, tmp_path: Path):
    """Issue 24 item 8: `pcseg view T/` for a `pcseg test --out T` folder (metrics.json,
    predictions/): the processed folder from metrics.json, else from the checkpoint's run."""
    from pcseg.viz.errors import ViewError

    tout = tmp_path / "elsewhere" / "t"
    shutil.copytree(room["run"] / "test" / "predictions", tout / "predictions")
    ckpt = room["run"] / "checkpoints" / "best.pt"
    metrics = {"miou": 0.5, "checkpoint": str(ckpt), "data_root": str(room["proc"].resolve()),
               "label_spec": "1%", "scenes": ["room_1", "room_2"]}  # fmt: skip
    (tout / "metrics.json").write_text(json.dumps(metrics))
    src = open_source(tout)
    assert src.scenes == ["room_1", "room_2"] and src.label_spec == "1%"
    assert src.processed == room["proc"].resolve() and src.run_dir == tout
    ref = room["scenes"]["room_2"]
    v = src.load("room_2")
    np.testing.assert_array_equal(v.pred, ref["pred"])
    np.testing.assert_array_equal(v.semantic, ref["sem"])
    np.testing.assert_allclose(v.entropy, ref["ent"])
    np.testing.assert_array_equal(np.flatnonzero(v.labelled), ref["idx"])
    assert "run:" in src.describe() and str(tout) in src.describe()
    # an older metrics.json without data_root: the run that wrote the checkpoint names it
    del metrics["data_root"], metrics["label_spec"]
    (tout / "metrics.json").write_text(json.dumps(metrics))
    src = open_source(tout)
    assert src.processed == room["proc"].resolve() and src.label_spec == "1%"
    np.testing.assert_array_equal(src.load("room_1").pred, room["scenes"]["room_1"]["pred"])
    metrics["checkpoint"] = str(tmp_path / "gone" / "checkpoints" / "best.pt")
    (tout / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(ViewError, match=r"no data_root, and no run config.yaml .*gone"):
        open_source(tout)
